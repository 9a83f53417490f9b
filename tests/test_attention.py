"""The three attention scorers against numpy references and hand-computed values."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from recexplain.models import attention as att
from recexplain.models import prefix

RNG = np.random.default_rng(0)


def _np_softmax(x, mask):
    x = np.where(mask, x, -np.inf)
    e = np.exp(x - x.max(-1, keepdims=True))
    e = np.where(mask, e, 0.0)
    return e / e.sum(-1, keepdims=True)


def test_additive_scores_match_numpy_and_hand_value():
    q = RNG.normal(size=(2, 3, 4)).astype(np.float32)
    k = RNG.normal(size=(2, 5, 4)).astype(np.float32)
    v = RNG.normal(size=(4,)).astype(np.float32)
    ref = np.tanh(q[:, :, None, :] + k[:, None, :, :]) @ v
    np.testing.assert_allclose(att.additive_scores(q, k, v), ref, rtol=1e-5, atol=1e-6)
    # e = v . tanh(q + k) with q=(0.5, -1), k=(0.5, 1), v=(2, 3): 2*tanh(1) + 3*tanh(0)
    one = att.additive_scores(
        jnp.array([[0.5, -1.0]]), jnp.array([[0.5, 1.0]]), jnp.array([2.0, 3.0])
    )
    assert float(one[0, 0]) == pytest.approx(2 * np.tanh(1.0), abs=1e-6)


def test_multiplicative_scores_are_scaled_dot_products():
    q = RNG.normal(size=(3, 8)).astype(np.float32)
    k = RNG.normal(size=(6, 8)).astype(np.float32)
    np.testing.assert_allclose(att.multiplicative_scores(q, k), q @ k.T / np.sqrt(8), rtol=1e-5)
    assert float(
        att.multiplicative_scores(jnp.array([[1.0, 2.0]]), jnp.array([[3.0, 4.0]]))[0, 0]
    ) == (pytest.approx(11 / np.sqrt(2)))


@pytest.mark.parametrize("kind", ["additive", "multiplicative"])
def test_softmax_weights_mask_exactly_and_sum_to_one(kind):
    scores = RNG.normal(size=(4, 7)).astype(np.float32) * 5
    mask = RNG.random((4, 7)) > 0.4
    mask[:, 0] = True
    w = np.asarray(att.attention_weights(scores, mask, kind))
    assert np.all(w[~mask] == 0.0)
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(w, _np_softmax(scores, mask), rtol=1e-5, atol=1e-7)


def test_fully_masked_query_gets_zero_weights_not_nan():
    w = att.softmax_weights(jnp.ones((1, 3)), jnp.zeros((1, 3), bool))
    assert np.all(np.asarray(w) == 0.0)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_hard_weights_have_exactly_k_nonzeros_at_inference(k):
    scores = RNG.normal(size=(5, 9)).astype(np.float32)
    mask = np.ones((5, 9), bool)
    mask[:, :2] = False
    w = np.asarray(att.hard_weights(scores, mask, k))
    assert np.all((w > 0).sum(-1) == k)
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-6)
    top = np.argsort(-np.where(mask, scores, -np.inf), axis=-1)[:, :k]
    chosen = np.zeros_like(mask)
    np.put_along_axis(chosen, top, True, axis=-1)
    np.testing.assert_allclose(w, _np_softmax(scores, chosen), rtol=1e-5, atol=1e-7)


def test_hard_weights_select_fewer_when_fewer_keys_are_valid():
    w = np.asarray(
        att.hard_weights(jnp.array([[3.0, 1.0, 2.0]]), jnp.array([[False, True, False]]), 2)
    )
    np.testing.assert_array_equal(w, [[0.0, 1.0, 0.0]])


def test_gradients_flow_through_the_hard_relaxation():
    scores = jnp.array(RNG.normal(size=(3, 6)), jnp.float32)
    values = jnp.array(RNG.normal(size=(3, 6)), jnp.float32)
    mask = jnp.ones((3, 6), bool)

    def loss(s, key):
        return (att.hard_weights(s, mask, 1, key=key) * values).sum()

    g_train = jax.grad(loss)(scores, jax.random.key(0))
    assert float(jnp.abs(g_train).sum()) > 1e-3  # straight-through: soft gradient
    g_infer = jax.grad(loss)(scores, None)
    assert float(jnp.abs(g_infer).sum()) == 0.0  # exact top-1 is piecewise constant
    forward = att.hard_weights(scores, mask, 1, key=jax.random.key(0))
    assert np.all(np.isin(np.round(np.asarray(forward), 6), [0.0, 1.0]))  # forward is hard


def _per_prefix_ctx(fn, scores, values, mask, ctx_s, ctx_v):
    """Reference: explicit attention over [keys i <= t, context key of t] for every t, in the
    [B, C, L] layout of `attention_weights` (the prefix readouts are time-major, [L, B, C])."""
    length = scores.shape[-1]
    out = np.zeros(scores.shape, np.float32)
    for t in range(length):
        s = np.concatenate([scores, ctx_s[..., t : t + 1]], -1)
        v = np.concatenate([values, ctx_v[..., t : t + 1]], -1)
        m = np.concatenate([mask & (np.arange(length) <= t), np.ones_like(mask[..., :1])], -1)
        out[..., t] = (np.asarray(fn(s, m)) * v).sum(-1)
    return out


def _keys_first(*arrays):
    """[B, C, L] -> [L, B, C], the prefix readouts' layout."""
    return [jnp.moveaxis(jnp.asarray(a), -1, 0) for a in arrays]


def _example(shape, padded_row=False):
    scores = RNG.normal(size=shape).astype(np.float32) * 3
    values = RNG.normal(size=shape).astype(np.float32)
    ctx_s = RNG.normal(size=shape).astype(np.float32) * 3
    ctx_v = RNG.normal(size=shape).astype(np.float32)
    mask = RNG.random((shape[0], 1, shape[-1])) > 0.3
    if padded_row:
        mask[0, 0, : shape[-1] // 2] = False  # left padding: early prefixes with no valid key
    return scores, values, np.broadcast_to(mask, shape), ctx_s, ctx_v


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_prefix_readouts_with_a_context_key_match_explicit_attention(k):
    scores, values, mask, ctx_s, ctx_v = _example((2, 3, 8), padded_row=True)
    args = _keys_first(scores, values, mask[:, :1], ctx_s, ctx_v)
    if k == 0:
        fast = prefix.prefix_readout(*args)
        ref = _per_prefix_ctx(att.softmax_weights, scores, values, mask, ctx_s, ctx_v)
    else:
        fast = prefix.prefix_hard_readout(*args[:3], k, *args[3:])
        ref = _per_prefix_ctx(lambda s, m: att.hard_weights(s, m, k), scores, values, mask,
                              ctx_s, ctx_v)  # fmt: skip
    np.testing.assert_allclose(jnp.moveaxis(fast, 0, -1), ref, atol=2e-6)


def test_prefix_readout_gradient_equals_autodiff_of_explicit_attention():
    """The hand-written VJP against JAX's derivative of the explicit per-prefix softmax."""
    scores, values, mask, ctx_s, ctx_v = _example((2, 3, 10), padded_row=True)
    cot = RNG.normal(size=scores.shape).astype(np.float32)

    def explicit(s, v, cs, cv):
        total = 0.0
        for t in range(10):
            m = jnp.concatenate(
                [mask & (jnp.arange(10) <= t)[None, None], jnp.ones((2, 3, 1), bool)], -1
            )
            s_t = jnp.concatenate([s, cs[..., t : t + 1]], -1)
            v_t = jnp.concatenate([v, cv[..., t : t + 1]], -1)
            total += ((att.softmax_weights(s_t, m) * v_t).sum(-1) * cot[..., t]).sum()
        return total

    def fast(s, v, cs, cv):
        s, v, m, cs, cv = _keys_first(s, v, mask[:, :1], cs, cv)
        return (jnp.moveaxis(prefix.prefix_readout(s, v, m, cs, cv), 0, -1) * cot).sum()

    args = [jnp.asarray(a) for a in (scores, values, ctx_s, ctx_v)]
    for a, b in zip(jax.grad(fast, (0, 1, 2, 3))(*args), jax.grad(explicit, (0, 1, 2, 3))(*args),
                    strict=True):  # fmt: skip
        np.testing.assert_allclose(a, b, atol=5e-5)


def test_prefix_readout_gradient_is_finite_when_scores_are_far_apart():
    """Scores 1e4 apart: clipped keys get weight ~0 and gradient exactly 0, never NaN."""
    scores = jnp.asarray([[[0.0]], [[1e4]], [[-1e4]]])  # [L=3, B=1, C=1]
    values = jnp.ones((3, 1, 1))
    mask, ctx = jnp.ones((3, 1, 1), bool), jnp.zeros((3, 1, 1))
    grads = jax.grad(lambda s: prefix.prefix_readout(s, values, mask, ctx, values).sum())(scores)
    assert bool(jnp.isfinite(grads).all())
    assert float(grads[2, 0, 0]) == 0.0


def test_source_article_example_made_consistent_by_hand():
    """The article multiplies a 4-vector Q with 2-d keys; with a 2-d query it is well defined.

    K and V are the article's; q = (0.1, 0.2). By hand: K q = (0.11, 0.16, 0.16, 0.17);
    / sqrt(2) = (0.07778, 0.11314, 0.11314, 0.12021); exp = (1.08089, 1.11979, 1.11979,
    1.12773), sum 4.44819; weights = (0.24299, 0.25174, 0.25174, 0.25353) (they sum to 1, unlike
    the article's 0.24 + 0.34 + 0.39 + 0.13 = 1.10); output = sum_i w_i V_i = (0.67238, 0.62533).
    """
    k = jnp.array([[0.5, 0.3], [0.4, 0.6], [0.2, 0.7], [0.1, 0.8]])
    v = jnp.array([[1.0, 0.5], [0.6, 1.1], [0.3, 0.7], [0.8, 0.2]])
    q = jnp.array([[0.1, 0.2]])
    scores = att.multiplicative_scores(q, k)
    np.testing.assert_allclose(
        scores[0], np.array([0.11, 0.16, 0.16, 0.17]) / np.sqrt(2), atol=1e-6
    )
    w = att.attention_weights(scores, jnp.ones((1, 4), bool), "multiplicative")
    np.testing.assert_allclose(w[0], [0.24299, 0.25174, 0.25174, 0.25353], atol=1e-5)
    np.testing.assert_allclose((w @ v)[0], [0.67238, 0.62533], atol=1e-5)
    assert sum([0.24, 0.34, 0.39, 0.13]) == pytest.approx(1.10)  # the article's "softmax"


def test_hashed_gumbel_noise_has_gumbel_moments_and_depends_on_the_key():
    a = np.asarray(prefix.gumbel(jax.random.key(0), (200, 1000)), np.float64)
    b = np.asarray(prefix.gumbel(jax.random.key(1), (200, 1000)), np.float64)
    assert abs(a.mean() - 0.5772) < 0.01 and abs(a.var() - np.pi**2 / 6) < 0.03
    assert np.isfinite(a).all() and abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < 0.01
    # Kolmogorov-Smirnov distance to the Gumbel CDF exp(-exp(-x))
    x = np.sort(a.ravel())
    ks = np.abs(np.exp(-np.exp(-x)) - (np.arange(1, x.size + 1) / x.size)).max()
    assert ks < 0.005
    # regression: the largest hash value once gave u = 1 in float32 and an infinite noise
    extremes = prefix._open_unit(jnp.array([0, 1, 2**32 - 1], jnp.uint32))
    assert bool(((extremes > 0) & (extremes < 1)).all())
    assert bool(jnp.isfinite(-jnp.log(-jnp.log(extremes))).all())
