"""The one place that turns a run (a Run: how to build and train it) and the experiment's split into a
finished run folder, runs/<experiment>/<name>/: the model's files, run.json, split.json, logs/.

Every trainer of the kit comes here - the CLI's detectors, the search's winner, the GAN and its fine-tuned
discriminators, the label-free and adapted detectors - so every run folder has the same shape and compare
needs nothing else. `Run` is a detector's life cycle, its methods the defaults: built inside the
tf.distribute strategy's scope, the warm-up phases (e.g. a new head alone on a pretrained trunk) unless a
checkpoint says they are done, the main phase with an epoch checkpoint, a progress file and TensorBoard, the
model's files, the validation figures and threshold. A trainer that differs overrides what differs (the GAN:
its own data and rounds of steps, three networks, a quality record), as a Keras model overrides train_step.
`train()` leaves a trained run in its hidden work folder; `publish()` writes run.json last and renames the
folder into place; between the two a caller may decide not to publish (the search's winner that lost).
"""
import contextlib
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Callable, NamedTuple

import keras
import numpy as np

from classifiers.checkpoint import EpochCheckpoint, ensure_room_for, read_state
from classifiers.metrics import accuracy, roc_auc, youden_threshold
from classifiers.models import compile_detector
from classifiers.multiworker import patch_keras_for_multiworker
from classifiers.predict import probabilities
from data import align
from data.cache import cache_folder, cached_split
from data.pipeline import make_dataset, select
from data.runs import (experiment_dir, finish_run, library_versions, partial_dir, read_json, run_lock, write_atomic,
                       write_json_atomic)
from data.runtime import UserError, import_tensorflow
from data.split import balanced_subset, experiment_split, require_both_classes
from data.synthetic import resolve_data_dir


@dataclasses.dataclass(frozen=True)
class Phase:
    """A warm-up fit() before the main phase: `trainable(model)` sets what it trains, at this Adam rate."""
    label: str  # what it trains, in the progress line: "the head"
    epochs: int
    learning_rate: float
    trainable: Callable


class Run:
    """A run's life cycle with a detector's defaults. Subclasses override the methods that differ; the
    constructor's arguments are what every detector has. epochs=0: fitted without gradient steps when built
    (a one-class score, a head fit in numpy), no main phase."""
    kind = "detector"  # run.json "kind": compare judges detectors
    unit = "epoch"  # what one fit() epoch is called in the progress lines: the GAN's "round" of steps
    contents = "weights and optimizer"  # what its checkpoint holds, as the resume line says

    def __init__(self, name, hyperparameters, epochs=0, warmup=(), augment=(), mixup=0.0, extra=None):
        self.name = name  # the run folder's name
        self.hyperparameters = dict(hyperparameters)  # recorded in run.json
        self.epochs = epochs  # of the main phase
        self.warmup = tuple(warmup)  # Phases before the main one
        self.augment = tuple(augment)  # training perturbations (data.pipeline.AUGMENTATIONS)
        self.mixup = mixup
        self.extra = {} if extra is None else extra  # more run.json entries (filled as late as build() may)

    def build(self):
        """An uncompiled keras.Model, [0, 255] RGB in, P(fake) out."""
        raise NotImplementedError

    def compile(self, model):
        """The model compiled for the main phase (and set trainable for it); as built where there is none."""
        return model

    def callbacks(self):
        """More Keras callbacks for the main phase."""
        return []

    def fit(self, model, cfg, data, strategy, work, progress, checkpoint, chief):
        """The main phase: model.fit on the training side, validated every epoch, recorded in the progress
        file and the checkpoint (a resumed run goes on from its last epoch)."""
        fit_main_phase(model, self, cfg, data, strategy, work, [progress.callback(), checkpoint] + self.callbacks(),
                       chief)

    def save(self, model, work):
        """The model's files in the work folder (model.keras)."""
        save_model(model, work)

    def record(self, model, cfg, data, progress, resumed_from, warmup_seconds, strategy):
        """run.json: the header, how it trained, how it validates (and its threshold), and self.extra."""
        return dict(detector_record(self, cfg, data, model, progress, resumed_from, warmup_seconds, strategy),
                    **self.extra)

    def announce(self, info, final):
        """Its last lines."""
        print(f"{info['model']}: validation AUC {info['validation']['auc']:.4f}, accuracy "
              f"{info['validation']['accuracy']:.4f} (at 0.5), {info['train_seconds']:.0f}s training, run folder "
              f"{final}")


class FittedRun(Run):
    """A detector fitted as it is built, without a gradient step (a one-class score, a head fit in numpy):
    no main phase, and its fitting time is its training time. fit_and_build() -> the finished model."""

    def __init__(self, name, hyperparameters, fit_and_build, extra=None):
        super().__init__(name, hyperparameters, epochs=0, extra=extra)
        self.fit_and_build = fit_and_build

    def build(self):
        return self.fit_and_build()


class Trained(NamedTuple):
    """A trained run in its work folder, not yet in place: what publish() needs."""
    run: Run
    work: str
    final: str
    info: dict  # its run.json to be
    progress_path: str


class SplitData(NamedTuple):
    manifest: dict  # the experiment's split (data.split)
    train: tuple  # (uint8 images, labels)
    val: tuple
    train_paths: tuple = ()  # the training images' paths, in order: what a label subset picks from
    framing: align.Framing = None  # what --align made of the split's pictures (data.align.resolve)


def labelled_subset(data, labels, seed, log=print):
    """data with its training side cut to `labels` (data.runtime.label_count: a count or a fraction) labelled
    images, half of each class, drawn by data.split.balanced_subset: deterministic per seed, nested (the 50
    are among the 100). Validation (and test) are untouched."""
    x, y = data.train
    if labels == "all":
        return data
    per_class = int(round(float(labels) * len(y) / 2)) if "." in labels else int(labels) // 2
    if per_class < 1:
        raise UserError(f"--labels {labels}: less than one labelled image per class of the {len(y):,} training images")
    chosen = {f["path"] for f in balanced_subset(data.manifest, "train", per_class, seed, "--labels " + labels)}
    keep = np.array([p in chosen for p in data.train_paths], bool)
    log(f"labels: {int((y[keep] == 0).sum()):,} real and {int((y[keep] == 1).sum()):,} fake of the {len(y):,} "
        f"training images carry their label (--labels {labels}, seed {seed}); validation untouched")
    return data._replace(train=(select(x, keep), y[keep]), train_paths=tuple(np.array(data.train_paths)[keep]))


def prepare(cfg, log=print):
    """Resolve the data, make or reuse the experiment's split, and its train and validation images from the
    experiment's decode cache (data.cache: decoded once, shared by every run; in memory when they fit).
    cfg: any configuration with data_dir, runs_dir, experiment, strict, image_size, resize_mode and align."""
    data_dir = resolve_data_dir(cfg.data_dir, cfg.runs_dir)
    manifest = experiment_split(data_dir, cfg.runs_dir, cfg.experiment, log=log, strict=cfg.strict,
                                split=cfg.split)
    require_both_classes(manifest, data_dir)
    size, mode, folder = cfg.image_size, cfg.resize_mode, cache_folder(cfg.runs_dir, cfg.experiment)
    framing, aligner = align.split_framing(manifest, cfg.align, cfg.runs_dir, size)
    log(framing.why)
    x, y, paths = cached_split(manifest, "train", size, mode, folder, log, aligner)
    val = cached_split(manifest, "val", size, mode, folder, log, aligner)[:2]
    log(f"data: {len(y):,} training and {len(val[1]):,} validation images at {size}px ({mode})")
    return SplitData(manifest, (x, y), val, tuple(paths), framing)



def make_strategy(name):
    """(strategy or None, whether this process writes the run). Must run before any other TF op."""
    if name == "none":
        return None, True
    tf = import_tensorflow()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(), True
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    if not tf_config.get("cluster"):
        raise UserError("--strategy multiworker needs TF_CONFIG describing the cluster and this task "
                        "(see docs/reference.md, 'More than one machine')")
    task = tf_config.get("task", {})
    has_chief = "chief" in tf_config["cluster"]
    chief = task.get("type") == "chief" or (not has_chief and task.get("type") == "worker" and task.get("index") == 0)

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    patch_keras_for_multiworker()
    return strategy, chief


class ProgressFile:
    """Builds a Keras callback that records finished epochs and wall time, so a resumed run knows both."""

    def __init__(self, path):
        self.path = path
        self.state = read_json(path, {"seconds": 0.0, "epochs": {}})

    def callback(self):
        outer = self

        class _Record(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.started = time.time()
                self.base = outer.state["seconds"]

            def on_epoch_end(self, epoch, logs=None):
                outer.state["seconds"] = self.base + time.time() - self.started
                outer.state["epochs"][str(epoch + 1)] = {k: float(v) for k, v in (logs or {}).items()}
                write_json_atomic(outer.path, outer.state)

        return _Record()


def verbosity():
    """Keras's progress bar on a terminal, one line per epoch in a log file."""
    return 1 if sys.stdout.isatty() else 2


def training_steps(train_images, batch_size, epochs):
    """Optimizer steps in a run of `epochs` epochs (what a cosine schedule decays over)."""
    return max(1, -(-train_images // batch_size)) * epochs


def evaluate_validation(model, x, y, batch_size):
    p = probabilities(model, x, batch_size=batch_size)
    threshold = youden_threshold(y, p)
    return {"auc": roc_auc(y, p), "accuracy": accuracy(y, p, 0.5), "threshold": threshold,
            "accuracy_at_threshold": accuracy(y, p, threshold), "images": int(len(y))}


def train_run(run, cfg, data, strategy=None, chief=True):
    """Train the run on data and put its folder in place, under the run's lock: (folder, run.json), or
    (None, None) on a worker that does not write. cfg: a configuration with runs_dir, experiment, batch_size,
    seed, image_size, resize_mode and record() (what run.json keeps as "config")."""
    if not chief:
        return train(run, cfg, data, strategy, chief=False) or (None, None)
    with run_lock(cfg.runs_dir, cfg.experiment, run.name):
        return publish(train(run, cfg, data, strategy))


def train(run, cfg, data, strategy=None, chief=True):
    """Build, warm up and fit the run in its hidden work folder (resuming what an interrupted one left), save
    its files and work out its run.json: a Trained, not yet in place; None on a worker that does not write.
    The caller holds the run's lock (train_run does)."""
    final = os.path.join(experiment_dir(cfg.runs_dir, cfg.experiment), run.name)
    work = partial_dir(cfg.runs_dir, cfg.experiment, run.name) if chief else tempfile.mkdtemp(prefix="worker-")
    os.makedirs(work, exist_ok=True)
    checkpoint = EpochCheckpoint(os.path.join(work, "backup"), run.name, run.epochs, run.contents, run.unit)
    progress = ProgressFile(os.path.join(work, "progress.json"))
    started = time.time()
    model = built_and_warmed_up(run, cfg, data, strategy, work)
    warmup_seconds = time.time() - started
    if run.epochs:  # a detector fitted without gradient steps (a one-class score) has no main phase
        run.fit(model, cfg, data, strategy, work, progress, checkpoint, chief)
    run.save(model, work)
    if not chief:
        shutil.rmtree(work, ignore_errors=True)
        print(f"{run.name}: this worker is done; the chief writes the run folder")
        return None
    if strategy is not None:  # judged outside the strategy: other workers may already have left
        model = keras.saving.load_model(os.path.join(work, "model.keras"), compile=False)
    write_json_atomic(os.path.join(work, "split.json"), data.manifest)
    info = run.record(model, cfg, data, progress.state, checkpoint.resumed_from, warmup_seconds, strategy)
    return Trained(run, work, final, info, progress.path)


def publish(trained):
    """Write run.json last and rename the work folder into place; (folder, run.json)."""
    if os.path.exists(trained.progress_path):  # none where there was no main phase
        os.remove(trained.progress_path)
    finish_run(trained.work, trained.final, trained.info)
    trained.run.announce(trained.info, trained.final)
    return trained.final, trained.info


def built_and_warmed_up(run, cfg, data, strategy, work):
    """The model, built in the strategy's scope, through its warm-up phases and compiled for the main one."""
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = run.build()
        if run.warmup and read_state(os.path.join(work, "backup"))[0]:
            print(f"{run.name}: warm-up already done before the interruption; its checkpoint holds the result")
        elif run.warmup:
            warm_up(model, run, cfg, data)
        return run.compile(model)


def warm_up(model, run, cfg, data):
    train_ds = make_dataset(*data.train, cfg.batch_size, training=True, seed=cfg.seed, augment=run.augment)
    val_ds = make_dataset(*data.val, cfg.batch_size)
    for phase in run.warmup:
        print(f"{run.name}: warm-up, {phase.epochs} epoch(s) training {phase.label} at lr {phase.learning_rate:g}")
        phase.trainable(model)
        compile_detector(model, phase.learning_rate).fit(train_ds, validation_data=val_ds, epochs=phase.epochs,
                                                         verbose=verbosity(), shuffle=False)


def fit_main_phase(model, run, cfg, data, strategy, work, callbacks, chief):
    global_batch = cfg.batch_size * (strategy.num_replicas_in_sync if strategy else 1)
    train_ds = make_dataset(*data.train, global_batch, training=True, seed=cfg.seed, augment=run.augment,
                            mixup=run.mixup)
    val_ds = make_dataset(*data.val, global_batch)
    if strategy is not None:
        tf = import_tensorflow()
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        train_ds, val_ds = train_ds.with_options(options), val_ds.with_options(options)
    if chief:
        callbacks = callbacks + [keras.callbacks.TensorBoard(os.path.join(work, "logs"), write_graph=True)]
    model.fit(train_ds, validation_data=val_ds, epochs=run.epochs, callbacks=callbacks, verbose=verbosity(),
              shuffle=False)  # tf.data already reshuffles every epoch


def save_model(model, work):
    ensure_room_for(work, model, "the model")
    write_atomic(os.path.join(work, "model.keras"), model.save)


def record_header(name, kind, cfg, data, seconds):
    """What every run.json opens with, a detector's and the GAN's: what it is, the configuration that made it,
    the split it used and how its faces were framed ("align": how whatever the run judges is framed), the
    precision, the libraries, when and how long."""
    manifest, framing = data.manifest, data.framing or align.AS_GIVEN
    return {"model": name, "kind": kind, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "config": cfg.record(),
            "image_size": cfg.image_size, "precision": keras.mixed_precision.global_policy().name, "seed": cfg.seed,
            "split_fingerprint": manifest["fingerprint"], "data_dir": manifest["data_dir"],
            "align": framing.judge, "alignment": framing.record(),
            "train_images": int(len(data.train[1])), "train_seconds": round(seconds, 2), "versions": library_versions()}


def epochs_in_order(progress):
    """[(epoch number, its logged figures)] of a progress file's state, first epoch first."""
    return [(int(e), m) for e, m in sorted(progress["epochs"].items(), key=lambda kv: int(kv[0]))]


def detector_record(run, cfg, data, model, progress, resumed_from, warmup_seconds, strategy):
    """run.json of a detector: the header, how it trained, how it validates (and its threshold)."""
    validation = evaluate_validation(model, *data.val, cfg.batch_size)
    # the warm-up phases count
    info = record_header(run.name, run.kind, cfg, data, progress["seconds"] + warmup_seconds)
    info.update({
        "hyperparameters": dict(run.hyperparameters),
        "augment": list(run.augment),
        "resize_mode": cfg.resize_mode,
        "replicas": strategy.num_replicas_in_sync if strategy else 1,
        "epochs_completed": len(progress["epochs"]),
        "resumed_from_epoch": resumed_from or None,
        "params": int(model.count_params()),
        "threshold": validation["threshold"],
        "validation": validation,
        "history": [dict(epoch=e, **m) for e, m in epochs_in_order(progress)],
    })
    return info
