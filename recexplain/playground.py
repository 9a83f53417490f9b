"""The three attention variants step by step in numpy, and the source article's worked errors."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# The source article's example, exactly as printed: Q is a 4-vector, keys and values are 4 x 2.
ARTICLE_Q = np.array([0.1, 0.2, 0.3, 0.4])
ARTICLE_K = np.array([[0.5, 0.3], [0.4, 0.6], [0.2, 0.7], [0.1, 0.8]])
ARTICLE_V = np.array([[1.0, 0.5], [0.6, 1.1], [0.3, 0.7], [0.8, 0.2]])
ARTICLE_SCORES = np.array([0.15, 0.26, 0.38, 0.49])  # its "QK^T"
# The products it writes out for those four entries (a*b + c*d), copied term by term.
ARTICLE_PRODUCTS = np.array(
    [[0.1, 0.5, 0.2, 0.4], [0.1, 0.3, 0.2, 0.6], [0.3, 0.2, 0.4, 0.7], [0.3, 0.1, 0.4, 0.8]]
)
ARTICLE_SOFTMAX = np.array([0.24, 0.34, 0.39, 0.13])  # its "softmax(QK^T / sqrt(2))"
ARTICLE_SIGMOID = np.array([0.546, 0.636, 0.689, 0.713])  # its "sigmoid(QK^T)"
# Its hard-attention "output": [0.3, 0.4] times V_3, written as a 2 x 2 matrix.
ARTICLE_HARD_OUTPUT = np.array([[0.24, 0.06], [0.08, 0.28]])


@dataclass(frozen=True)
class Steps:
    """One attention computation for a single query: every intermediate, named."""

    formula: str  # the formula, in plain text
    scores: np.ndarray  # [n] e_i before normalisation
    weights: np.ndarray  # [n] alpha_i (sum to 1)
    output: np.ndarray  # [d_v] sum_i alpha_i v_i
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. the tanh hidden layer


def softmax(x: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis."""
    z = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def check_shapes(q: np.ndarray, keys: np.ndarray, values: np.ndarray) -> list[str]:
    """Problems that make q . k_i or sum_i alpha_i v_i undefined (empty list: all fine)."""
    problems = []
    if q.ndim != 1:
        problems.append(f"the query must be one vector, got shape {q.shape}")
    if keys.ndim != 2 or values.ndim != 2:
        problems.append(f"keys and values must be matrices, got {keys.shape} and {values.shape}")
        return problems
    if q.ndim == 1 and q.shape[0] != keys.shape[1]:
        problems.append(
            f"the query has {q.shape[0]} entries but each key has {keys.shape[1]}: q . k_i "
            f"(QK^T) is undefined for shapes {q.shape} and {keys.shape}"
        )
    if keys.shape[0] != values.shape[0]:
        problems.append(f"{keys.shape[0]} keys but {values.shape[0]} values: they must pair up")
    return problems


def additive(
    q: np.ndarray,
    keys: np.ndarray,
    values: np.ndarray,
    *,
    w_q: np.ndarray | None = None,
    w_k: np.ndarray | None = None,
    v: np.ndarray | None = None,
    b: np.ndarray | None = None,
) -> Steps:
    """Bahdanau: e_i = v^T tanh(W_q q + W_k k_i + b), alpha = softmax(e), out = sum alpha_i v_i.

    Defaults: W_q = W_k = I, b = 0, v = 1 (so the hidden width equals the key width).
    """
    d = keys.shape[1]
    w_q = np.eye(d) if w_q is None else w_q
    w_k = np.eye(d) if w_k is None else w_k
    b = np.zeros(w_k.shape[0]) if b is None else b
    v = np.ones(w_k.shape[0]) if v is None else v
    hidden = np.tanh((w_q @ q)[None, :] + keys @ w_k.T + b[None, :])  # [n, d_a]
    scores = hidden @ v
    weights = softmax(scores)
    return Steps("e_i = v^T tanh(W_q q + W_k k_i + b);  alpha = softmax(e);  out = sum alpha_i v_i",
                 scores, weights, weights @ values, {"hidden": hidden})  # fmt: skip


def multiplicative(
    q: np.ndarray, keys: np.ndarray, values: np.ndarray, *, w: np.ndarray | None = None
) -> Steps:
    """Luong general / scaled dot: e_i = q^T W k_i / sqrt(d), alpha = softmax(e) (W = I: dot)."""
    d = keys.shape[1]
    w = np.eye(d) if w is None else w
    scores = keys @ (w.T @ q) / np.sqrt(d)
    weights = softmax(scores)
    return Steps("e_i = q^T W k_i / sqrt(d);  alpha = softmax(e);  out = sum alpha_i v_i",
                 scores, weights, weights @ values)  # fmt: skip


def hard(q: np.ndarray, keys: np.ndarray, values: np.ndarray, *, k: int = 1) -> Steps:
    """Hard: keep the top-k keys by q . k_i / sqrt(d), weight 1/k each; out = mean of their v_i.

    With k = 1 the output is exactly one row of V (the classic argmax selection). Training uses
    a relaxation (straight-through Gumbel-softmax); at inference the selection is exact.
    """
    if not 1 <= k <= len(keys):
        raise ValueError(f"k must be in 1..{len(keys)}, got {k}")
    scores = keys @ q / np.sqrt(keys.shape[1])
    top = np.argsort(-scores, kind="stable")[:k]
    weights = np.zeros_like(scores)
    weights[top] = 1.0 / k
    return Steps(f"S = top-{k}(q . k_i / sqrt(d));  alpha_i = 1/{k} for i in S;  out = mean v_S",
                 scores, weights, weights @ values, {"selected": top})  # fmt: skip


def article_multiplicative(q: np.ndarray, keys: np.ndarray, values: np.ndarray) -> Steps:
    """The article's 'multiplicative' formula as written: softmax(sigmoid(QK^T)) V.

    sigmoid squashes every score into (0, 1) before the softmax, so the weights can never be
    more than e (about 2.7) times apart: the formula runs, but cannot focus.
    """
    scores = sigmoid(keys @ q)
    weights = softmax(scores)
    return Steps("article: softmax(sigmoid(QK^T)) V", scores, weights, weights @ values)


def steps_table(steps: Steps, key_names: list[str] | None = None) -> pd.DataFrame:
    """One row per key: score e_i, weight alpha_i (for display)."""
    n = len(steps.scores)
    names = key_names or [f"k{i + 1}" for i in range(n)]
    return pd.DataFrame({"key": names, "score": steps.scores, "weight": steps.weights})


def weights_frame(results: dict[str, Steps]) -> pd.DataFrame:
    """Long form for viz.playground_weights: formula, key, weight."""
    rows = [
        {"formula": name, "key": f"k{i + 1}", "weight": float(w)}
        for name, steps in results.items()
        for i, w in enumerate(steps.weights)
    ]
    return pd.DataFrame(rows, columns=["formula", "key", "weight"])


@dataclass(frozen=True)
class Mistake:
    """One claim of the article, what it should be, and why."""

    section: str
    claim: str
    correct: str
    why: str


def article_mistakes() -> list[Mistake]:
    """The article's errors, each recomputed from its own numbers."""
    p = ARTICLE_PRODUCTS
    written = p[:, 0] * p[:, 1] + p[:, 2] * p[:, 3]
    soft = softmax(ARTICLE_SCORES / np.sqrt(2))
    fmt = lambda a: str(np.round(np.asarray(a, np.float64), 3).tolist())  # noqa: E731
    return [
        Mistake("Section 加性注意力 (additive attention)",
                "Attention(Q,K,V) = softmax(QK^T / sqrt(d_k)) V",
                "e_i = v^T tanh(W_q q + W_k k_i + b), alpha = softmax(e)",
                "The formula given is scaled dot-product attention, i.e. multiplicative; "
                "additive (Bahdanau) attention scores with a one-layer tanh network."),
        Mistake("Worked example (shapes)", f"Q = {fmt(ARTICLE_Q)} (4 entries), K is 4 x 2",
                "q must have as many entries as each key (2 here)",
                f"QK^T is undefined for shapes (4,) and (4, 2). The products it writes out mix "
                f"columns of keys 1-2 with rows of keys 3-4, and they evaluate to "
                f"{fmt(written)}, not the {fmt(ARTICLE_SCORES)} it prints."),
        Mistake("Worked example (softmax)", f"softmax(...) = {fmt(ARTICLE_SOFTMAX)}",
                f"softmax({fmt(ARTICLE_SCORES)} / sqrt 2) = {fmt(soft)}",
                f"Its weights sum to {ARTICLE_SOFTMAX.sum():.2f}, not 1, and the largest score "
                "gets the smallest weight; softmax is monotone, so that cannot happen."),
        Mistake("Worked example (output)", "the output is a 4 x 2 matrix of alpha_i v_i",
                f"out = sum_i alpha_i v_i = {fmt(soft @ ARTICLE_V)} (one 2-vector)",
                "Attention sums the weighted values; the article lists the terms unsummed."),
        Mistake("Section 乘性注意力 (multiplicative attention)",
                "softmax(sigmoid(QK^T)) V, 'needs no softmax'",
                "e_i = q^T W k_i / sqrt(d), alpha = softmax(e)",
                "The formula itself contains a softmax, yet the example skips it and uses "
                f"sigmoid values {fmt(ARTICLE_SIGMOID)} as weights (sum "
                f"{ARTICLE_SIGMOID.sum():.2f}). The correct sigmoids are "
                f"{fmt(sigmoid(ARTICLE_SCORES))}; squashing into (0, 1) before a softmax "
                "leaves the weights nearly uniform."),
        Mistake("Section 硬注意力 (hard attention)",
                f"argmax(QK^T) V = [0.3, 0.4] V_3 = {fmt(ARTICLE_HARD_OUTPUT)}",
                f"the selected value row itself, v_4 = {fmt(ARTICLE_V[3])} (0-based index 3)",
                "Hard attention selects: the output must be one row of V (or the mean of the "
                "top-k rows), not a product of the query with it."),
        Mistake("Keras project code", "Embedding(num_users, ...) over rating-matrix rows; "
                "attention bias shaped (seq_len, 1); KFold over matrix rows",
                "embed ids; a bias per hidden unit; split ratings by time per user",
                "Rating-matrix rows are not ids, the bias shape ties the layer to one length, "
                "and KFold indexes ratings with user-row indices, so labels and inputs do not "
                "correspond."),
    ]  # fmt: skip


def example_inputs(n: int = 4, d: int = 2, d_v: int = 2) -> tuple[np.ndarray, ...]:
    """(q [d], K [n, d], V [n, d_v]): the article's keys and values where they fit, seeded
    random values (0..1, two decimals) elsewhere; q = [0.3, 0.4] likewise."""
    rng = np.random.default_rng(0)

    def fit(a: np.ndarray, rows: int, cols: int) -> np.ndarray:
        out = rng.random((rows, cols)).round(2)
        r, c = min(rows, a.shape[0]), min(cols, a.shape[1])
        out[:r, :c] = a[:r, :c]
        return out

    return fit(np.array([[0.3, 0.4]]), 1, d)[0], fit(ARTICLE_K, n, d), fit(ARTICLE_V, n, d_v)
