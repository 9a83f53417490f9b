"""Transition baselines on ML-100K beside the other untrained baselines: test metrics with CIs.

    python benchmarks/transition_baselines.py [--runs-dir runs] [--retrain]
        [--models pop,itemknn,ease,markov,multistep]

Each baseline is tuned on validation NDCG@10 over its default grid (`baselines.GRIDS`), the chosen
setting is evaluated once on test and saved as <runs-dir>/ml-100k-<name>-s0 (reused unless
--retrain, as `leaderboard.baseline_runs` does). No attention variant is trained. Writes
benchmarks/results/transition_baselines.md: test NDCG@10 / HR@10 with 95% per-user bootstrap CIs,
the paired sign-flip p against the best, chosen knobs, validation NDCG@10, the wall time of the
whole tuning (every setting fitted and ranked on validation) and of one fit of the chosen setting,
then the best sequential and the best non-sequential baseline.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from common import write_table

from recexplain import item_baselines, leaderboard, transition
from recexplain.baselines import SEQUENTIAL
from recexplain.config import DataConfig
from recexplain.data import load_dataset
from recexplain.split import leave_last_out

# An independent first-order Markov chain (issue 16), same protocol: test NDCG@10, HR@10.
MARKOV_REFERENCE = (0.0769, 0.1453)
FITS = {"pop": item_baselines.fit_popularity, "itemknn": item_baselines.fit_itemknn,
        "ease": item_baselines.fit_ease, "markov": transition.fit_markov,
        "multistep": transition.fit_multistep}  # fmt: skip


def _say(event: dict) -> None:
    if event.get("stage") in ("training", "reused", "skipped", "done"):
        print(" ".join(f"{k}={v}" for k, v in event.items()), flush=True)


def _fit_seconds(name: str, split, knobs: dict) -> float:
    start = time.perf_counter()
    FITS[name](split, **knobs)
    return time.perf_counter() - start


def _ci(row, m: str) -> str:
    return f"{row[m]:.4f} [{row[m + '_ci_low']:.4f}, {row[m + '_ci_high']:.4f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--retrain", action="store_true", help="refit even if runs are saved")
    parser.add_argument("--models", default=",".join(FITS), help="comma-separated baselines")
    args = parser.parse_args()
    models = tuple(m for m in args.models.split(",") if m)
    data_cfg, load = DataConfig(), os.getloadavg()[0]
    ds = load_dataset(data_cfg)
    split = leave_last_out(ds)
    runs = leaderboard.baseline_runs(data_cfg, ds, args.runs_dir, models=models,
                                     retrain=args.retrain, progress=_say)  # fmt: skip
    df = leaderboard.table({name: [rs[0].ranking("test")] for name, rs in runs.items()})
    rows = []
    for _, row in df.iterrows():
        run = runs[row["model"]][0]
        m = run.metrics
        rows.append({
            "model": row["model"],
            "kind": "sequential" if row["model"] in SEQUENTIAL else "non-sequential",
            "chosen knobs": m["best_knobs"] or "-",
            "settings": len(m["tuning"]),
            "valid NDCG@10": round(m["valid"]["ndcg@10"]["mean"], 4),
            "test NDCG@10 [95% CI]": _ci(row, "ndcg@10"),
            "test HR@10 [95% CI]": _ci(row, "hr@10"),
            "p vs best (NDCG@10)": "-" if row["ndcg@10_p"] != row["ndcg@10_p"]
            else f"{row['ndcg@10_p']:.4f}",
            "tuning s": f"{m['train_seconds']:.2f}",
            "fit s (chosen)": f"{_fit_seconds(row['model'], split, m['best_knobs']):.3f}",
        })  # fmt: skip
    markov = df.set_index("model").loc["markov"] if "markov" in runs else None
    notes = [
        "protocol: " + next(iter(runs.values()))[0].metrics["protocol"]
        + f"; {len(split.eval_users)} test users; p: paired sign-flip test against "
        f"{df.attrs['reference']}",
        leaderboard.baselines_line(df),
        "tuning s: wall time of every setting of the grid (fit + validation ranking); fit s: one "
        f"more fit of the chosen setting. Load average {load:.1f} at the start (shared 2 cores).",
    ]  # fmt: skip
    if markov is not None:
        pairs = zip(("ndcg@10", "hr@10"), MARKOV_REFERENCE, strict=True)
        inside = all(markov[f"{m}_ci_low"] <= ref <= markov[f"{m}_ci_high"] for m, ref in pairs)
        notes.append(f"independent first-order Markov chain (issue 16): NDCG@10 "
                     f"{MARKOV_REFERENCE[0]}, HR@10 {MARKOV_REFERENCE[1]}: "
                     f"{'inside' if inside else 'OUTSIDE'} markov's 95% CIs")  # fmt: skip
    cache = os.environ.get("RECEXPLAIN_CACHE")
    env = f"RECEXPLAIN_CACHE={cache} " if cache else ""
    command = " ".join(["python", "benchmarks/transition_baselines.py", *sys.argv[1:]])
    notes.append(f"command: {env}{command}")
    title = "Transition baselines on MovieLens-100K (test, full ranking)"
    write_table("transition_baselines.md", title, rows, notes)


if __name__ == "__main__":
    main()
