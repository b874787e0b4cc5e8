"""The report's view of an experiment: one row per recipe, and the comparisons it is planned around.

A recipe is a run name without its seed: `NAME.seedS` runs (as `--seeds N` and the learning curve name them)
are folded into NAME, shown as mean +- sd over seeds; any other run is a recipe of one run. The planned
comparisons are each fine-tuned GAN discriminator against its controls (gan/variants.py: the same network
from random weights, and its frozen trunk under a linear probe) and every recipe against the best one. Two
recipes that share two seeds or more are paired over those seeds (Student's t on the per-seed differences:
the spread of training is in it); otherwise one run each is paired on the same test images (bootstrap: only
the spread of the test images is in it). Every other pair stays in metrics.json.
"""
import numpy as np

from compare import seeds as S
from compare.evaluation import ENSEMBLE, paired_on_test_images
from gan.variants import VARIANTS

COLUMNS = {"AP": "average_precision", "EER": "eer", "TPR@5%FPR": "tpr_at_fpr_5pct", "acc@t": "accuracy_at_threshold"}


def recipe_rows(models, grouped):
    """Per recipe: its runs, test AUC (mean and sd over seeds; a single run's bootstrap interval), the
    means of the other table columns, and ms per image where it was measured."""
    rows = []
    for recipe, runs in grouped.items():
        tests = [models[n]["test"] for n in runs.values()]
        mean, sd = S.mean_sd([t["roc_auc"] for t in tests])
        latency = [models[n].get("costs", {}).get("latency_ms_b1") for n in runs.values()]
        row = {"recipe": recipe, "runs": list(runs.values()), "seeds": [s for s in runs if s is not None],
               "roc_auc": mean, "roc_auc_sd": sd if len(tests) > 1 else None,
               "roc_auc_ci95": tests[0].get("roc_auc_ci95") if len(tests) == 1 else None,
               "ms_per_image": float(np.mean(latency)) if all(v is not None for v in latency) else None}
        row.update({key: float(np.mean([t[key] for t in tests])) for key in COLUMNS.values()})
        rows.append(row)
    return sorted(rows, key=lambda r: -np.nan_to_num(r["roc_auc"], nan=-1))


def compare_recipes(a, b, grouped, models, results):
    """{a, b, difference, ci95, evidence, verdict} of recipe a minus recipe b."""
    shared = sorted(set(grouped[a]) & set(grouped[b]) - {None})
    if len(shared) >= 2:
        diffs = [models[grouped[a][s]]["test"]["roc_auc"] - models[grouped[b][s]]["test"]["roc_auc"] for s in shared]
        mean, _, ci = S.paired_interval(diffs)
        evidence = f"paired over {len(shared)} seeds"
    else:
        run_a, run_b = (one_run(grouped[r], shared) for r in (a, b))
        paired = paired_on_test_images(results[run_a], results[run_b])
        mean, ci = paired["auc"]["auc_difference"], paired["auc"]["ci95"]
        evidence = f"one run each ({run_a}, {run_b}), paired on the test images"
    holds = ci[0] > 0 or ci[1] < 0
    verdict = (f"{a} {'beats' if mean > 0 else 'loses to'} {b}" if holds
               else f"no difference between {a} and {b} that holds")
    return {"a": a, "b": b, "difference": float(mean), "ci95": [float(ci[0]), float(ci[1])], "evidence": evidence,
            "verdict": verdict}


def one_run(runs, shared):
    """The run a recipe is represented by when it cannot be paired over seeds: the shared seed's, else its
    lowest seed's."""
    return runs[shared[0]] if shared else runs[min(runs, key=lambda s: -1 if s is None else s)]


def control_pairs(grouped):
    """(discriminator recipe, control recipe) for every control present, label-count suffixes matched."""
    pairs = []
    for pretrained, controls in ((v.name, v.controls) for v in VARIANTS.values() if v.controls):
        for recipe in grouped:
            suffix = recipe[len(pretrained):]
            if recipe.startswith(pretrained) and (suffix == "" or suffix.startswith("-labels")):
                pairs += [(recipe, c + suffix) for c in controls if c + suffix in grouped]
    return pairs


def planned(models, results, grouped):
    """The report's comparisons: discriminators against their controls, then every recipe against the best."""
    controls = control_pairs(grouped)
    out = [dict(compare_recipes(a, b, grouped, models, results), kind="against its control") for a, b in controls]
    ranked = [r for r in recipe_rows(models, grouped) if r["recipe"] != ENSEMBLE]
    if len(ranked) > 1:
        best = ranked[0]["recipe"]  # a pair already judged as variant and control is not judged twice
        out += [dict(compare_recipes(r["recipe"], best, grouped, models, results), kind="against the best")
                for r in ranked[1:] if (best, r["recipe"]) not in controls and (r["recipe"], best) not in controls]
    return out
