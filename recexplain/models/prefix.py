"""Training-time readouts at every prefix: the target attention over keys i <= t, all t at once.

For a candidate c the score of history item i does not depend on the query position t, so the
causal softmax over i <= t is a ratio of two running sums (a triangular matmul over the keys).
Every position t also has one context key (score ctx_scores[t, c], value ctx_values[t, c]) that
is always valid.

    w_i   = exp(s_i - m)                      (m: the row's max item score, held constant)
    z_t   = sum_{i<=t} w_i + w_ctx(t)          num_t = sum_{i<=t} w_i g_i + w_ctx(t) g_ctx(t)
    out_t = num_t / z_t

Layout: time-major, keys on axis 0 and candidates last: [L, B, C]. The running sums are then one
plain [T, L] x [L, B * C] matmul (19 ms for [50, 128, 1684] here, against 45-60 ms over a middle
axis), and the logits come out as [T, B, C], ready for the softmax over candidates.

The gradient is written by hand (`jax.custom_vjp`): with a_t = dL/dout_t / z_t,
dL/dg_i = w_i sum_{t>=i} a_t and dL/ds_i = w_i (g_i sum_{t>=i} a_t - sum_{t>=i} a_t out_t):
two reverse running sums. XLA's own derivative of the forward took 1.5x as long on the default
preset's step (888 -> 597 ms for readout forward + backward, benchmarks/results/roofline.md has
the stages now); these [L, B, C] tensors are the step's cost. Used for training only; inference
uses the exact `attention.attention_weights`.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp

Array = jax.Array


def _tri(length: int) -> Array:
    """[T, L] lower-triangular ones: row t sums keys i <= t."""
    return jnp.tril(jnp.ones((length, length), jnp.float32))


def _running(x: Array, reverse: bool = False) -> Array:
    """Running sum over axis 0 as a matmul with triangular ones (XLA's CPU cumsum is a
    reduce-window: 93 ms against 19 ms here); reverse: sums over t >= i."""
    tri = _tri(x.shape[0])
    flat = x.reshape(x.shape[0], -1)
    return jnp.matmul(tri.T if reverse else tri, flat,
                      precision=jax.lax.Precision.HIGHEST).reshape(x.shape)  # fmt: skip


def _max_over_keys(x: Array) -> Array:
    """x.max(0, keepdims=True) as a loop of elementwise maxima: XLA's CPU reduction over the
    outermost axis took 34 ms on a [50, 128, 1684] array, this loop 1.6 ms."""
    return jax.lax.fori_loop(1, x.shape[0], lambda i, m: jnp.maximum(m, x[i]), x[0])[None]


def _forward(s, g, mask, ctx_s, ctx_g, floor):
    # `seen` from the mask as given ([L, ..., 1] for a window's shared mask): a running sum over
    # the broadcast [L, ..., C] mask would cost one more pass over the largest tensors.
    seen = _running(mask.astype(jnp.float32)) > 0
    mask = jnp.broadcast_to(mask, s.shape)
    s, g = s.astype(jnp.float32), g.astype(jnp.float32)
    ctx_s, ctx_g = ctx_s.astype(jnp.float32), ctx_g.astype(jnp.float32)
    top = _max_over_keys(jnp.where(mask, s, -jnp.inf))  # [1, ..., C]
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    # Item scores more than `floor` below the row maximum are raised to that floor, so an early
    # prefix whose keys all score far below a later key cannot underflow to 0/0.
    kept = mask & (s >= top - floor)
    w = jnp.where(mask, jnp.exp(jnp.maximum(s, top - floor) - top), 0.0)
    z_items, num_items = _running(w), _running(w * g)  # two matmuls: a concat costs a pass
    # Items and context key are shifted by the larger of `top` and the context score, so the
    # larger side has weight 1 and neither can underflow to 0/0 (an empty prefix, left padding,
    # has only the context key): one exp gives both factors.
    ratio = jnp.exp(-jnp.abs(top - ctx_s))
    scale = jnp.where(seen, jnp.where(top >= ctx_s, 1.0, ratio), 0.0)
    w_ctx = jnp.where(seen & (top >= ctx_s), ratio, 1.0)
    z = z_items * scale + w_ctx
    out = (num_items * scale + w_ctx * ctx_g) / z
    return out, (w, g, kept, scale, w_ctx, z, out, ctx_g)


@partial(jax.custom_vjp, nondiff_argnums=(5,))
def prefix_readout(
    scores: Array,
    values: Array,
    mask: Array,
    ctx_scores: Array,
    ctx_values: Array,
    floor: float = 30.0,
) -> Array:
    """Softmax readout over keys i <= t plus the context key of t, for every t.

    Args:
      scores: [L, ..., C] candidate-vs-key scores (recency term folded in).
      values: [L, ..., C] value of each key for that candidate.
      mask: [L, ..., 1] or [L, ..., C] True for valid keys.
      ctx_scores, ctx_values: [L, ..., C] the context key's score and value at each position t.
      floor: how far below the row maximum an item score may fall before it is clipped (a
        change below e^-30 of the row's mass; its gradient is then 0).
    Returns:
      [L, ..., C] float32 readout at each prefix end t.
    """
    return _forward(scores, values, mask, ctx_scores, ctx_values, floor)[0]


def _prefix_fwd(scores, values, mask, ctx_scores, ctx_values, floor):
    out, residuals = _forward(scores, values, mask, ctx_scores, ctx_values, floor)
    return out, (residuals, mask)


def _prefix_bwd(floor, saved, d_out):
    (w, g, kept, scale, w_ctx, z, out, ctx_g), mask = saved
    a = d_out / z
    d_ctx_g = a * w_ctx
    d_ctx_s = d_ctx_g * (ctx_g - out)
    r1 = _running(scale * a, reverse=True)
    r2 = _running(scale * a * out, reverse=True)
    d_g = w * r1
    d_s = jnp.where(kept, w * (g * r1 - r2), 0.0)
    return d_s, d_g, None, d_ctx_s, d_ctx_g


prefix_readout.defvjp(_prefix_fwd, _prefix_bwd)


def gumbel(key: Array, shape: tuple[int, ...]) -> Array:
    """Standard Gumbel noise [shape] from a counter hash (murmur3's 32-bit finaliser of a Weyl
    sequence seeded from `key`), for the hard variant's training noise over [L, B, C] tensors.

    Why not `jax.random.gumbel`: threefry spent ~100 ms per 10.8M values on this CPU, two such
    tensors per step (about 20% of the hard variant's step); the hash takes about a fifth of
    that. Its 23-bit uniforms have the right moments (mean 0.5772, variance 1.645 measured on
    10.8M draws, tests/test_attention.py); it is not meant for anything but this noise.
    """
    seed = jax.random.bits(key, (), jnp.uint32)
    x = jax.lax.iota(jnp.uint32, math.prod(shape)).reshape(shape) * jnp.uint32(0x9E3779B9) + seed
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    x = x ^ (x >> 16)
    return -jnp.log(-jnp.log(_open_unit(x)))


def _open_unit(bits: Array) -> Array:
    """uint32 -> float32 in (0, 1), never 0 or 1: the top 23 bits plus a half (with 24 bits,
    2^24 - 0.5 rounds to 2^24 in float32, u = 1, and the noise is inf)."""
    return ((bits >> 9).astype(jnp.float32) + 0.5) / float(1 << 23)


def prefix_hard_readout(
    scores: Array, values: Array, mask: Array, k: int, ctx_scores: Array, ctx_values: Array
) -> Array:
    """For every prefix t, the readout that keeps only the top-k keys among i <= t and the
    context key of t, weights renormalised over the selected keys (k = 1: the best key's value).

    A `lax.scan` over the keys carries the running top-k (k = 1: the running best score and its
    value), O(L * k) per row; measured 3.7x faster on CPU than two `cummax` reductions plus a
    gather, whose reduce-window is O(L^2). Gradients reach the values of the selected keys only.

    Args:
      scores, values: [L, ..., C]; mask: [L, ..., 1] or [L, ..., C]; k: keys kept;
      ctx_scores, ctx_values: [L, ..., C].
    Returns:
      [L, ..., C] float32 readout at each prefix end t.
    """
    neg = jnp.finfo(jnp.float32).min
    s = jnp.where(jnp.broadcast_to(mask, scores.shape), scores.astype(jnp.float32), neg)
    best_s, best_v = _running_topk(s, values.astype(jnp.float32), k)  # [L, ..., C, k]
    best_s = jnp.concatenate([best_s, ctx_scores[..., None].astype(jnp.float32)], axis=-1)
    best_v = jnp.concatenate([best_v, ctx_values[..., None].astype(jnp.float32)], axis=-1)
    if k == 1:  # the context key wins only when strictly better (the earlier key wins ties)
        return jnp.where(best_s[..., 1] > best_s[..., 0], best_v[..., 1], best_v[..., 0])
    top_s, idx = jax.lax.top_k(best_s, k)
    top_v = jnp.take_along_axis(best_v, idx, axis=-1)
    weights = jax.nn.softmax(jnp.where(top_s > neg, top_s, -jnp.inf), axis=-1)
    return (jnp.where(top_s > neg, weights, 0.0) * top_v).sum(-1)


def _running_topk(s: Array, v: Array, k: int) -> tuple[Array, Array]:
    """Running top-k (scores, values) after each key along axis 0: [L, ..., C, k] each.

    Empty slots hold the float32 minimum score and value 0; ties keep the earlier key.
    """
    lead = s.shape[1:]
    neg = jnp.finfo(jnp.float32).min

    def step(carry, x):
        cand_s = jnp.concatenate([carry[0], x[0][..., None]], axis=-1)
        cand_v = jnp.concatenate([carry[1], x[1][..., None]], axis=-1)
        if k == 1:
            newer = cand_s[..., 1:] > cand_s[..., :1]
            top = (jnp.where(newer, cand_s[..., 1:], cand_s[..., :1]),
                   jnp.where(newer, cand_v[..., 1:], cand_v[..., :1]))  # fmt: skip
        else:
            top_s, idx = jax.lax.top_k(cand_s, k)
            top = (top_s, jnp.take_along_axis(cand_v, idx, axis=-1))
        return top, top

    init = (jnp.full(lead + (k,), neg, jnp.float32), jnp.zeros(lead + (k,), jnp.float32))
    _, out = jax.lax.scan(step, init, (s, v))
    return out
