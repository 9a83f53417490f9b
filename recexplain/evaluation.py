"""Full-ranking evaluation: ranks -> metrics, bootstrap CIs and paired tests between runs.

Ranking is over ALL items; the items a user saw before the target are excluded (never the
target itself). A rank is kept as (n_greater, n_tied): how many eligible items score strictly
higher than the target and how many score exactly the same. Every metric is its expected value
when ties are broken uniformly at random, so a model that gives every item the same score gets
chance-level metrics, not perfect ones. With one held-out item per user:

    p_k      = [g <= k <= g + t] / (t + 1)            prob. the target lands at 0-based rank k
    HR@K     = sum_{k<K} p_k                           (= Recall@K)
    NDCG@K   = sum_{k<K} p_k / log2(k + 2)             (ideal DCG is 1)
    MRR@K    = sum_{k<K} p_k / (k + 1)
    P@K      = HR@K / K
    F1@K     = 2 P R / (P + R) = HR@K * 2 / (K + 1)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from recexplain.split import Split, Which, eval_inputs, seen_mask

KS: tuple[int, ...] = (5, 10, 20)
METRICS: tuple[str, ...] = ("hr", "ndcg", "mrr", "precision", "recall", "f1")
TOPK = 20  # recommendation lists kept per user (coverage, agreement, popularity)

ScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray | jax.Array]  # (users, inputs) -> [B, N+1]


def metrics_from_ranks(
    n_greater: np.ndarray, n_tied: np.ndarray, ks: tuple[int, ...] = KS
) -> dict[str, np.ndarray]:
    """Per-user ranking metrics (see module docstring).

    Args:
      n_greater: [U] eligible items scored strictly above the target.
      n_tied: [U] other eligible items scored exactly like the target.
      ks: cut-offs.
    Returns:
      {"ndcg@10": float64 [U], ...} for every metric in METRICS and K in ks.
    """
    g = np.asarray(n_greater, np.float64)[:, None]
    t = np.asarray(n_tied, np.float64)[:, None]
    out: dict[str, np.ndarray] = {}
    for k_cut in ks:
        k = np.arange(k_cut, dtype=np.float64)[None, :]
        p = ((g <= k) & (k <= g + t)) / (t + 1.0)  # [U, K]
        hr = p.sum(1)
        out[f"hr@{k_cut}"] = hr
        out[f"ndcg@{k_cut}"] = (p / np.log2(k + 2.0)).sum(1)
        out[f"mrr@{k_cut}"] = (p / (k + 1.0)).sum(1)
        out[f"precision@{k_cut}"] = hr / k_cut
        out[f"recall@{k_cut}"] = hr
        out[f"f1@{k_cut}"] = hr * 2.0 / (k_cut + 1.0)
    return out


def bootstrap_ci(
    values: np.ndarray, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean, resampling users with replacement.

    Args:
      values: [U] per-user metric values.
    Returns:
      (low, high) bounds of the `level` interval.
    """
    values = np.asarray(values, np.float64)
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    step = max(1, 2_000_000 // len(values))  # bounded memory for large user counts
    for start in range(0, n_boot, step):
        n = min(step, n_boot - start)
        idx = rng.integers(0, len(values), size=(n, len(values)))
        means[start : start + n] = values[idx].mean(1)
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(means, [tail, 100.0 - tail])
    return float(lo), float(hi)


def paired_test(
    a: np.ndarray, b: np.ndarray, *, n_perm: int = 10_000, seed: int = 0
) -> dict[str, float]:
    """Two-sided paired sign-flip permutation test of mean(a - b) over the same users.

    Args:
      a, b: [U] per-user values of two runs on the same users in the same order.
    Returns:
      {"mean_diff", "p_value", "ci_low", "ci_high"} (CI: paired bootstrap, 95%).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired test needs the same users: shapes {a.shape} != {b.shape}")
    d = a - b
    observed = abs(d.mean())
    rng = np.random.default_rng(seed)
    exceed, step = 0, max(1, 2_000_000 // max(len(d), 1))
    for start in range(0, n_perm, step):
        n = min(step, n_perm - start)
        signs = rng.integers(0, 2, size=(n, len(d))) * 2.0 - 1.0
        exceed += int((np.abs((signs * d).mean(1)) >= observed - 1e-12).sum())
    lo, hi = bootstrap_ci(d, seed=seed)
    return {
        "mean_diff": float(d.mean()),
        "p_value": (exceed + 1) / (n_perm + 1),
        "ci_low": lo,
        "ci_high": hi,
    }


@partial(jax.jit, static_argnums=3)
def _rank_chunk(scores: jax.Array, excluded: jax.Array, target: jax.Array, k: int):
    """[B, N+1] scores, [B, N+1] bool exclusions, [B] targets -> (greater, tied, top-k ids).

    Top-k slots that only excluded items could fill (tiny catalogs) hold 0.
    """
    scores = scores.astype(jnp.float32)
    t = jnp.take_along_axis(scores, target[:, None], axis=1)  # [B, 1]
    eligible = ~excluded
    greater = ((scores > t) & eligible).sum(1)
    tied = ((scores == t) & eligible).sum(1) - 1  # minus the target itself
    masked = jnp.where(eligible, scores, -jnp.inf)
    values, top = jax.lax.top_k(masked, k)
    return greater, tied, jnp.where(jnp.isfinite(values), top, 0)


@dataclass(frozen=True)
class Ranking:
    """Where each evaluated user's target landed, plus their top-20 list."""

    users: np.ndarray  # int64 [U']
    targets: np.ndarray  # int32 [U']
    n_greater: np.ndarray  # int64 [U']
    n_tied: np.ndarray  # int64 [U']
    topk: np.ndarray  # int32 [U', 20] recommended items, best first (seen items excluded)


def rank_all(
    score_fn: ScoreFn,
    split: Split,
    which: Which,
    max_len: int,
    *,
    batch: int = 256,
    users: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Ranking:
    """Ranks every evaluated user's target against all items, in fixed-size user batches.

    Args:
      score_fn: (users [B], inputs [B, L]) -> scores [B, N + 1]; called with B == batch always
        (the last batch is padded), so a jitted scorer compiles once.
      split, which, max_len: what to rank; users: subset (default all evaluated users).
      progress: called with (done, total) users after each batch.
    Returns:
      Ranking over the users.
    """
    users, inputs, targets = eval_inputs(split, which, max_len, users)
    n = len(users)
    out = ([], [], [])
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        pad = batch - (stop - start)
        u = np.pad(users[start:stop], (0, pad))
        x = np.pad(inputs[start:stop], ((0, pad), (0, 0)))
        y = np.pad(targets[start:stop], (0, pad), constant_values=1)
        mask = seen_mask(split, u, which)
        g, t, top = _rank_chunk(jnp.asarray(score_fn(u, x)), mask, y, min(TOPK, split.n_items))
        for acc, val in zip(out, (g, t, top), strict=True):
            acc.append(np.asarray(val)[: stop - start])
        if progress is not None:
            progress(stop, n)
    g, t, top = (np.concatenate(a) if a else np.zeros((0,), np.int64) for a in out)
    return Ranking(
        users,
        targets,
        g.astype(np.int64),
        t.astype(np.int64),
        top.reshape(n, min(TOPK, split.n_items)).astype(np.int32),
    )


def coverage(topk: np.ndarray, n_items: int, k: int = 10) -> float:
    """Share of the catalog that appears in at least one user's top-k."""
    shown = np.unique(topk[:, :k])
    return float(len(shown[shown > 0]) / n_items)


def mean_popularity(topk: np.ndarray, popularity: np.ndarray, k: int = 10) -> float:
    """Mean training interaction count of the recommended items (popularity bias)."""
    return float(popularity[topk[:, :k]].mean()) if len(topk) else float("nan")


def summarize(
    ranking: Ranking,
    popularity: np.ndarray,
    n_items: int,
    *,
    ks: tuple[int, ...] = KS,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Mean, 95% bootstrap CI per metric, plus coverage@K and popularity@K.

    Returns:
      {"ndcg@10": {"mean": .., "ci_low": .., "ci_high": ..}, ..., "coverage@10": {"mean": ..}}.
    """
    per_user = metrics_from_ranks(ranking.n_greater, ranking.n_tied, ks)
    out: dict[str, dict[str, float]] = {}
    for name, vals in per_user.items():
        lo, hi = bootstrap_ci(vals, n_boot=n_boot, seed=seed)
        out[name] = {"mean": float(vals.mean()), "ci_low": lo, "ci_high": hi}
    for k in ks:
        out[f"coverage@{k}"] = {"mean": coverage(ranking.topk, n_items, k)}
        out[f"popularity@{k}"] = {"mean": mean_popularity(ranking.topk, popularity, k)}
    out["n_users"] = {"mean": float(len(ranking.users))}
    return out


def compare(
    rankings: dict[str, Ranking],
    *,
    metrics: tuple[str, ...] = ("ndcg@10", "hr@10", "mrr@10"),
    reference: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Table of metrics with 95% CIs and paired-test p-values against a reference run.

    Args:
      rankings: run label -> test Ranking; all must cover the same users in the same order.
      metrics: which per-user metrics to report.
      reference: label the others are tested against (default: the best on metrics[0]).
    Returns:
      One row per run: for each metric `<m>`, `<m>_ci_low`, `<m>_ci_high`, `<m>_p` (paired
      sign-flip test vs the reference; NaN on the reference row).
    """
    if not rankings:
        raise ValueError("nothing to compare")
    first = next(iter(rankings.values()))
    for label, r in rankings.items():
        if not np.array_equal(r.users, first.users) or not np.array_equal(r.targets, first.targets):
            raise ValueError(f"run {label!r} was evaluated on different users or targets")
    ks = tuple(sorted({int(m.split("@")[1]) for m in metrics}))
    per_user = {lab: metrics_from_ranks(r.n_greater, r.n_tied, ks) for lab, r in rankings.items()}
    if reference is None:
        reference = max(per_user, key=lambda lab: per_user[lab][metrics[0]].mean())
    rows = []
    for label, values in per_user.items():
        row: dict[str, object] = {"run": label}
        for m in metrics:
            lo, hi = bootstrap_ci(values[m], n_boot=n_boot, seed=seed)
            p = (
                float("nan")
                if label == reference
                else paired_test(values[m], per_user[reference][m], seed=seed)["p_value"]
            )
            row.update({m: values[m].mean(), f"{m}_ci_low": lo, f"{m}_ci_high": hi, f"{m}_p": p})
        rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs["reference"] = reference
    return df
