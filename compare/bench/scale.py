"""`python -m compare.bench --scale N [N ...]`: what each stage costs at the data sizes users bring.

For each N a synthetic Real/ + Fake/ set of N distinct 256 px JPEGs is written once (low-frequency random
content, so no two form a near-copy group; fakes carry a faint period-2 pattern, so detectors have
something to learn), and a folder given with --data-dir is measured beside them at its own size. Each
stage runs as the kit's own command in a child process, timed, with the child's peak resident memory
(its VmHWM, written as it exits):
  scan + split        `python -m data` on a new runs folder, then again (hashes and near-copies cached)
  decode cache        `python -m data --experiment scale --decode S`: the three sides at S px
  training            the kit's training path (prepare -> decode cache -> make_dataset -> fit) for a bounded
                      number of steps: time until the first step ends (what a second model of the
                      experiment waits for) and images/s after WARMUP_STEPS; an epoch is extrapolated from it
  a run, the report   `classifiers.train --model baseline --labels 50 --epochs 1` (its validation is the
                      whole validation split) and `compare.report` on the test split
It is a benchmark: it prints figures and asserts nothing.
"""
import argparse
import dataclasses
import io
import json
from multiprocessing import Pool
import os
import shutil
import subprocess
import sys
import time

import keras
import numpy as np
from PIL import Image

from classifiers.registry import detector_run
from classifiers.runner import prepare
from classifiers.train import config
from data.pipeline import make_dataset
from data.runs import read_json, write_json_atomic
from data.runtime import cpu_flags, run_main, setup

SET_SIZE = 256
SET_VERSION = 1
MARKER = "SCALE-SET.json"
FAKE_SHARE = 7 / 13  # the original study's set: about 6k real and 7k fake
PROBE_STEPS = 60
WARMUP_STEPS = 10
PROBES = (("baseline", 64), ("baseline", 128), ("resnet", 128))


def scale_image(index, seed=0, size=SET_SIZE):
    """JPEG bytes and label of image `index`: smooth random colour fields (each its own perceptual hash) with
    fine noise; a fake adds a faint checkerboard, the period-2 trace of a transposed-convolution upsampler."""
    rng = np.random.default_rng([seed, index])
    fake = rng.random() < FAKE_SHARE
    coarse = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
    img = np.asarray(coarse, np.int16) + rng.integers(-8, 9, (size, size, 3), dtype=np.int16)
    if fake:
        img[::2, ::2] += int(rng.integers(3, 8))
    out = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
    return out.getvalue(), int(fake)


def _write_chunk(job):
    dest, start, stop, seed = job
    for i in range(start, stop):
        data, fake = scale_image(i, seed)
        with open(os.path.join(dest, ("Fake" if fake else "Real"), f"{i:06d}.jpg"), "wb") as f:
            f.write(data)
    return stop - start


def write_set(dest, n, seed=0, log=print):
    """The N-image set in dest (kept: written again only if N, the seed or the recipe changed); seconds taken."""
    want = {"images": n, "seed": seed, "size": SET_SIZE, "version": SET_VERSION}
    if read_json(os.path.join(dest, MARKER)) == want:
        return 0.0
    shutil.rmtree(dest, ignore_errors=True)
    for label in ("Real", "Fake"):
        os.makedirs(os.path.join(dest, label))
    started, done, chunk = time.time(), 0, 500
    with Pool(os.cpu_count() or 1) as pool:
        for count in pool.imap_unordered(_write_chunk, [(dest, s, min(n, s + chunk), seed) for s in range(0, n, chunk)]):
            done += count
            if done % (chunk * 20) < chunk or done == n:
                log(f"writing {dest}: {done:,}/{n:,} images, {done / (time.time() - started):,.0f}/s")
    with open(os.path.join(dest, MARKER), "w") as f:
        json.dump(want, f)
    return time.time() - started


def measured(cmd, log_path):
    """(seconds, peak resident GB, exit code, (the probe's figures or None, start time)) of one kit command
    (`python -m MODULE ARGS`). The peak is the command's own VmHWM, written as it exits: a child's
    ru_maxrss would also count the parent's memory at the fork."""
    started = time.time()
    peak_file = log_path + ".peak"
    with open(log_path, "a") as out:
        mark = out.tell()
        out.write("$ " + " ".join(cmd[2:]) + "\n")
        out.flush()
        wrapped = [cmd[0], "-c", PEAK_WRAPPER, peak_file] + cmd[2:]
        code = subprocess.run(wrapped, stdout=out, stderr=subprocess.STDOUT).returncode
    seconds = time.time() - started
    probe = None
    with open(log_path) as f:
        f.seek(mark)
        for line in f.read().splitlines()[::-1]:
            if line.startswith("probe: "):
                probe = json.loads(line[len("probe: "):])
                break
    with open(peak_file) as f:
        peak_kb = int(f.read())
    return seconds, peak_kb / 2 ** 20, code, (probe, started)


# Runs `python -m MODULE ARGS` in the same process and writes its peak resident memory (kB) as it exits;
# a -c script, not a module of the kit: importing the compare package would load TensorFlow into every stage
PEAK_WRAPPER = """
import atexit, runpy, sys
def record(path=sys.argv[1]):
    with open("/proc/self/status") as f:
        peak = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    with open(path, "w") as f:
        f.write(peak)
atexit.register(record)
sys.argv = sys.argv[2:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def stages(data_dir, runs_dir, sizes, steps):
    """[(stage name, argv)] of the kit's commands measured on one folder."""
    py = [sys.executable, "-m"]
    where = ["--runs-dir", runs_dir]
    common = where + ["--experiment", "scale", "--data-dir", data_dir]
    out = [("scan + split (first time)", py + ["data", data_dir] + where),
           ("scan + split (cached)", py + ["data", data_dir] + where)]
    out += [(f"decode cache {s}px", py + ["data", data_dir, "--experiment", "scale", "--decode", str(s)] + where)
            for s in sizes]
    out += [(f"training {model} {s}px", py + ["compare.bench.scale", "--probe", model, str(s), str(steps)] + common)
            for model, s in PROBES if s in sizes]
    small = min(sizes)
    out += [(f"baseline run, 50 labels, 1 epoch, {small}px", py + ["classifiers.train", "--model", "baseline", "--labels",
                                                                   "50", "--epochs", "1", "--image-size", str(small)] + common),
            ("compare.report", py + ["compare.report", "--no-saliency", "--experiment", "scale"] + where)]
    return out


def measure(name, data_dir, runs_dir, sizes, steps, log):
    """{stage: figures} on one folder, from a new runs folder."""
    shutil.rmtree(runs_dir, ignore_errors=True)
    os.makedirs(runs_dir)
    log_path = os.path.join(runs_dir, "bench-scale.log")
    rows = {}
    for stage, cmd in stages(data_dir, runs_dir, sizes, steps):
        seconds, peak, code, (probe, started) = measured(cmd, log_path)
        row = {"seconds": round(seconds, 1), "peak_gb": round(peak, 2), "exit": code}
        if stage.startswith("training") and probe:
            first_step_at = probe.pop("first_step_at")
            row.update(probe, first_step_s=round(first_step_at - started, 1))  # from the command's start
        rows[stage] = row
        log(f"{name}: {stage}: {seconds:,.1f}s, peak {peak:.2f} GB" + ("" if code == 0 else f", FAILED (exit {code}, "
                                                                          f"see {log_path})"))
    return rows


def run(args, log=print):
    """Write the sets, measure every stage at every size, print the table, write bench-scale.json."""
    base = os.path.join(os.path.abspath(args.runs_dir), ".scale")
    sizes = sorted(set(args.image_size))
    shown = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")  # what decides the kit's precision
    results = {"cpu_flags": " ".join(f for f in shown if f in cpu_flags()), "cpu_count": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
               "sizes": sizes, "sets": {}}
    folders = [(os.path.abspath(args.data_dir), os.path.abspath(args.data_dir))] if args.data_dir else []
    for n in args.scale:
        dest = os.path.join(base, f"set-{n}")
        seconds = write_set(dest, n, args.seed, log)
        log(f"set of {n:,}: {dest}" + (f" (written in {seconds:,.0f}s)" if seconds else " (kept)"))
        folders.append((f"{n:,} synthetic", dest))
    for name, folder in folders:
        images = sum(len(os.listdir(os.path.join(folder, c))) for c in ("Real", "Fake"))
        results["sets"][name] = {"images": images, "folder": folder,
                                 "stages": measure(name, folder, os.path.join(base, f"runs-{images}"), sizes,
                                                   args.probe_steps or PROBE_STEPS, log)}
        write_json_atomic(os.path.join(base, "bench-scale.json"), results)
    print(table(results))
    print(f"written to {os.path.join(base, 'bench-scale.json')}")
    return 0


def table(results):
    sets = results["sets"]
    names = list(sets)
    lines = [f"CPU: {results['cpu_count']} cores, flags {results['cpu_flags']}; {results['date']}", "",
             "| stage | " + " | ".join(f"{sets[n]['images']:,} images" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    for stage in sets[names[0]]["stages"]:
        cells = []
        for n in names:
            row = sets[n]["stages"].get(stage)
            if row is None:
                cells.append("")
                continue
            cell = f"{row['seconds']:,.1f} s, {row['peak_gb']:.2f} GB"
            if "images_per_s" in row:
                cell += f"; first step {row['first_step_s']:.0f} s, {row['images_per_s']:.0f} img/s, " \
                        f"epoch ~{row['epoch_minutes']:.1f} min"
            cells.append(cell + ("" if row["exit"] == 0 else " FAILED"))
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def probe(model, size, steps, argv):
    """In the child: the kit's training path for `steps` steps; prints one 'probe: {json}' line."""
    cfg = config(argv, model=model, image_size=size)
    cfg = dataclasses.replace(cfg, precision=setup(cfg.seed, cfg.precision))
    data = prepare(cfg)
    run = detector_run(cfg, data.train[1])
    model = run.compile(run.build())
    train = make_dataset(*data.train, cfg.batch_size, training=True, seed=cfg.seed, augment=run.augment,
                         mixup=run.mixup)
    ends = []
    timer = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: ends.append(time.time()))
    model.fit(train, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[timer])
    rate = (len(ends) - WARMUP_STEPS) * cfg.batch_size / (ends[-1] - ends[WARMUP_STEPS - 1])
    print("probe: " + json.dumps({"first_step_at": ends[0], "images_per_s": round(rate, 1), "steps": len(ends),
                                  "train_images": len(data.train[1]),
                                  "epoch_minutes": round(len(data.train[1]) / rate / 60, 2)}), flush=True)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv

    def child():
        p = argparse.ArgumentParser(prog="python -m compare.bench.scale")
        p.add_argument("--probe", nargs=3, required=True, metavar=("MODEL", "SIZE", "STEPS"))
        args, rest = p.parse_known_args(argv)
        probe(args.probe[0], int(args.probe[1]), int(args.probe[2]), rest)
        return 0

    return run_main(child)


if __name__ == "__main__":
    sys.exit(main())
