"""`python -m compare.bench --adapt-heads RUN --data-dir FAMILY`: the heads `classifiers.adapt --method head`
can fit, side by side on the same shots: the replayed head, the two heads (the source's beside a family
head), the one validation chose (the default), and the family head alone (the source forgotten: what the
shots alone reach on the family, and what forgetting costs the original family). Per --head: AUC on the
family's test side and on the original test side, mean +- sd over the seeds, and the share of the original
test reals the source clears that the adapted model accuses. Runs already made are read, not made again.
"""
import os

import numpy as np

from classifiers import adapt
from compare.seeds import mean_sd

HEADS = ("choose", "replayed", "two", "family")


def mean_and_spread(values, sign=""):
    mean, sd = mean_sd(values)
    return f"{mean:{sign}.3f} +- {0 if np.isnan(sd) else sd:.3f}"


def run(args):
    rows = []
    for head in HEADS:
        argv = ["--run", args.adapt_heads, "--data-dir", args.data_dir, "--shots", *map(str, args.shots),
                "--seeds", str(args.seeds), "--seed", str(args.seed), "--precision", args.precision, "--head", head]
        results = adapt.adapt_source(adapt.parse_args(argv), args.adapt_heads, adapt.family_name(args.data_dir))
        for shots in adapt.shots_in_order({r["adaptation"]["shots"] for r in results.values()}):
            runs = [r["adaptation"] for r in results.values() if r["adaptation"]["shots"] == shots]
            chosen = sorted({a["head"] for a in runs})
            rows.append((head, shots, len(runs), runs[0]["before"], mean_and_spread([a["after"]["family"] for a in runs]),
                         mean_and_spread([a["change"]["source"] for a in runs], "+"),
                         np.mean([a.get("newly_accused", 0.0) for a in runs]),
                         ", ".join(f"{c} {sum(a['head'] == c for a in runs)}" for c in chosen),
                         sum(not a.get("adapted", True) for a in runs)))
    before = rows[0][3]
    print(f"{os.path.basename(os.path.normpath(args.adapt_heads))} adapted to {args.data_dir}: before, family test AUC "
          f"{before['family']:.3f}, original test AUC {before['source']:.3f}")
    print(f"{'--head':<9} {'K':>4} {'seeds':>5} {'family test AUC':>16} {'original change':>16} "
          f"{'newly accused':>13} {'not adapted':>11}  heads")
    for head, shots, seeds, _, family, change, accused, chosen, failed in rows:
        print(f"{head:<9} {shots!s:>4} {seeds:>5} {family:>16} {change:>16} {accused:>13.3f} {failed:>11}  {chosen}")
    return 0
