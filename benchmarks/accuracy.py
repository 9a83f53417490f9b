"""Accuracy of the three variants on ML-100K beside the baselines: full ranking, test CIs.

    python benchmarks/accuracy.py [--runs-dir runs] [--retrain] [--seed 0]
        [--baselines pop,itemknn,ease,markov,multistep] [--dataset ml-100k] [--preset default]

Trains each variant with the preset (or reuses runs/<dataset>-<variant> unless --retrain), reuses
or fits the baselines (`leaderboard.baseline_runs`: runs/<dataset>-<name>-s0, tuned on
validation; the default ones fit in seconds), then writes benchmarks/results/accuracy.md (for
another --dataset: accuracy-<dataset>.md) with test NDCG/HR/MRR@10 and their 95% bootstrap CIs,
the paired test against the best model and against the best sequential baseline (the floor a
variant must clear: "what usually comes after the last items"), training time and best epoch,
and names the best sequential and the best non-sequential baseline.
`--dataset synthetic --preset tiny --runs-dir /tmp/x` is a smoke run of about 30 s.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from common import write_table

from recexplain import leaderboard
from recexplain.baselines import SEQUENTIAL
from recexplain.config import ATTENTION_VARIANTS, DataConfig, preset
from recexplain.data import load_dataset
from recexplain.evaluation import compare
from recexplain.quickstart import default_runs
from recexplain.training import train

ANCHORS = {"Pop": 0.0449, "ItemKNN": 0.0629, "BPR-MF": 0.0661, "SASRec": 0.0670}
METRICS = ("ndcg@10", "hr@10", "mrr@10")


def _variants(args, data_cfg, ds) -> list:
    if not args.retrain:
        return default_runs(args.runs_dir, data_cfg=data_cfg, preset_name=args.preset)
    runs = []
    for variant in ATTENTION_VARIANTS:
        model_cfg, cfg = preset(args.preset, variant)
        cfg = dataclasses.replace(cfg, seed=args.seed)
        runs.append(train(data_cfg, model_cfg, cfg, runs_dir=args.runs_dir,
                          run_id=f"bench-{variant}-s{args.seed}", dataset=ds,
                          overwrite=True))  # fmt: skip
    return runs


def _kind(run) -> str:
    if run.model_type == "attention":
        return "attention"
    return ("sequential" if run.model_type in SEQUENTIAL else "non-sequential") + " baseline"


def _p(value: float) -> str:
    return "-" if value != value else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--retrain", action="store_true", help="train fresh variants (timed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baselines", default="pop,itemknn,ease,markov,multistep")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--preset", default="default", help="attention preset and baseline grid")
    args = parser.parse_args()
    data_cfg = DataConfig(dataset=args.dataset)
    ds = load_dataset(data_cfg)
    runs = _variants(args, data_cfg, ds)
    names = tuple(b for b in args.baselines.split(",") if b)
    found = leaderboard.baseline_runs(data_cfg, ds, args.runs_dir, models=names,
                                      preset_name=args.preset)  # fmt: skip
    runs += [rs[0] for rs in found.values()]
    rankings = {r.label: r.ranking("test") for r in runs}
    table = compare(rankings, metrics=METRICS)
    types = {r.label: r.model_type for r in runs}
    floor = leaderboard.best_baselines(table, label="run", model_types=types)["sequential"]
    vs_floor = (compare(rankings, metrics=METRICS[:1], reference=floor["run"])
                if floor is not None else None)  # fmt: skip
    rows = []
    for i, (run, row) in enumerate(zip(runs, table.to_dict(orient="records"), strict=True)):
        trained = run.model_type == "attention" or run.metrics.get("best_epoch", 0) > 0
        rows.append({
            "model": run.label,
            "kind": _kind(run),
            **{f"{m.upper()} [95% CI]": _ci(row, m) for m in METRICS},
            "p vs best (NDCG@10)": _p(row["ndcg@10_p"]),
            "p vs best sequential baseline": "-" if vs_floor is None
            else _p(vs_floor["ndcg@10_p"].iloc[i]),
            "best epoch": run.metrics["best_epoch"] if trained else "-",
            "train s": round(run.metrics["train_seconds"], 1),
            "stop": run.metrics["stop_reason"],
        })  # fmt: skip
    ml100k = args.dataset == "ml-100k"
    notes = [
        "protocol: " + runs[0].metrics["protocol"],
        leaderboard.baselines_line(table, label="run", model_types=types),
        *(["RecBole 1.2.1 on this machine, same protocol (NDCG@10): "
           + ", ".join(f"{k} {v}" for k, v in ANCHORS.items())] if ml100k else []),
        f"runs: {', '.join(r.run_id for r in runs)}; command: "
        + " ".join(["python", "benchmarks/accuracy.py", *sys.argv[1:]]),
    ]  # fmt: skip
    title = f"Attention variants and baselines on {ds.name} (test, full ranking)"
    write_table("accuracy.md" if ml100k else f"accuracy-{ds.name}.md", title, rows, notes)


def _ci(row: dict, m: str) -> str:
    return f"{row[m]:.4f} [{row[m + '_ci_low']:.4f}, {row[m + '_ci_high']:.4f}]"


if __name__ == "__main__":
    main()
