"""Transition baselines: what usually comes after the user's last few items (sparse counts).

First-order Markov chain ("markov"): C[i, j] = how often item j directly followed item i in the
training sequences (consecutive training items of one user; validation and test items are never
counted). A user whose most recent item is i gets s_j = C[i, j].

Decayed multi-step transitions ("multistep"): the last S items of the history, the s-th most
recent weighted decay^(s-1):

    s_j = sum_{s=1..S} decay^(s-1) T[x_{-s}, j],   T = C, or C with rows summing to 1 (normalize)

so S = 1 is the Markov chain. Both back off to popularity: items are ranked by s_j and, among equal
s_j (in particular every item nothing in the recent history leads to, s_j = 0), by their training
interaction count. The scorer returns order codes that keep this exact through the float32 cast
of evaluation: score_j = rank_j * L + level_j, with rank_j the dense rank of s_j among the
user's positive scores (0 where s_j = 0) and level_j the dense rank of item j's training count
among the L distinct counts; exact while (distinct positive scores of a user + 1) * L < 2^24.

Like every baseline they are fitted on the training part of the sequences only; at test time the
validation item is the most recent input item (input only).

Memory (N items, U users, T training interactions, B users per scoring batch): C holds one entry
per distinct pair of consecutive training items, at most T - U entries (12 bytes each as CSR) and
never a dense item x item matrix; scoring builds a sparse B x (N + 1) product (at most
B * S * the longest row of C entries) and the dense B x (N + 1) float32 scores full ranking needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recexplain.item_baselines import _Restorable
from recexplain.split import Split


@dataclass(frozen=True)
class Transition(_Restorable):
    """s_j = sum_s w_s T[x_{-s}, j] over the last len(step_weights) items, popularity backoff."""

    data: np.ndarray  # float32 [nnz] transition weights T_ij (CSR rows: the earlier item i)
    indices: np.ndarray  # int32 [nnz] the later item j of each weight
    indptr: np.ndarray  # int64 [N + 2] row offsets
    step_weights: np.ndarray  # float32 [S] weight of the s-th most recent item, s = 1..S
    level: np.ndarray  # int32 [N + 1] dense rank of each item's training count (the backoff)

    @classmethod
    def build(cls, t: sp.spmatrix, step_weights: np.ndarray, popularity: np.ndarray):
        """From a transition matrix [N + 1, N + 1], step weights [S] and counts [N + 1]."""
        t = sp.csr_matrix(t, dtype=np.float32)
        level = np.unique(popularity, return_inverse=True)[1].reshape(-1)
        return cls(t.data, t.indices.astype(np.int32), t.indptr.astype(np.int64),
                   np.asarray(step_weights, np.float32), level.astype(np.int32))  # fmt: skip

    def matrix(self) -> sp.csr_matrix:
        """T as a float32 CSR [N + 1, N + 1]."""
        n = len(self.indptr) - 1
        return sp.csr_matrix((self.data, self.indices, self.indptr), shape=(n, n))

    def scorer(self):
        """(users (unused), inputs [B, L] left-padded) -> order codes [B, N + 1] (float32)."""
        t = self.matrix().astype(np.float64)
        base, n_levels = self.level.astype(np.float32), int(self.level.max()) + 1

        def score(users, inputs):
            recent = recent_items(np.asarray(inputs), self.step_weights, t.shape[0])
            return order_codes(recent @ t, base, n_levels)

        return score


def recent_items(inputs: np.ndarray, step_weights: np.ndarray, n_cols: int) -> sp.csr_matrix:
    """Sparse [B, n_cols]: weight step_weights[s - 1] on each row's s-th most recent item.

    Args:
      inputs: [B, L] item ids, left-padded with 0 (the last column is the most recent item);
      step_weights: [S] (only the last min(S, L) items are used); n_cols: N + 1.
    Returns:
      float64 CSR; padding is dropped and an item seen twice in the window gets both weights.
    """
    s = min(len(step_weights), inputs.shape[1])
    items = inputs[:, inputs.shape[1] - s :][:, ::-1].astype(np.int64)  # [B, s] newest first
    weights = np.broadcast_to(np.asarray(step_weights[:s], np.float64)[None, :], items.shape)
    rows = np.broadcast_to(np.arange(len(items))[:, None], items.shape)
    keep = items > 0
    return sp.csr_matrix((weights[keep], (rows[keep], items[keep])), shape=(len(items), n_cols))


def order_codes(scores: sp.spmatrix, level: np.ndarray, n_levels: int) -> np.ndarray:
    """Dense codes ordering items by (sparse score, then popularity level) within each row.

    Args:
      scores: sparse [B, N + 1] non-negative scores; level: float32 [N + 1] popularity levels in
        [0, n_levels); n_levels: L.
    Returns:
      float32 [B, N + 1]: rank * L + level, rank = dense rank of the row's positive scores
      (1 for the smallest), 0 where the score is 0.
    """
    out = np.broadcast_to(level[None, :], scores.shape).astype(np.float32)
    coo = sp.coo_matrix(scores)
    coo.sum_duplicates()
    keep = coo.data > 0
    r, c, v = coo.row[keep], coo.col[keep], coo.data[keep]
    if len(v) == 0:
        return out
    order = np.lexsort((v, r))
    r, c, v = r[order], c[order], v[order]
    new_row = np.r_[True, r[1:] != r[:-1]]
    dense = np.cumsum(new_row | np.r_[True, v[1:] != v[:-1]])  # increasing over (row, value)
    rank = dense - np.maximum.accumulate(np.where(new_row, dense, 0)) + 1
    out[r, c] += (rank * n_levels).astype(np.float32)
    return out


def transition_counts(split: Split) -> sp.csr_matrix:
    """float32 CSR [N + 1, N + 1]: C_ij = times item j directly followed item i in training."""
    items = split.train_items.astype(np.int64)
    follows = np.ones(max(len(items) - 1, 0), bool)  # pair (k, k + 1) within one user
    starts = split.train_offsets[1:-1]
    follows[starts[(starts >= 1) & (starts < len(items))] - 1] = False
    prev, nxt = items[:-1][follows], items[1:][follows]
    n = split.n_items + 1
    return sp.csr_matrix((np.ones(len(prev), np.float32), (prev, nxt)), shape=(n, n))


def fit_markov(split: Split) -> Transition:
    """First-order Markov chain on the training sequences, popularity backoff."""
    return Transition.build(transition_counts(split), np.ones(1), split.item_popularity())


def fit_multistep(split: Split, steps: int, decay: float, normalize: bool) -> Transition:
    """Decayed multi-step transitions: the last `steps` items, weights decay^(s-1).

    Args:
      split: the split; steps: S >= 1 recent items used; decay: in (0, 1];
      normalize: use P(j | i) (rows of C divided by their sums) instead of raw counts.
    Returns:
      Transition.
    """
    if int(steps) != steps or steps < 1 or not 0 < decay <= 1:
        raise ValueError(f"multistep needs steps >= 1 and 0 < decay <= 1, got {steps}, {decay}")
    c = transition_counts(split)
    if normalize:
        sums = np.asarray(c.sum(axis=1)).ravel()
        c = sp.diags(np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)) @ c
    weights = float(decay) ** np.arange(int(steps))
    return Transition.build(c, weights, split.item_popularity())
