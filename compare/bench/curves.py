"""Test AUC against training minutes, recipe by recipe: `python -m compare.bench --recipes original baseline resnet`.

Each recipe is trained on the experiment's split (train side only) and, after every epoch, judged on the
test split for the curve alone: nothing is chosen on it, and the evaluation's time is not counted as
training. The recipes take turns, an epoch each, so the machine's drift is shared among them. The headline is how many minutes each recipe needs to reach the original recipe's final AUC.
"""
import os
import time

import keras

from classifiers.config import DetectorConfig, PRESETS
from classifiers.metrics import roc_auc
from classifiers.models import build_cnn
from classifiers.registry import DETECTORS, augmentations
from data.pipeline import load_split, make_dataset
from data.runs import write_json_atomic
from data.runtime import UserError, import_tensorflow

# the original study's recipe, which no command of the kit trains: 128px, its 3-block CNN (32-64-128), 10
# epochs, float32 as it ran. Every other recipe is a registered detector at the quick preset (recipe()).
ORIGINAL = {"image_size": 128, "epochs": 10, "precision": "float32",
            "what": "the study's 3-block CNN, 128px, 10 epochs, float32"}


def recipe(name):
    """{image_size, epochs, precision ("kit": the kit's policy), what} of "original" or a registered detector."""
    if name == "original":
        return ORIGINAL
    detector, quick = DETECTORS[name], PRESETS["quick"]
    return {"image_size": quick["image_size"], "epochs": (detector.epochs or {}).get("quick", quick["epochs"]),
            "precision": "kit", "what": f"{detector.help} (quick preset)"}


def known_recipes():
    """"original" and every registered detector that needs no option of its own (a backbone needs --backbone)."""
    return ("original",) + tuple(n for n, d in DETECTORS.items() if not d.options)


def build_recipe(name, image_size, epochs, steps_per_epoch):
    """(compiled model, augmentations, mixup) of a recipe: the study's original CNN, or a registered detector."""
    if name == "original":
        return build_cnn(image_size, (32, 64, 128), name="original"), (), 0.0
    detector, cfg = DETECTORS[name], DetectorConfig.from_preset(model=name, image_size=image_size, epochs=epochs)
    hp = detector.hyperparameters(cfg)
    model = detector.recipe(detector.build(cfg, hp), hp, steps_per_epoch, epochs)
    return model, augmentations(hp.get("augment")), hp.get("mixup", 0.0)


class RecipeRun:
    """One recipe, trained from scratch an epoch at a time: [(training seconds, epoch, test AUC)] in points."""

    def __init__(self, name, manifest, policy, batch_size=32, seed=1337, epochs=None):
        settings = recipe(name)
        size = settings["image_size"]
        self.name, self.epochs = name, epochs or settings["epochs"]
        keras.utils.set_random_seed(seed)
        # each layer keeps the policy it was built under, so recipes of different precision can alternate
        keras.mixed_precision.set_global_policy(policy if settings["precision"] == "kit" else settings["precision"])
        x, y, _ = load_split(manifest, "train", size)
        xt, self.test_y, _ = load_split(manifest, "test", size)
        self.test_x = xt.astype("float32")
        self.model, augment, mixup = build_recipe(name, size, self.epochs, -(-len(y) // batch_size))
        self.train_ds = make_dataset(x, y, batch_size, training=True, seed=seed, augment=augment, mixup=mixup)
        keras.mixed_precision.set_global_policy(policy)
        self.points, self.trained = [], 0.0

    @property
    def done(self):
        return len(self.points) >= self.epochs

    def train_epoch(self, log=print):
        epoch = len(self.points)
        started = time.perf_counter()
        self.model.fit(self.train_ds, initial_epoch=epoch, epochs=epoch + 1, verbose=0, shuffle=False)
        self.trained += time.perf_counter() - started  # before the evaluation: it is not training
        auc = roc_auc(self.test_y, self.model.predict(self.test_x, batch_size=64, verbose=0).reshape(-1))
        self.points.append((self.trained, epoch + 1, auc))
        log(f"  {self.name}: epoch {epoch + 1}/{self.epochs}, {self.trained / 60:.2f} min, test AUC {auc:.4f}")


def auc_curves(names, manifest, policy, epochs=None, log=print):
    """{recipe: points}, the recipes trained in turn an epoch each (round robin), so a drift of the shared
    machine during the benchmark slows every recipe alike instead of whichever ran at the time."""
    runs = []
    for name in names:
        log(f"recipe {name}: {recipe(name)['what']}")
        runs.append(RecipeRun(name, manifest, policy, epochs=epochs))
    while not all(r.done for r in runs):
        for run in runs:
            if not run.done:
                run.train_epoch(log)
    return {r.name: r.points for r in runs}


def minutes_to_reach(points, target):
    """Training minutes at the first epoch whose test AUC reaches target, or None."""
    return next((s / 60 for s, _, auc in points if auc >= target), None)


def summarise(curves):
    """Per recipe: final AUC, minutes, minutes to reach the original's final AUC and the speed-up over it."""
    target = curves["original"][-1][2] if "original" in curves else None
    out = {}
    for name, points in curves.items():
        row = {"epochs": points[-1][1], "minutes": points[-1][0] / 60, "final_auc": points[-1][2],
               "best_auc": max(a for _, _, a in points),
               "points": [{"seconds": s, "epoch": e, "test_auc": a} for s, e, a in points]}
        if target is not None:
            reach = minutes_to_reach(points, target)
            row["minutes_to_original_final_auc"] = reach
            original_minutes = minutes_to_reach(curves["original"], target)
            row["speedup_to_original_final_auc"] = (original_minutes / reach) if reach else None
        out[name] = row
    return {"target_auc": target, "recipes": out}


def plot(summary, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, row in summary["recipes"].items():
        ax.plot([p["seconds"] / 60 for p in row["points"]], [p["test_auc"] for p in row["points"]], marker="o",
                ms=3, label=f"{name} ({recipe(name)['what']})")
    if summary["target_auc"] is not None:
        ax.axhline(summary["target_auc"], color="grey", ls=":", lw=1, label="original recipe's final AUC")
    ax.set_xlabel("training minutes (this machine)")
    ax.set_ylabel("test AUC (curve only; nothing chosen on it)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_tensorboard(summary, logdir):
    """One run per recipe: scalar test_auc against training seconds (the step)."""
    tf = import_tensorflow()
    for name, row in summary["recipes"].items():
        with tf.summary.create_file_writer(os.path.join(logdir, name)).as_default():
            for p in row["points"]:
                tf.summary.scalar("auc_per_minute/test_auc", p["test_auc"], step=int(round(p["seconds"])))


def table(summary):
    lines = [f"{'recipe':10}{'epochs':>7}{'minutes':>9}{'final AUC':>11}{'best AUC':>10}"
             f"{'min to target':>15}{'speed-up':>10}"]
    for name, row in summary["recipes"].items():
        reach, speed = row.get("minutes_to_original_final_auc"), row.get("speedup_to_original_final_auc")
        lines.append(f"{name:10}{row['epochs']:>7}{row['minutes']:>9.2f}{row['final_auc']:>11.4f}"
                     f"{row['best_auc']:>10.4f}{(f'{reach:.2f}' if reach is not None else 'never'):>15}"
                     f"{(f'{speed:.1f}x' if speed else '-'):>10}")
    if summary["target_auc"] is not None:
        lines.append(f"target: the original recipe's final test AUC, {summary['target_auc']:.4f}")
    return "\n".join(lines)


def run_curves(names, manifest, policy, out_dir, epochs=None, log=print):
    """Train each recipe, then write curves.json, curves.png and TensorBoard scalars to out_dir."""
    unknown = [n for n in names if n not in known_recipes()]
    if unknown:
        raise UserError(f"unknown recipe {', '.join(unknown)}; choose from {', '.join(known_recipes())}")
    summary = summarise(auc_curves(names, manifest, policy, epochs, log))
    summary["precision"] = {n: (policy if recipe(n)["precision"] == "kit" else recipe(n)["precision"]) for n in names}
    os.makedirs(out_dir, exist_ok=True)
    plot(summary, os.path.join(out_dir, "curves.png"))
    write_tensorboard(summary, os.path.join(out_dir, "tensorboard"))
    write_json_atomic(os.path.join(out_dir, "curves.json"), summary)
    return summary
