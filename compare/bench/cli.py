"""`python -m compare.bench`: what this machine and the kit's recipes cost, in figures that assert nothing.

- no mode flag: the kit's training pipeline against the original study's (compare/bench/pipeline.py);
- --recipes: test AUC per CPU-minute of each recipe (compare/bench/curves.py);
- --learning-curve: test AUC against labelled training images (compare/bench/learning_curve.py);
- --scale N: time and peak memory of every stage at N images (compare/bench/scale.py);
- --machine: the quick GAN's steps/s and the detectors' images/s on this CPU (compare/bench/machine.py);
- --adapt-heads RUN: the heads classifiers.adapt can fit for a new family, side by side (compare/bench/adapt_heads.py);
- --faces-in-pictures RUN [RUN ...]: detectors on their test faces as given and placed in photos, aligned or not
  (compare/bench/faces_in_pictures.py).
"""
import argparse
import os
import sys

from classifiers.adapt import shot_count
from compare.bench import adapt_heads, curves, faces_in_pictures, learning_curve as LC, machine as M, scale
from compare.bench.pipeline import WINDOW_SECONDS, WINDOWS, bench_size, format_table
from compare.bench.pipeline import __doc__ as PIPELINE_DOC
from data.runs import experiment_dir, write_json_atomic
from data.runtime import add_common_args, label_count, positive_int, setup
from data.split import experiment_split
from data.synthetic import resolve_data_dir


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m compare.bench", description=__doc__ + "\n" + PIPELINE_DOC,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p)  # --data-dir, --runs-dir, --experiment, --seed, --precision, as every entry point
    p.add_argument("--image-size", type=positive_int, nargs="+",
                   help="sizes measured (default: 128 256; with --scale: 64 128)")
    p.add_argument("--window", type=positive_int,
                   help=f"training steps per measured window (default: as many as the slower pipeline takes "
                        f"{WINDOW_SECONDS:g} s for, timed in the warm-up)")
    p.add_argument("--windows", type=positive_int, default=WINDOWS,
                   help="windows per side, kit and original interleaved (at least 5 for a spread worth reading)")
    p.add_argument("--json-out")
    p.add_argument("--recipes", nargs="+", metavar="RECIPE",
                   help="AUC per CPU-minute of these recipes instead (original, baseline, resnet), on the "
                        "--experiment's split")
    p.add_argument("--epochs", type=positive_int, help="with --recipes: override every recipe's epochs")
    p.add_argument("--learning-curve", action="store_true",
                   help=f"test AUC against labelled training images for --recipes ({', '.join(LC.known_recipes())}) "
                        "at each --labels, over --seeds starting at --seed")
    p.add_argument("--labels", type=label_count, nargs="+", default=["50", "100", "250", "500", "all"],
                   help="with --learning-curve: labelled training images per point (a count, a fraction, all)")
    p.add_argument("--seeds", type=positive_int, default=3, help="with --learning-curve: seeds per point")
    p.add_argument("--detector-args", default="", help="with --learning-curve: more classifiers.train flags")
    p.add_argument("--gan-args", default="", help="with --learning-curve: more gan.train flags")
    p.add_argument("--scale", type=positive_int, nargs="+", metavar="N",
                   help="time and peak memory of every stage (scan, split, decode cache, training, report) on "
                        "synthetic sets of N images at 256 px, and on --data-dir if given (compare/bench/scale.py)")
    p.add_argument("--probe-steps", type=positive_int,
                   help="with --scale: training steps measured per model and size (default 60)")
    p.add_argument("--machine", action="store_true",
                   help="what this machine will take, in about a minute: the quick GAN's steps/s and the "
                        "detectors' training images/s, with the CPU's flags and the precision (compare/bench/machine.py)")
    p.add_argument("--machine-steps", type=positive_int, default=60,
                   help="with --machine: GAN steps measured after a warm-up of a sixth as many")
    p.add_argument("--adapt-heads", metavar="RUN",
                   help="a finished detector run: every --head of classifiers.adapt on the new family --data-dir, "
                        "at --shots over --seeds (compare/bench/adapt_heads.py)")
    p.add_argument("--shots", type=shot_count, nargs="+", default=[25], help="with --adapt-heads: K per class")
    p.add_argument("--faces-in-pictures", metavar="RUN", nargs="+",
                   help="finished detector runs of one split (seeds, --align kinds): each one's test AUC on its test "
                        "faces as given and placed in larger pictures, judged whole and aligned, and their mean and "
                        "sd (compare/bench/faces_in_pictures.py)")
    args = p.parse_args(argv)
    if args.adapt_heads and not args.data_dir:
        p.error("--adapt-heads needs --data-dir: the new family")
    if args.image_size is None:
        args.image_size = [64, 128] if args.scale else [128, 256]
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.learning_curve:
        return LC.run(args)
    if args.scale:
        return scale.run(args)
    if args.machine:
        return machine(args)
    if args.adapt_heads:
        args.precision = setup(args.seed, args.precision)
        return adapt_heads.run(args)
    if args.faces_in_pictures:
        args.precision = setup(args.seed, args.precision)
        return faces_in_pictures.run(args)

    policy = setup(args.seed, args.precision, deterministic=False)
    data_dir = resolve_data_dir(args.data_dir, args.runs_dir)
    if args.recipes:
        return recipe_curves(args, data_dir, policy)
    results = {"data_dir": data_dir, "cpu_count": os.cpu_count(), "sizes": {}}
    for size in args.image_size:
        print(f"benchmarking {size}px ...", file=sys.stderr)
        results["sizes"][str(size)] = bench_size(data_dir, size, policy, args.window, args.windows)
    print(format_table(results))
    if args.json_out:
        write_json_atomic(args.json_out, results)
        print(f"written to {args.json_out}")
    return 0


def machine(args):
    policy = setup(args.seed, args.precision, deterministic=False)
    results = M.measure(policy, warmup=max(2, args.machine_steps // 6), steps=args.machine_steps,
                        log=lambda m: print(m, file=sys.stderr, flush=True))
    print(M.table(results))
    if args.json_out:
        write_json_atomic(args.json_out, results)
        print(f"written to {args.json_out}")
    return 0


def recipe_curves(args, data_dir, policy):
    manifest = experiment_split(data_dir, args.runs_dir, args.experiment, log=lambda m: print(m, file=sys.stderr),
                                strict=args.strict, split=args.split)
    out_dir = os.path.join(experiment_dir(args.runs_dir, args.experiment), "bench")
    summary = curves.run_curves(args.recipes, manifest, policy, out_dir, epochs=args.epochs,
                         log=lambda m: print(m, file=sys.stderr, flush=True))
    print(curves.table(summary))
    print(f"written to {out_dir}/ (curves.png, curves.json, tensorboard/)")
    if args.json_out:
        write_json_atomic(args.json_out, summary)
    return 0

