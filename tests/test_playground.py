"""The playground's numpy attention against hand-computed values, and the article's errors."""

from __future__ import annotations

import numpy as np
import pytest

from recexplain import playground as P

Q = np.array([0.3, 0.4])
K, V = P.ARTICLE_K, P.ARTICLE_V


def test_softmax_is_stable_and_sums_to_one():
    w = P.softmax(np.array([1000.0, 1000.0, 0.0]))
    np.testing.assert_allclose(w, [0.5, 0.5, 0.0], atol=1e-12)
    assert P.softmax(np.array([0.1, 0.2])).sum() == pytest.approx(1.0)


def test_additive_matches_the_bahdanau_formula():
    w_q, w_k = np.array([[1.0, 0.5], [0.0, 2.0]]), np.array([[0.3, 0.0], [1.0, -1.0]])
    v, b = np.array([0.7, -0.2]), np.array([0.1, 0.0])
    steps = P.additive(Q, K, V, w_q=w_q, w_k=w_k, v=v, b=b)
    expected = np.array([v @ np.tanh(w_q @ Q + w_k @ k + b) for k in K])
    np.testing.assert_allclose(steps.scores, expected)
    np.testing.assert_allclose(steps.weights, np.exp(expected) / np.exp(expected).sum())
    np.testing.assert_allclose(steps.output, steps.weights @ V)
    assert steps.extra["hidden"].shape == (4, 2)


def test_multiplicative_is_scaled_dot_product():
    steps = P.multiplicative(Q, K, V)
    np.testing.assert_allclose(steps.scores, K @ Q / np.sqrt(2))
    w = np.array([[2.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(P.multiplicative(Q, K, V, w=w).scores, K @ (w.T @ Q) / np.sqrt(2))
    assert steps.weights.sum() == pytest.approx(1.0)


def test_hard_selects_rows_of_v():
    one = P.hard(Q, K, V, k=1)
    best = int(np.argmax(K @ Q))
    np.testing.assert_array_equal(one.output, V[best])  # exactly a row of V
    assert one.weights.tolist().count(1.0) == 1
    two = P.hard(Q, K, V, k=2)
    top = np.argsort(-(K @ Q))[:2]
    np.testing.assert_allclose(two.output, V[top].mean(0))
    with pytest.raises(ValueError, match="k must be in 1..4"):
        P.hard(Q, K, V, k=5)


def test_the_articles_multiplicative_formula_cannot_focus():
    big = np.array([50.0, -50.0])
    steps = P.article_multiplicative(big, K, V)
    assert steps.weights.max() / steps.weights.min() < np.e  # sigmoid then softmax
    assert P.multiplicative(big, K, V).weights.max() > 0.99  # the standard one focuses


def test_check_shapes_flags_the_articles_example():
    problems = P.check_shapes(P.ARTICLE_Q, K, V)
    assert len(problems) == 1 and "undefined for shapes (4,) and (4, 2)" in problems[0]
    assert P.check_shapes(Q, K, V) == []
    assert "3 keys but 4 values" in P.check_shapes(Q, K[:3], V)[0]


def test_article_mistakes_are_recomputed_from_its_numbers():
    mistakes = {m.section: m for m in P.article_mistakes()}
    assert len(mistakes) == 7
    assert "sum to 1.10" in mistakes["Worked example (softmax)"].why
    assert "[0.13, 0.15, 0.34, 0.35]" in mistakes["Worked example (shapes)"].why
    softmax = P.softmax(P.ARTICLE_SCORES / np.sqrt(2)).round(3).tolist()
    assert str(softmax) in mistakes["Worked example (softmax)"].correct
    assert "[0.8, 0.2]" in mistakes["Section 硬注意力 (hard attention)"].correct
    assert "Bahdanau" in mistakes["Section 加性注意力 (additive attention)"].why


def test_example_inputs_and_frames():
    q, k, v = P.example_inputs(5, 3)
    assert q.shape == (3,) and k.shape == (5, 3) and v.shape == (5, 2)
    np.testing.assert_array_equal(k[:4, :2], K)
    np.testing.assert_array_equal(q[:2], Q)
    np.testing.assert_array_equal(P.example_inputs(5, 3)[1], k)  # seeded
    results = {"m": P.multiplicative(Q, K, V), "h": P.hard(Q, K, V)}
    frame = P.weights_frame(results)
    assert len(frame) == 8 and frame.groupby("formula")["weight"].sum().tolist() == [1.0, 1.0]
    assert P.steps_table(results["m"])["key"].tolist() == ["k1", "k2", "k3", "k4"]
