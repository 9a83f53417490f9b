"""Accuracy of the three variants on ML-100K: full ranking, leave-last-out, test metrics with CIs.

    python benchmarks/accuracy.py [--runs-dir runs] [--retrain] [--seed 0]

Trains each variant with the default preset (or reuses runs/<dataset>-<variant> unless
--retrain), then writes benchmarks/results/accuracy.md with test NDCG/HR/MRR@10 and their 95%
bootstrap CIs, the paired test against the best variant, training time and best epoch.
"""

from __future__ import annotations

import argparse
import dataclasses

from common import write_table

from recexplain.config import ATTENTION_VARIANTS, DataConfig, preset
from recexplain.data import load_dataset
from recexplain.evaluation import compare
from recexplain.training import default_runs, train

ANCHORS = {"Pop": 0.0449, "ItemKNN": 0.0629, "BPR-MF": 0.0661, "SASRec": 0.0670}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--retrain", action="store_true", help="train fresh runs (timed)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.retrain:
        ds = load_dataset(DataConfig())
        runs = []
        for variant in ATTENTION_VARIANTS:
            model_cfg, cfg = preset("default", variant)
            cfg = dataclasses.replace(cfg, seed=args.seed)
            runs.append(train(DataConfig(), model_cfg, cfg, runs_dir=args.runs_dir,
                              run_id=f"bench-{variant}-s{args.seed}", dataset=ds,
                              overwrite=True))  # fmt: skip
    else:
        runs = default_runs(args.runs_dir)
    table = compare({r.label: r.ranking("test") for r in runs},
                    metrics=("ndcg@10", "hr@10", "mrr@10"))  # fmt: skip
    rows = []
    for run, row in zip(runs, table.to_dict(orient="records"), strict=True):
        rows.append({
            "variant": run.label,
            "NDCG@10 [95% CI]": _ci(row, "ndcg@10"),
            "HR@10 [95% CI]": _ci(row, "hr@10"),
            "MRR@10 [95% CI]": _ci(row, "mrr@10"),
            "p vs best (NDCG@10)": "-" if row["ndcg@10_p"] != row["ndcg@10_p"]
            else f"{row['ndcg@10_p']:.3f}",
            "best epoch": run.metrics["best_epoch"],
            "train s": round(run.metrics["train_seconds"], 1),
            "stop": run.metrics["stop_reason"],
        })  # fmt: skip
    write_table("accuracy.md", "Attention variants on MovieLens-100K (test, full ranking)", rows, [
        "protocol: " + runs[0].metrics["protocol"],
        "RecBole 1.2.1 on this machine, same protocol (NDCG@10): "
        + ", ".join(f"{k} {v}" for k, v in ANCHORS.items()),
        f"runs: {', '.join(r.run_id for r in runs)}; command: python benchmarks/accuracy.py"
        + (" --retrain" if args.retrain else ""),
    ])  # fmt: skip


def _ci(row: dict, m: str) -> str:
    return f"{row[m]:.4f} [{row[m + '_ci_low']:.4f}, {row[m + '_ci_high']:.4f}]"


if __name__ == "__main__":
    main()
