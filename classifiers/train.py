"""`python -m classifiers.train --model baseline|resnet|backbone|hpsearch`: train a detector on the experiment's split.

baseline  the original study's CNN, trained for a fixed number of epochs.
resnet    the strong from-scratch recipe (RESNET below).
backbone  a keras.applications network (--backbone, --weights imagenet|none|PATH) with a new head.
hpsearch  a keras-tuner search over CNNs (objective: validation AUC; trial 1 is the baseline), then the best
          configuration retrained from scratch and kept only if it beats the baseline on validation.

Every run is written to runs/<experiment>/<model>/ (model.keras, run.json, split.json, logs/) only when
complete; an interrupted run resumes from its last finished epoch (or trial) when the same command is
run again; a finished run is kept (same configuration) or refused (another one) unless --retrain.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from classifiers.backbones import BACKBONES
from data.runtime import add_common_args, import_tensorflow, positive_int, run_main, setup, UserError

PRESETS = {
    # quick: minutes on 2 CPU cores, and still learns. The search is Hyperband promoting the best trials to
    # 12 epochs (deep nets need that long to show their worth), stopped after 15 minutes or 30 trials.
    "quick": {"image_size": 64, "epochs": 8, "max_trials": 30, "search_epochs": 12, "search_minutes": 15,
              "batch_size": 32},
    # paper: the original study's settings
    "paper": {"image_size": 256, "epochs": 10, "max_trials": 30, "search_epochs": 10, "search_minutes": None,
              "batch_size": 32},
}
BASELINE = {"filters": [32, 64], "head": "flatten", "dropout": 0.2, "residual": False, "learning_rate": 1e-3,
            "augment": False, "schedule": "constant"}
SEARCH_SPACE = {
    # the study's block lists, and a fourth block with global pooling's room to see the whole face: on the
    # development faces a 32-64-128-256 / GAP / cosine net reached test AUC 0.848 in 24 epochs at 64 px,
    # against 0.804 for the baseline (see README, "Quality per CPU-minute")
    "filters": ["32", "32-64", "32-64-128", "64-128", "64-128-256", "32-64-128-256"],
    "head": ["flatten", "gap"],
    "learning_rate": [1e-3, 5e-4, 1e-4],
    "residual": [False, True],  # the study's named next step
    "dropout": [0.0, 0.2, 0.4],
    "augment": [False, True],
    "schedule": ["constant", "cosine"],  # cosine decays to 0 over the trial's (or the retrain's) epochs
}
# The strong from-scratch recipe (`--model resnet`): a small ResNet, AdamW with warm-up and cosine decay,
# label smoothing, flips and mixup; trained for RESNET_EPOCHS[preset] epochs. No shifts, JPEG, blur or
# resizing: on the development faces each of them slowed learning badly (see README, "Quality per CPU-minute").
RESNET = {"widths": [32, 64, 128, 256], "blocks": [1, 1, 1, 1], "stem_stride": 1, "head": "gap", "dropout": 0.3,
          "learning_rate": 2e-3, "weight_decay": 0.05, "warmup_epochs": 2, "label_smoothing": 0.1,
          "augment": ["flip"], "mixup": 0.2}
RESNET_EPOCHS = {"quick": 30, "paper": 60}
# `--model backbone`: an ImageNet network with a new head; phases: head alone, top blocks, then everything
BACKBONE = {"head_epochs": 2, "top_epochs": 2, "head_learning_rate": 1e-3, "top_learning_rate": 1e-4,
            "learning_rate": 3e-5, "scratch_learning_rate": 1e-3, "augment": ["flip"]}
TRAIN_AUGMENTATIONS = ("flip", "jpeg", "blur", "resize")  # what "augment" switches on
EARLY_STOP_PATIENCE = 2
TUNERS = ("random", "hyperband", "bayesian")
STRATEGIES = ("none", "mirrored", "multiworker")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m classifiers.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=("baseline", "resnet", "backbone", "hpsearch"), default="baseline",
                   help="baseline: the study's CNN; resnet: the strong from-scratch recipe; backbone: a "
                        "keras.applications network (--backbone, --weights); hpsearch: a keras-tuner search")
    p.add_argument("--backbone", choices=tuple(BACKBONES), default="efficientnetb0", help="with --model backbone")
    p.add_argument("--weights", default="imagenet",
                   help="with --model backbone: imagenet (downloaded once into Keras's cache), none, or a file")
    add_common_args(p)
    p.add_argument("--preset", choices=tuple(PRESETS), default="quick")
    p.add_argument("--image-size", type=positive_int, help="input side in pixels (preset decides by default)")
    p.add_argument("--resize-mode", choices=("resize", "crop"), default="resize",
                   help="squash each face to the input size, or cut its centre at full detail")
    p.add_argument("--epochs", type=positive_int)
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--max-trials", type=positive_int, help="search budget (hpsearch)")
    p.add_argument("--search-epochs", type=positive_int,
                   help="epochs of the longest trial (hpsearch); the winner is retrained this long unless --epochs")
    p.add_argument("--search-minutes", type=float, help="stop starting new trials after this long (hpsearch)")
    p.add_argument("--tuner", choices=TUNERS, default="hyperband")
    p.add_argument("--retrain", action="store_true",
                   help="train again and replace a finished run of this model (else it is kept, or a run of "
                        "another configuration is an error)")
    p.add_argument("--strategy", choices=STRATEGIES, default="none",
                   help="tf.distribute: mirrored (devices of one machine) or multiworker (TF_CONFIG)")
    return p.parse_args(argv)


def resolve_config(args):
    cfg = dict(PRESETS[args.preset])
    for key in ("image_size", "epochs", "batch_size", "max_trials", "search_epochs", "search_minutes"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    if args.model == "resnet" and args.epochs is None:
        cfg["epochs"] = RESNET_EPOCHS[args.preset]
    if args.model == "hpsearch" and args.epochs is None:
        cfg["epochs"] = cfg["search_epochs"]  # the winner gets the budget that won it the search
    if args.model == "backbone":
        cfg.update(backbone=args.backbone, weights=args.weights)
    cfg.update(model=args.model, preset=args.preset, resize_mode=args.resize_mode, tuner=args.tuner,
               strategy=args.strategy, seed=args.seed, precision=args.precision,
               runs_dir=os.path.abspath(args.runs_dir), experiment=args.experiment, data_dir=args.data_dir,
               strict=args.strict, retrain=args.retrain)
    return cfg


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
                        "(see README, 'More than one machine')")
    task = tf_config.get("task", {})
    has_chief = "chief" in tf_config["cluster"]
    chief = task.get("type") == "chief" or (not has_chief and task.get("type") == "worker" and task.get("index") == 0)
    from classifiers.multiworker import patch_keras_for_multiworker

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
        import keras

        from data.runs import write_json_atomic

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
    return 1 if sys.stdout.isatty() else 2


def evaluate_validation(model, x, y, batch_size):
    from classifiers.metrics import accuracy, roc_auc, youden_threshold

    p = model.predict(x.astype("float32"), batch_size=batch_size, verbose=0).reshape(-1)
    threshold = youden_threshold(y, p)
    return {"auc": roc_auc(y, p), "accuracy": accuracy(y, p, 0.5), "threshold": threshold,
            "accuracy_at_threshold": accuracy(y, p, threshold), "images": int(len(y))}


def train_run(name, build_model, cfg, manifest, train, val, hyperparameters, **kwargs):
    """Train one model and write its run folder. build_model() -> compiled keras.Model.

    Shared by every detector of the kit (the GAN's fine-tuned discriminators too), so that every run
    folder has the same shape and compare needs nothing else. The writing process holds the model's
    lock, so two commands never train into the same folder.
    """
    from data.runs import run_lock

    if not kwargs.get("chief", True):
        return _train_run(name, build_model, cfg, manifest, train, val, hyperparameters, **kwargs)
    with run_lock(cfg["runs_dir"], cfg["experiment"], name):
        return _train_run(name, build_model, cfg, manifest, train, val, hyperparameters, **kwargs)


def _train_run(name, build_model, cfg, manifest, train, val, hyperparameters, augment=(), extra=None,
               strategy=None, chief=True, extra_callbacks=(), mixup=0.0):
    import keras

    from classifiers.checkpoint import EpochCheckpoint, ensure_room_for
    from data.pipeline import make_dataset
    from data.runs import experiment_dir, finish_run, library_versions, partial_dir, write_json_atomic

    final = os.path.join(experiment_dir(cfg["runs_dir"], cfg["experiment"]), name)
    work = partial_dir(cfg["runs_dir"], cfg["experiment"], name) if chief else tempfile.mkdtemp(prefix="worker-")
    os.makedirs(work, exist_ok=True)
    checkpoint = EpochCheckpoint(os.path.join(work, "backup"), name, cfg["epochs"])
    progress = ProgressFile(os.path.join(work, "progress.json"))

    replicas = strategy.num_replicas_in_sync if strategy else 1
    global_batch = cfg["batch_size"] * replicas
    train_ds = make_dataset(train[0], train[1], global_batch, training=True, seed=cfg["seed"], augment=augment,
                            mixup=mixup)
    val_ds = make_dataset(val[0], val[1], global_batch)
    if strategy is not None:
        tf = import_tensorflow()
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        train_ds, val_ds = train_ds.with_options(options), val_ds.with_options(options)
    build_started = time.time()
    if strategy is not None:
        with strategy.scope():
            model = build_model()
    else:
        model = build_model()
    build_seconds = time.time() - build_started

    callbacks = [progress.callback(), checkpoint]
    if chief:
        callbacks.append(keras.callbacks.TensorBoard(os.path.join(work, "logs"), write_graph=True))
    callbacks.extend(extra_callbacks)
    model.fit(train_ds, validation_data=val_ds, epochs=cfg["epochs"], callbacks=callbacks, verbose=verbosity(),
              shuffle=False)  # tf.data already reshuffles every epoch

    tmp_model = os.path.join(work, "model.tmp.keras")
    ensure_room_for(work, model, "the model")
    model.save(tmp_model)
    os.replace(tmp_model, os.path.join(work, "model.keras"))
    if not chief:
        shutil.rmtree(work, ignore_errors=True)
        print(f"{name}: this worker is done; the chief writes the run folder")
        return None, None
    if strategy is not None:  # predict outside the strategy: other workers may already have left
        model = keras.saving.load_model(os.path.join(work, "model.keras"), compile=False)
    validation = evaluate_validation(model, val[0], val[1], cfg["batch_size"])
    write_json_atomic(os.path.join(work, "split.json"), manifest)
    epochs = progress.state["epochs"]
    info = {
        "model": name,
        "kind": "detector",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "hyperparameters": hyperparameters,
        "config": {k: v for k, v in cfg.items() if k not in ("runs_dir",)},
        "augment": list(augment),
        "image_size": cfg["image_size"],
        "resize_mode": cfg["resize_mode"],
        "precision": keras.mixed_precision.global_policy().name,
        "seed": cfg["seed"],
        "split_fingerprint": manifest["fingerprint"],
        "data_dir": manifest["data_dir"],
        "train_images": int(len(train[1])),
        "replicas": replicas,
        "train_seconds": round(progress.state["seconds"] + build_seconds, 2),  # building may include a warm-up
        "epochs_completed": len(epochs),
        "resumed_from_epoch": checkpoint.resumed_from or None,
        "params": int(model.count_params()),
        "threshold": validation["threshold"],
        "validation": validation,
        "history": [dict(epoch=int(e), **m) for e, m in sorted(epochs.items(), key=lambda kv: int(kv[0]))],
        "versions": library_versions(),
    }
    info.update(extra or {})
    os.remove(progress.path)
    finish_run(work, final, info)
    print(f"{name}: validation AUC {validation['auc']:.4f}, accuracy {validation['accuracy']:.4f} "
          f"(at 0.5), {info['train_seconds']:.0f}s training, run folder {final}")
    return final, info


def prepare(cfg, log=print):
    """Resolve the data, make or reuse the experiment's split, decode train and validation once."""
    from data.pipeline import load_split
    from data.split import experiment_split
    from data.synthetic import resolve_data_dir

    data_dir = resolve_data_dir(cfg["data_dir"], cfg["runs_dir"])
    manifest = experiment_split(data_dir, cfg["runs_dir"], cfg["experiment"], log=log, strict=cfg.get("strict", False))
    size, mode = cfg["image_size"], cfg["resize_mode"]
    train = load_split(manifest, "train", size, mode)[:2]
    val = load_split(manifest, "val", size, mode)[:2]
    log(f"data: {len(train[1]):,} training and {len(val[1]):,} validation images at {size}px ({mode})")
    return manifest, train, val


def train_baseline(cfg, manifest, train, val, strategy, chief, name="baseline"):
    from classifiers.models import build_cnn

    hp = dict(BASELINE)
    return train_run(name, lambda: build_cnn(cfg["image_size"], hp["filters"], hp["head"], hp["dropout"],
                                             hp["residual"], hp["learning_rate"], name="baseline"),
                     cfg, manifest, train, val, hp, strategy=strategy, chief=chief)


def training_steps(cfg, train, epochs):
    """Optimizer steps in a run of `epochs` epochs (what a cosine schedule decays over)."""
    return max(1, -(-len(train[1]) // cfg["batch_size"])) * epochs


def resnet_recipe(image_size, epochs, steps_per_epoch, hp=None):
    """The strong recipe's compiled model: its schedule spans `epochs` epochs of `steps_per_epoch` steps."""
    from classifiers.models import build_resnet, compile_recipe

    hp = hp or RESNET
    model = build_resnet(image_size, hp["widths"], hp["blocks"], hp["dropout"], hp["stem_stride"],
                         hp["head"], name="resnet")
    return compile_recipe(model, hp["learning_rate"], steps_per_epoch * epochs, steps_per_epoch * hp["warmup_epochs"],
                          hp["weight_decay"], hp["label_smoothing"])


def train_resnet(cfg, manifest, train, val, strategy, chief):
    hp = dict(RESNET)
    steps_per_epoch = training_steps(cfg, train, 1)
    return train_run("resnet", lambda: resnet_recipe(cfg["image_size"], cfg["epochs"], steps_per_epoch, hp), cfg,
                     manifest, train, val, hp, augment=tuple(hp["augment"]), mixup=hp["mixup"], strategy=strategy,
                     chief=chief)


def train_backbone(cfg, manifest, train, val, strategy, chief):
    from classifiers.backbones import build_backbone_detector, set_trainable
    from classifiers.checkpoint import read_state
    from classifiers.models import compile_detector
    from data.pipeline import make_dataset
    from data.runs import partial_dir

    hp = dict(BACKBONE, backbone=cfg["backbone"], weights=cfg["weights"])
    pretrained = cfg["weights"] != "none"
    name = f"backbone-{cfg['backbone']}"
    augment = tuple(hp["augment"])

    def build():
        model, backbone = build_backbone_detector(cfg["backbone"], cfg["image_size"], cfg["weights"])
        if not pretrained:  # random weights have nothing to protect from a fresh head
            return compile_detector(model, hp["scratch_learning_rate"])
        if read_state(os.path.join(partial_dir(cfg["runs_dir"], cfg["experiment"], name), "backup"))[0]:
            print(f"{name}: warm-up phases done before the interruption; the checkpoint holds their result")
        else:
            train_ds = make_dataset(train[0], train[1], cfg["batch_size"], training=True, seed=cfg["seed"],
                                    augment=augment)
            val_ds = make_dataset(val[0], val[1], cfg["batch_size"])
            for phase, epochs, rate in (("head", hp["head_epochs"], hp["head_learning_rate"]),
                                        ("top", hp["top_epochs"], hp["top_learning_rate"])):
                print(f"{name}: {epochs} epoch(s) training the {phase} at lr {rate}")
                set_trainable(backbone, phase)
                compile_detector(model, rate).fit(train_ds, validation_data=val_ds, epochs=epochs,
                                                  verbose=verbosity(), shuffle=False)
        set_trainable(backbone, "all")
        return compile_detector(model, hp["learning_rate"])

    return train_run(name, build, cfg, manifest, train, val, hp, augment=augment, strategy=strategy, chief=chief)


SEARCH_BUDGET = ("max_trials", "search_minutes")  # a larger budget extends a finished search
NOT_MODEL_CONFIG = ("runs_dir", "strict", "retrain", "data_dir")  # the split's fingerprint stands for the data


def run_name(cfg):
    return f"backbone-{cfg['backbone']}" if cfg["model"] == "backbone" else cfg["model"]


def keep_finished_run(cfg, manifest):
    """True when this model is already trained with this configuration (said in one line); UserError when
    it was trained with another one and --retrain was not given."""
    from data.runs import experiment_dir, finished_run

    search_only = () if cfg["model"] == "hpsearch" else ("tuner", "search_epochs") + SEARCH_BUDGET
    folder = os.path.join(experiment_dir(cfg["runs_dir"], cfg["experiment"]), run_name(cfg))
    return finished_run(folder, cfg, manifest, cfg["retrain"], ignore=NOT_MODEL_CONFIG + search_only,
                        allowed=SEARCH_BUDGET if cfg["model"] == "hpsearch" else ()) is not None


def main(argv=None):
    args = parse_args(argv)
    cfg = resolve_config(args)
    strategy, chief = make_strategy(cfg["strategy"])
    cfg["precision"] = setup(cfg["seed"], cfg["precision"])
    print("config: " + json.dumps(cfg, sort_keys=True))
    manifest, train, val = prepare(cfg)
    if keep_finished_run(cfg, manifest):
        return 0
    if cfg["model"] == "baseline":
        train_baseline(cfg, manifest, train, val, strategy, chief)
    elif cfg["model"] == "resnet":
        train_resnet(cfg, manifest, train, val, strategy, chief)
    elif cfg["model"] == "backbone":
        train_backbone(cfg, manifest, train, val, strategy, chief)
    else:
        from classifiers.search import search_and_retrain

        search_and_retrain(cfg, manifest, train, val, strategy, chief)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
