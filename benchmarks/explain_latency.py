"""Warm latency of the attributions for one (user, item): all five methods in one call, and each.

    .venv/bin/python benchmarks/explain_latency.py [--runs-dir runs] [--prefix ml-100k]

Uses the runs `<prefix>-<variant>` (the default ML-100K runs; `--prefix planted` for the
synthetic ones), or with `--untrained` freshly initialised models of the default preset on
ML-100K (the cost does not depend on the weights). For each variant: compile once (not timed),
then time `explain_all` (every method, one jitted call) and `explain` per method for `--users`
test users, `--repeats` times each (IG at its default 64 steps, and at 32); reports medians
and the 90th percentile.
Target: all methods < 200 ms warm on CPU. Table: benchmarks/results/explain_latency_*.md/.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from recexplain.attributions import METHODS, Explainer
from recexplain.config import ATTENTION_VARIANTS, DataConfig, preset
from recexplain.data import load_dataset
from recexplain.explain import explain, explain_all
from recexplain.models.recommender import AttentionRecommender
from recexplain.runs import Run, load_run, load_split
from recexplain.split import leave_last_out

RESULTS = Path(__file__).parent / "results"


def _times(fn, cases, repeats: int) -> np.ndarray:
    for history, item in cases:  # compile and warm up
        fn(history, item)
    out = []
    for _ in range(repeats):
        for history, item in cases:
            start = time.perf_counter()
            fn(history, item)
            out.append(time.perf_counter() - start)
    return np.asarray(out) * 1000.0


def untrained_run(variant: str, ds) -> Run:
    """A default-preset model with random weights, wrapped as a run over the data set `ds`."""
    model_cfg, train_cfg = preset("default", variant)
    model = AttentionRecommender(model_cfg, ds.n_items, rngs=nnx.Rngs(0))
    model.eval()
    return Run(run_id=f"untrained-{variant}", path=Path("."), model_type="attention",
               data_cfg=DataConfig(), model_cfg=model_cfg, train_cfg=train_cfg, model=model,
               items=ds.items, user_ids=ds.user_ids, fingerprint=ds.fingerprint)  # fmt: skip


def bench_variant(run, split, n_users: int, repeats: int) -> dict:
    users = np.random.default_rng(0).choice(split.eval_users, size=n_users, replace=False)
    ex = Explainer.of(run.model)
    cases = [(split.history(int(u), "test"),) for u in users]
    cases = [(h, ex.top_item(h)) for (h,) in cases]
    row = {"variant": run.label, "run_id": run.run_id, "max_len": run.max_len,
           "n_items": run.n_items, "users": n_users, "repeats": repeats}  # fmt: skip
    all_ms = _times(lambda h, i: explain_all(run, h, i), cases, repeats)
    row["all_methods_median_ms"] = float(np.median(all_ms))
    row["all_methods_p90_ms"] = float(np.percentile(all_ms, 90))
    ig32_ms = _times(lambda h, i: explain_all(run, h, i, steps=32), cases, repeats)
    row["all_methods_ig32_median_ms"] = float(np.median(ig32_ms))
    for m in METHODS:
        ms = _times(lambda h, i, m=m: explain(run, h, i, m), cases, repeats)
        row[f"{m}_median_ms"] = float(np.median(ms))
    row["target_met"] = row["all_methods_median_ms"] < 200.0
    print(json.dumps(row), flush=True)
    return row


def _markdown(rows: list[dict], env: str) -> str:
    head = ["variant", "L", "items", "all 5 methods: median (p90) ms", "all, IG 32 steps",
            *METHODS, "< 200 ms"]  # fmt: skip
    out = ["# Attribution latency, one (user, item), warm", "", env, "",
           "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]  # fmt: skip
    for r in rows:
        cells = [r["variant"], str(r["max_len"]), str(r["n_items"]),
                 f"{r['all_methods_median_ms']:.1f} ({r['all_methods_p90_ms']:.1f})",
                 f"{r['all_methods_ig32_median_ms']:.1f}",
                 *[f"{r[f'{m}_median_ms']:.1f}" for m in METHODS],
                 "met" if r["target_met"] else "MISSED"]  # fmt: skip
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--prefix", default="ml-100k")
    p.add_argument("--users", type=int, default=5)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--untrained", action="store_true", help="random default-preset models")
    a = p.parse_args()
    rows = []
    for v in ATTENTION_VARIANTS:
        if a.untrained:
            ds = load_dataset(DataConfig())
            run, split = untrained_run(v, ds), leave_last_out(ds)
        else:
            run = load_run(f"{a.prefix}-{v}", a.runs_dir)
            split = load_split(run)[1]
        rows.append(bench_variant(run, split, a.users, a.repeats))
    prefix = "untrained-default" if a.untrained else a.prefix
    env = (f"{platform.machine()}, {os.cpu_count()} CPUs (shared with other jobs), jax "
           f"{jax.__version__} on {jax.devices()[0].platform}, load average "
           f"{os.getloadavg()[0]:.1f}; {a.users} users x {a.repeats} repeats per cell; "
           f"runs {prefix}-*")  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"explain_latency_{prefix}"
    stem.with_suffix(".json").write_text(json.dumps({"rows": rows, "env": env}, indent=2))
    stem.with_suffix(".md").write_text(_markdown(rows, env))
    print(_markdown(rows, env))


if __name__ == "__main__":
    main()
