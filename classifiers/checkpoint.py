"""An epoch checkpoint that a kill, a truncated file or a full disk cannot turn into a crash or a lie.

Keras's BackupAndRestore writes its weights file in place and falls back to the previous one only on an
OSError; a file cut short by a full disk makes h5py raise other errors (or crash on close), and a kill
between the weights and the epoch counter resumes the wrong epoch. Here each epoch's weights go to their
own file, written beside it and renamed into place, and a small JSON file naming the file and its epoch
is replaced last: that replace is the commit. Before writing, free space is checked, so a full disk stops
the run with one clear line instead of a half-written file.
"""
import glob
import os
import shutil

import keras
import numpy as np

from data.runs import read_json, write_atomic, write_json_atomic
from data.runtime import UserError

STATE = "checkpoint.json"
MARGIN_BYTES = 256 << 10  # event files, run.json and the like written alongside


def free_bytes(folder):
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def optimizers_of(model):
    """Every optimizer a model trains with (compile()'s, or the two of a GAN's train_step), found by type."""
    found = []
    for value in vars(model).values():
        if isinstance(value, keras.optimizers.Optimizer) and not any(value is f for f in found):
            found.append(value)
    return found


def state_bytes(model):
    """Bytes of everything a checkpoint holds: the weights and the optimizers' slots."""
    variables = list(model.weights)
    for optimizer in optimizers_of(model):
        variables += list(optimizer.variables)
    return sum(int(np.prod(v.shape)) * np.dtype(keras.backend.standardize_dtype(v.dtype)).itemsize
               for v in variables)


def read_state(folder):
    """(last committed epoch, the one before it or None) of a checkpoint folder; (0, None) when there is none."""
    state = read_json(os.path.join(folder, STATE))
    try:
        return int(state["epoch"]), state.get("previous")
    except (AttributeError, KeyError, TypeError, ValueError):  # none, or not a checkpoint's state
        return 0, None


def ensure_free_space(folder, needed, what):
    """Stop with one clear line when the disk cannot take what is about to be written."""
    available = free_bytes(folder)
    if available < needed:
        raise UserError(f"not enough free space in {folder} to write {what}: needs about "
                        f"{needed / 1e6:.1f} MB, {available / 1e6:.1f} MB free; earlier results are untouched "
                        "and the same command resumes once there is room")


def ensure_room_for(folder, model, what):
    """Enough free space in folder for a save of model (weights and optimizer state) and the small files."""
    ensure_free_space(folder, int(state_bytes(model) * 1.2) + MARGIN_BYTES, what)


class EpochCheckpoint(keras.callbacks.Callback):
    """Save model + optimizer state after every epoch; on the next fit() restore it and skip what was done.

    label and contents only shape the message that says a run resumed ("baseline: resuming from epoch 3
    of 8 (... : weights and optimizer)")."""

    def __init__(self, folder, label, total_epochs, contents="weights and optimizer", unit="epoch"):
        super().__init__()
        self.folder, self.label, self.total_epochs, self.contents = folder, label, total_epochs, contents
        self.unit = unit  # what one fit() epoch is called in the messages: a GAN's "round" of steps
        self.resumed_from = 0

    # -- reading
    def _try_load(self, epoch):
        path = os.path.join(self.folder, f"epoch-{epoch}.weights.h5")
        try:
            self.model.load_weights(path)
            return True
        except Exception as e:  # h5py says a cut-short file in several ways (OSError, RuntimeError, KeyError...)
            print(f"{self.label}: checkpoint {path} is unreadable ({type(e).__name__}: {str(e)[:120]})")
            return False

    def on_train_begin(self, logs=None):
        epoch, previous = read_state(self.folder)
        if not epoch:
            return
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and not optimizer.built:  # slots must exist before they can be loaded
            optimizer.build(self.model.trainable_variables)
        for candidate in (epoch, previous):
            if candidate and self._try_load(candidate):
                self.resumed_from = candidate
                # the same private hook BackupAndRestore uses: fit() starts its epoch loop here
                self.model._initial_epoch = candidate
                print(f"{self.label}: resuming from {self.unit} {candidate} of {self.total_epochs} "
                      f"({self.folder}: {self.contents})")
                return
        print(f"{self.label}: no readable checkpoint in {self.folder}; starting from the beginning")

    # -- writing
    def on_epoch_end(self, epoch, logs=None):
        done = epoch + 1
        os.makedirs(self.folder, exist_ok=True)
        ensure_room_for(self.folder, self.model, f"the checkpoint of epoch {done}")
        final = write_atomic(os.path.join(self.folder, f"epoch-{done}.weights.h5"),
                             lambda tmp: self.model.save_weights(tmp, overwrite=True))
        before, _ = read_state(self.folder)
        write_json_atomic(os.path.join(self.folder, STATE), {"epoch": done, "previous": before or None})
        keep = {final, os.path.join(self.folder, f"epoch-{before}.weights.h5")}
        for old in glob.glob(os.path.join(self.folder, "epoch-*.h5")):
            if old not in keep:
                os.remove(old)

    def on_train_end(self, logs=None):
        # training finished: the caller saves the model; the checkpoint has done its job
        shutil.rmtree(self.folder, ignore_errors=True)
