"""`python -m compare.bench` without a mode flag: the kit's training pipeline against the original study's.

For each image size, on the same images and the same 3-block CNN (the study's best, filters 32-64-128):
- training throughput (images/s after warm-up, median of several windows) of the kit's pipeline
  (decode once, in memory, the kit's precision policy) and of the original (image_dataset_from_directory,
  float32, decoding every epoch), and their ratio;
- the kit's data pipeline alone against what the model consumes;
- inference latency at batch 1 and throughput at batch 64;
- achieved FLOP/s in training against a matrix-multiply peak measured in the same run.
It is a benchmark, not a test: it prints figures and asserts nothing.
"""
import os
import time

import keras
from keras import layers
import numpy as np

from classifiers.models import build_cnn
from compare.timing import latency, spread
from data.pipeline import load_images, make_dataset
from data.runtime import import_tensorflow
from data.scan import scan_folder

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
