"""Non-trained baselines over the item catalog: most-popular, item-kNN and EASE.

All three are fitted on the training interactions only (`split.train_items`), as a sparse binary
user x item matrix X [U, N + 1] (column 0 is the padding id and stays empty). Item-kNN and EASE
score a user as the sum of item-item weights over the user's history, s_j = sum_i x_i W_ij, where
the history is the user's training items plus the items in the scorer's input window, so when
ranking the test target it includes the validation item (the same information the sequence
models get as input), and when ranking the validation target it is the training items alone.

Memory (N items, U users, T training interactions, k neighbours, B users per scoring batch):
- most-popular: N + 1 counts.
- item-kNN: W is sparse with at most k entries per candidate item, (N + 1) * k stored weights
  (12 bytes each as CSR); fitting works through blocks of candidate columns, so its peak is
  about `KNN_BLOCK_ENTRIES` dense float64 similarities (x ~5 temporaries) on top of X (12 bytes
  per interaction, twice: CSR and CSC). Never a dense item x item matrix.
- EASE: dense by nature: the float64 Gram matrix, inverted in place, plus the float32 weights,
  `EASE_BYTES_PER_ENTRY` * (N + 1)^2 bytes in all; `fit_ease` refuses (`CatalogTooLarge`, with
  the figure) when that exceeds the budget (half of physical memory unless given).
- scoring: B x (N + 1) dense float32 scores per batch (what full ranking needs), plus for EASE a
  dense B x (N + 1) history matrix.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from recexplain.split import Split

KNN_BLOCK_ENTRIES = 1 << 22  # dense similarities per item-kNN fitting block (32 MB as float64)
# Gram (float64, inverted in place: 8) + weights (float32: 4) + LAPACK workspace and the Gram's
# building blocks (measured 12.5 bytes per entry at 10k items, 13.6 at 5k: baseline_memory.py)
EASE_BYTES_PER_ENTRY = 13


class CatalogTooLarge(ValueError):
    """A baseline would need more memory than the budget on this catalog."""


def history_csr(
    train_items: np.ndarray,
    train_offsets: np.ndarray,
    users: np.ndarray | None,
    inputs: np.ndarray,
    n_items: int,
) -> sp.csr_matrix:
    """Binary histories: each user's training items plus the non-padding items of `inputs`.

    Args:
      train_items, train_offsets: training CSR (as in Split); users: [B] internal user ids, or
        None to use the inputs alone; inputs: [B, L] int item ids (0 = padding); n_items: N.
    Returns:
      float32 CSR [B, N + 1], 1 where the user has seen the item; column 0 is always empty.
    """
    inputs = np.asarray(inputs)
    rows, cols = [], []
    if users is not None:
        users = np.asarray(users, np.int64)
        counts = np.diff(train_offsets)[users]
        within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        rows.append(np.repeat(np.arange(len(users)), counts))
        cols.append(train_items[np.repeat(train_offsets[users], counts) + within])
    r, c = np.nonzero(inputs)
    rows.append(r)
    cols.append(inputs[r, c])
    row, col = np.concatenate(rows), np.concatenate(cols).astype(np.int64)
    keep = col > 0
    x = sp.csr_matrix((np.ones(keep.sum(), np.float32), (row[keep], col[keep])),
                      shape=(len(inputs), n_items + 1))  # fmt: skip
    x.data[:] = 1.0  # repeated items were summed: binary again
    return x


def history_matrix(
    train_items: np.ndarray,
    train_offsets: np.ndarray,
    users: np.ndarray | None,
    inputs: np.ndarray,
    n_items: int,
) -> np.ndarray:
    """`history_csr` as a dense float32 [B, N + 1] array (for EASE's dense weights)."""
    return history_csr(train_items, train_offsets, users, inputs, n_items).toarray()


def train_csr(split: Split) -> sp.csr_matrix:
    """float32 CSR [U, N + 1] binary user x item matrix of the training interactions only."""
    empty = np.zeros((split.n_users, 0), np.int32)
    users = np.arange(split.n_users)
    return history_csr(split.train_items, split.train_offsets, users, empty, split.n_items)


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
    """s_j = sum over history items i of W_ij with a dense W (EASE weights)."""

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


@dataclass(frozen=True)
class SparseItemItem(_Restorable):
    """s_j = sum over history items i of W_ij with W sparse (item-kNN's top-k neighbours)."""

    w_data: np.ndarray  # float32 [nnz] kept similarities
    w_indices: np.ndarray  # int32 [nnz] candidate item j of each weight (CSR rows: history i)
    w_indptr: np.ndarray  # int64 [N + 2] row offsets
    train_items: np.ndarray  # int32 [T] training items, user-major (Split.train_items)
    train_offsets: np.ndarray  # int64 [U + 1] CSR offsets (Split.train_offsets)

    @classmethod
    def from_csr(cls, w: sp.csr_matrix, split: Split) -> SparseItemItem:
        w = w.tocsr()
        return cls(w.data.astype(np.float32), w.indices.astype(np.int32),
                   w.indptr.astype(np.int64), split.train_items, split.train_offsets)  # fmt: skip

    @classmethod
    def restore(cls, tree: dict[str, Any]) -> SparseItemItem:
        """Also reads runs saved before the weights were sparse (a dense `weights` array)."""
        if "weights" not in tree:
            return super().restore(tree)
        w = sp.csr_matrix(np.asarray(tree["weights"]))
        return cls(w.data.astype(np.float32), w.indices.astype(np.int32),
                   w.indptr.astype(np.int64), np.asarray(tree["train_items"]),
                   np.asarray(tree["train_offsets"]))  # fmt: skip

    def weights(self) -> sp.csr_matrix:
        """W as a float32 CSR [N + 1, N + 1]."""
        n = len(self.w_indptr) - 1
        return sp.csr_matrix((self.w_data, self.w_indices, self.w_indptr), shape=(n, n))

    def scorer(self):
        """(users [B] or None, inputs [B, L]) -> scores [B, N + 1] over the full history."""
        w = self.weights()

        def score(users, inputs):
            x = history_csr(self.train_items, self.train_offsets, users, inputs, w.shape[0] - 1)
            return (x @ w).toarray()

        return score


def fit_popularity(split: Split) -> Popularity:
    """Exact training counts (not per-batch estimates)."""
    return Popularity(split.item_popularity().astype(np.float32))


def knn_weights(
    x: sp.spmatrix | np.ndarray, k: int, shrink: float, *, block_entries: int = KNN_BLOCK_ENTRIES
) -> sp.csr_matrix:
    """Cosine item-item similarity with shrinkage, pruned to each candidate's k neighbours.

        sim_ij = (x_i . x_j) / (|x_i| |x_j| + shrink),  sim_jj = 0 (0 where the denominator is 0)

    Column j (candidate item j) keeps only its k largest similarities. Computed over blocks of
    candidate columns of about `block_entries` dense similarities each, so memory is bounded by
    the block and the (N + 1) * k kept weights, never (N + 1)^2.

    Args:
      x: [U, N + 1] binary interactions (sparse or dense); k: neighbours kept per item;
      shrink: >= 0; block_entries: dense similarities computed at once.
    Returns:
      float32 CSR [N + 1, N + 1] W with W_ij the weight of history item i for candidate j.
    """
    if k < 1 or shrink < 0:
        raise ValueError(f"item-kNN needs k >= 1 and shrink >= 0, got k={k}, shrink={shrink}")
    xc = sp.csc_matrix(x, dtype=np.float64)
    n = xc.shape[1]
    norms = np.sqrt(np.asarray(xc.multiply(xc).sum(axis=0)).ravel())
    parts = [_knn_block(co, norms, a, b, k, shrink) for a, b, co in _co_blocks(xc, block_entries)]
    rows, cols, vals = (np.concatenate(p) for p in zip(*parts, strict=True))
    return sp.csr_matrix((vals, (rows, cols)), shape=(n, n), dtype=np.float32)


def _co_blocks(xc: sp.csc_matrix, block_entries: int):
    """Yields (a, b, dense float64 [N + 1, b - a] co-occurrence counts X^T X[:, a:b])."""
    xt, n = xc.T.tocsr(), xc.shape[1]
    width = max(1, block_entries // n)
    for a in range(0, n, width):
        b = min(n, a + width)
        yield a, b, (xt @ xc[:, a:b]).toarray()


def _knn_block(co: np.ndarray, norms: np.ndarray, a: int, b: int, k: int, shrink: float):
    """(rows, cols, values) of the kept similarities of candidate columns a..b-1."""
    n = len(co)
    denom = norms[:, None] * norms[None, a:b] + shrink
    sim = np.divide(co, denom, out=np.zeros_like(co), where=denom > 0)
    sim[np.arange(a, b), np.arange(b - a)] = 0.0
    if k < n - 1:  # the same partition as a dense argpartition over the whole matrix
        keep = np.argpartition(-sim, k, axis=0)[:k, :]
    else:
        keep = np.broadcast_to(np.arange(n)[:, None], sim.shape)
    vals = np.take_along_axis(sim, keep, axis=0)
    cols = np.broadcast_to(np.arange(a, b)[None, :], keep.shape)
    nz = vals > 0  # zero similarities add nothing to any score
    return keep[nz].astype(np.int64), cols[nz].astype(np.int64), vals[nz].astype(np.float32)


def physical_memory() -> int:
    """Bytes of physical memory on this machine."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def ease_bytes(n_items: int) -> int:
    """Bytes EASE needs for a catalog of n_items (the dense (N + 1)^2 matrices)."""
    return EASE_BYTES_PER_ENTRY * (n_items + 1) ** 2


def ease_weights(x: sp.spmatrix | np.ndarray, lam: float, *, max_bytes: int | None = None):
    """EASE (Steck 2019) in closed form.

        P = (X^T X + lam I)^-1,   B = I - P diag(1 / diag(P)),   so B_ij = -P_ij / P_jj, B_jj = 0

    Args:
      x: [U, N + 1] binary interactions (sparse or dense); lam: L2 regularisation (> 0);
      max_bytes: memory budget (default: half of physical memory).
    Returns:
      float32 [N + 1, N + 1] B with B_ij the weight of history item i for candidate j.
    Raises:
      CatalogTooLarge: `ease_bytes(N)` exceeds the budget (checked before allocating).
    """
    if lam <= 0:
        raise ValueError(f"EASE needs lambda > 0, got {lam}")
    n = x.shape[1]
    need, budget = ease_bytes(n - 1), max_bytes or physical_memory() // 2
    if need > budget:
        raise CatalogTooLarge(
            f"EASE on {n - 1:,} items needs about {need / 2**30:.1f} GiB "
            f"({EASE_BYTES_PER_ENTRY} bytes x (N + 1)^2: a dense float64 Gram matrix inverted in "
            f"place, the float32 weights and workspace), over the budget of "
            f"{budget / 2**30:.1f} GiB; use item-kNN or a transition baseline on this catalog"
        )
    gram = np.empty((n, n), order="F")  # Fortran order: inverted in place
    for a, b, co in _co_blocks(sp.csc_matrix(x, dtype=np.float64), 1 << 20):
        gram[:, a:b] = co  # never a sparse copy of a near-dense Gram matrix
    gram[np.diag_indices_from(gram)] += lam
    p = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
    del gram
    p /= -p.diagonal().copy()[None, :]
    np.fill_diagonal(p, 0.0)
    return p.astype(np.float32)


def fit_itemknn(split: Split, k: int, shrink: float) -> SparseItemItem:
    """Item-kNN fitted on the training interactions (sparse top-k neighbours)."""
    return SparseItemItem.from_csr(knn_weights(train_csr(split), k, shrink), split)


def fit_ease(split: Split, lam: float, *, max_bytes: int | None = None) -> ItemItem:
    """EASE fitted on the training interactions (see `ease_weights` for the memory check)."""
    w = ease_weights(train_csr(split), lam, max_bytes=max_bytes)
    return ItemItem(w, split.train_items, split.train_offsets)
