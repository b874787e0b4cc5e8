"""`python -m compare.report`: every model of an experiment on its one held-out test split.

Finds the experiment's finished detector runs, refuses any trained on another split, skips broken ones
with their reason, and evaluates the rest on the test split (never used for training or selection):
quality with 95% bootstrap intervals, paired comparisons, calibration, and costs measured on this machine.
Writes runs/<experiment>/report/ (report.md, metrics.json, metrics.csv, PNG plots) and TensorBoard
summaries under runs/<experiment>/report/tensorboard/. What the numbers are: compare/evaluation.py and
compare/comparisons.py; how they are shown: compare/rendering.py.
"""
import argparse
import os
import shutil
import sys
import urllib.parse

import numpy as np

from compare import (adaptation as A, comparisons as C, evaluation as E, learning_curve as LC, perturb,
                     rendering as R, seeds as S)
from data.cache import cache_folder
from data.runs import experiment_dir, write_json_atomic, write_text_atomic
from data.align import LandmarkCache, landmarks_path
from data.runtime import UserError, add_common_args, run_main, setup
from data.split import load_manifest

REPORT_RUNS = "^report/tensorboard/"  # the report's TensorBoard runs, as named under the experiment's folder


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m compare.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(p, data=False)
    p.add_argument("--test-dir", action="append", metavar="[NAME=]DIR",
                   help="an external folder (Real/ and/or Fake/: a fake-only or real-only set is allowed), "
                        "e.g. stylegan3=/data/sg3; repeat for more sets; a bare DIR is named after the folder")
    p.add_argument("--ensemble", metavar="A,B,C",
                   help="the models the ensemble row averages (default: all of them, when there are two or more)")
    p.add_argument("--perturb", help="e.g. jpeg=50,blur=1.0,resize=0.5: robustness on perturbed test images")
    p.add_argument("--tta", action="store_true",
                   help="judge each image with its mirror image too (averaged): flip test-time augmentation")
    p.add_argument("--no-timing", action="store_true", help="skip the latency / throughput measurements")
    p.add_argument("--no-saliency", action="store_true", help="skip the per-model saliency figures")
    return p.parse_args(argv)


def load_experiment(args):
    """(experiment folder, split manifest, [Detector], external sets), or one line saying what is missing."""
    exp = experiment_dir(args.runs_dir, args.experiment)
    split_path = os.path.join(exp, "split.json")
    if not os.path.exists(split_path):
        raise UserError(f"no experiment at {exp} (no split.json): train a model first")
    test_dirs = E.parse_test_dirs(args.test_dir)
    perturb.parse_spec(args.perturb)  # fail on a bad spec before any work
    manifest = load_manifest(split_path)
    detectors, skipped = E.find_detectors(args.runs_dir, args.experiment, manifest)
    for name, reason in skipped:
        print(f"skipping {name}: {reason}", file=sys.stderr)
    if not detectors:
        raise UserError(f"no finished detector runs to compare in {exp}")
    return exp, manifest, detectors, skipped, test_dirs


def assemble(args, exp, manifest, models, results, skipped, test_dirs):
    """The report record: what metrics.json holds, and what every rendering reads."""
    ranking = sorted(models, key=lambda n: -np.nan_to_num(models[n]["test"]["roc_auc"], nan=-1))
    grouped = S.recipes(ranking)
    report = {"experiment": args.experiment, "split_fingerprint": manifest["fingerprint"],
              "test_images": int(len(results[ranking[0]].labels)), "test_dirs": dict(test_dirs),
              "perturb": args.perturb, "tta": args.tta, "ranking": ranking, "models": models,
              "recipes": C.recipe_rows(models, grouped), "planned": C.planned(models, results, grouped),
              "pairwise": E.pairwise(results), "skipped": skipped,
              "adaptation": A.summary(A.collect(exp, manifest["fingerprint"])), "learning_curve": LC.load(exp),
              "gans": E.gan_runs(args.runs_dir, args.experiment, manifest)}
    report["seed_groups"], report["seed_pairs"] = S.summarise(models)
    return report


def main(argv=None):
    args = parse_args(argv)
    setup(args.seed, args.precision)
    exp, manifest, detectors, skipped, test_dirs = load_experiment(args)
    # by default every detector trained on labelled fakes: a label-free score near or below chance only dilutes it
    members = E.ensemble_members(args.ensemble, [d.name for d in detectors],  # a misspelt one fails before any work
                                 [d.name for d in detectors if d.info.get("labelled_fakes_seen") != 0])
    print(f"comparing {len(detectors)} model(s) on the test split of {exp}")
    sets = E.ImageSets(manifest, test_dirs, cache_folder(args.runs_dir, args.experiment),
                       LandmarkCache(landmarks_path(args.runs_dir)))
    models, results = E.evaluate_all(detectors, sets, args.perturb, args.tta, not args.no_timing, members)
    report = assemble(args, exp, manifest, models, results, skipped, test_dirs)
    out_dir = os.path.join(exp, "report")
    os.makedirs(out_dir, exist_ok=True)
    plots = R.figures(detectors, report, results, out_dir, saliency=not args.no_saliency)
    report["markdown"] = R.markdown(report, plots)
    write_text_atomic(os.path.join(out_dir, "report.md"), report["markdown"])
    write_json_atomic(os.path.join(out_dir, "metrics.json"), {k: v for k, v in report.items() if k != "markdown"})
    R.write_csv(report, os.path.join(out_dir, "metrics.csv"))
    R.write_tensorboard(report, results, plots, os.path.join(out_dir, "tensorboard"))
    print()
    print(R.terminal_summary(report))
    print()
    print(f"report: {os.path.join(out_dir, 'report.md')} (metrics.json, metrics.csv, PNG plots beside it)")
    print(f"TensorBoard: {tensorboard_command()} --logdir {exp} --host 127.0.0.1")
    print(f"  then the comparison (its text; Images: its figures): {comparison_url()}")
    return 0


def comparison_url(port=6006, page="text"):
    """TensorBoard's page with the report's runs selected. Its Images and Text pages tick no run by default
    once a logdir holds over 40 (its runs selector's maxNamesToEnableByDefault), and one search of 30 trials
    writes 90; the runs filter in the address (regexInput) selects the report's alone."""
    return f"http://127.0.0.1:{port}/#{page}&regexInput={urllib.parse.quote(REPORT_RUNS, safe='')}"


def tensorboard_command():
    """`tensorboard` where it is on PATH, else the one installed beside this Python (the kit's .venv, not
    activated): the printed command works as written."""
    beside = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    if shutil.which("tensorboard") or not os.path.exists(beside):
        return "tensorboard"
    return os.path.relpath(beside) if not os.path.relpath(beside).startswith("..") else beside


if __name__ == "__main__":
    sys.exit(run_main(main))
