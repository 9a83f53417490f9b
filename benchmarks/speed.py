"""Speed of the core on ML-100K: compile, training throughput, full ranking, recommend + explain.

    python benchmarks/speed.py [--variants additive,multiplicative,hard] [--repeats 5]

Writes benchmarks/results/speed.md. Training throughput is measured on the default preset
(d=64, 2 blocks, L=50) with its loss (`--losses auto`: full softmax for multiplicative and hard,
256 sampled negatives for additive) and with sampled softmax; every figure is the median of
`--repeats` runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import time
from pathlib import Path

import jax
import numpy as np
from common import median_of, percentile, write_table
from flax import nnx

from recexplain.config import DataConfig, preset
from recexplain.data import load_dataset
from recexplain.evaluation import rank_all
from recexplain.explain import explain, recommend
from recexplain.feed import NegativeSampler, batches
from recexplain.models.recommender import AttentionRecommender, make_scorer
from recexplain.runs import Run
from recexplain.split import leave_last_out, training_windows
from recexplain.training import full_softmax, make_optimizer, train_step


def _batch(x, y, sampler, rng):
    if sampler is None:  # full softmax over the catalog
        return {"inputs": x, "targets": y}
    return {"inputs": x, "targets": y, "negatives": sampler(rng), "log_q": sampler.log_q}


def _epoch(model, optimizer, data, sampler, cfg, seed):
    rng = np.random.default_rng(seed)
    out = None
    for step, (x, y) in enumerate(batches(*data, cfg.batch_size, rng)):
        out = train_step(model, optimizer, _batch(x, y, sampler, rng), jax.random.key(step))
    return out["loss"]


def bench_variant(variant: str, ds, split, repeats: int, loss: str) -> dict:
    model_cfg, cfg = preset("default", variant)
    cfg = dataclasses.replace(cfg, loss=loss)
    full = full_softmax(model_cfg, cfg, split.n_items)
    data = training_windows(split, model_cfg.max_len, cfg.window_stride)
    n_targets = int((data[1] > 0).sum())
    model = AttentionRecommender(model_cfg, split.n_items, rngs=nnx.Rngs(0))
    steps = math.ceil(len(data[0]) / cfg.batch_size)
    optimizer = nnx.Optimizer(model, make_optimizer(cfg, steps * 10), wrt=nnx.Param)
    sampler = None if full else NegativeSampler(split, cfg)
    x, y = next(batches(*data, cfg.batch_size, np.random.default_rng(0)))
    batch = _batch(x, y, sampler, np.random.default_rng(0))
    start = time.perf_counter()
    float(train_step(model, optimizer, batch, jax.random.key(0))["loss"])
    compile_s = time.perf_counter() - start
    epoch_s, _ = median_of(lambda: _epoch(model, optimizer, data, sampler, cfg, 1), repeats)
    model.eval()
    scorer = make_scorer(model)
    rank_all(scorer, split, "test", model_cfg.max_len, batch=cfg.eval_batch)  # compile
    eval_s, _ = median_of(
        lambda: rank_all(scorer, split, "test", model_cfg.max_len, batch=cfg.eval_batch), repeats
    )
    run = Run("bench", Path("."), "attention", DataConfig(), model_cfg, cfg, model, ds.items,
              ds.user_ids, ds.fingerprint)  # fmt: skip
    runs = [_latency(run, split) for _ in range(repeats)]  # p99 is noisy: several passes
    p50 = statistics.median(r[0] for r in runs)
    p99s = [r[1] for r in runs]
    p99 = statistics.median(p99s)
    return {
        "variant": variant,
        "loss": "full softmax" if full else f"sampled ({cfg.n_negatives})",
        "compile s": compile_s,
        "epoch s": epoch_s,
        "train seq/s": len(data[0]) / epoch_s,
        "targets/s": n_targets / epoch_s,
        "full-ranking eval s (943 users)": eval_s,
        "rec+explain p50 ms": p50 * 1e3,
        "rec+explain p99 ms": p99 * 1e3,
        "p99 min-max ms": f"{min(p99s) * 1e3:.1f}-{max(p99s) * 1e3:.1f}",
    }


def _latency(run: Run, split, calls: int = 200) -> tuple[float, float]:
    users = split.eval_users
    histories = [split.history(int(u), "test") for u in users]

    def one(i: int) -> None:
        recs = recommend(run, histories[i % len(histories)], 10)
        explain(run, histories[i % len(histories)], int(recs["item"][0]))

    for i in range(5):  # warm: compile once per shape
        one(i)
    times = []
    for i in range(calls):
        start = time.perf_counter()
        one(i)
        times.append(time.perf_counter() - start)
    return percentile(times, 50), percentile(times, 99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variants", default="additive,multiplicative,hard")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--losses", default="auto,sampled", help="auto = the preset's loss")
    args = parser.parse_args()
    ds = load_dataset(DataConfig())
    split = leave_last_out(ds)
    rows = [bench_variant(v, ds, split, args.repeats, loss)
            for v in args.variants.split(",") for loss in args.losses.split(",")
            if v != "additive" or loss == "auto"]  # additive: auto = sampled  # fmt: skip
    windows = len(training_windows(split, 50)[0])
    write_table("speed.md", "Core speed on MovieLens-100K (CPU)", rows, [
        f"medians of {args.repeats} runs; one epoch = {windows} windows of 50 items, "
        "batch 128, d=64, 2 blocks, 2 heads; loss: the preset's (full softmax for "
        "multiplicative and hard, 256 sampled negatives for additive) and sampled for comparison",
        "compile s = first train step (trace + XLA compile + one step)",
        "rec+explain = top-10 over all items with readout weights + explain() of the top item, "
        f"one user, warm; p50 and p99 of 200 calls, medians over {args.repeats} passes",
        "command: python benchmarks/speed.py",
    ])  # fmt: skip


if __name__ == "__main__":
    main()
