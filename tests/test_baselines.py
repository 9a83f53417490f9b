"""Baselines: hand-computed item-kNN and EASE, BPR and SASRec training, leakage, run round trip."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from recexplain import baselines, bpr, item_baselines
from recexplain.baselines import BASELINES, GRIDS
from recexplain.evaluation import metrics_from_ranks, rank_all
from recexplain.runs import load_run
from recexplain.sasrec import SASRec, fit_sasrec, make_scorer
from recexplain.split import Split, eval_inputs, seen_mask


def _split(histories: list[list[int]], n_items: int) -> Split:
    """A Split holding these training histories (no evaluated users)."""
    counts = [len(h) for h in histories]
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    items = np.array([i for h in histories for i in h], np.int32)
    zeros = np.zeros(len(histories), np.int32)
    return Split(len(histories), n_items, items, offsets, zeros, zeros)


def test_item_knn_matches_hand_computed_cosine_with_shrinkage():
    # users {1,2}, {1,2,3}, {2,3}, {4}, {3}: co-occurrence c12 = 2, c13 = 1, c23 = 2;
    # |x_1| = sqrt 2, |x_2| = sqrt 3, |x_3| = sqrt 3, |x_4| = 1.
    split = _split([[1, 2], [1, 2, 3], [2, 3], [4], [3]], 4)
    s12, s13, s23 = 2 / np.sqrt(6), 1 / np.sqrt(6), 2 / 3
    full = np.zeros((5, 5))
    full[1, 2] = full[2, 1] = s12
    full[1, 3] = full[3, 1] = s13
    full[2, 3] = full[3, 2] = s23
    x = item_baselines.train_csr(split)
    np.testing.assert_allclose(item_baselines.knn_weights(x, 10, 0.0).toarray(), full, rtol=1e-6)
    # k = 1: each candidate j (column) keeps its single most similar history item
    top1 = np.zeros((5, 5))
    top1[2, 1], top1[1, 2], top1[2, 3] = s12, s12, s23
    np.testing.assert_allclose(item_baselines.knn_weights(x, 1, 0.0).toarray(), top1, rtol=1e-6)
    # shrinkage 1: sim_ij = c_ij / (|x_i| |x_j| + 1)
    shrunk = item_baselines.knn_weights(x, 10, 1.0).toarray()
    assert shrunk[1, 2] == pytest.approx(2 / (np.sqrt(6) + 1))
    assert shrunk[2, 3] == pytest.approx(2 / 4)
    # a user who saw items 1 and 3 scores item 2 with s12 + s32 (k = 10)
    model = item_baselines.fit_itemknn(split, 10, 0.0)
    scores = model.scorer()(None, np.array([[0, 1, 3]]))
    assert scores[0, 2] == pytest.approx(s12 + s23) and scores[0, 4] == 0.0


def test_ease_matches_hand_computed_closed_form():
    # users {1,2}, {2,3}, {1}, {3}: G = [[2,1,0],[1,2,1],[0,1,2]]; lambda = 2 gives
    # P = (G + 2I)^-1 = [[15,-4,1],[-4,16,-4],[1,-4,15]] / 56 and B_ij = -P_ij / P_jj.
    split = _split([[1, 2], [2, 3], [1], [3]], 3)
    expected = np.zeros((4, 4))
    expected[1:, 1:] = [[0, 1 / 4, -1 / 15], [4 / 15, 0, 4 / 15], [-1 / 15, 1 / 4, 0]]
    b = item_baselines.ease_weights(item_baselines.train_csr(split), 2.0)
    np.testing.assert_allclose(b, expected, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="lambda > 0"):
        item_baselines.ease_weights(item_baselines.train_csr(split), 0.0)


def _dense_knn(x: np.ndarray, k: int, shrink: float) -> np.ndarray:
    """The dense item x item reference (what item-kNN computed before it was sparse)."""
    co = x.T.astype(np.float64) @ x.astype(np.float64)
    norms = np.sqrt(np.diag(co))
    denom = norms[:, None] * norms[None, :] + shrink
    sim = np.divide(co, denom, out=np.zeros_like(co), where=denom > 0)
    np.fill_diagonal(sim, 0.0)
    drop = np.argpartition(-sim, k, axis=0)[k:, :]
    np.put_along_axis(sim, drop, 0.0, axis=0)
    return sim.astype(np.float32)


def test_item_knn_keeps_at_most_k_neighbours_per_item_in_any_block_size():
    rng = np.random.default_rng(0)
    histories = [list(rng.choice(np.arange(1, 41), rng.integers(2, 12), replace=False))
                 for _ in range(80)]  # fmt: skip
    split = _split(histories, 40)
    x, k = item_baselines.train_csr(split), 5
    expected = _dense_knn(x.toarray(), k, 10.0)
    for block_entries in (1, 7 * 41, 1 << 22):  # one column at a time, 7 columns, all at once
        w = item_baselines.knn_weights(x, k, 10.0, block_entries=block_entries)
        assert w.nnz <= 41 * k and np.diff(w.tocsc().indptr).max() <= k  # items x k, bounded
        np.testing.assert_array_equal(w.toarray(), expected)
    model = item_baselines.fit_itemknn(split, k, 10.0)
    assert len(model.w_data) == w.nnz and len(model.w_indptr) == 42
    users = np.arange(5)
    dense = item_baselines.history_matrix(split.train_items, split.train_offsets, users,
                                          np.zeros((5, 1), np.int32), 40) @ expected  # fmt: skip
    np.testing.assert_allclose(model.scorer()(users, np.zeros((5, 1), np.int32)), dense,
                               rtol=1e-6)  # fmt: skip


def test_item_knn_reads_runs_saved_with_dense_weights():
    split = _split([[1, 2], [1, 2, 3], [2, 3]], 3)
    model = item_baselines.fit_itemknn(split, 2, 0.0)
    old = {"weights": model.weights().toarray(), "train_items": split.train_items,
           "train_offsets": split.train_offsets}  # fmt: skip
    again = item_baselines.SparseItemItem.restore(old)
    inputs = np.array([[0, 1], [2, 3]])
    np.testing.assert_array_equal(again.scorer()(None, inputs), model.scorer()(None, inputs))


def test_ease_refuses_a_catalog_over_the_memory_budget_with_the_figure():
    split = _split([[1, 2], [2, 3]], 3)
    assert item_baselines.ease_bytes(3) == item_baselines.EASE_BYTES_PER_ENTRY * 16
    with pytest.raises(item_baselines.CatalogTooLarge, match=r"EASE on 3 items needs about"):
        item_baselines.fit_ease(split, 10.0, max_bytes=100)
    big = item_baselines.ease_bytes(60_000)
    assert big > 40 * 2**30  # 60k items: ~40 GiB, refused on any ordinary machine
    assert item_baselines.fit_ease(split, 10.0, max_bytes=1000).weights.shape == (4, 4)


def test_item_scores_use_the_full_history_plus_the_input_window():
    split = _split([[1, 2, 3, 4, 5, 6]], 7)
    x = item_baselines.history_matrix(split.train_items, split.train_offsets, np.array([0]),
                                      np.array([[0, 6, 7]]), 7)  # fmt: skip
    np.testing.assert_array_equal(x, [[0, 1, 1, 1, 1, 1, 1, 1]])  # all 6 + the input item 7
    model = item_baselines.fit_ease(split, 1.0)
    w = model.weights
    scores = model.scorer()(np.array([0]), np.array([[5, 6]]))  # window shorter than history
    np.testing.assert_allclose(scores[0], w[1:7].sum(0), rtol=1e-6)


def test_popularity_is_exact_training_counts(planted_split):
    model = item_baselines.fit_popularity(planted_split)
    expected = np.bincount(planted_split.train_items, minlength=planted_split.n_items + 1)
    np.testing.assert_array_equal(model.counts, expected)
    scores = model.scorer()(np.array([3, 4]), np.zeros((2, 5), np.int32))
    assert scores.shape == (2, planted_split.n_items + 1)
    np.testing.assert_array_equal(scores[0], scores[1])


def test_bpr_loss_decreases_and_beats_popularity_on_planted_data(planted_split):
    split = planted_split
    model, outcome = bpr.fit_bpr(split, dim=32, lr=1e-2, reg=1e-4, max_epochs=8, patience=8)
    losses = [r["loss"] for r in outcome.history]
    assert losses[-1] < 0.7 * losses[0] and all(np.isfinite(losses))
    ndcg = {}
    for name, scorer in (("bpr", model.scorer()),
                         ("pop", item_baselines.fit_popularity(split).scorer())):  # fmt: skip
        r = rank_all(scorer, split, "test", 10)
        ndcg[name] = metrics_from_ranks(r.n_greater, r.n_tied, (10,))["ndcg@10"].mean()
    assert ndcg["bpr"] > ndcg["pop"] + 0.02, ndcg


def test_bpr_negatives_avoid_training_positives():
    rng = np.random.default_rng(0)
    seen = np.sort(np.array([0 * 6 + i for i in (1, 2, 3, 4)], np.int64))  # user 0 saw 1..4
    neg = bpr.sample_negatives(rng, np.zeros(500, np.int64), seen, 5)
    assert set(np.unique(neg)) == {5}


def test_sasrec_shapes_and_causality():
    model = SASRec(30, d_model=16, n_blocks=2, n_heads=2, max_len=6, dropout=0.1, rngs=nnx.Rngs(0))
    x = jnp.array([[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 7]], jnp.int32)
    h = model(x)
    assert h.shape == (2, 6, 16) and model.score_all(x).shape == (2, 31)
    changed = model(x.at[:, 4:].set(9))
    np.testing.assert_allclose(h[:, :4], changed[:, :4], rtol=1e-5, atol=1e-6)
    scorer = make_scorer(model)  # longer inputs are cut to the last max_len items
    long = np.concatenate([np.full((2, 4), 8, np.int32), np.asarray(x)], axis=1)
    np.testing.assert_allclose(scorer(None, long), model.score_all(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="bad SASRec size"):
        SASRec(30, d_model=15, n_heads=2, rngs=nnx.Rngs(0))


@pytest.mark.parametrize("n_negatives", [0, 16])
def test_sasrec_trains_with_full_and_sampled_softmax(planted_split, n_negatives):
    sizes = {"d_model": 16, "n_blocks": 1, "n_heads": 1, "max_len": 10}
    _, outcome = fit_sasrec(planted_split, **sizes, lr=1e-2, n_negatives=n_negatives,
                            max_epochs=3, patience=3)  # fmt: skip
    losses = [r["loss"] for r in outcome.history]
    assert losses[-1] < losses[0] and outcome.best_epoch >= 1
    assert outcome.best_valid_ndcg == max(r["valid_ndcg@10"] for r in outcome.history)


def _moved_targets(split: Split, valid_too: bool) -> Split:
    """The same training data with other held-out items (what a leak would pick up)."""
    rng = np.random.default_rng(1)
    ev = split.test > 0
    new_test = np.where(ev, rng.integers(1, split.n_items + 1, split.n_users), 0)
    new_valid = np.where(ev, rng.integers(1, split.n_items + 1, split.n_users), 0)
    return dataclasses.replace(
        split,
        test=new_test.astype(np.int32),
        valid=(new_valid if valid_too else split.valid).astype(np.int32),
    )


@pytest.mark.parametrize("name", BASELINES)
def test_no_leakage_nothing_is_fitted_on_held_out_items(name, planted_split):
    """Moving the held-out items leaves the fitted model unchanged (valid items too, for the
    baselines that do not early-stop on validation), and rankings never include seen items."""
    split = planted_split
    grid = GRIDS["tiny"][name][:1]
    a = baselines.tune(name, split, grid)
    b = baselines.tune(name, _moved_targets(split, valid_too=name in baselines.DETERMINISTIC),
                       grid)  # fmt: skip
    users, x, _ = eval_inputs(split, "test", baselines.INPUT_LEN)
    sa = np.asarray(baselines._scorer(name, a.model)(users[:64], x[:64]))
    sb = np.asarray(baselines._scorer(name, b.model)(users[:64], x[:64]))
    np.testing.assert_array_equal(sa, sb)
    r = rank_all(baselines._scorer(name, a.model), split, "test", baselines.INPUT_LEN)
    mask = seen_mask(split, r.users, "test")
    assert not np.take_along_axis(mask, r.topk, axis=1).any()  # no seen item recommended


def test_validation_history_excludes_the_validation_item(planted_split):
    split = planted_split
    users, xv, yv = eval_inputs(split, "valid", baselines.INPUT_LEN)
    model = item_baselines.fit_ease(split, 10.0)
    hv = item_baselines.history_matrix(split.train_items, split.train_offsets, users, xv,
                                       split.n_items)  # fmt: skip
    assert hv[np.arange(len(users)), yv].sum() == 0  # valid target is not a training item here
    _, xt, yt = eval_inputs(split, "test", baselines.INPUT_LEN)
    ht = item_baselines.history_matrix(split.train_items, split.train_offsets, users, xt,
                                       split.n_items)  # fmt: skip
    assert ht[np.arange(len(users)), yv].all() and not ht[np.arange(len(users)), yt].any()
    np.testing.assert_allclose(model.scorer()(users, xv), hv @ model.weights, rtol=1e-6)


@pytest.mark.parametrize("name", BASELINES)
def test_saved_run_round_trip_gives_identical_scores(name, baseline_runs, planted_split):
    run = baseline_runs[name]
    again = load_run(run.path)
    assert again.label == name and again.model_type == name
    users, x, _ = eval_inputs(planted_split, "test", again.max_len)
    np.testing.assert_array_equal(np.asarray(run.scorer()(users[:32], x[:32])),
                                  np.asarray(again.scorer()(users[:32], x[:32])))  # fmt: skip
    ranking = rank_all(again.scorer(), planted_split, "test", again.max_len)
    np.testing.assert_array_equal(ranking.n_greater, run.ranking("test").n_greater)
    tuning = run.metrics["tuning"]
    assert len(tuning) == len(GRIDS["tiny"][name])
    assert max(t["valid_ndcg@10"] for t in tuning) == pytest.approx(
        run.metrics["valid"]["ndcg@10"]["mean"]
    )
    test = run.metrics["test"]["ndcg@10"]
    assert test["ci_low"] <= test["mean"] <= test["ci_high"]


def test_unknown_baseline_and_preset_are_refused(planted_split):
    with pytest.raises(ValueError, match="unknown baseline 'knn'"):
        baselines.tune("knn", planted_split, [{}])
    with pytest.raises(ValueError, match="unknown baseline preset"):
        baselines.train_baseline("pop", None, preset="huge")  # type: ignore[arg-type]
