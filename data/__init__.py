"""Data: read a data folder's layout and validate it, make the experiment's one shared split, feed tf.data.

Label 1 = fake (the positive class everywhere), 0 = real.
"""
from data.scan import FAKE, LABEL_NAMES, REAL, scan_folder  # noqa: F401
from data.split import experiment_split, load_manifest, make_split  # noqa: F401


def resolve_data_dir(data_dir, runs_dir):
    """The data folder to use (the embedded default when none is given). Imported lazily, so that
    `python -m data.synthetic` does not find its own module loaded before it runs."""
    from data.synthetic import resolve_data_dir as resolve

    return resolve(data_dir, runs_dir)
