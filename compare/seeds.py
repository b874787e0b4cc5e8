"""Runs of one recipe trained with several seeds (`NAME.seedS`, as `gan.train --seeds N` names them):
mean and spread per recipe, and paired differences between recipes across the seeds they share.

One run on a few hundred test images has an AUC interval of several points, and a second seed moves
it about as much; a difference between recipes counts only when it holds across seeds. The interval of a
paired difference is Student's t over the per-seed differences (n - 1 degrees of freedom)."""
import itertools
import re

import numpy as np

SEED_NAME = re.compile(r"^(?P<group>.+)\.seed(?P<seed>\d+)$")
# two-sided 95% quantiles of Student's t by degrees of freedom (1..10); past 10, 2.0 is within 3% of all
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def t975(df):
    return T975.get(df, 2.0 if df < 60 else 1.96)


def recipes(names):
    """{recipe: {seed or None: run name}} in the order the names come: GROUP.seedS runs under GROUP, any other
    run a recipe of its own (seed None)."""
    out = {}
    for name in names:
        m = SEED_NAME.match(name)
        if m:
            out.setdefault(m["group"], {})[int(m["seed"])] = name
        else:
            out.setdefault(name, {})[None] = name
    return out


def groups(names):
    """{group: {seed: run name}} for names of the form GROUP.seedS; other names are not grouped."""
    return {group: runs for group, runs in recipes(names).items() if None not in runs}


def mean_sd(values):
    values = np.asarray(values, np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else float("nan")


def paired_interval(differences):
    """(mean, sd, 95% interval) of per-seed paired differences: Student's t with n - 1 degrees of freedom."""
    mean, sd = mean_sd(differences)
    half = t975(len(differences) - 1) * sd / np.sqrt(len(differences))
    return mean, sd, [mean - half, mean + half]


def summarise(models, key="roc_auc"):
    """(per-group summary, per-pair paired differences) of the test `key` over seeds."""
    grouped = groups(models)
    summary = {}
    for group, runs in sorted(grouped.items()):
        values = [models[runs[s]]["test"][key] for s in sorted(runs)]
        mean, sd = mean_sd(values)
        summary[group] = {"seeds": sorted(runs), "values": values, "mean": mean, "sd": sd}
    pairs = {}
    for a, b in itertools.combinations(sorted(grouped), 2):
        shared = sorted(set(grouped[a]) & set(grouped[b]))
        if len(shared) < 2:
            continue
        diffs = [models[grouped[a][s]]["test"][key] - models[grouped[b][s]]["test"][key] for s in shared]
        mean, sd, ci = paired_interval(diffs)
        real = ci[0] > 0 or ci[1] < 0
        pairs[f"{a} vs {b}"] = {"seeds": shared, "differences": diffs, "mean": mean, "sd": sd, "ci95": ci,
                                "verdict": "holds across seeds" if real else "within seed-to-seed noise"}
    return summary, pairs


def markdown(summary, pairs, key="roc_auc"):
    if not summary:
        return []
    lines = ["", "## Across seeds", "",
             f"Runs named `NAME.seedS` grouped by NAME: test {key} mean +- sample sd over seeds.", "",
             "| model | seeds | mean | sd | per seed |", "|---|---|---|---|---|"]
    for group, s in summary.items():
        lines.append(f"| {group} | {len(s['seeds'])} | {s['mean']:.4f} | {s['sd']:.4f} | "
                     + ", ".join(f"{v:.3f}" for v in s["values"]) + " |")
    if pairs:
        lines += ["", "Paired across the seeds both share (the same seed's runs differ only in the recipe); "
                      "95% interval from Student's t.", "",
                  "| pair | seeds | mean difference | sd | 95% CI | verdict |", "|---|---|---|---|---|---|"]
        for pair, d in pairs.items():
            lines.append(f"| {pair} | {len(d['seeds'])} | {d['mean']:+.4f} | {d['sd']:.4f} | {d['ci95'][0]:+.4f} to "
                         f"{d['ci95'][1]:+.4f} | {d['verdict']} |")
    return lines


def terminal(summary, pairs):
    if not summary:
        return ""
    rows = [f"{'across seeds':<28} {'seeds':>5} {'mean AUC':>9} {'sd':>7}"]
    rows += [f"{g:<28} {len(s['seeds']):>5} {s['mean']:>9.4f} {s['sd']:>7.4f}" for g, s in summary.items()]
    for pair, d in pairs.items():
        rows.append(f"{pair}: {d['mean']:+.4f} +- {d['sd']:.4f} over {len(d['seeds'])} seeds "
                    f"(95% CI {d['ci95'][0]:+.4f} to {d['ci95'][1]:+.4f}): {d['verdict']}")
    return "\n".join(rows)
