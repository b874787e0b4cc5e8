"""Data: read a data folder's layout and validate it, make the experiment's one shared split, feed tf.data.

Label 1 = fake (the positive class everywhere), 0 = real.
"""
from data.scan import FAKE, LABEL_NAMES, REAL, scan_folder  # noqa: F401
from data.split import experiment_split, load_manifest, make_split  # noqa: F401

