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
