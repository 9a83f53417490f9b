"""Attribution methods for one (history window, candidate item) pair, as jit-compiled functions.

Each method gives one number per position of the model's window `seq` [L] (0 on padding):

    attention             the readout weights alpha_i(c) on the history items (the context
                          key's weight is reported apart)
    rollout               the readout weights plus the context key's weight spread over the
                          positions by attention rollout (Abnar & Zuidema 2020) of the last
                          position through the blocks: A_l = norm(mean_heads(W_l) / 2 + I / 2),
                          R = A_n ... A_1; sums to 1 over the history
    grad_x_input          (d s(c) / d E[x_i]) . E[x_i], the history embeddings only (not the
                          candidate's own embedding)
    integrated_gradients  (E[x_i] - b) . mean_a d s(c) / d e_i at e = b + a (E[x] - b), the
                          midpoint rule over `steps` values of a; b = padding row, mean row or 0
    occlusion             s(c) - s(c without x_i): x_i is removed from the whole history as if
                          never seen (older items move into the window), all rows in one call

The history embeddings enter the model in several places (the block inputs, the readout's keys
and values, and through the blocks the context key); the gradient methods replace them all at
once with `with_history_embeddings`, which runs the model's own forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Array = jax.Array

METHODS: tuple[str, ...] = (
    "attention",
    "rollout",
    "grad_x_input",
    "integrated_gradients",
    "occlusion",
)
BASELINES: tuple[str, ...] = ("padding", "mean", "zero")
# Integrated-gradients path points per batch. One batch of all 64 was 2-4x slower on a 2-core
# CPU than two batches of 32 (the larger intermediates fall out of cache).
IG_CHUNK = 32


def with_history_embeddings(model: Any, seq: Array, hist: Array, cand: Array) -> tuple[Array, dict]:
    """`model(seq, cand)` with the history items' embeddings replaced by `hist`.

    The rows of `hist` are appended to the embedding table and the history ids are pointed at
    them, so the model's forward pass is used unchanged and `hist` reaches every place where
    E[x_i] does. The candidates keep their own embeddings.

    Args:
      model: an AttentionRecommender (eval mode); seq: [B, L] int32 (only its padding is used);
      hist: [B, L, D] history embeddings; cand: [C] candidate ids.
    Returns:
      (scores [B, C], aux) as `model(seq, cand)`.
    """
    b, length = seq.shape
    graphdef, emb, *rest = nnx.split(model, nnx.PathContains("item_emb"), ...)
    old = model.item_emb.embedding[...]
    n = old.shape[0]
    table = jnp.concatenate([old, hist.reshape(b * length, -1).astype(old.dtype)], axis=0)
    ids = n + jnp.arange(b * length, dtype=jnp.int32).reshape(b, length)
    # A new module, built at the caller's trace level (mutating `model` under jax.grad is not
    # allowed); the table's shape is not part of the graph.
    patched = nnx.merge(graphdef, jax.tree.map(lambda _: table, emb), *rest)
    return patched(jnp.where(seq > 0, ids, 0), cand)


def rollout_matrix(blocks: list[Array], length: int) -> Array:
    """Attention rollout through self-attention blocks (heads averaged, residual as identity).

    Args:
      blocks: per-block weights [B, H, L, L] (rows of padding positions are all zero).
      length: L (used when there are no blocks).
    Returns:
      [B, L, L]: row t is how much each input position contributes to the state at t.
    """
    eye = jnp.eye(length, dtype=jnp.float32)[None]  # [1, L, L]
    out = eye
    for w in blocks:
        a = 0.5 * w.mean(axis=1) + 0.5 * eye
        a = a / a.sum(-1, keepdims=True)
        out = a @ out
    return jnp.broadcast_to(out, (blocks[0].shape[0], length, length)) if blocks else out


def attention(model: Any, seq: Array, item: Array) -> tuple[Array, dict[str, Array]]:
    """Readout weights on the history items: seq [L], item [] -> [L] (context apart)."""
    _, aux = model(seq[None], item[None])
    return aux["readout"][0, 0], {}


def rollout(model: Any, seq: Array, item: Array) -> tuple[Array, dict[str, Array]]:
    """Readout weights plus the context weight rolled out over the history: [L], sums to 1."""
    _, aux = model(seq[None], item[None])
    roll = rollout_matrix(aux["blocks"], seq.shape[0])[0, -1]  # [L]
    ctx = aux["context"][0, 0]
    weights = aux["readout"][0, 0] + ctx * roll
    return jnp.where(seq > 0, weights, 0.0), {"context_redistributed": ctx}


def grad_x_input(model: Any, seq: Array, item: Array) -> tuple[Array, dict[str, Array]]:
    """Gradient of the item's score w.r.t. each history embedding, dotted with it: [L]."""
    hist = model.item_emb(seq)[None]  # [1, L, D]

    def score(h: Array) -> Array:
        return with_history_embeddings(model, seq[None], h, item[None])[0][0, 0]

    grad = jax.grad(score)(hist)
    return jnp.where(seq > 0, (grad * hist).sum(-1)[0], 0.0), {}


def _baseline(model: Any, kind: str, length: int) -> Array:
    table = model.item_emb.embedding[...]  # [N + 1, D]
    if kind == "padding":
        row = table[0]
    elif kind == "mean":
        row = table[1:].mean(0)
    elif kind == "zero":
        row = jnp.zeros_like(table[0])
    else:
        raise ValueError(f"unknown baseline {kind!r}; choose from {BASELINES}")
    return jnp.broadcast_to(row[None], (length, table.shape[1]))


def integrated_gradients(
    model: Any, seq: Array, item: Array, steps: int, baseline: str
) -> tuple[Array, dict[str, Array]]:
    """Integrated gradients on the history embeddings, the path points in batches of IG_CHUNK.

    Returns:
      ([L] attributions, {"completeness_error", "score_delta", "baseline_score"}) where
      completeness_error = |sum(attr) - (f(x) - f(b))| / |f(x) - f(b)|.
    """
    length = seq.shape[0]
    x = model.item_emb(seq)  # [L, D]
    base = _baseline(model, baseline, length)
    n_chunks = -(-steps // IG_CHUNK)
    size = -(-steps // n_chunks)
    idx = jnp.arange(n_chunks * size, dtype=jnp.float32).reshape(n_chunks, size)
    alphas, use = (idx + 0.5) / steps, (idx < steps).astype(jnp.float32)  # midpoint rule

    def scores(h: Array) -> Array:  # [B, L, D] -> [B]
        seqs = jnp.broadcast_to(seq[None], (h.shape[0], length))
        return with_history_embeddings(model, seqs, h, item[None])[0][:, 0]

    def chunk(args: tuple[Array, Array]) -> Array:  # -> summed gradient [L, D]
        a, w = args
        path = base[None] + a[:, None, None] * (x - base)[None]  # [size, L, D]
        return jax.grad(lambda h: (scores(h) * w).sum())(path).sum(0)

    grad = jax.lax.map(chunk, (alphas, use)).sum(0) / steps
    attr = jnp.where(seq > 0, ((x - base) * grad).sum(-1), 0.0)
    ends = scores(jnp.stack([base, x]))
    delta = ends[1] - ends[0]
    error = jnp.abs(attr.sum() - delta) / jnp.maximum(jnp.abs(delta), 1e-12)
    return attr, {"completeness_error": error, "score_delta": delta, "baseline_score": ends[0]}


def occlusion(
    model: Any, seq: Array, item: Array, occluded: Array
) -> tuple[Array, dict[str, Array]]:
    """Score drop when each history item is removed; occluded [L, L] from `occlusion_inputs`."""
    scores, _ = model(jnp.concatenate([seq[None], occluded], axis=0), item[None])  # [L + 1, 1]
    return jnp.where(seq > 0, scores[0, 0] - scores[1:, 0], 0.0), {}


def window(history: np.ndarray, max_len: int) -> np.ndarray:
    """The last max_len items of a history, left-padded with 0 to exactly max_len."""
    history = np.asarray(history, np.int32)[-max_len:]
    return np.pad(history, (max_len - len(history), 0))


def occlusion_inputs(history: np.ndarray, max_len: int) -> np.ndarray:
    """Windows of the history with one window item removed each.

    Args:
      history: [n] int item ids, oldest first (the whole history).
      max_len: window length L.
    Returns:
      int32 [L, L]: row i is `window(history without the item at window position i)`; rows of
      padding positions repeat the unchanged window.
    """
    history = np.asarray(history, np.int32)
    n = len(history)
    full = window(history, max_len + 1)  # one older item ready to move in
    rows = np.empty((max_len, max_len), np.int32)
    for i in range(max_len):
        if i < max_len - min(n, max_len):
            rows[i] = full[1:]
        else:
            rows[i] = np.delete(full, i + 1)
    return rows


def excluded_mask(n_items: int, history: np.ndarray, item: int | None = None) -> np.ndarray:
    """bool [N + 1]: padding and the seen items (never `item`) do not count in a rank."""
    mask = np.zeros(n_items + 1, np.bool_)
    mask[0] = True
    mask[np.asarray(history, np.int64)] = True
    if item is not None:
        mask[item] = False
    return mask


@partial(jax.jit, static_argnums=(0, 2, 3, 4))
def _attribute(graphdef, state, methods, steps, baseline, seq, item, occluded, excluded):
    model = nnx.merge(graphdef, state)
    fns = {
        "attention": lambda: attention(model, seq, item),
        "rollout": lambda: rollout(model, seq, item),
        "grad_x_input": lambda: grad_x_input(model, seq, item),
        "integrated_gradients": lambda: integrated_gradients(model, seq, item, steps, baseline),
        "occlusion": lambda: occlusion(model, seq, item, occluded),
    }
    out = {m: fns[m]() for m in methods}
    scores, aux = model(seq[None], item[None])
    everything = model.score_all(seq[None])[0]  # [N + 1]
    # rank against score_all's own value of the item: the two code paths may differ in the
    # last bits, and the item must never count as ranked above itself
    rank = (jnp.where(excluded, -jnp.inf, everything) > everything[item]).sum()
    return out, scores[0, 0], rank, aux["context"][0, 0]


@partial(jax.jit, static_argnums=0)
def _score_rows(graphdef, state, seqs, item, excluded):
    model = nnx.merge(graphdef, state)
    everything = model.score_all(seqs)  # [S, N + 1]
    own = everything[:, item]
    ranks = (jnp.where(excluded[None], -jnp.inf, everything) > own[:, None]).sum(-1)
    return own, ranks


@partial(jax.jit, static_argnums=0)
def _top_item(graphdef, state, seq, excluded):
    scores = nnx.merge(graphdef, state).score_all(seq[None])[0]  # [N + 1]
    return jnp.argmax(jnp.where(excluded, -jnp.inf, scores))


@partial(jax.jit, static_argnums=0)
def _score_items(graphdef, state, seqs, item):
    return nnx.merge(graphdef, state)(seqs, item[None])[0][:, 0]


@dataclass(frozen=True)
class Explainer:
    """A model split once for repeated jitted calls (eval mode frozen at creation)."""

    graphdef: Any
    state: Any
    max_len: int
    n_items: int

    @classmethod
    def of(cls, model: Any) -> Explainer:
        """Splits an AttentionRecommender (in eval mode) for the calls below."""
        graphdef, state = nnx.split(model)
        return cls(graphdef, state, int(model.cfg.max_len), int(model.n_items))

    def attribute(
        self,
        history: np.ndarray,
        item: int,
        methods: tuple[str, ...] = METHODS,
        *,
        steps: int = 64,
        baseline: str = "padding",
    ) -> dict[str, Any]:
        """All requested methods in one jitted call.

        Args:
          history: [n] int item ids, oldest first (the whole history); item: candidate id.
          methods: subset of METHODS; steps, baseline: integrated-gradients settings.
        Returns:
          {"seq": [L] window, "weights": {method: float64 [L]}, "extra": {method: {name:
          float}}, "score": float, "rank": int (0-based among unseen items), "context": float}.
        """
        unknown = [m for m in methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown attribution method {unknown[0]!r}; choose from {METHODS}")
        if baseline not in BASELINES:
            raise ValueError(f"unknown baseline {baseline!r}; choose from {BASELINES}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        seq = window(history, self.max_len)
        occluded = occlusion_inputs(history, self.max_len)
        excluded = excluded_mask(self.n_items, history, item)
        static = (tuple(methods), int(steps), baseline)
        out, score, rank, ctx = _attribute(
            self.graphdef, self.state, *static, seq, np.int32(item), occluded, excluded
        )
        return {  # in the order of `methods` (jit returns dicts with sorted keys)
            "seq": seq,
            "weights": {m: np.asarray(out[m][0], np.float64) for m in methods},
            "extra": {m: {k: float(v) for k, v in out[m][1].items()} for m in methods},
            "score": float(score),
            "rank": int(rank),
            "context": float(ctx),
        }

    def score_and_rank(
        self, seqs: np.ndarray, item: int, excluded: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The item's score and 0-based rank (among non-excluded items) after each window.

        Args:
          seqs: [S, L] int32 windows; item: candidate id; excluded: bool [N + 1].
        Returns:
          (scores float64 [S], ranks int64 [S]).
        """
        scores, ranks = _score_rows(self.graphdef, self.state, np.asarray(seqs, np.int32),
                                    np.int32(item), excluded)  # fmt: skip
        return np.asarray(scores, np.float64), np.asarray(ranks, np.int64)

    def score(self, seqs: np.ndarray, item: int) -> np.ndarray:
        """The item's score after each window [S, L] -> float64 [S] (no ranking: cheap)."""
        out = _score_items(self.graphdef, self.state, np.asarray(seqs, np.int32), np.int32(item))
        return np.asarray(out, np.float64)

    def top_item(self, history: np.ndarray) -> int:
        """The best-scoring item the history has not seen (its top-1 recommendation)."""
        seq = window(history, self.max_len)
        excluded = excluded_mask(self.n_items, history)
        return int(_top_item(self.graphdef, self.state, seq, excluded))
