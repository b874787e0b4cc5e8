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
import sys
import time

import numpy as np

from data.runtime import import_tensorflow, positive_int, run_main, setup

FILTERS = (32, 64, 128)
BATCH = 32
WARMUP_STEPS = 3
WINDOWS = 3


def forward_flops(model):
    """Multiply-adds x 2 of the convolution and dense layers for one image."""
    from keras import layers

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


class StepTimer:
    def __init__(self):
        import keras

        outer = self
        self.times = []

        class _cb(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                outer.times.append(time.perf_counter())

        self.callback = _cb()


def train_rate(model, ds, window):
    """Median images/s over WINDOWS windows of `window` steps, after WARMUP_STEPS."""
    timer = StepTimer()
    steps = WARMUP_STEPS + WINDOWS * window
    model.fit(ds.repeat(), steps_per_epoch=steps, epochs=1, verbose=0, callbacks=[timer.callback], shuffle=False)
    t = timer.times[WARMUP_STEPS - 1:]
    rates = [window * BATCH / (t[(i + 1) * window] - t[i * window]) for i in range(WINDOWS)]
    return float(np.median(rates))


def pipeline_rate(ds, batches=30):
    it = iter(ds.repeat())
    next(it)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * BATCH / (time.perf_counter() - t)


def latency(model, size, repeats=50, batch=64):
    """(median ms per image at batch 1, images/s at `batch`), timed after tracing both shapes."""
    tf = import_tensorflow()
    run = tf.function(lambda x: model(x, training=False))
    one, many = tf.zeros((1, size, size, 3)), tf.zeros((batch, size, size, 3))
    run(one), run(many)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run(one).numpy()
        times.append(time.perf_counter() - t)
    batch_times = []
    for _ in range(5):
        t = time.perf_counter()
        run(many).numpy()
        batch_times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times)), batch / float(np.median(batch_times))


def bench_size(data_dir, size, policy, window):
    import keras

    from classifiers.models import build_cnn
    from data.pipeline import load_images, make_dataset
    from data.scan import scan_folder

    tf = import_tensorflow()
    out = {}
    # the original pipeline: float32, decoding JPEGs from disk every epoch, no cache
    keras.mixed_precision.set_global_policy("float32")
    original = keras.utils.image_dataset_from_directory(data_dir, labels="inferred", label_mode="binary",
                                                        image_size=(size, size), batch_size=BATCH, seed=0,
                                                        verbose=False)
    model = build_cnn(size, FILTERS)
    out["original_train_img_s"] = train_rate(model, original, window)
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
    out["kit_train_img_s"] = train_rate(model, kit, window)
    out["train_speedup"] = out["kit_train_img_s"] / out["original_train_img_s"]
    out["pipeline_img_s"] = pipeline_rate(kit)
    out["pipeline_headroom"] = out["pipeline_img_s"] / out["kit_train_img_s"]
    out["latency_ms_b1"], out["throughput_b64"] = latency(model, size)
    flops = forward_flops(model)
    out["gflop_per_image_forward"] = flops / 1e9
    out["achieved_gflop_s"] = 3 * flops * out["kit_train_img_s"] / 1e9  # backward ~ 2x forward
    peak = matmul_peak(tf.bfloat16 if "bfloat16" in policy else tf.float16 if "float16" in policy else tf.float32)
    out["matmul_peak_gflop_s"] = peak / 1e9
    out["flops_fraction_of_peak"] = out["achieved_gflop_s"] / out["matmul_peak_gflop_s"]
    out["precision"] = policy
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m compare.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("DEEPFAKE_KIT_DATA"),
                   help="Real/ + Fake/ folder (default: $DEEPFAKE_KIT_DATA, else the embedded default)")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--image-size", type=positive_int, nargs="+", default=[128, 256])
    p.add_argument("--window", type=positive_int, default=5, help="training steps per measured window")
    p.add_argument("--precision", default="auto")
    p.add_argument("--json-out")
    p.add_argument("--recipes", nargs="+", metavar="RECIPE",
                   help="AUC per CPU-minute of these recipes instead (original, baseline, resnet)")
    p.add_argument("--experiment", default="default", help="with --recipes: whose split to train and test on")
    p.add_argument("--epochs", type=positive_int, help="with --recipes: override every recipe's epochs")
    args = p.parse_args(argv)
    from data.synthetic import resolve_data_dir

    policy = setup(0, args.precision, deterministic=False)
    data_dir = resolve_data_dir(args.data_dir, args.runs_dir)
    if args.recipes:
        return recipe_curves(args, data_dir, policy)
    results = {"data_dir": data_dir, "cpu_count": os.cpu_count(), "sizes": {}}
    for size in args.image_size:
        print(f"benchmarking {size}px ...", file=sys.stderr)
        results["sizes"][str(size)] = bench_size(data_dir, size, policy, args.window)
    rows = [("training img/s, original pipeline", "original_train_img_s", "{:.1f}"),
            ("training img/s, kit", "kit_train_img_s", "{:.1f}"), ("speed-up (kit / original)", "train_speedup", "{:.2f}x"),
            ("pipeline alone img/s (cached)", "pipeline_img_s", "{:.0f}"),
            ("pipeline headroom (pipeline / model)", "pipeline_headroom", "{:.0f}x"),
            ("latency batch 1 (ms)", "latency_ms_b1", "{:.2f}"), ("throughput batch 64 (img/s)", "throughput_b64", "{:.0f}"),
            ("achieved GFLOP/s in training", "achieved_gflop_s", "{:.1f}"),
            ("matmul peak GFLOP/s", "matmul_peak_gflop_s", "{:.1f}"),
            ("share of peak", "flops_fraction_of_peak", "{:.1%}"), ("precision", "precision", "{}")]
    sizes = list(results["sizes"])
    print(f"{'':40}" + "".join(f"{s + 'px':>12}" for s in sizes))
    for label, key, fmt in rows:
        print(f"{label:40}" + "".join(f"{fmt.format(results['sizes'][s][key]):>12}" for s in sizes))
    if args.json_out:
        from data.runs import write_json_atomic

        write_json_atomic(args.json_out, results)
        print(f"written to {args.json_out}")
    return 0


def recipe_curves(args, data_dir, policy):
    from compare.curves import run_curves, table
    from data.runs import experiment_dir
    from data.split import experiment_split

    manifest = experiment_split(data_dir, args.runs_dir, args.experiment, log=lambda m: print(m, file=sys.stderr))
    out_dir = os.path.join(experiment_dir(args.runs_dir, args.experiment), "bench")
    summary = run_curves(args.recipes, manifest, policy, out_dir, epochs=args.epochs,
                         log=lambda m: print(m, file=sys.stderr, flush=True))
    print(table(summary))
    print(f"written to {out_dir}/ (curves.png, curves.json, tensorboard/)")
    if args.json_out:
        from data.runs import write_json_atomic

        write_json_atomic(args.json_out, summary)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
