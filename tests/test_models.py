"""AttentionRecommender: shapes, masking, and agreement between its three scoring paths."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from recexplain.config import ModelConfig
from recexplain.models import AttentionRecommender

VARIANTS = ["additive", "multiplicative", "hard"]
N_ITEMS, L = 30, 8
SEQ = jnp.array([[0, 0, 0, 1, 2, 3, 4, 5], [0, 0, 0, 0, 0, 9, 8, 7]], jnp.int32)
TARGETS = jnp.array([[0, 0, 0, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 8, 7, 6]], jnp.int32)


def _model(kind: str, **kw) -> AttentionRecommender:
    cfg = ModelConfig(attention=kind, d_model=16, n_heads=2, d_attn=8, max_len=L, **kw)
    model = AttentionRecommender(cfg, N_ITEMS, rngs=nnx.Rngs(0))
    model.eval()
    return model


@pytest.mark.parametrize("kind", VARIANTS)
def test_shapes_and_aux(kind):
    model = _model(kind)
    scores, aux = model(SEQ, jnp.arange(N_ITEMS + 1))
    assert scores.shape == (2, N_ITEMS + 1)
    assert aux["readout"].shape == (2, N_ITEMS + 1, L)
    assert [w.shape for w in aux["blocks"]] == [(2, 2, L, L)] * 2
    per_row, _ = model(SEQ, jnp.array([[1, 2, 3], [4, 5, 6]]))
    assert per_row.shape == (2, 3)


@pytest.mark.parametrize("kind", VARIANTS)
def test_readout_weights_ignore_padding_and_sum_to_one(kind):
    _, aux = _model(kind)(SEQ, jnp.arange(1, N_ITEMS + 1))
    w, ctx = np.asarray(aux["readout"]), np.asarray(aux["context"])
    pad = np.asarray(SEQ == 0)
    assert np.all(w[0][:, pad[0]] == 0.0) and np.all(w[1][:, pad[1]] == 0.0)
    assert ctx.shape == (2, N_ITEMS) and np.all(ctx >= 0)
    np.testing.assert_allclose(w.sum(-1) + ctx, 1.0, rtol=1e-5)  # history + context key
    for block in aux["blocks"]:  # causal: no weight on later positions
        b = np.asarray(block)
        assert np.all(np.triu(b, k=1) == 0.0)


@pytest.mark.parametrize("k", [1, 2])
def test_hard_readout_selects_exactly_k_items(k):
    _, aux = _model("hard", hard_k=k)(SEQ, jnp.arange(1, N_ITEMS + 1))
    nonzero = (np.asarray(aux["readout"]) > 0).sum(-1) + (np.asarray(aux["context"]) > 0)
    assert np.all(nonzero == k)  # k keys among the history items and the context key


@pytest.mark.parametrize("kind", VARIANTS)
def test_training_logits_last_position_and_full_ranking_agree_with_call(kind):
    model = _model(kind)
    negatives = jnp.arange(1, 13, dtype=jnp.int32)
    logits = model.train_logits(SEQ, TARGETS, negatives)
    direct, _ = model(SEQ, negatives)
    np.testing.assert_allclose(logits[-1, :, 1:], direct, atol=1e-5)  # time-major
    pos, _ = model(SEQ, TARGETS[:, -1:])
    np.testing.assert_allclose(logits[-1, :, 0], pos[:, 0], atol=1e-5)
    everything = model.score_all(SEQ)
    direct_all, _ = model(SEQ, jnp.arange(N_ITEMS + 1))
    np.testing.assert_allclose(everything, direct_all, atol=1e-5)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_hard_full_ranking_agrees_with_call_for_every_k(k):
    model = _model("hard", hard_k=k)  # k = 1 reads the argmax's value directly in score_all
    direct, _ = model(SEQ, jnp.arange(N_ITEMS + 1))
    np.testing.assert_allclose(model.score_all(SEQ), direct, atol=1e-5)
    tables = model.item_tables()
    np.testing.assert_allclose(model.score_all(SEQ, tables), direct, atol=1e-5)


def test_top1_selection_breaks_ties_like_top_k():
    from recexplain.models import attention as att

    scores = jnp.array([[1.0, 3.0, 3.0, 2.0], [0.5, 0.5, 0.5, 0.5], [9.0, 1.0, 9.0, 9.0]])
    mask = jnp.array([[True, True, True, True], [False, True, True, True], [False] * 4])
    chosen = np.asarray(att.topk_mask(scores, mask, 1))
    _, idx = jax.lax.top_k(jnp.where(mask, scores, -jnp.inf), 1)
    expected = np.asarray(jax.nn.one_hot(idx[:, 0], 4, dtype=bool) & mask)
    np.testing.assert_array_equal(chosen, expected)
    assert chosen[:2].sum(-1).tolist() == [1, 1] and not chosen[2].any()  # earliest wins
    weights = np.asarray(att.hard_weights(scores, mask, 1))
    np.testing.assert_array_equal(weights, chosen.astype(np.float32))


def test_score_all_chunks_give_the_same_scores():
    small = _model("additive", item_chunk=1)  # forces the minimum chunk (64 items)
    big = _model("additive", item_chunk=4096)
    np.testing.assert_allclose(small.score_all(SEQ), big.score_all(SEQ), atol=1e-6)


@pytest.mark.parametrize("kind", VARIANTS)
def test_gradients_reach_every_parameter_in_train_mode(kind):
    model = _model(kind)
    model.train()

    def loss(m):
        return m.train_logits(SEQ, TARGETS, jnp.arange(1, 9), key=jax.random.key(0)).mean()

    grads = nnx.grad(loss)(model)
    dead = [
        "/".join(map(str, path))
        for path, g in jax.tree_util.tree_leaves_with_path(grads)
        if float(jnp.abs(g).sum()) == 0.0
    ]
    # the position embeddings of always-padded slots and the padding item get no gradient
    assert all("pos_emb" in d or "item_bias" in d or "embedding" in d for d in dead), dead


def test_bad_configs_raise_clear_errors():
    with pytest.raises(ValueError, match="attention must be one of"):
        ModelConfig(attention="sigmoid")
    with pytest.raises(ValueError, match="divisible by n_heads"):
        ModelConfig(d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="n_items must be >= 1"):
        AttentionRecommender(ModelConfig(), 0, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="seq length 5 != max_len 8"):
        _model("additive")(jnp.ones((1, 5), jnp.int32), jnp.arange(3))


@pytest.mark.parametrize("kind", VARIANTS)
def test_item_tables_equal_direct_scoring(kind):
    model = _model(kind)
    cand = jnp.arange(1, 11, dtype=jnp.int32)
    s_tab, g_tab = model._gather(*model._item_tables_for(cand), SEQ)
    s_dir, g_dir = model._item_parts(SEQ, jnp.broadcast_to(cand, (2, 10)))  # per-row: direct
    np.testing.assert_allclose(s_tab, s_dir, atol=1e-5)
    np.testing.assert_allclose(g_tab, g_dir, atol=1e-5)


@pytest.mark.parametrize("kind", VARIANTS)
def test_full_softmax_logits_match_scoring_every_item(kind):
    model = _model(kind)
    full = model.train_logits_full(SEQ)
    assert full.shape == (L, 2, N_ITEMS + 1)  # time-major
    direct, _ = model(SEQ, jnp.arange(N_ITEMS + 1))
    np.testing.assert_allclose(full[-1], direct, atol=1e-5)
    sampled = model.train_logits(SEQ, TARGETS, jnp.arange(1, 13, dtype=jnp.int32))
    np.testing.assert_allclose(full[:, :, 1:13], sampled[:, :, 1:], atol=1e-5)  # every prefix


@pytest.mark.parametrize("kind", VARIANTS)
def test_cached_item_tables_give_the_same_full_ranking(kind):
    model = _model(kind)
    tables = model.item_tables(chunk=7)  # chunks that do not divide N + 1
    assert tables["s_item"].shape == (N_ITEMS + 1, N_ITEMS + 1)
    np.testing.assert_allclose(model.score_all(SEQ, tables), model.score_all(SEQ), atol=1e-5)


@pytest.mark.parametrize("kind", VARIANTS)
def test_gradients_stay_finite_for_padded_rows_and_huge_parameters(kind):
    """Regression: an empty prefix (left padding) next to a huge item score once gave z ~ 0 in
    the running-sum readout, and its 1/z^2 gradient turned the whole update into NaN."""
    from recexplain.training import loss_fn

    model = _model(kind)
    model.train()
    nnx.update(model, jax.tree.map(lambda a: a * 30.0, nnx.state(model, nnx.Param)))
    rng = np.random.default_rng(0)
    x = rng.integers(1, N_ITEMS + 1, (6, L)).astype(np.int32)
    x[:3, :5] = 0  # left padding
    x[3] = 0  # an all-padding row (last batch of an epoch)
    y = np.where(x > 0, rng.integers(1, N_ITEMS + 1, x.shape), 0).astype(np.int32)
    batch = {
        "inputs": jnp.asarray(x),
        "targets": jnp.asarray(y),
        "negatives": jnp.arange(1, 9, dtype=jnp.int32),
        "log_q": jnp.zeros(N_ITEMS + 1),
    }
    (loss, _), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, batch, jax.random.key(0))
    assert np.isfinite(float(loss))
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("kind", ["additive", "multiplicative"])
def test_bfloat16_compute_keeps_float32_parameters_and_close_scores(kind):
    """compute_dtype="bfloat16" (meant for GPUs) changes only the dense layers' arithmetic."""
    full, half = _model(kind), _model(kind, compute_dtype="bfloat16")
    nnx.update(half, nnx.state(full, nnx.Param))  # same parameters
    params = jax.tree.leaves(nnx.state(half, nnx.Param))
    assert {p.dtype for p in params} == {jnp.dtype(jnp.float32)}
    a = full.score_all(SEQ)[:, 1:]
    b = half.score_all(SEQ)[:, 1:]
    assert b.dtype == jnp.float32 and bool(jnp.isfinite(b).all())
    assert float(jnp.abs(a - b).max()) < 0.05 * float(jnp.abs(a).max()) + 1e-3
    assert not np.allclose(np.asarray(a), np.asarray(b), rtol=0, atol=0)  # bf16 really used
    half.train()
    grads = nnx.grad(lambda m: m.train_logits_full(SEQ, key=jax.random.key(0)).sum())(half)
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))
