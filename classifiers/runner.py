"""The one place that turns a run description (a RunSpec: how to build and train it) and the experiment's
split into a finished run folder, runs/<experiment>/<name>/: the model's files, run.json, split.json, logs/.

Every trainer of the kit comes here - the CLI's detectors, the search's winner and its baseline fallback,
the GAN and its fine-tuned discriminators - so every run folder has the same shape and compare needs
nothing else. In order: the model's lock (two commands never train into one folder); the model built
inside the tf.distribute strategy's scope; the warm-up phases (e.g. a new head alone on a pretrained
trunk), unless a checkpoint says they are done; the main phase with an epoch checkpoint, a progress file
and TensorBoard; the model's files; the validation figures and threshold; run.json last, and the folder
renamed into place. A trainer with other artefacts (the GAN: its own data and rounds of steps, three
networks, a quality record) says so through the RunSpec's hooks, never through a copy of this life cycle.
"""
import contextlib
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Callable, Mapping, NamedTuple, Optional

import keras
import numpy as np

from classifiers.checkpoint import EpochCheckpoint, ensure_room_for, read_state
from classifiers.metrics import accuracy, roc_auc, youden_threshold
from classifiers.models import compile_detector
from classifiers.multiworker import patch_keras_for_multiworker
from classifiers.predict import probabilities
from data.cache import cache_folder, cached_split
from data.pipeline import make_dataset, select
from data.runs import (experiment_dir, finish_run, library_versions, partial_dir, run_lock, write_atomic,
                       write_json_atomic)
from data.runtime import UserError, import_tensorflow
from data.split import balanced_subset, experiment_split
from data.synthetic import resolve_data_dir


@dataclasses.dataclass(frozen=True)
class Phase:
    """A warm-up fit() before the main phase: `trainable(model)` sets what it trains, at this Adam rate."""
    label: str  # what it trains, in the progress line: "the head"
    epochs: int
    learning_rate: float
    trainable: Callable


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """What a run trains and how: everything the runner needs besides the configuration and the data."""
    name: str  # the run folder's name
    build: Callable  # build() -> an uncompiled keras.Model, [0, 255] RGB in, P(fake) out
    compile: Callable  # compile(model) -> the model compiled for the main phase (and set trainable for it)
    epochs: int  # of the main phase
    hyperparameters: Mapping  # recorded in run.json
    warmup: tuple = ()  # Phases before the main one
    augment: tuple = ()  # training perturbations (data.pipeline.AUGMENTATIONS)
    mixup: float = 0.0
    callbacks: tuple = ()  # more Keras callbacks for the main phase
    extra: Optional[Mapping] = None  # more run.json entries
    evaluate: Optional[Callable] = None  # evaluate(trained model) -> more run.json entries, measured at the end
    # -- hooks of a trainer that is not a detector fitted on labelled faces (the defaults are a detector's)
    kind: str = "detector"  # run.json "kind": compare judges detectors
    unit: str = "epoch"  # what one fit() epoch is called in the progress lines: the GAN's "round" of steps
    contents: str = "weights and optimizer"  # what its checkpoint holds, as the resume line says
    prepare: Optional[Callable] = None  # prepare(work folder): before anything is built
    fit: Optional[Callable] = None  # fit(model, work, progress, checkpoint): the main phase, its own way
    save: Optional[Callable] = None  # save(model, work): its files (default: model.keras)
    record: Optional[Callable] = None  # record(model, progress state, resumed from) -> run.json after the header
    announce: Optional[Callable] = None  # announce(run.json, folder): its last lines (default: validation AUC)
    # accept(run.json) -> False: the run is not put in place (the search's winner that lost to its baseline),
    # its work folder is left for the caller to write the run another way
    accept: Optional[Callable] = None


class SplitData(NamedTuple):
    manifest: dict  # the experiment's split (data.split)
    train: tuple  # (uint8 images, labels)
    val: tuple
    train_paths: tuple = ()  # the training images' paths, in order: what a label subset picks from


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
    cfg: any configuration with data_dir, runs_dir, experiment, strict, image_size and resize_mode."""
    data_dir = resolve_data_dir(cfg.data_dir, cfg.runs_dir)
    manifest = experiment_split(data_dir, cfg.runs_dir, cfg.experiment, log=log, strict=cfg.strict,
                                split=cfg.split)
    size, mode, folder = cfg.image_size, cfg.resize_mode, cache_folder(cfg.runs_dir, cfg.experiment)
    x, y, paths = cached_split(manifest, "train", size, mode, folder, log)
    val = cached_split(manifest, "val", size, mode, folder, log)[:2]
    log(f"data: {len(y):,} training and {len(val[1]):,} validation images at {size}px ({mode})")
    return SplitData(manifest, (x, y), val, tuple(paths))


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
        try:
            with open(path) as f:
                self.state = json.load(f)
        except (OSError, ValueError):
            self.state = {"seconds": 0.0, "epochs": {}}

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


def train_run(spec, cfg, data, strategy=None, chief=True):
    """Train spec on data and write its run folder; (folder, run.json), or (None, None) on a worker that
    does not write. cfg: a configuration with runs_dir, experiment, batch_size, seed, image_size,
    resize_mode and record() (what run.json keeps as "config")."""
    if not chief:
        return _train_and_write(spec, cfg, data, strategy, chief=False)
    with run_lock(cfg.runs_dir, cfg.experiment, spec.name):
        return _train_and_write(spec, cfg, data, strategy, chief=True)


def _train_and_write(spec, cfg, data, strategy, chief):
    final = os.path.join(experiment_dir(cfg.runs_dir, cfg.experiment), spec.name)
    work = partial_dir(cfg.runs_dir, cfg.experiment, spec.name) if chief else tempfile.mkdtemp(prefix="worker-")
    os.makedirs(work, exist_ok=True)
    if spec.prepare:
        spec.prepare(work)
    checkpoint = EpochCheckpoint(os.path.join(work, "backup"), spec.name, spec.epochs, spec.contents, spec.unit)
    progress = ProgressFile(os.path.join(work, "progress.json"))
    started = time.time()
    model = built_and_warmed_up(spec, cfg, data, strategy, work)
    warmup_seconds = time.time() - started
    if spec.epochs and spec.fit:
        spec.fit(model, work, progress, checkpoint)
    elif spec.epochs:  # a detector fitted without gradient steps (a one-class score) has no main phase
        fit_main_phase(model, spec, cfg, data, strategy, work, [progress.callback(), checkpoint], chief)
    (spec.save or save_model)(model, work)
    if not chief:
        shutil.rmtree(work, ignore_errors=True)
        print(f"{spec.name}: this worker is done; the chief writes the run folder")
        return None, None
    if strategy is not None:  # judged outside the strategy: other workers may already have left

        model = keras.saving.load_model(os.path.join(work, "model.keras"), compile=False)
    write_json_atomic(os.path.join(work, "split.json"), data.manifest)
    if spec.record:
        info = record_header(spec.name, spec.kind, cfg, data.manifest, len(data.train[1]),
                             progress.state["seconds"] + warmup_seconds)
        info.update(spec.record(model, progress.state, checkpoint.resumed_from))
    else:
        info = run_record(spec, cfg, data, model, progress.state, checkpoint.resumed_from, warmup_seconds, strategy)
    if spec.accept and not spec.accept(info):
        return None, info
    if os.path.exists(progress.path):  # none where there was no main phase
        os.remove(progress.path)
    finish_run(work, final, info)
    (spec.announce or announce_detector)(info, final)
    return final, info


def announce_detector(info, final):
    print(f"{info['model']}: validation AUC {info['validation']['auc']:.4f}, accuracy "
          f"{info['validation']['accuracy']:.4f} (at 0.5), {info['train_seconds']:.0f}s training, run folder {final}")


def built_and_warmed_up(spec, cfg, data, strategy, work):
    """The model, built in the strategy's scope, through its warm-up phases and compiled for the main one."""
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        model = spec.build()
        if spec.warmup and read_state(os.path.join(work, "backup"))[0]:
            print(f"{spec.name}: warm-up already done before the interruption; its checkpoint holds the result")
        elif spec.warmup:
            warm_up(model, spec, cfg, data)
        return spec.compile(model)


def warm_up(model, spec, cfg, data):
    train_ds = make_dataset(*data.train, cfg.batch_size, training=True, seed=cfg.seed, augment=spec.augment)
    val_ds = make_dataset(*data.val, cfg.batch_size)
    for phase in spec.warmup:
        print(f"{spec.name}: warm-up, {phase.epochs} epoch(s) training {phase.label} at lr {phase.learning_rate:g}")
        phase.trainable(model)
        compile_detector(model, phase.learning_rate).fit(train_ds, validation_data=val_ds, epochs=phase.epochs,
                                                         verbose=verbosity(), shuffle=False)


def fit_main_phase(model, spec, cfg, data, strategy, work, callbacks, chief):
    global_batch = cfg.batch_size * (strategy.num_replicas_in_sync if strategy else 1)
    train_ds = make_dataset(*data.train, global_batch, training=True, seed=cfg.seed, augment=spec.augment,
                            mixup=spec.mixup)
    val_ds = make_dataset(*data.val, global_batch)
    if strategy is not None:
        tf = import_tensorflow()
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        train_ds, val_ds = train_ds.with_options(options), val_ds.with_options(options)
    if chief:
        callbacks = callbacks + [keras.callbacks.TensorBoard(os.path.join(work, "logs"), write_graph=True)]
    model.fit(train_ds, validation_data=val_ds, epochs=spec.epochs, callbacks=callbacks + list(spec.callbacks),
              verbose=verbosity(), shuffle=False)  # tf.data already reshuffles every epoch


def save_model(model, work):
    ensure_room_for(work, model, "the model")
    write_atomic(os.path.join(work, "model.keras"), model.save)


def record_header(name, kind, cfg, manifest, train_images, seconds):
    """What every run.json opens with, a detector's and the GAN's: what it is, the configuration that made it,
    the split it used, the precision, the libraries, when and how long."""
    return {"model": name, "kind": kind, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "config": cfg.record(),
            "image_size": cfg.image_size, "precision": keras.mixed_precision.global_policy().name, "seed": cfg.seed,
            "split_fingerprint": manifest["fingerprint"], "data_dir": manifest["data_dir"],
            "train_images": int(train_images), "train_seconds": round(seconds, 2), "versions": library_versions()}


def epochs_in_order(progress):
    """[(epoch number, its logged figures)] of a progress file's state, first epoch first."""
    return [(int(e), m) for e, m in sorted(progress["epochs"].items(), key=lambda kv: int(kv[0]))]


def run_record(spec, cfg, data, model, progress, resumed_from, warmup_seconds, strategy):
    """run.json of a detector: the header, how it trained, how it validates (and its threshold)."""
    validation = evaluate_validation(model, *data.val, cfg.batch_size)
    info = record_header(spec.name, "detector", cfg, data.manifest, len(data.train[1]),
                         progress["seconds"] + warmup_seconds)  # the warm-up phases count
    info.update({
        "hyperparameters": dict(spec.hyperparameters),
        "augment": list(spec.augment),
        "resize_mode": cfg.resize_mode,
        "replicas": strategy.num_replicas_in_sync if strategy else 1,
        "epochs_completed": len(progress["epochs"]),
        "resumed_from_epoch": resumed_from or None,
        "params": int(model.count_params()),
        "threshold": validation["threshold"],
        "validation": validation,
        "history": [dict(epoch=e, **m) for e, m in epochs_in_order(progress)],
    })
    info.update(spec.extra or {})
    info.update(spec.evaluate(model) if spec.evaluate else {})
    return info
