"""The three attention scorers and their weights as pure functions (additive, multiplicative, hard).

Conventions: `q` are queries, `k` keys; a boolean `mask` is True where a key may be attended.
Masked keys get weight exactly 0 and the weights of a query sum to 1 whenever it has at least one
unmasked key (a query with none gets all-zero weights, never NaN). Softmax runs in float32.

    additive (Bahdanau):     e_i = v^T tanh(q + k_i)   (q, k_i already projected by W_q, W_k)
    multiplicative (Luong):  e_i = q . k_i / sqrt(d)   (the bilinear W lives in the projections)
    hard:                    exact top-k of e_i at inference, renormalised softmax over the
                             selected keys; straight-through Gumbel top-k while training.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def additive_scores(q: Array, k: Array, v: Array) -> Array:
    """Bahdanau scores e_ij = v^T tanh(q_i + k_j).

    Args:
      q: [..., Lq, A] projected queries (W_q q + b).
      k: [..., Lk, A] projected keys (W_k k).
      v: [A] scoring vector.
    Returns:
      [..., Lq, Lk] scores.
    """
    hidden = jnp.tanh(q[..., :, None, :] + k[..., None, :, :])  # [..., Lq, Lk, A]
    return hidden @ v


def multiplicative_scores(q: Array, k: Array) -> Array:
    """Scaled dot-product scores e_ij = q_i . k_j / sqrt(d).

    Args:
      q: [..., Lq, D] projected queries.
      k: [..., Lk, D] projected keys.
    Returns:
      [..., Lq, Lk] scores.
    """
    return (q @ jnp.swapaxes(k, -1, -2)) / jnp.sqrt(jnp.float32(q.shape[-1]))


def _masked(scores: Array, mask: Array) -> Array:
    return jnp.where(mask, scores.astype(jnp.float32), jnp.finfo(jnp.float32).min)


def softmax_weights(scores: Array, mask: Array) -> Array:
    """Softmax over the last axis restricted to `mask`; masked entries are exactly 0.

    Args:
      scores: [..., Lk] scores.
      mask: [..., Lk] (broadcastable) True where the key may be attended.
    Returns:
      [..., Lk] float32 weights.
    """
    mask = jnp.broadcast_to(mask, scores.shape)
    weights = jax.nn.softmax(_masked(scores, mask), axis=-1)
    return jnp.where(mask, weights, 0.0)


def top1_index(scores: Array, mask: Array) -> Array:
    """[...] index of the best unmasked key (earliest on ties, as top_k); mask broadcasts."""
    return jnp.argmax(_masked(scores, jnp.broadcast_to(mask, scores.shape)), axis=-1)


def topk_mask(scores: Array, mask: Array, k: int) -> Array:
    """True on the k highest-scoring unmasked keys (fewer when fewer are unmasked).

    Args:
      scores: [..., Lk]; mask: [..., Lk] (broadcastable); k: keys to keep.
    Returns:
      [..., Lk] boolean selection, a subset of `mask`.
    """
    mask = jnp.broadcast_to(mask, scores.shape)
    k = min(k, scores.shape[-1])
    if k == 1:  # a plain reduction, 2x cheaper than top_k on CPU
        return jax.nn.one_hot(top1_index(scores, mask), scores.shape[-1], dtype=jnp.bool_) & mask
    _, idx = jax.lax.top_k(_masked(scores, mask), k)  # [..., k]
    chosen = jax.nn.one_hot(idx, scores.shape[-1], dtype=jnp.bool_).any(axis=-2)
    return chosen & mask


def hard_weights(
    scores: Array,
    mask: Array,
    k: int,
    *,
    key: Array | None = None,
    tau: float = 0.5,
    noise: float = 1.0,
) -> Array:
    """Hard attention: weight only on the top-k keys.

    At inference (`key=None`) the k best keys keep their softmax weights renormalised among
    themselves (k = 1 gives weight 1 on the argmax), so exactly min(k, #unmasked) weights are
    non-zero. While training (`key` given) the selection uses Gumbel-perturbed scores and the
    gradient is that of softmax(perturbed / tau) (straight-through estimator).

    Args:
      scores: [..., Lk]; mask: [..., Lk] (broadcastable); k: keys selected per query.
      key: PRNG key for Gumbel noise (training) or None (exact, deterministic top-k).
      tau: relaxation temperature for the backward pass.
      noise: scale of the Gumbel noise (0 = deterministic straight-through top-k).
    Returns:
      [..., Lk] float32 weights.
    """
    scores = scores.astype(jnp.float32)
    if key is not None and noise > 0:
        scores = scores + noise * jax.random.gumbel(key, scores.shape, jnp.float32)
    chosen = topk_mask(scores, mask, k)
    # one chosen key has weight exactly 1: skip the softmax (exp over every key) for k = 1
    hard = chosen.astype(jnp.float32) if k == 1 else softmax_weights(scores, chosen)
    if key is None:
        return hard
    soft = softmax_weights(scores / tau, mask)
    return hard + soft - jax.lax.stop_gradient(soft)


def attention_weights(
    scores: Array,
    mask: Array,
    kind: str,
    *,
    k: int = 1,
    key: Array | None = None,
    tau: float = 0.5,
    noise: float = 1.0,
) -> Array:
    """Weights for a variant: softmax for additive/multiplicative, top-k for hard.

    Args:
      scores: [..., Lk] from `additive_scores` or `multiplicative_scores`.
      mask: [..., Lk] True where the key may be attended.
      kind: "additive" | "multiplicative" | "hard".
      k, key, tau, noise: hard-attention settings (see `hard_weights`).
    Returns:
      [..., Lk] float32 weights (masked keys exactly 0).
    """
    if kind == "hard":
        return hard_weights(scores, mask, k, key=key, tau=tau, noise=noise)
    if kind in ("additive", "multiplicative"):
        return softmax_weights(scores, mask)
    raise ValueError(f"unknown attention kind {kind!r}")


def prefix_readout(
    scores: Array,
    values: Array,
    mask: Array,
    ctx_scores: Array | None = None,
    ctx_values: Array | None = None,
    *,
    floor: float = 30.0,
) -> Array:
    """For every prefix t: sum over keys i <= t (plus an optional per-t context key) of
    softmax(scores)_i * values_i, in O(L) per row.

    This is the target-attention readout at every position at once: the scores of a candidate
    against history item i do not depend on the query position t, so the causal softmax over
    i <= t is a ratio of two running sums (no [T, L] matrix per candidate). The context key is
    one more key per position t (score ctx_scores[t], value ctx_values[t]), always valid.
    Exponentials are shifted by the row maximum; item scores more than `floor` below it are
    raised to that floor so an early prefix whose keys all score far below a later key cannot
    underflow to 0/0 (their relative weights then become uniform, a change below e^-30 of the
    row's mass), and the normaliser stays >= e^-30 so its 1/z^2 gradient stays finite. Used for
    training; inference uses the exact `attention_weights`.

    Args:
      scores: [..., L] candidate-vs-key scores (recency term already folded in).
      values: [..., L] value of each key for that candidate.
      mask: [..., L] valid keys.
      ctx_scores, ctx_values: [..., L] the context key's score and value at each position t.
      floor: how far below the row maximum a score may fall before it is clipped.
    Returns:
      [..., L] readout at each prefix end t (0 where the prefix has no valid key).
    """
    s = jnp.where(mask, scores.astype(jnp.float32), -jnp.inf)
    top = jax.lax.stop_gradient(s.max(-1, keepdims=True))
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    w = jnp.where(mask, jnp.exp(jnp.maximum(s, top - floor) - top), 0.0)
    z = _prefix_sum(w)
    num = _prefix_sum(w * values.astype(jnp.float32))
    if ctx_scores is not None:
        ctx = ctx_scores.astype(jnp.float32)
        # An empty prefix (left padding) has only the context key: shifting it by the row's
        # item maximum could underflow z to ~0, whose 1/z^2 gradient then turns into NaN.
        seen = jnp.broadcast_to(_prefix_sum(mask.astype(jnp.float32)) > 0, ctx.shape)
        shift = jax.lax.stop_gradient(jnp.where(seen, jnp.maximum(top, ctx), ctx))  # [..., L]
        scale = jnp.where(seen, jnp.exp(jnp.minimum(top - shift, 0.0)), 0.0)
        w_ctx = jnp.exp(ctx - shift)
        z = z * scale + w_ctx
        num = num * scale + w_ctx * ctx_values.astype(jnp.float32)
    return jnp.where(z > 0, num / jnp.where(z > 0, z, 1.0), 0.0)


def _prefix_sum(x: Array) -> Array:
    """Running sum over the last axis as a matmul with a triangular matrix of ones: XLA's CPU
    cumsum is a reduce-window (O(L^2) adds, ~4x slower than this matmul at L = 50)."""
    length = x.shape[-1]
    tri = jnp.triu(jnp.ones((length, length), jnp.float32))
    return jnp.matmul(x.astype(jnp.float32), tri, precision=jax.lax.Precision.HIGHEST)


def prefix_hard_readout(
    scores: Array,
    values: Array,
    mask: Array,
    k: int,
    ctx_scores: Array | None = None,
    ctx_values: Array | None = None,
) -> Array:
    """For every prefix t, the readout that keeps only the top-k keys among i <= t (and the
    optional context key of position t), weights renormalised over the selected keys.

    k = 1 uses running maxima; k > 1 carries a running top-k buffer through the keys with
    `lax.scan` (O(L * k) per row instead of O(L^2)).

    Args:
      scores, values, mask: [..., L]; k: keys kept; ctx_scores, ctx_values: [..., L] or None.
    Returns:
      [..., L] readout at each prefix end t (0 where nothing is selectable).
    """
    if k == 1:
        best_s, best_v = _prefix_argmax(scores, values, mask)
        if ctx_scores is None:
            return jnp.where(jnp.isfinite(best_s), best_v, 0.0)
        return jnp.where(ctx_scores > best_s, ctx_values.astype(jnp.float32), best_v)
    buf_s, buf_v = _prefix_topk(scores, values, mask, k)  # [..., L, k]
    if ctx_scores is not None:
        buf_s = jnp.concatenate([buf_s, ctx_scores[..., None].astype(jnp.float32)], axis=-1)
        buf_v = jnp.concatenate([buf_v, ctx_values[..., None].astype(jnp.float32)], axis=-1)
        buf_s, idx = jax.lax.top_k(buf_s, k)
        buf_v = jnp.take_along_axis(buf_v, idx, axis=-1)
    w = softmax_weights(buf_s, buf_s > jnp.finfo(jnp.float32).min)
    return (w * buf_v).sum(-1)


def _prefix_topk(scores: Array, values: Array, mask: Array, k: int) -> tuple[Array, Array]:
    """Running top-k (scores, values) after each key: [..., L, k] each (empty slots: min)."""
    lead = scores.shape[:-1]
    neg = jnp.finfo(jnp.float32).min
    s = jnp.moveaxis(jnp.where(mask, scores.astype(jnp.float32), neg), -1, 0)  # [L, ...]
    v = jnp.moveaxis(values.astype(jnp.float32), -1, 0)

    def step(carry, x):
        cand_s = jnp.concatenate([carry[0], x[0][..., None]], axis=-1)
        cand_v = jnp.concatenate([carry[1], x[1][..., None]], axis=-1)
        top_s, idx = jax.lax.top_k(cand_s, k)
        top = (top_s, jnp.take_along_axis(cand_v, idx, axis=-1))
        return top, top

    init = (jnp.full(lead + (k,), neg, jnp.float32), jnp.zeros(lead + (k,), jnp.float32))
    _, (out_s, out_v) = jax.lax.scan(step, init, (s, v))
    return jnp.moveaxis(out_s, 0, -2), jnp.moveaxis(out_v, 0, -2)


def _prefix_argmax(scores: Array, values: Array, mask: Array) -> tuple[Array, Array]:
    """Running maximum score (-inf before any valid key) and the value of its key (the
    earliest on ties, as top_k), using two running maxima instead of a scan."""
    length = scores.shape[-1]
    s = jnp.where(mask, scores.astype(jnp.float32), -jnp.inf)
    best = jax.lax.cummax(s, axis=s.ndim - 1)
    before = jnp.concatenate([jnp.full_like(best[..., :1], -jnp.inf), best[..., :-1]], axis=-1)
    new_max = (s > before) & mask
    positions = jnp.broadcast_to(jnp.arange(length), s.shape)
    idx = jax.lax.cummax(jnp.where(new_max, positions, -1), axis=s.ndim - 1)
    picked = jnp.take_along_axis(values.astype(jnp.float32), jnp.maximum(idx, 0), axis=-1)
    return best, jnp.where(idx >= 0, picked, 0.0)
