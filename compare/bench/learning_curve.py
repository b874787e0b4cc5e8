"""Test AUC against the number of labelled training images, recipe by recipe:
`python -m compare.bench --learning-curve --labels 50 100 250 all --recipes baseline resnet dcgan-discriminator
dcgan-scratch --seeds 3`.

Every point is an ordinary run folder trained by the kit's own commands, `RECIPE-labelsN.seedS`:
`classifiers.train --labels N` for a registered detector, `gan.train --labels N` for the GAN's stage-2
variants (the GAN itself trained once, on every training face it may use, and shared by every point;
`dcgan-resnet-*` are those of `gan.train --discriminator resnet`, the resnet recipe's network as the
discriminator).
A finished run is kept, so the same command again trains nothing and an interrupted one trains only what
is missing. Each run is judged on the experiment's test split; the curve goes to runs/<experiment>/bench/
(learning_curve.json, learning_curve.png, TensorBoard); compare/learning_curve.py reads it for the report.
"""
import os
import shlex

from classifiers import train as classifiers_train
from classifiers.layers import load_model_safely
from classifiers.metrics import roc_auc
from classifiers.predict import probabilities
from classifiers.registry import DETECTORS
from compare.learning_curve import FIGURE, FILE, markdown
from compare.seeds import mean_sd, paired_interval
from data.align import Aligner, LandmarkCache, landmarks_path, split_align_of
from data.cache import FOLDER, cached_split
from data.pipeline import resize_mode_of
from data.runs import experiment_dir, read_run, write_atomic, write_json_atomic
from data.runtime import UserError, import_tensorflow
from data.split import load_manifest
from gan import train as gan_train
from gan.variants import VARIANTS, controls_from_random


def known_recipes():
    """What the curve can train: the registry's detectors and the GAN's stage-2 variants (gan/variants.py)."""
    return tuple(DETECTORS) + tuple(VARIANTS)


def pairs():
    """(pretrained variant, its control from random weights): the pairs the curve judges, seed by seed."""
    return tuple((name, control) for name in VARIANTS for control in controls_from_random(name))


def check_recipes(recipes):
    known = known_recipes()
    unknown = [r for r in recipes if r not in known]
    if unknown:
        raise UserError(f"--recipes: unknown {', '.join(unknown)}; the curve knows {', '.join(known)}")


def train_missing(recipes, labels, seeds, common, detector_args=(), gan_args=()):
    """Every (recipe, label count, seed) through the trainers' typed entry points, which keep what is finished.
    common: settings every run shares (where, the split, the precision); detector_args / gan_args: more flags
    of each trainer, the curve's own settings given after them. A GAN variant's point trains every variant of
    its discriminator from the one GAN (gan.train --labels N)."""
    for count in labels:
        for seed in seeds:
            for recipe in (r for r in recipes if r not in VARIANTS):
                classifiers_train.run(classifiers_train.config(detector_args, model=recipe, labels=count, seed=seed,
                                                               **common))
        for discriminator in dict.fromkeys(VARIANTS[r].discriminator for r in recipes if r in VARIANTS):
            gan_train.run(gan_train.config(gan_args, discriminator=discriminator, labels=count, seeds=len(seeds),
                                           seed=seeds[0], **common))


def judge(exp_dir, manifest, recipes, labels, seeds):
    """{recipe: {labels: {seed: test AUC}}} of the curve's runs, each judged at its own input size."""
    tests, out = {}, {}
    for recipe in recipes:
        for count in labels:
            for seed in seeds:
                folder = os.path.join(exp_dir, f"{recipe}-labels{count}.seed{seed}")
                info = read_run(folder)
                split_align = split_align_of(info)  # the test side framed as the run's training side
                key = (int(info["image_size"]), resize_mode_of(info), split_align)
                if key not in tests:
                    aligner = None if split_align == "none" else Aligner(
                        split_align, LandmarkCache(landmarks_path(os.path.dirname(exp_dir))), key[0])
                    tests[key] = cached_split(manifest, "test", *key[:2], os.path.join(exp_dir, FOLDER),
                                              aligner=aligner)[:2]
                x, y = tests[key]
                auc = roc_auc(y, probabilities(load_model_safely(os.path.join(folder, "model.keras")), x))
                out.setdefault(recipe, {}).setdefault(count, {})[seed] = auc
    return out


def summarise(aucs, judged=None):
    """Per recipe and label count: mean and sd over seeds; per label count and pair, the paired difference of
    a fine-tuned discriminator and its scratch control (Student's t over seeds) and its verdict in words."""
    rows = []
    for recipe, points in aucs.items():
        for count, by_seed in points.items():
            mean, sd = mean_sd(list(by_seed.values()))
            rows.append({"recipe": recipe, "labels": count, "seeds": sorted(by_seed), "mean": mean, "sd": sd})
    verdicts = [verdict for pretrained, control in (judged or pairs()) if pretrained in aucs and control in aucs
                for count in aucs[pretrained] for verdict in paired(aucs, pretrained, control, count)]
    return {"rows": rows, "verdicts": verdicts}


def paired(aucs, pretrained, control, count):
    """[the verdict of `pretrained` minus `control` with `count` labels], or [] with fewer than two shared seeds."""
    a, b = aucs[pretrained][count], aucs[control].get(count, {})
    shared = sorted(set(a) & set(b))
    if len(shared) < 2:
        return []
    mean, sd, ci = paired_interval([a[s] - b[s] for s in shared])
    holds = ci[0] > 0 or ci[1] < 0
    interval = f"{mean:+.3f} AUC (95% interval {ci[0]:+.3f} to {ci[1]:+.3f}, {len(shared)} seeds)"
    words = (f"with {count} labels, {pretrained} {'beats' if mean > 0 else 'loses to'} {control}: {interval}"
             if holds else f"with {count} labels, {pretrained} vs {control}: no difference that holds across "
                           f"seeds, {interval}")
    return [{"labels": count, "pretrained": pretrained, "control": control, "mean": mean, "sd": sd,
             "ci95": ci, "seeds": shared, "verdict": words}]


def label_axis(count, train_images):
    return train_images if count == "all" else (float(count) * train_images if "." in count else int(count))


def plot(curve, train_images, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt


    fig, ax = plt.subplots(figsize=(7, 4.5))
    for recipe in dict.fromkeys(r["recipe"] for r in curve["rows"]):
        pts = sorted((label_axis(r["labels"], train_images), r["mean"], r["sd"]) for r in curve["rows"]
                     if r["recipe"] == recipe)
        ax.errorbar(*zip(*pts), marker="o", capsize=3, label=recipe)
    ax.set_xscale("log")
    ax.set_xlabel("labelled training images")
    ax.set_ylabel("test AUC (mean +- sd over seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path


def write_tensorboard(curve, train_images, logdir):
    tf = import_tensorflow()
    for recipe in dict.fromkeys(r["recipe"] for r in curve["rows"]):
        with tf.summary.create_file_writer(os.path.join(logdir, recipe)).as_default():
            for r in (r for r in curve["rows"] if r["recipe"] == recipe):
                tf.summary.scalar("learning_curve/test_auc", r["mean"], step=int(label_axis(r["labels"], train_images)))


def run(args):
    """Train what the curve lacks through the kit's own commands, judge every point, write and print it."""
    check_recipes(args.recipes or [])
    if not args.recipes:
        raise UserError("--learning-curve needs --recipes, e.g. baseline resnet dcgan-discriminator dcgan-scratch")
    seeds = [args.seed + i for i in range(args.seeds)]
    common = dict(runs_dir=args.runs_dir, experiment=args.experiment, precision=args.precision, split=args.split,
                  data_dir=args.data_dir, strict=args.strict)
    train_missing(args.recipes, args.labels, seeds, common, shlex.split(args.detector_args), shlex.split(args.gan_args))
    exp = experiment_dir(args.runs_dir, args.experiment)
    manifest = load_manifest(os.path.join(exp, "split.json"))
    curve = summarise(judge(exp, manifest, args.recipes, args.labels, seeds))
    train_images = sum(manifest["counts"]["train"].values())
    curve.update(recipes=args.recipes, labels=args.labels, seeds=seeds, train_images=train_images)
    out_dir = os.path.join(exp, "bench")
    write_json_atomic(os.path.join(out_dir, FILE), curve)
    plot(curve, train_images, os.path.join(out_dir, FIGURE))
    write_tensorboard(curve, train_images, os.path.join(out_dir, "tensorboard", "learning_curve"))
    print("\n".join(markdown(curve)[4:]))
    print(f"written to {out_dir}/ ({FILE}, {FIGURE}, tensorboard/); compare.report shows it")
    return 0
