"""The learning curve as the report shows it: test AUC against the number of labelled training images,
recipe by recipe, as `python -m compare.bench --learning-curve` (compare/bench/learning_curve.py) wrote it to
runs/<experiment>/bench/learning_curve.json.
"""
import os

from data.runs import read_json

FILE = "learning_curve.json"
FIGURE = "learning_curve.png"  # beside it


def load(exp_dir):
    """The experiment's curve as the bench wrote it, or None."""
    return read_json(os.path.join(exp_dir, "bench", FILE))


def markdown(curve):
    """The curve as a grid: a row per recipe, a column per label count, then the verdicts in words."""
    if not curve or not curve.get("rows"):
        return []
    counts = list(dict.fromkeys(r["labels"] for r in curve["rows"]))
    cell = {(r["recipe"], r["labels"]): f"{r['mean']:.3f}" + (f" +- {r['sd']:.3f}" if len(r["seeds"]) > 1 else "")
            for r in curve["rows"]}
    seeds = sorted({len(r["seeds"]) for r in curve["rows"]})
    lines = ["", "## Learning curve (labelled training images)", "",
             f"Test AUC (mean +- sd over {'/'.join(map(str, seeds))} seeds) of each recipe trained on part of the "
             "labelled training split (`python -m compare.bench --learning-curve`); validation and test untouched.",
             "", "| recipe | " + " | ".join(f"{c} labels" for c in counts) + " |", "|---" * (len(counts) + 1) + "|"]
    lines += [f"| {recipe} | " + " | ".join(cell.get((recipe, c), "-") for c in counts) + " |"
              for recipe in dict.fromkeys(r["recipe"] for r in curve["rows"])]
    return lines + ([""] + [f"- {v['verdict']}" for v in curve["verdicts"]] if curve["verdicts"] else [])
