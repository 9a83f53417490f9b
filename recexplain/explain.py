"""Recommendations with their explanations: per-history-item attributions for (user, item).

Five methods (see `recexplain.attributions`): the readout attention, attention rollout through
the self-attention blocks, gradient x input, integrated gradients and occlusion. Items older
than the model's window (max_len) are outside what the model sees and get no weight; occlusion
removes an item from the whole history, so an older item moves into the window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from flax import nnx

from recexplain.attributions import METHODS, Explainer, window
from recexplain.runs import Run

__all__ = ["METHODS", "Attribution", "explain", "explain_all", "recommend", "sentence",
           "to_json", "window"]  # fmt: skip


@dataclass(frozen=True)
class Attribution:
    """Why `item` scored as it did for one history: a weight per history item."""

    history: np.ndarray  # int32 [n] internal item ids, oldest first (the model's window)
    weights: np.ndarray  # float32 [n] attribution per history item
    method: str  # one of METHODS
    variant: str  # run label, e.g. "additive"
    item: int  # internal id of the explained item
    score: float  # the model's score for the item
    rank: int | None = None  # 0-based rank among unseen items, when known
    context: float = 0.0  # attention on the sequence-context key (not on one history item)
    extra: dict[str, float] = field(default_factory=dict)  # method diagnostics (IG completeness)

    def frame(self, items: pd.DataFrame | None = None) -> pd.DataFrame:
        """Long-form table: position (0 = oldest), item, title, weight, share of |weight|."""
        total = np.abs(self.weights).sum()
        df = pd.DataFrame(
            {
                "position": np.arange(len(self.history)),
                "item": self.history,
                "weight": self.weights.astype(np.float64),
                "share": np.abs(self.weights) / total if total > 0 else 0.0,
            }
        )
        if items is not None:
            df["title"] = items["title"].reindex(self.history).fillna("").to_numpy()
        return df


@partial(jax.jit, static_argnums=(0, 4))
def _recommend(graphdef, state, seq, excluded, k):
    model = nnx.merge(graphdef, state)
    scores = jnp.where(excluded, -jnp.inf, model.score_all(seq))  # [1, N + 1]
    top_scores, top = jax.lax.top_k(scores, k)
    _, aux = model(seq, top[0])
    return top[0], top_scores[0], aux["readout"][0], scores[0]


def _excluded(n_items: int, history: np.ndarray, exclude: np.ndarray | None) -> np.ndarray:
    mask = np.zeros((1, n_items + 1), np.bool_)
    mask[0, 0] = True
    mask[0, history] = True
    if exclude is not None:
        mask[0, np.asarray(exclude, np.int64)] = True
    return mask


def recommend(
    run: Run, history: np.ndarray, k: int = 10, *, exclude: np.ndarray | None = None
) -> pd.DataFrame:
    """Top-k unseen items for a history, each with its attention weights over the history.

    Args:
      run: a loaded attention run.
      history: int internal item ids, oldest first (the whole history; seen items are excluded).
      k: list length (>= 1; at most the catalog size); exclude: more item ids to leave out.
    Returns:
      DataFrame, one row per recommendation: rank, item, item_id, title, score, weights
      (float array over `window(history)`), top_history (list of (item, weight) best first).
    """
    if run.model_type != "attention":
        raise ValueError(f"run {run.run_id} is a {run.model_type} baseline: no attention to show")
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    history = np.asarray(history, np.int32)
    if len(history) == 0:
        raise ValueError("history is empty: pick at least one item")
    excluded = _excluded(run.n_items, history, exclude)
    k = min(int(k), int((~excluded).sum()))  # fewer unseen items than k: every one, ranked
    if k == 0:
        raise ValueError("every item is in the history or excluded: nothing left to recommend")
    graphdef, state = nnx.split(run.model)
    seq = window(history, run.max_len)
    top, scores, weights, _ = _recommend(graphdef, state, seq[None], excluded, k)
    top, scores, weights = np.asarray(top), np.asarray(scores), np.asarray(weights)
    rows = []
    for rank, (item, score, w) in enumerate(zip(top, scores, weights, strict=True)):
        order = np.argsort(-w, kind="stable")
        best = [(int(seq[i]), float(w[i])) for i in order[:3] if seq[i] > 0 and w[i] > 0]
        rows.append(_row(run, rank, int(item), float(score), w, best))
    return pd.DataFrame(rows)


def _row(run: Run, rank: int, item: int, score: float, w: np.ndarray, best: list) -> dict:
    meta = run.items.loc[item]
    return {
        "rank": rank + 1,
        "item": item,
        "item_id": meta["item_id"],
        "title": meta["title"],
        "score": score,
        "weights": w,
        "top_history": best,
    }


def _check(run: Run, history: np.ndarray, item: int) -> np.ndarray:
    if run.model_type != "attention":
        raise ValueError(f"run {run.run_id} is a {run.model_type} baseline: nothing to explain")
    if not 1 <= int(item) <= run.n_items:
        raise ValueError(f"item {item} is not in the catalog (1..{run.n_items})")
    history = np.asarray(history, np.int32)
    if len(history) == 0:
        raise ValueError("history is empty: pick at least one item")
    return history


def explain_all(
    run: Run,
    history: np.ndarray,
    item: int,
    methods: tuple[str, ...] = METHODS,
    *,
    steps: int = 64,
    baseline: str = "padding",
) -> dict[str, Attribution]:
    """Attributions of one item's score by several methods, computed in one jitted call.

    Args:
      run: loaded attention run; history: internal ids, oldest first; item: internal id.
      methods: subset of METHODS.
      steps: integrated-gradients steps; baseline: "padding" | "mean" | "zero" embedding.
    Returns:
      {method: Attribution over `window(history)` without its padding}.
    """
    history = _check(run, history, item)
    out = Explainer.of(run.model).attribute(history, int(item), tuple(methods), steps=steps,
                                            baseline=baseline)  # fmt: skip
    keep = out["seq"] > 0
    return {
        m: Attribution(
            history=out["seq"][keep],
            weights=out["weights"][m][keep].astype(np.float32),
            method=m,
            variant=run.label,
            item=int(item),
            score=out["score"],
            rank=out["rank"],
            context=out["context"] if m == "attention" else 0.0,
            extra=out["extra"][m],
        )
        for m in methods
    }


def explain(
    run: Run,
    history: np.ndarray,
    item: int,
    method: str = "attention",
    *,
    steps: int = 64,
    baseline: str = "padding",
) -> Attribution:
    """Attribution of one item's score to the history items in the model's window.

    Args:
      run: loaded attention run; history: internal ids, oldest first; item: internal id.
      method: one of METHODS; steps, baseline: integrated-gradients settings.
    Returns:
      Attribution over `window(history)` without its padding. Its `context` is the readout's
      weight on the sequence-context key for "attention" (which rollout spreads over the items)
      and 0 otherwise; `extra` holds diagnostics such as IG's "completeness_error".
    """
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; choose from {METHODS}")
    return explain_all(run, history, item, (method,), steps=steps, baseline=baseline)[method]


def sentence(attr: Attribution, items: pd.DataFrame, top: int = 2) -> str:
    """One plain sentence: 'Recommended because you rated A (41%) and B (22%).'"""
    df = attr.frame(items).sort_values("share", ascending=False)
    df = df[(df["share"] > 0) & (df["weight"] > 0)].head(top)  # only items that raise the score
    if df.empty:
        return "No history item carries weight for this recommendation."
    parts = [f"{row.title} ({row.share:.0%})" for row in df.itertuples()]
    return "Recommended because you rated " + " and ".join(parts) + "."


def to_json(attr: Attribution, items: pd.DataFrame | None = None) -> dict[str, Any]:
    """JSON-ready dict of an attribution (titles included when items are given)."""
    return {
        "item": attr.item,
        "method": attr.method,
        "variant": attr.variant,
        "score": attr.score,
        "rank": attr.rank,
        "context": attr.context,
        "extra": dict(attr.extra),
        "history": attr.frame(items).to_dict(orient="records"),
    }
