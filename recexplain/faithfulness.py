"""Faithfulness of attributions: deletion and insertion curves, AOPC, agreement, planted causes.

For a user's test history and an item (by default the user's top-1 recommendation), each method
orders the history items in the model's window by attribution (highest first; ties broken at
random). Deleting the top-k items (from the whole history, as if never seen: older items move
into the window) should lower the item's score and rank more than deleting k random items
(mean of `n_random` seeded random orders). With base score f and f_k after k deletions:

    score drop(k) = f - f_k,        AOPC = 1 / (K + 1) * sum_{k=0..K} (f - f_k)   (Samek 2017)
    rank drop @3  = rank_3 - rank_0 (0-based ranks among the user's unseen items)
    ratio @3      = mean_users drop(3) / mean_users random drop(3); +inf when random deletion
                    does not lower the score on average but the method's deletion does

The insertion curve starts from an empty history and adds the top-k items (in their original
order). Agreement is the mean over users of Spearman's rho and Kendall's tau-b between two
methods' attributions. 95% CIs are percentile bootstraps over users.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from recexplain.attributions import METHODS, Explainer, excluded_mask, window
from recexplain.runs import Run, RunError, load_split

REPORT_JSON, REPORT_MD = "faithfulness.json", "faithfulness.md"


# -- orders and perturbed histories ------------------------------------------------------------
def attribution_order(weights: np.ndarray, valid: np.ndarray, rng: np.random.Generator):
    """Window positions of the valid items, highest attribution first, ties broken at random."""
    pos = np.flatnonzero(valid)
    return pos[np.lexsort((rng.random(len(pos)), -weights[pos]))]


def deletion_windows(history: np.ndarray, orders: np.ndarray, max_len: int) -> np.ndarray:
    """Windows after deleting the first k items of each order, k = 1..K.

    Args:
      history: [n] whole history, oldest first; orders: [O, K] window positions (of
      `window(history, max_len)`); max_len: L.
    Returns:
      int32 [O, K, L]: the item leaves the whole history, so older items move into the window.
    """
    offset = len(history) - max_len  # window position p is history[offset + p]
    out = np.empty(orders.shape + (max_len,), np.int32)
    for o, order in enumerate(orders):
        for k in range(orders.shape[1]):
            out[o, k] = window(np.delete(history, offset + order[: k + 1]), max_len)
    return out


def insertion_windows(seq: np.ndarray, orders: np.ndarray) -> np.ndarray:
    """Windows holding only the first k items of each order (in time order), k = 1..K.

    Args:
      seq: [L] the window; orders: [O, K] window positions.
    Returns:
      int32 [O, K, L] left-padded windows.
    """
    length = len(seq)
    out = np.zeros(orders.shape + (length,), np.int32)
    for o, order in enumerate(orders):
        for k in range(orders.shape[1]):
            kept = seq[np.sort(order[: k + 1])]
            out[o, k, length - len(kept) :] = kept
    return out


# -- one user ------------------------------------------------------------------------------------
def user_curves(
    ex: Explainer, history: np.ndarray, item: int, weights: dict[str, np.ndarray], k_max: int,
    n_random: int, rng: np.random.Generator,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Deletion and insertion curves of one user for each method and for random orders.

    Args:
      ex: the model; history: [n]; item: the explained item; weights: {method: [L]} over
      `window(history)`; k_max: K; n_random: random orders; rng: the user's generator.
    Returns:
      {"score", "rank": base values []; "del_score", "del_rank", "ins_score": [M + 1, K + 1]
      (rows: methods in order, then random averaged over orders; column k = k items removed or
      inserted, NaN where k exceeds the window)}.
    """
    seq = window(history, ex.max_len)
    valid = seq > 0
    n = int(valid.sum())
    k = min(k_max, n)
    rand = np.stack([rng.permutation(np.flatnonzero(valid))[:k] for _ in range(n_random)])
    orders = np.stack([attribution_order(w, valid, rng)[:k] for w in weights.values()] + [*rand])
    excluded = excluded_mask(ex.n_items, history, item)
    dels = deletion_windows(history, orders, ex.max_len).reshape(-1, ex.max_len)
    scores, ranks = ex.score_and_rank(np.concatenate([seq[None], dels]), item, excluded)
    ins = insertion_windows(seq, orders).reshape(-1, ex.max_len)
    ins_scores = ex.score(np.concatenate([np.zeros((1, ex.max_len), np.int32), ins]), item)
    n_m = len(weights)

    def curves(base: float, rows: np.ndarray) -> np.ndarray:  # [O * k] -> [M + 1, K + 1]
        rows = rows.reshape(len(orders), k).astype(np.float64)
        rows = np.concatenate([rows[:n_m], rows[n_m:].mean(0, keepdims=True)])
        out = np.full((n_m + 1, k_max + 1), np.nan)
        out[:, 0], out[:, 1 : k + 1] = base, rows
        return out

    return {
        "score": scores[0],
        "rank": float(ranks[0]),
        "del_score": curves(scores[0], scores[1:]),
        "del_rank": curves(float(ranks[0]), ranks[1:]),
        "ins_score": curves(ins_scores[0], ins_scores[1:]),
    }


# -- rank correlations ------------------------------------------------------------------------
def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (as scipy.stats.rankdata)."""
    x = np.asarray(x, np.float64)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho with average ranks for ties; NaN when either side is constant."""
    rx, ry = rankdata(x), rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    den = np.sqrt((rx**2).sum() * (ry**2).sum())
    return float((rx * ry).sum() / den) if den > 0 else float("nan")


def kendall(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b (ties corrected); NaN when either side is constant."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    dx = np.sign(x[:, None] - x[None, :])
    dy = np.sign(y[:, None] - y[None, :])
    den = np.sqrt((dx**2).sum() * (dy**2).sum())
    return float((dx * dy).sum() / den) if den > 0 else float("nan")


def agreement(per_user: list[dict[str, np.ndarray]], seqs: list[np.ndarray]) -> dict[str, Any]:
    """Mean over users of Spearman and Kendall between every pair of methods.

    Args:
      per_user: {method: weights [L]} per user; seqs: the users' windows [L] (0 = padding).
    Returns:
      {"spearman": {m1: {m2: float | None}}, "kendall": {...}} (None: undefined for all users).
    """
    methods = list(per_user[0]) if per_user else []
    out: dict[str, Any] = {}
    for name, fn in (("spearman", spearman), ("kendall", kendall)):
        table: dict[str, dict[str, float | None]] = {m: {} for m in methods}
        for i, a in enumerate(methods):
            for b in methods[i:]:
                vals = [fn(w[a][s > 0], w[b][s > 0]) for w, s in zip(per_user, seqs, strict=True)]
                vals = [v for v in vals if v == v]
                table[a][b] = table[b][a] = float(np.mean(vals)) if vals else None
        out[name] = table
    return out


# -- the report --------------------------------------------------------------------------------
def ratio(drop, random_drop):
    """drop / random_drop; +inf when random deletion does not lower the score (random_drop <= 0)
    but the method's deletion does, NaN when neither does (works on arrays and floats)."""
    drop, random_drop = np.asarray(drop, np.float64), np.asarray(random_drop, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(random_drop > 0, drop / np.where(random_drop > 0, random_drop, 1.0),
                       np.where(drop > 0, np.inf, np.nan))  # fmt: skip
    return out


def _bootstrap(values: dict[str, np.ndarray], n_boot: int, seed: int) -> dict[str, list[float]]:
    """Percentile 95% CIs of means over users ([U] arrays; NaNs ignored); "ratio_at_3" is the
    ratio of the means of "score_drop_at_3" and "random_score_drop_at_3"."""
    n = len(next(iter(values.values())))
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    means = {name: np.nanmean(v[idx], axis=1) for name, v in values.items()}
    means["ratio_at_3"] = ratio(means["score_drop_at_3"], means["random_score_drop_at_3"])
    # ratios may be +inf: take order statistics there instead of interpolating (inf - inf)
    how = {name: "nearest" if name == "ratio_at_3" else "linear" for name in means}
    return {name: [float(np.nanpercentile(m, q, method=how[name])) for q in (2.5, 97.5)]
            for name, m in means.items()}  # fmt: skip


def _mean(x: np.ndarray) -> list[float | None]:
    m = np.nanmean(x, axis=0) if np.isfinite(x).any() else np.full(x.shape[1:], np.nan)
    return [float(v) if v == v else None for v in np.atleast_1d(m)]


def _method_summary(curves: dict[str, np.ndarray], i: int, seed: int) -> dict[str, Any]:
    """Aggregates row i (a method) of the per-user curves [U, M + 1, K + 1] against random."""
    base = curves["del_score"][:, i, :1]
    drop, rand = base - curves["del_score"][:, i], base - curves["del_score"][:, -1]
    rank, rand_rank = curves["del_rank"][:, i], curves["del_rank"][:, -1]
    ins, rand_ins = curves["ins_score"][:, i], curves["ins_score"][:, -1]
    per_user = {
        "aopc": np.nanmean(drop, axis=1),
        "random_aopc": np.nanmean(rand, axis=1),
        "score_drop_at_3": drop[:, 3],
        "random_score_drop_at_3": rand[:, 3],
        "rank_drop_at_3": rank[:, 3] - rank[:, 0],
        "random_rank_drop_at_3": rand_rank[:, 3] - rand_rank[:, 0],
        "insertion_gain": np.nanmean(ins - ins[:, :1], axis=1),
    }
    ci = _bootstrap(per_user, 1000, seed)
    summary = {name: float(np.nanmean(v)) for name, v in per_user.items()}
    summary["ratio_at_3"] = float(ratio(summary["score_drop_at_3"],
                                        summary["random_score_drop_at_3"]))  # fmt: skip
    k = list(range(drop.shape[1]))
    return {
        **summary,
        "deletion": {"k": k, "score_drop": _mean(drop), "random_score_drop": _mean(rand),
                     "rank": _mean(rank), "random_rank": _mean(rand_rank)},
        "insertion": {"k": k, "score": _mean(ins), "random_score": _mean(rand_ins)},
        "ci": ci,
    }  # fmt: skip


def _collect(ex: Explainer, split: Any, users: int, seed: int, k_max: int, n_random: int,
             methods: tuple[str, ...], target: str) -> list[dict[str, Any]]:  # fmt: skip
    """Attributions (`Explainer.attribute` output) plus "curves" for a seeded user sample."""
    pool = split.eval_users
    sample = np.random.default_rng(seed).choice(pool, size=min(users, len(pool)), replace=False)
    rows = []
    for u in np.sort(sample):
        history = split.history(int(u), "test")
        item = int(split.test[u]) if target == "test" else ex.top_item(history)
        out = ex.attribute(history, item, methods)
        rng = np.random.default_rng([seed, int(u)])
        out["curves"] = user_curves(ex, history, item, out["weights"], k_max, n_random, rng)
        rows.append(out)
    return rows


def faithfulness_report(
    run: Run, dataset: Any = None, *, users: int = 200, seed: int = 0, k_max: int = 10,
    n_random: int = 10, methods: tuple[str, ...] = METHODS, target: str = "top1",
) -> dict[str, Any]:  # fmt: skip
    """Faithfulness of each attribution method for one run, over a seeded sample of test users.

    Args:
      run: a loaded attention run.
      dataset: the data set the run was trained on (default: loaded from the run's config);
        its fingerprint must match the run's, else RunError.
      users: users sampled from the test users; seed: fixes users, random orders, tie-breaks
        and bootstrap; k_max: K; n_random: random orders per user (>= 10 recommended);
      methods: subset of METHODS; target: "top1" (the user's top-1 recommendation) or "test"
        (the held-out test item).
    Returns:
      JSON-ready dict: run_id, variant, fingerprint, n_users, seed, k_max, n_random, target,
      methods {m: {aopc, ratio_at_3, rank_drop_at_3, deletion{...}, insertion{...}, ci{...},
      <diagnostic>_median}}, agreement {"spearman", "kendall"}, best_method (highest AOPC).
    """
    if run.model_type != "attention":
        raise RunError(f"run {run.run_id} is a {run.model_type} baseline: nothing to explain")
    if target not in ("top1", "test") or k_max < 3 or n_random < 1 or users < 1:
        raise ValueError(f"need target 'top1' or 'test', k_max >= 3, n_random >= 1, users >= 1;"
                         f" got {target!r}, {k_max}, {n_random}, {users}")  # fmt: skip
    start = time.perf_counter()
    _, split = load_split(run, dataset)  # refuses a fingerprint mismatch
    rows = _collect(Explainer.of(run.model), split, users, seed, k_max, n_random, methods, target)
    stacked = {name: np.stack([r["curves"][name] for r in rows]) for name in rows[0]["curves"]}
    summary = {m: _method_summary(stacked, i, seed) for i, m in enumerate(rows[0]["weights"])}
    for m, out in summary.items():  # e.g. integrated gradients' completeness_error_median
        for key in rows[0]["extra"][m]:
            out[f"{key}_median"] = float(np.median([r["extra"][m][key] for r in rows]))
    return {
        "run_id": run.run_id, "variant": run.label, "fingerprint": run.fingerprint,
        "dataset": run.data_cfg.dataset, "n_users": len(rows), "seed": seed, "k_max": k_max,
        "n_random": n_random, "target": target, "methods": summary,
        "agreement": agreement([r["weights"] for r in rows], [r["seq"] for r in rows]),
        "best_method": max(summary, key=lambda m: summary[m]["aopc"]),
        "seconds": time.perf_counter() - start,
    }  # fmt: skip


def report_table(report: dict[str, Any]) -> str:
    """Markdown table of a report (the most faithful method is marked with *)."""
    ref = "occlusion" if "occlusion" in report["methods"] else report["best_method"]
    lines = [
        f"# Faithfulness: {report['run_id']} ({report['variant']})",
        "",
        f"{report['n_users']} test users (seed {report['seed']}); item: {report['target']}; "
        f"top-k attributed history items deleted vs {report['n_random']} random orders; "
        "95% bootstrap CIs over users. AOPC over k = 0..{}.".format(report["k_max"]),
        "",
        f"| method | AOPC | score drop @3 | random drop @3 | ratio @3 | rank drop @3 | "
        f"insertion gain | Spearman vs {ref} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rho = report["agreement"]["spearman"]
    for m, r in report["methods"].items():
        ci = r["ci"]
        star = " *" if m == report["best_method"] else ""
        agree = rho.get(m, {}).get(ref)
        lines.append(
            f"| {m}{star} | {r['aopc']:.4f} [{ci['aopc'][0]:.4f}, {ci['aopc'][1]:.4f}] | "
            f"{r['score_drop_at_3']:.4f} | {r['random_score_drop_at_3']:.4f} | "
            f"{r['ratio_at_3']:.2f} [{ci['ratio_at_3'][0]:.2f}, {ci['ratio_at_3'][1]:.2f}] | "
            f"{r['rank_drop_at_3']:.1f} [{ci['rank_drop_at_3'][0]:.1f}, "
            f"{ci['rank_drop_at_3'][1]:.1f}] | {r['insertion_gain']:.4f} | "
            f"{'-' if agree is None else f'{agree:.2f}'} |"
        )
    return "\n".join(lines) + "\n"


def _clean(obj: Any) -> Any:
    """NaN/inf -> None and numpy scalars -> Python, so the JSON is strict."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(run: Run, report: dict[str, Any]) -> tuple[Path, Path]:
    """Writes faithfulness.json and faithfulness.md into the run folder, each atomically.

    The run's manifest does not list these files, so the run still verifies; a report for
    another run or other data is refused (RunError).
    """
    if report.get("fingerprint") != run.fingerprint or report.get("run_id") != run.run_id:
        raise RunError(f"report is for {report.get('run_id')!r}, not run {run.run_id!r}")
    listed = set(run.manifest.get("files", {}))
    if listed & {REPORT_JSON, REPORT_MD}:
        raise RunError(f"run {run.run_id}: the manifest lists a faithfulness file; not touching it")
    paths = run.path / REPORT_JSON, run.path / REPORT_MD
    _atomic_write(paths[0], json.dumps(_clean(report), indent=2, sort_keys=True, allow_nan=False))
    _atomic_write(paths[1], report_table(report))
    return paths


def read_report(run: Run) -> dict[str, Any] | None:
    """The run's saved faithfulness report, or None; RunError if it belongs to other data."""
    path = run.path / REPORT_JSON
    if not path.is_file():
        return None
    report = json.loads(path.read_text())
    if report.get("fingerprint") != run.fingerprint:
        raise RunError(f"{path} was computed on other data (fingerprint differs)")
    return report


# -- planted causes ----------------------------------------------------------------------------
def planted_recovery(
    run: Run, dataset: Any, planted: Any, *, users: int | None = None, seed: int = 0,
    methods: tuple[str, ...] = METHODS,
) -> dict[str, Any]:  # fmt: skip
    """How often each method puts the planted cause of the test item first (and in its top 3).

    Args:
      run: an attention run trained on `dataset`; dataset, planted: `data.synthetic_planted()`
        (each user's last event is the test item, planted[...].cause_item its cause).
      users: sample this many test users (default all); seed: the sample.
    Returns:
      {"variant", "n_users", "methods": {m: {"top1", "top3"}}, "selected" (share of users whose
      readout puts weight >= 0.5 on the cause: for the hard variant, the cause is the selected
      key), "cause_weight" (mean readout weight on the cause)}. Ties count against the cause.
    """
    _, split = load_split(run, dataset)
    last = planted.sort_values(["user", "pos"]).groupby("user").tail(1).set_index("user")
    pool = np.intersect1d(split.eval_users, last.index.to_numpy())
    if users is not None and users < len(pool):
        pool = np.sort(np.random.default_rng(seed).choice(pool, size=users, replace=False))
    ex = Explainer.of(run.model)
    hits = {m: np.zeros((len(pool), 2), bool) for m in methods}
    cause_w = np.zeros(len(pool))
    for j, u in enumerate(pool):
        row = last.loc[u]
        if int(row["effect_item"]) != int(split.test[u]):
            raise ValueError(f"user {u}: the planted effect is not the test item")
        out = ex.attribute(split.history(int(u), "test"), int(split.test[u]), methods)
        at = out["seq"] == int(row["cause_item"])
        for m in methods:
            w = out["weights"][m]
            ahead = int(((w >= w[at].max()) & (out["seq"] > 0) & ~at).sum()) if at.any() else 99
            hits[m][j] = ahead == 0, ahead < 3
        if "attention" in methods:
            cause_w[j] = out["weights"]["attention"][at].sum()
    return {
        "run_id": run.run_id,
        "variant": run.label,
        "n_users": len(pool),
        "methods": {
            m: {"top1": float(h[:, 0].mean()), "top3": float(h[:, 1].mean())}
            for m, h in hits.items()
        },  # fmt: skip
        "selected": float((cause_w >= 0.5).mean()) if "attention" in methods else None,
        "cause_weight": float(cause_w.mean()) if "attention" in methods else None,
    }
