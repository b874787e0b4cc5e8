"""`python -m compare.bench`: the kit's training pipeline against the original study's, on this machine.

For each image size, on the same images and the same 3-block CNN (the study's best, filters 32-64-128):
- training throughput (images/s after warm-up, median of several windows) of the kit's pipeline
  (decode once, in memory, the kit's precision policy) and of the original (image_dataset_from_directory,
  float32, decoding every epoch), and their ratio;
- the kit's data pipeline alone against what the model consumes;
- inference latency at batch 1 and throughput at batch 64;
- achieved FLOP/s in training against a matrix-multiply peak measured in the same run.
It is a benchmark, not a test: it prints figures and asserts nothing.

With --recipes it measures quality per CPU-minute instead (compare/curves.py): each named recipe trained on
the experiment's split, test AUC against training minutes, and how much sooner each reaches the original
recipe's final AUC; written to runs/<experiment>/bench/ (curves.json, curves.png, TensorBoard).
"""
import argparse
import os
import shlex
import sys
import time

import keras
from keras import layers
import numpy as np

from classifiers.models import build_cnn
from compare import learning_curve as LC, machine as M
from compare.curves import run_curves, table
from compare.scale import run
from data.pipeline import load_images, make_dataset
from data.runs import experiment_dir, write_json_atomic
from data.runtime import UserError, add_common_args, import_tensorflow, label_count, positive_int, run_main, setup
from data.scan import scan_folder
from data.split import experiment_split, load_manifest
from data.synthetic import resolve_data_dir

FILTERS = (32, 64, 128)
BATCH = 32
WARMUP_STEPS = 3
WINDOWS = 6  # per side, interleaved
WINDOW_SECONDS = 12.0  # the slower side's window, when --window is not given
MIN_WINDOW_STEPS = 4
UNSTABLE_SPREAD = 0.15  # pair ratios spreading more than this are flagged


def forward_flops(model):
    """Multiply-adds x 2 of the convolution and dense layers for one image."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, layers.Conv2D):
            kh, kw = layer.kernel_size
            _, h, w, c_out = layer.output.shape
            c_in = layer.input.shape[-1]
            total += 2 * h * w * c_out * kh * kw * c_in
        elif isinstance(layer, layers.Dense):
            total += 2 * layer.input.shape[-1] * layer.units
    return total


def matmul_peak(dtype, n=2048, repeats=10):
    tf = import_tensorflow()
    a = tf.random.normal((n, n), dtype=tf.float32)
    a = tf.cast(a, dtype)
    run = tf.function(lambda x: tf.matmul(x, x))
    run(a).numpy()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run(a).numpy()
        times.append(time.perf_counter() - t)
    return 2 * n ** 3 / float(np.median(times))


def spread(values):
    """median, min, max and the relative spread (max - min) / median of a list of measurements."""
    med = float(np.median(values))
    return {"median": med, "min": float(min(values)), "max": float(max(values)),
            "spread": (float(max(values)) - float(min(values))) / med if med else 0.0}


def interleaved_rates(sides, window, windows, window_seconds=None):
    """Training images/s of each side, measured in alternating windows of `window` steps.

    sides: {name: (model, dataset)}. One window of each side in turn (kit, original, kit, original, ...), so
    a drift of the shared machine (clock, a neighbour's load) lands on both sides alike. window=None sizes
    the windows from the warm-up so that the slowest side's window lasts about window_seconds: a pipeline
    that decodes in the background keeps working during the other side's window, and short windows let
    that spill-over dominate (seen as a 25% spread with 6-second windows at 256px). Returns (per side the
    list of window rates in order, the steps per window)."""
    iterators = {name: iter(ds.repeat()) for name, (_, ds) in sides.items()}
    slowest = 0.0
    for name, (model, _) in sides.items():  # warm-up: trace the step function, fill the pipelines
        model.train_on_batch(*next(iterators[name]))
        started = time.perf_counter()
        for _ in range(WARMUP_STEPS):
            model.train_on_batch(*next(iterators[name]))
        slowest = max(slowest, (time.perf_counter() - started) / WARMUP_STEPS, 1e-6)
    if window is None:
        window = max(MIN_WINDOW_STEPS, int(np.ceil((window_seconds or WINDOW_SECONDS) / slowest)))
    rates = {name: [] for name in sides}
    for _ in range(windows):
        for name, (model, _) in sides.items():
            started = time.perf_counter()
            for _ in range(window):
                model.train_on_batch(*next(iterators[name]))
            rates[name].append(window * BATCH / (time.perf_counter() - started))
    return rates, window


def pipeline_rate(ds, batches=30):
    it = iter(ds.repeat())
    next(it)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * BATCH / (time.perf_counter() - t)


def latency(model, size, repeats=50, batch=64):
    """(ms per image at batch 1, images/s at `batch`), each as spread() (median, min, max), timed after
    tracing both shapes."""
    tf = import_tensorflow()
    run = tf.function(lambda x: model(x, training=False))
    one, many = tf.zeros((1, size, size, 3)), tf.zeros((batch, size, size, 3))
    run(one), run(many)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run(one).numpy()
        times.append(1000 * (time.perf_counter() - t))
    rates = []
    for _ in range(5):
        t = time.perf_counter()
        run(many).numpy()
        rates.append(batch / (time.perf_counter() - t))
    return spread(times), spread(rates)


def bench_size(data_dir, size, policy, window, windows=WINDOWS):
    tf = import_tensorflow()
    out = {}
    # the original pipeline: float32, decoding JPEGs from disk every epoch, no cache
    keras.mixed_precision.set_global_policy("float32")
    original = keras.utils.image_dataset_from_directory(data_dir, labels="inferred", label_mode="binary",
                                                        image_size=(size, size), batch_size=BATCH, seed=0,
                                                        verbose=False)
    original_model = build_cnn(size, FILTERS)
    # the kit: decode once into memory, its precision policy
    keras.mixed_precision.set_global_policy(policy)
    scan = scan_folder(data_dir)
    paths = [os.path.join(scan.root, r.path) for r in scan.images]
    started = time.perf_counter()
    x, kept, _ = load_images(paths, size)
    out["decode_once_seconds"] = time.perf_counter() - started
    y = np.array([scan.images[i].label for i in kept], np.float32)
    kit = make_dataset(x, y, BATCH, training=True, seed=0)
    model = build_cnn(size, FILTERS)
    rates, window = interleaved_rates({"kit": (model, kit), "original": (original_model, original)}, window, windows)
    ratios = [k / o for k, o in zip(rates["kit"], rates["original"])]
    out["windows"] = {"steps_per_window": window, "per_side": windows, "kit_img_s": rates["kit"],
                      "original_img_s": rates["original"], "pair_ratios": ratios}
    out["original_train"], out["kit_train"] = spread(rates["original"]), spread(rates["kit"])
    out["speedup"] = spread(ratios)
    out["unstable"] = out["speedup"]["spread"] > UNSTABLE_SPREAD
    out["original_train_img_s"] = out["original_train"]["median"]
    out["kit_train_img_s"] = out["kit_train"]["median"]
    out["train_speedup"] = out["speedup"]["median"]
    out["pipeline_img_s"] = pipeline_rate(kit)
    out["pipeline_headroom"] = out["pipeline_img_s"] / out["kit_train_img_s"]
    out["latency_b1_ms"], out["throughput_b64_img_s"] = latency(model, size)
    out["latency_ms_b1"] = out["latency_b1_ms"]["median"]
    out["throughput_b64"] = out["throughput_b64_img_s"]["median"]
    flops = forward_flops(model)
    out["gflop_per_image_forward"] = flops / 1e9
    out["achieved_gflop_s"] = 3 * flops * out["kit_train_img_s"] / 1e9  # backward ~ 2x forward
    peak = matmul_peak(tf.bfloat16 if "bfloat16" in policy else tf.float16 if "float16" in policy else tf.float32)
    out["matmul_peak_gflop_s"] = peak / 1e9
    out["flops_fraction_of_peak"] = out["achieved_gflop_s"] / out["matmul_peak_gflop_s"]
    out["precision"] = policy
    return out


def _range(d, fmt):
    return f"{fmt.format(d['median'])} ({fmt.format(d['min'])}-{fmt.format(d['max'])})"


def format_table(results):
    """Medians with (min-max) over the interleaved windows; 'unstable' where the pair ratios spread > 15%."""
    sizes = list(results["sizes"])
    rows = [("training img/s, original pipeline", lambda r: _range(r["original_train"], "{:.1f}")),
            ("training img/s, kit", lambda r: _range(r["kit_train"], "{:.1f}")),
            ("speed-up (kit / original)", lambda r: _range(r["speedup"], "{:.2f}") + "x"),
            ("speed-up spread (max-min)/median", lambda r: f"{r['speedup']['spread']:.1%}"
             + (" unstable" if r["unstable"] else "")),
            ("pipeline alone img/s (cached)", lambda r: f"{r['pipeline_img_s']:.0f}"),
            ("pipeline headroom (pipeline / model)", lambda r: f"{r['pipeline_headroom']:.0f}x"),
            ("latency batch 1 (ms)", lambda r: _range(r["latency_b1_ms"], "{:.2f}")),
            ("throughput batch 64 (img/s)", lambda r: _range(r["throughput_b64_img_s"], "{:.0f}")),
            ("achieved GFLOP/s in training", lambda r: f"{r['achieved_gflop_s']:.1f}"),
            ("matmul peak GFLOP/s", lambda r: f"{r['matmul_peak_gflop_s']:.1f}"),
            ("share of peak", lambda r: f"{r['flops_fraction_of_peak']:.1%}"), ("precision", lambda r: r["precision"])]
    lines = [f"{'':36}" + "".join(f"{s + 'px':>26}" for s in sizes)]
    for label, cell in rows:
        lines.append(f"{label:36}" + "".join(f"{cell(results['sizes'][s]):>26}" for s in sizes))
    first = results["sizes"][sizes[0]]["windows"]
    steps = ", ".join(f"{results['sizes'][s]['windows']['steps_per_window']} at {s}px" for s in sizes)
    lines.append(f"(median (min-max) over {first['per_side']} interleaved windows per side of {steps} steps; "
                 "the speed-up is the median of the per-pair ratios)")
    for s in sizes:
        if results["sizes"][s]["unstable"]:
            lines.append(f"{s}px: unstable - the pair ratios spread more than {UNSTABLE_SPREAD:.0%}; "
                         f"a longer --window (now {results['sizes'][s]['windows']['steps_per_window']}) evens out "
                         "the machine's drift")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m compare.bench", description=__doc__,
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
                   help="test AUC against labelled training images for --recipes (registered detectors and the "
                        "GAN variants dcgan-discriminator, dcgan-linear-probe, dcgan-scratch, "
                        "dcgan-resnet-discriminator, dcgan-resnet-scratch) at each --labels, over --seeds "
                        "starting at --seed")
    p.add_argument("--labels", type=label_count, nargs="+", default=["50", "100", "250", "500", "all"],
                   help="with --learning-curve: labelled training images per point (a count, a fraction, all)")
    p.add_argument("--seeds", type=positive_int, default=3, help="with --learning-curve: seeds per point")
    p.add_argument("--detector-args", default="", help="with --learning-curve: more classifiers.train flags")
    p.add_argument("--gan-args", default="", help="with --learning-curve: more gan.train flags")
    p.add_argument("--scale", type=positive_int, nargs="+", metavar="N",
                   help="time and peak memory of every stage (scan, split, decode cache, training, report) on "
                        "synthetic sets of N images at 256 px, and on --data-dir if given (compare/scale.py)")
    p.add_argument("--probe-steps", type=positive_int,
                   help="with --scale: training steps measured per model and size (default 60)")
    p.add_argument("--machine", action="store_true",
                   help="what this machine will take, in about a minute: the quick GAN's steps/s and the "
                        "detectors' training images/s, with the CPU's flags and the precision (compare/machine.py)")
    p.add_argument("--machine-steps", type=positive_int, default=60,
                   help="with --machine: GAN steps measured after a warm-up of a sixth as many")
    args = p.parse_args(argv)
    if args.image_size is None:
        args.image_size = [64, 128] if args.scale else [128, 256]
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.learning_curve:
        return learning_curve(args)
    if args.scale:
        return run(args)
    if args.machine:
        return machine(args)

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


def learning_curve(args):
    """Train what the curve lacks through the kit's own commands, judge every point, write and print it."""
    LC.check_recipes(args.recipes or [])
    if not args.recipes:
        raise UserError("--learning-curve needs --recipes, e.g. baseline resnet dcgan-discriminator dcgan-scratch")
    seeds = [args.seed + i for i in range(args.seeds)]
    common = ["--runs-dir", args.runs_dir, "--experiment", args.experiment, "--precision", args.precision,
              "--split", args.split]
    common += (["--data-dir", args.data_dir] if args.data_dir else []) + (["--strict"] if args.strict else [])
    LC.train_missing(args.recipes, args.labels, seeds, common, shlex.split(args.detector_args),
                     shlex.split(args.gan_args))
    exp = experiment_dir(args.runs_dir, args.experiment)
    manifest = load_manifest(os.path.join(exp, "split.json"))
    curve = LC.summarise(LC.judge(exp, manifest, args.recipes, args.labels, seeds))
    train_images = sum(manifest["counts"]["train"].values())
    curve.update(recipes=args.recipes, labels=args.labels, seeds=seeds, train_images=train_images)
    out_dir = os.path.join(exp, "bench")
    write_json_atomic(os.path.join(out_dir, LC.FILE), curve)
    LC.plot(curve, train_images, os.path.join(out_dir, "learning_curve.png"))
    LC.write_tensorboard(curve, train_images, os.path.join(out_dir, "tensorboard", "learning_curve"))
    print("\n".join(LC.markdown(curve)[4:]))
    print(f"written to {out_dir}/ ({LC.FILE}, learning_curve.png, tensorboard/); compare.report shows it")
    return 0


def recipe_curves(args, data_dir, policy):
    manifest = experiment_split(data_dir, args.runs_dir, args.experiment, log=lambda m: print(m, file=sys.stderr),
                                strict=args.strict, split=args.split)
    out_dir = os.path.join(experiment_dir(args.runs_dir, args.experiment), "bench")
    summary = run_curves(args.recipes, manifest, policy, out_dir, epochs=args.epochs,
                         log=lambda m: print(m, file=sys.stderr, flush=True))
    print(table(summary))
    print(f"written to {out_dir}/ (curves.png, curves.json, tensorboard/)")
    if args.json_out:
        write_json_atomic(args.json_out, summary)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
