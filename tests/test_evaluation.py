"""Metrics against hand-computed cases, full ranking with masking and ties, CIs, paired tests."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from recexplain.evaluation import (
    bootstrap_ci,
    compare,
    coverage,
    mean_popularity,
    metrics_from_ranks,
    paired_test,
    rank_all,
    summarize,
)
from recexplain.split import leave_last_out


def test_metrics_by_hand_rank_1_rank_3_and_beyond_k():
    m = metrics_from_ranks(np.array([0, 2, 10]), np.array([0, 0, 0]), ks=(5, 10))
    np.testing.assert_allclose(m["hr@5"], [1, 1, 0])
    np.testing.assert_allclose(m["ndcg@5"], [1.0, 0.5, 0.0])  # 1/log2(2), 1/log2(4)
    np.testing.assert_allclose(m["mrr@5"], [1.0, 1 / 3, 0.0])
    np.testing.assert_allclose(m["precision@5"], [0.2, 0.2, 0.0])
    np.testing.assert_allclose(m["recall@10"], [1, 1, 0])  # rank 10 (0-based) is the 11th
    np.testing.assert_allclose(m["f1@5"], [2 * 0.2 / 1.2, 2 * 0.2 / 1.2, 0.0])


def test_ties_are_broken_uniformly_at_random():
    # target tied with 3 others at the top: rank 0..3 each with probability 1/4
    m = metrics_from_ranks(np.array([0]), np.array([3]), ks=(1, 2, 5))
    assert m["hr@1"][0] == pytest.approx(0.25)
    assert m["hr@2"][0] == pytest.approx(0.5)
    assert m["hr@5"][0] == pytest.approx(1.0)
    expected = np.mean([1 / np.log2(k + 2) for k in range(4)])
    assert m["ndcg@5"][0] == pytest.approx(expected)
    # a constant scorer over 100 items is at chance level, not perfect
    assert metrics_from_ranks(np.array([0]), np.array([99]), ks=(10,))["hr@10"][0] == pytest.approx(
        0.1
    )


def _split():
    seqs = [[1, 2, 3, 4, 5], [2, 3, 4, 1, 6], [5, 4, 3, 2, 1]]
    rows = [(u, i, t) for u, s in enumerate(seqs) for t, i in enumerate(s)]
    df = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    return leave_last_out(SimpleNamespace(interactions=df, user_ids=np.arange(3), n_items=6))


def test_rank_all_masks_seen_items_and_counts_ties():
    split = _split()
    # scores favour low item ids: item 1 best, then 2, ... ; item 6 ties with item 5
    table = np.array([0.0, 6, 5, 4, 3, 1, 1], np.float32)

    def score_fn(users, inputs):
        return np.tile(table, (len(users), 1))

    r = rank_all(score_fn, split, "test", max_len=4, batch=2)
    np.testing.assert_array_equal(r.users, [0, 1, 2])
    np.testing.assert_array_equal(r.targets, [5, 6, 1])
    # user 0 saw 1,2,3 (+ valid 4): eligible 5, 6 -> 5 ties with 6
    # user 1 saw 2,3,4 (+ valid 1): eligible 5, 6 -> 6 ties with 5
    # user 2 saw 5,4,3 (+ valid 2): eligible 1, 6 -> 1 is best
    np.testing.assert_array_equal(r.n_greater, [0, 0, 0])
    np.testing.assert_array_equal(r.n_tied, [1, 1, 0])
    assert r.topk.shape == (3, 6)  # min(20, catalog size)
    assert set(r.topk[2, :2]) == {1, 6}


def test_bootstrap_ci_is_reproducible_and_covers_the_mean():
    values = np.random.default_rng(0).random(500)
    lo, hi = bootstrap_ci(values, n_boot=500, seed=3)
    assert (lo, hi) == bootstrap_ci(values, n_boot=500, seed=3)
    assert lo < values.mean() < hi
    assert hi - lo < 0.1


def test_paired_test_detects_a_real_difference_and_not_a_null_one():
    rng = np.random.default_rng(1)
    a = rng.random(300)
    assert paired_test(a, a.copy(), n_perm=2000)["p_value"] == 1.0
    better = paired_test(a + 0.05, a, n_perm=2000)
    assert better["p_value"] < 0.001 and better["mean_diff"] == pytest.approx(0.05)
    noise = paired_test(a + rng.normal(0, 0.01, 300), a, n_perm=2000)
    assert noise["p_value"] > 0.01
    with pytest.raises(ValueError, match="same users"):
        paired_test(a, a[:10])


def test_coverage_popularity_and_summary():
    topk = np.array([[1, 2, 3], [1, 2, 4]])
    assert coverage(topk, n_items=8, k=2) == 0.25
    assert coverage(topk, n_items=8, k=3) == 0.5
    pop = np.array([0, 10, 20, 30, 40])
    assert mean_popularity(topk, pop, k=2) == 15.0
    split = _split()
    r = rank_all(lambda u, x: np.tile(np.arange(7.0), (len(u), 1)), split, "test", 4)
    s = summarize(r, split.item_popularity(), split.n_items, n_boot=50)
    assert s["ndcg@10"]["ci_low"] <= s["ndcg@10"]["mean"] <= s["ndcg@10"]["ci_high"]
    assert s["n_users"]["mean"] == 3


def test_compare_reports_cis_and_p_values_against_the_best():
    split = _split()
    good = rank_all(lambda u, x: np.tile(np.arange(7.0), (len(u), 1)), split, "test", 4)
    bad = rank_all(lambda u, x: np.tile(-np.arange(7.0), (len(u), 1)), split, "test", 4)
    table = compare({"good": good, "bad": bad}, metrics=("ndcg@10", "hr@5"))
    assert table.attrs["reference"] in ("good", "bad")
    assert set(table.columns) >= {"run", "ndcg@10", "ndcg@10_ci_low", "ndcg@10_p"}
    assert table.loc[table["run"] == table.attrs["reference"], "ndcg@10_p"].isna().all()
