"""Recommendations and attention attributions from a saved run."""

from __future__ import annotations

import numpy as np
import pytest

from recexplain.explain import Attribution, explain, recommend, sentence, to_json, window
from recexplain.runs import load_split


@pytest.fixture(scope="module")
def history(tiny_run, planted):
    _, split = load_split(tiny_run, planted[0])
    return split.history(int(split.eval_users[0]), "test")


def test_window_keeps_the_latest_items_left_padded():
    np.testing.assert_array_equal(window(np.array([1, 2, 3]), 5), [0, 0, 1, 2, 3])
    np.testing.assert_array_equal(window(np.arange(1, 9), 4), [5, 6, 7, 8])


def test_recommend_excludes_history_and_carries_weights(tiny_run, history):
    recs = recommend(tiny_run, history, k=10)
    assert len(recs) == 10 and list(recs["rank"]) == list(range(1, 11))
    assert not set(recs["item"]) & set(history.tolist())
    assert recs["score"].is_monotonic_decreasing
    for w, best in zip(recs["weights"], recs["top_history"], strict=True):
        assert w.shape == (tiny_run.max_len,) and 0 <= w.sum() <= 1 + 1e-5
        assert all(item in history for item, _ in best)


def test_explain_matches_the_recommendation_and_its_rank(tiny_run, history):
    recs = recommend(tiny_run, history, k=3)
    attr = explain(tiny_run, history, int(recs["item"][1]))
    assert isinstance(attr, Attribution) and attr.rank == 1
    assert attr.score == pytest.approx(float(recs["score"][1]), abs=1e-5)
    np.testing.assert_allclose(attr.weights, recs["weights"][1][-len(attr.weights) :], atol=1e-6)
    np.testing.assert_array_equal(attr.history, history[-tiny_run.max_len :])
    frame = attr.frame(tiny_run.items)
    assert list(frame.columns) == ["position", "item", "weight", "share", "title"]
    assert sentence(attr, tiny_run.items).startswith("Recommended because you rated")
    assert to_json(attr, tiny_run.items)["history"][0]["title"]


def test_bad_requests_raise_clear_errors(tiny_run, history):
    with pytest.raises(ValueError, match="not in the catalog"):
        explain(tiny_run, history, tiny_run.n_items + 5)
    with pytest.raises(ValueError, match="history is empty"):
        recommend(tiny_run, np.array([], np.int32))
    with pytest.raises(ValueError, match="unknown attribution method"):
        explain(tiny_run, history, 1, method="tea-leaves")
    with pytest.raises(ValueError, match="unknown user"):
        tiny_run.user_index("no-such-user")


# -- attribution methods ------------------------------------------------------------------------
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import pandas as pd  # noqa: E402
from flax import nnx  # noqa: E402

from recexplain.attributions import (  # noqa: E402
    METHODS,
    occlusion_inputs,
    rollout_matrix,
    with_history_embeddings,
)
from recexplain.config import DataConfig, ModelConfig, TrainConfig  # noqa: E402
from recexplain.explain import explain_all  # noqa: E402
from recexplain.models.recommender import AttentionRecommender  # noqa: E402
from recexplain.runs import Run  # noqa: E402


def _as_run(model: AttentionRecommender, tmp_path) -> Run:
    n = model.n_items
    ids = np.arange(1, n + 1)
    items = pd.DataFrame({"item_id": ids, "title": [f"item {i}" for i in ids]},
                         index=pd.RangeIndex(1, n + 1, name="item"))  # fmt: skip
    return Run(run_id="hand", path=tmp_path, model_type="attention", data_cfg=DataConfig(),
               model_cfg=model.cfg, train_cfg=TrainConfig(), model=model, items=items,
               user_ids=np.array(["u"]), fingerprint="hand")  # fmt: skip


def _hand_model(kind: str) -> AttentionRecommender:
    """d = 4, no blocks. The candidate (item 1) is e1, item 3 is 2 e1, the others are
    orthogonal to e1, values are the embeddings and the context value is 0, so only item 3
    adds to the score. Soft variants: zero query/key maps (uniform weights over the n history
    items and the context key, score 2 / (n + 1)). Hard: identity maps, so item 3 (key score
    1, all others 0) is the one selected key and the score is 2."""
    cfg = ModelConfig(attention=kind, d_model=4, n_blocks=0, n_heads=1, d_attn=4, max_len=5,
                      dropout=0.0)  # fmt: skip
    model = AttentionRecommender(cfg, 6, rngs=nnx.Rngs(0))
    table = np.zeros((7, 4), np.float32)
    table[[1, 2, 3, 4, 5, 6], [0, 1, 0, 2, 3, 1]] = [1.0, 1.0, 2.0, 1.0, 1.0, 1.0]
    eye, zero = jnp.eye(4), jnp.zeros((4, 4))
    model.item_emb.embedding[...] = jnp.asarray(table)
    model.pos_emb.embedding[...] = jnp.zeros_like(model.pos_emb.embedding[...])
    model.rq.kernel[...] = eye if kind == "hard" else zero
    model.rk.kernel[...] = eye if kind == "hard" else zero
    if model.rq.bias is not None:
        model.rq.bias[...] = jnp.zeros(4)
    model.rv.kernel[...], model.ck.kernel[...], model.cv.kernel[...] = eye, zero, zero
    model.eval()
    return model


SOFT = {  # history [2, 3, 4], candidate 1; see _hand_model
    "attention": [1 / 4, 1 / 4, 1 / 4],
    "rollout": [1 / 4, 1 / 4, 1 / 2],  # the context's 1/4 rolls onto the last item (no blocks)
    "grad_x_input": [0.0, 1 / 2, 0.0],
    "integrated_gradients": [0.0, 1 / 2, 0.0],  # linear in the embeddings: IG = grad x input
    "occlusion": [1 / 2 - 2 / 3, 1 / 2, 1 / 2 - 2 / 3],  # 2 left items: uniform 1/3 each
}
HARD = {m: [0.0, 1.0 if m in ("attention", "rollout") else 2.0, 0.0] for m in METHODS}


@pytest.mark.parametrize("kind", ["additive", "multiplicative", "hard"])
def test_every_method_on_a_hand_built_model(kind, tmp_path):
    run = _as_run(_hand_model(kind), tmp_path)
    attrs = explain_all(run, np.array([2, 3, 4]), 1)
    expected = HARD if kind == "hard" else SOFT
    for method in METHODS:
        np.testing.assert_allclose(attrs[method].weights, expected[method], atol=1e-5,
                                   err_msg=method)  # fmt: skip
    assert attrs["attention"].score == pytest.approx(2.0 if kind == "hard" else 0.5, abs=1e-5)
    assert attrs["attention"].context == pytest.approx(0.0 if kind == "hard" else 0.25, abs=1e-6)
    assert attrs["integrated_gradients"].extra["completeness_error"] < 1e-4


def _random_model(kind: str, max_len: int = 8) -> AttentionRecommender:
    cfg = ModelConfig(attention=kind, d_model=8, n_blocks=2, n_heads=2, d_attn=4, max_len=max_len)
    model = AttentionRecommender(cfg, 30, rngs=nnx.Rngs(1))
    model.eval()
    return model


@pytest.mark.parametrize("kind", ["additive", "multiplicative", "hard"])
@pytest.mark.parametrize("batch", [2, 8])  # 8 x 8 > 31 items: the model's item-table path
def test_history_embeddings_entry_point_reproduces_the_model(kind, batch):
    model = _random_model(kind)
    seq = jnp.tile(jnp.array([[0, 0, 5, 9, 5, 2, 7, 3], [1, 2, 3, 4, 5, 6, 7, 8]]), (batch // 2, 1))
    cand = jnp.array([4, 11, 30], jnp.int32)
    scores, aux = model(seq, cand)
    got, got_aux = with_history_embeddings(model, seq, model.item_emb(seq), cand)
    np.testing.assert_allclose(got, scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_aux["readout"], aux["readout"], atol=1e-6)
    assert model.item_emb.embedding[...].shape == (31, 8)  # the table is put back


def test_rollout_matrix_matches_a_numpy_reference():
    rng = np.random.default_rng(0)
    blocks = [rng.dirichlet(np.ones(4), size=(2, 3, 4)).astype(np.float32) for _ in range(2)]
    expected = np.broadcast_to(np.eye(4), (2, 4, 4))
    for w in blocks:
        a = 0.5 * w.mean(1) + 0.5 * np.eye(4)[None]
        expected = (a / a.sum(-1, keepdims=True)) @ expected
    np.testing.assert_allclose(rollout_matrix([jnp.asarray(w) for w in blocks], 4), expected,
                               rtol=1e-5)  # fmt: skip


def test_occlusion_inputs_remove_one_item_and_let_an_older_one_in():
    rows = occlusion_inputs(np.array([1, 2, 3, 4, 5]), 3)
    np.testing.assert_array_equal(rows, [[2, 4, 5], [2, 3, 5], [2, 3, 4]])
    rows = occlusion_inputs(np.array([7, 8]), 3)
    np.testing.assert_array_equal(rows, [[0, 7, 8], [0, 0, 8], [0, 0, 7]])


def _brute_force_occlusion(model, history: np.ndarray, item: int) -> np.ndarray:
    def score(h):
        return float(model(jnp.asarray(window(h, model.cfg.max_len))[None],
                           jnp.array([item], jnp.int32))[0][0, 0])  # fmt: skip

    n = min(len(history), model.cfg.max_len)
    offset = len(history) - n
    return np.array([score(history) - score(np.delete(history, offset + i)) for i in range(n)])


def test_occlusion_equals_brute_force_rescoring(tiny_run, history):
    item = int(recommend(tiny_run, history, k=1)["item"][0])
    assert len(history) > tiny_run.max_len  # older items must move into the window
    attr = explain(tiny_run, history, item, method="occlusion")
    np.testing.assert_allclose(attr.weights, _brute_force_occlusion(tiny_run.model, history, item),
                               atol=1e-5)  # fmt: skip


@pytest.mark.parametrize("kind", ["additive", "multiplicative"])
def test_integrated_gradients_completeness_within_one_percent(kind, tmp_path):
    run = _as_run(_random_model(kind), tmp_path)
    baseline = "padding" if kind == "additive" else "mean"
    attr = explain(run, np.array([3, 9, 14, 2, 27]), 6, "integrated_gradients", baseline=baseline)
    delta = attr.extra["score_delta"]
    assert abs(delta) > 1e-3 and abs(attr.weights.sum() - delta) <= 0.01 * abs(delta)
    assert attr.extra["completeness_error"] < 0.01


def test_trained_model_ig_completeness_and_rollout_sums_to_one(tiny_run, history):
    item = int(recommend(tiny_run, history, k=1)["item"][0])
    attrs = explain_all(tiny_run, history, item)
    assert attrs["integrated_gradients"].extra["completeness_error"] < 0.01
    roll = attrs["rollout"].weights
    assert roll.sum() == pytest.approx(1.0, abs=1e-5) and (roll >= 0).all()
    assert all(a.score == attrs["attention"].score and a.rank == 0 for a in attrs.values())
    # the one-method path gives the same answer (one method: each costs a compile)
    np.testing.assert_allclose(explain(tiny_run, history, item, "rollout").weights, roll, atol=1e-6)


def test_attention_method_is_the_models_readout(tiny_run, history):
    item = int(recommend(tiny_run, history, k=1)["item"][0])
    attr = explain(tiny_run, history, item)
    seq = window(history, tiny_run.max_len)
    _, aux = tiny_run.model(jnp.asarray(seq)[None], jnp.array([item], jnp.int32))
    np.testing.assert_allclose(attr.weights, np.asarray(aux["readout"])[0, 0][seq > 0], atol=1e-6)
    assert attr.context == pytest.approx(float(aux["context"][0, 0]), abs=1e-6)
    assert attr.weights.sum() + attr.context == pytest.approx(1.0, abs=1e-5)
    assert to_json(attr)["extra"] == {} and jax.numpy.isfinite(attr.score)
