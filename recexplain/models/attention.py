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
