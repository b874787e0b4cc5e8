"""Run folders: `runs/<experiment>/<model>/` holding model.keras, run.json and logs/.

A run is trained inside a hidden `.<model>.partial/` folder (where checkpoints for resuming live) and
renamed into place only once model.keras and run.json are complete, so an interrupted run never leaves
a folder that looks finished.
"""
import contextlib
import fcntl
import json
import os
import platform
import re
import shutil
import sys
import time
import zipfile

import numpy

from data.runtime import UserError, import_tensorflow

# an experiment's folders that are not runs: the report, the experiment's logs, the adapted runs (a level
# deeper, by family) and the benchmarks' figures
NOT_RUNS = ("report", "logs", "adapted", "bench")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def check_name(name, what):
    """Experiment and model names become folder names: no separators, no '..', nothing hidden."""
    if not NAME_PATTERN.match(name or "") or ".." in name:
        raise UserError(f"{what} name {name!r} is not allowed: it must start with a letter or digit, then use "
                        "letters, digits, '-', '_' and single '.', at most 100 characters"
                        + (" (name it with --family)" if what == "family" else ""))
    return name


def write_atomic(path, write):
    """write(tmp) a temporary file beside path, then rename it over path: readers see the old file or the new
    one, never half of one. The temporary name keeps path's ending (Keras picks its format by it)."""
    folder, base = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{base}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and not e.filename:  # a failed write() names no file; say which
            raise OSError(e.errno, e.strerror, path) from e
        raise
    return path


def read_json(path, default=None):
    """The JSON in path, or default where the file is missing or not JSON (a cache, a progress record: a
    damaged one is rebuilt, never trusted)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def write_json_atomic(path, obj):
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=False)
            f.flush()
            os.fsync(f.fileno())

    return write_atomic(path, write)


def write_text_atomic(path, text):
    def write(tmp):
        with open(tmp, "w", newline="") as f:
            f.write(text)

    return write_atomic(path, write)


def experiment_dir(runs_dir, experiment):
    return os.path.join(os.path.abspath(runs_dir), check_name(experiment, "experiment"))


def partial_dir(runs_dir, experiment, model_name):
    return os.path.join(experiment_dir(runs_dir, experiment), "." + check_name(model_name, "model") + ".partial")


def model_files(info):
    """The model archives a finished run must hold: a GAN keeps both networks, a detector one model."""
    return ("generator.keras", "discriminator.keras") if info.get("kind") == "gan" else ("model.keras",)


@contextlib.contextmanager
def run_lock(runs_dir, experiment, model_name, wait=False):
    """Only one process trains a given model of an experiment at a time; a second one is told so, or with
    wait=True (a command that needs the other's result) waits for it."""
    folder = experiment_dir(runs_dir, experiment)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f".{check_name(model_name, 'model')}.lock")
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            if not wait:
                raise UserError(f"{model_name} of experiment {experiment!r} is being trained by {holder}; "
                                "wait for it or use another --experiment")
            print(f"{model_name} of experiment {experiment!r} is being trained by {holder}; waiting for it", flush=True)
            fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def finish_run(partial, final, run_info):
    """Write run.json last, then move the whole folder into place (replacing an older run of that name)."""
    for name in model_files(run_info):
        if not os.path.exists(os.path.join(partial, name)):
            raise RuntimeError(f"{partial}: no {name} to finish the run with")
    write_json_atomic(os.path.join(partial, "run.json"), run_info)
    old = None
    if os.path.exists(final):
        old = final + f".old-{os.getpid()}-{int(time.time())}"
        os.replace(final, old)
    os.replace(partial, final)
    if old:
        shutil.rmtree(old, ignore_errors=True)
    return final


def library_versions():
    tf = import_tensorflow()  # data/ loads TensorFlow only when a run needs it
    versions = {"python": platform.python_version(), "tensorflow": tf.__version__,
                "keras": sys.modules["keras"].__version__, "numpy": numpy.__version__}
    try:
        import keras_tuner

        versions["keras_tuner"] = keras_tuner.__version__
    except ImportError:
        pass
    return versions


class BrokenRun(Exception):
    """A run folder that is not a finished, loadable run; the message says why."""


def read_run(folder):
    """run.json of a finished run, or BrokenRun naming what is missing or damaged."""
    info_path = os.path.join(folder, "run.json")
    if not os.path.isfile(info_path):
        raise BrokenRun(f"{folder}: no run.json (unfinished or not a run folder)")
    try:
        with open(info_path) as f:
            info = json.load(f)
    except (OSError, ValueError) as e:
        raise BrokenRun(f"{info_path}: unreadable ({e})")
    if not isinstance(info, dict) or "model" not in info:
        raise BrokenRun(f"{info_path}: not a run description")
    for name in model_files(info):
        model_path = os.path.join(folder, name)
        if not os.path.isfile(model_path):
            raise BrokenRun(f"{folder}: no {name}")
        if not zipfile.is_zipfile(model_path):
            raise BrokenRun(f"{model_path}: truncated or damaged (not a Keras archive)")
    return info


def run_differences(info, cfg, manifest, role=None, made_from=None):
    """What differs between a finished run and the configuration about to train it: ['epochs 8 -> 10', ...].
    Compared: the settings cfg declares part of a `role` run's identity (CommandConfig.identity), the split,
    and for a run made from another run (a detector fine-tuned from the GAN: made_from=("gan", its
    creation stamp)), whether that run is still the one in place."""
    recorded = info.get("config") or {}
    normal = (lambda v: json.loads(json.dumps(v, sort_keys=True, default=str)))
    out = []
    for key, (value, before_it_existed) in sorted(cfg.identity(role).items()):
        if key in cfg.caps() and info.get("stopped_by") != cfg.caps()[key]:
            continue  # the run reached its goal inside the limit: another limit would have made the same run
        old, new = normal(recorded.get(key, before_it_existed)), normal(value)
        if old != new:
            cut = f" (it stopped at step {info.get('steps_completed'):,} of {recorded.get('gan_steps'):,})" \
                if key in cfg.caps() and info.get("steps_completed") is not None else ""
            out.append(f"{key} {old!r} -> {new!r}{cut}")
    if info.get("split_fingerprint") != manifest["fingerprint"]:
        out.append("another split")
    if made_from is not None and (info.get(made_from[0]) or {}).get("created") != made_from[1]:
        out.append(f"made from another {made_from[0]} run than the one now in place")
    return out


def finished_run(folder, cfg, manifest, role=None, made_from=None):
    """What to do with a finished run of the model about to be trained: the one policy of every command.

    Returns its run.json when this very configuration made it on this split (kept, and said in one line),
    None when there is nothing finished or --retrain was given (train), and raises UserError naming the
    difference and the two ways out otherwise: a finished run is never silently replaced. Differences
    only in settings that extend a run (a search's budget) also return None. Which settings count is
    declared on the configuration's fields (data.runtime.setting)."""
    try:
        info = read_run(folder)
    except BrokenRun:
        return None
    if cfg.retrain:
        print(f"{os.path.basename(folder)}: --retrain: the finished run in {folder} is replaced when this one finishes")
        return None
    differences = run_differences(info, cfg, manifest, role, made_from)
    if not differences:
        print(f"{os.path.basename(folder)}: already trained with this configuration ({folder}); kept "
              "(--retrain trains it again)")
        return info
    if all(d.split(" ", 1)[0] in cfg.extending() for d in differences):
        return None
    raise UserError(f"{folder} was trained with another configuration ({'; '.join(differences)}); to keep it and "
                    "train this one too use a new --experiment, or pass --retrain to replace it")


def list_runs(runs_dir, experiment):
    """(finished runs as (folder, info), broken runs as (folder, reason)) of an experiment."""
    root = experiment_dir(runs_dir, experiment)
    good, broken = [], []
    if not os.path.isdir(root):
        return good, broken
    for name in sorted(os.listdir(root)):
        folder = os.path.join(root, name)
        if name.startswith(".") or not os.path.isdir(folder) or name in NOT_RUNS:
            continue
        try:
            good.append((folder, read_run(folder)))
        except BrokenRun as e:
            broken.append((folder, str(e)))
    return good, broken
