"""Non-trained baselines over the item catalog: most-popular, item-kNN and EASE.

All three are fitted on the training interactions only (`split.train_items`), as a binary
user x item matrix X [U, N + 1] (column 0 is the padding id and stays empty). Item-kNN and EASE
score a user as the sum of item-item weights over the user's history, s_j = sum_i x_i W_ij, where
the history is the user's training items plus the items in the scorer's input window, so when
ranking the test target it includes the validation item (the same information the sequence
models get as input), and when ranking the validation target it is the training items alone.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from recexplain.split import Split


def history_matrix(
    train_items: np.ndarray,
    train_offsets: np.ndarray,
    users: np.ndarray | None,
    inputs: np.ndarray,
    n_items: int,
) -> np.ndarray:
    """Binary histories: each user's training items plus the non-padding items of `inputs`.

    Args:
      train_items, train_offsets: training CSR (as in Split); users: [B] internal user ids, or
        None to use the inputs alone; inputs: [B, L] int item ids (0 = padding); n_items: N.
    Returns:
      float32 [B, N + 1], 1 where the user has seen the item; column 0 is always 0.
    """
    inputs = np.asarray(inputs)
    x = np.zeros((len(inputs), n_items + 1), np.float32)
    if users is not None:
        users = np.asarray(users, np.int64)
        counts = np.diff(train_offsets)[users]
        rows = np.repeat(np.arange(len(users)), counts)
        within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        x[rows, train_items[np.repeat(train_offsets[users], counts) + within]] = 1.0
    r, c = np.nonzero(inputs)
    x[r, inputs[r, c]] = 1.0
    x[:, 0] = 0.0
    return x


def train_matrix(split: Split) -> np.ndarray:
    """float32 [U, N + 1] binary user x item matrix of the training interactions only."""
    empty = np.zeros((split.n_users, 0), np.int32)
    users = np.arange(split.n_users)
    return history_matrix(split.train_items, split.train_offsets, users, empty, split.n_items)


class _Restorable:
    """Rebuilds a dataclass model from a restored Orbax pytree (see runs._restore)."""

    @classmethod
    def restore(cls, tree: dict[str, Any]) -> Any:
        return cls(**{f.name: np.asarray(tree[f.name]) for f in fields(cls)})  # type: ignore[arg-type]

    def params(self) -> dict[str, np.ndarray]:
        """The arrays to checkpoint (a flat dict)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class Popularity(_Restorable):
    """Most-popular: every user gets the items ranked by their training interaction count."""

    counts: np.ndarray  # float32 [N + 1] training interactions per item (0 for padding)

    def scorer(self):
        """(users, inputs [B, L]) -> the same counts for every user, [B, N + 1]."""
        return lambda users, inputs: np.broadcast_to(
            self.counts[None, :], (len(inputs), len(self.counts))
        )


@dataclass(frozen=True)
class ItemItem(_Restorable):
    """s_j = sum over history items i of W_ij (item-kNN similarities or EASE weights)."""

    weights: np.ndarray  # float32 [N + 1, N + 1]; row and column 0 are zero, diagonal is zero
    train_items: np.ndarray  # int32 [T] training items, user-major (Split.train_items)
    train_offsets: np.ndarray  # int64 [U + 1] CSR offsets (Split.train_offsets)

    def scorer(self):
        """(users [B] or None, inputs [B, L]) -> scores [B, N + 1] over the full history."""
        n_items = len(self.weights) - 1

        def score(users, inputs):
            x = history_matrix(self.train_items, self.train_offsets, users, inputs, n_items)
            return x @ self.weights

        return score


def fit_popularity(split: Split) -> Popularity:
    """Exact training counts (not per-batch estimates)."""
    return Popularity(split.item_popularity().astype(np.float32))


def knn_weights(x: np.ndarray, k: int, shrink: float) -> np.ndarray:
    """Cosine item-item similarity with shrinkage, pruned to each candidate's k neighbours.

        sim_ij = (x_i . x_j) / (|x_i| |x_j| + shrink),  sim_jj = 0 (0 where the denominator is 0)

    Column j (candidate item j) keeps only its k largest similarities.

    Args:
      x: [U, N + 1] binary interactions; k: neighbours kept per item; shrink: >= 0.
    Returns:
      float32 [N + 1, N + 1] W with W_ij the weight of history item i for candidate j.
    """
    if k < 1 or shrink < 0:
        raise ValueError(f"item-kNN needs k >= 1 and shrink >= 0, got k={k}, shrink={shrink}")
    co = x.T.astype(np.float64) @ x.astype(np.float64)  # [N+1, N+1] co-occurrence counts
    norms = np.sqrt(np.diag(co))
    denom = norms[:, None] * norms[None, :] + shrink
    sim = np.divide(co, denom, out=np.zeros_like(co), where=denom > 0)
    np.fill_diagonal(sim, 0.0)
    if k < len(sim) - 1:
        drop = np.argpartition(-sim, k, axis=0)[k:, :]  # all but each column's k largest
        np.put_along_axis(sim, drop, 0.0, axis=0)
    return sim.astype(np.float32)


def ease_weights(x: np.ndarray, lam: float) -> np.ndarray:
    """EASE (Steck 2019) in closed form.

        P = (X^T X + lam I)^-1,   B = I - P diag(1 / diag(P)),   so B_ij = -P_ij / P_jj, B_jj = 0

    Args:
      x: [U, N + 1] binary interactions; lam: L2 regularisation (> 0).
    Returns:
      float32 [N + 1, N + 1] B with B_ij the weight of history item i for candidate j.
    """
    if lam <= 0:
        raise ValueError(f"EASE needs lambda > 0, got {lam}")
    gram = x.T.astype(np.float64) @ x.astype(np.float64)
    gram[np.diag_indices_from(gram)] += lam
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b.astype(np.float32)


def fit_itemknn(split: Split, k: int, shrink: float) -> ItemItem:
    """Item-kNN fitted on the training interactions."""
    w = knn_weights(train_matrix(split), k, shrink)
    return ItemItem(w, split.train_items, split.train_offsets)


def fit_ease(split: Split, lam: float) -> ItemItem:
    """EASE fitted on the training interactions."""
    w = ease_weights(train_matrix(split), lam)
    return ItemItem(w, split.train_items, split.train_offsets)
