"""Chronological leave-last-out split and fixed-shape, left-padded int32 batches.

For each user with at least 3 interactions the last one is the test target, the second-to-last
the validation target, and everything before is training data. Users with fewer interactions
keep them all in training and are not evaluated. Validation inputs are the training items;
test inputs are the training items plus the validation item (what the user had seen before the
test target). Item id 0 is padding; sequences are left-padded, so the last position always
holds the most recent item.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from recexplain.data import Dataset

Which = Literal["valid", "test"]


@dataclass(frozen=True)
class Split:
    """Per-user training sequences (CSR) and held-out validation / test items."""

    n_users: int
    n_items: int  # N; item ids are 1..N
    train_items: np.ndarray  # int32 [T] all users' training items, user-major, time order
    train_offsets: np.ndarray  # int64 [U + 1] user u owns train_items[off[u]:off[u+1]]
    valid: np.ndarray  # int32 [U] validation item, 0 when the user is not evaluated
    test: np.ndarray  # int32 [U] test item, 0 when the user is not evaluated

    @property
    def eval_users(self) -> np.ndarray:
        """int64 [U'] users with a validation and a test item."""
        return np.flatnonzero(self.test > 0)

    def train_seq(self, user: int) -> np.ndarray:
        """int32 training items of one user in time order."""
        return self.train_items[self.train_offsets[user] : self.train_offsets[user + 1]]

    def history(self, user: int, which: Which = "test") -> np.ndarray:
        """Everything the user had seen before the `which` target (int32, time order)."""
        seq = self.train_seq(user)
        if which == "test" and self.valid[user] > 0:
            return np.append(seq, self.valid[user]).astype(np.int32)
        return seq

    def item_popularity(self) -> np.ndarray:
        """int64 [N + 1] training interaction count per item (index 0 = padding, 0)."""
        return np.bincount(self.train_items, minlength=self.n_items + 1)


def leave_last_out(ds: Dataset) -> Split:
    """Splits a canonical Dataset (sorted by user, time, file order) per user.

    Args:
      ds: the data set; `ds.interactions` columns user (0..U-1) and item (1..N).
    Returns:
      Split with training CSR and valid / test targets.
    """
    users = ds.interactions["user"].to_numpy(np.int64)
    items = ds.interactions["item"].to_numpy(np.int32)
    if len(users) and np.any(np.diff(users) < 0):
        raise ValueError("interactions must be sorted by user (then time); got unsorted users")
    n_users = len(ds.user_ids)
    counts = np.bincount(users, minlength=n_users)
    starts = np.concatenate([[0], np.cumsum(counts)])
    evaluated = counts >= 3
    last = starts[1:] - 1
    test = np.where(evaluated, items[np.maximum(last, 0)], 0).astype(np.int32)
    valid = np.where(evaluated, items[np.maximum(last - 1, 0)], 0).astype(np.int32)
    n_train = counts - 2 * evaluated
    keep = np.arange(len(items)) - starts[users] < n_train[users]
    offsets = np.concatenate([[0], np.cumsum(n_train)]).astype(np.int64)
    return Split(n_users, ds.n_items, items[keep], offsets, valid, test)


def _left_pad(items: np.ndarray, offsets: np.ndarray, ends: np.ndarray, length: int) -> np.ndarray:
    """Rows of `length` items ending (exclusive) at `ends` within each row's segment."""
    idx = ends[:, None] - length + np.arange(length)[None, :]
    ok = idx >= 0
    flat = offsets[:, None] + np.where(ok, idx, 0)
    return np.where(ok, items[flat], 0).astype(np.int32)


def training_windows(
    split: Split, max_len: int, stride: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Next-item training windows from the training sequences, every position a target.

    Each user's (input, next item) pairs are cut into windows of `max_len` ending at the latest
    pair and stepping back by `stride`. With stride < max_len windows overlap; each pair is a
    target in exactly one window (the latest that contains it), so later windows give their
    targets longer context and nothing is counted twice.

    Args:
      split: the split; max_len: window length L; stride: step back (default L).
    Returns:
      inputs [W, L] and targets [W, L], int32, left-padded with 0 (target 0 = no loss).
    """
    stride = max_len if stride is None else stride
    if not 1 <= stride <= max_len:
        raise ValueError(f"stride must be in [1, max_len={max_len}], got {stride}")
    n_pairs = np.maximum(np.diff(split.train_offsets) - 1, 0)
    n_win = np.where(n_pairs > 0, 1 + np.maximum(0, -(-(n_pairs - max_len) // stride)), 0)
    user = np.repeat(np.arange(split.n_users), n_win)
    k = np.arange(n_win.sum()) - np.repeat(np.cumsum(n_win) - n_win, n_win)
    end = n_pairs[user] - k * stride  # exclusive end, in pair index
    offsets = split.train_offsets[user]
    inputs = _left_pad(split.train_items, offsets, end, max_len)
    targets = _left_pad(split.train_items, offsets + 1, end, max_len)
    idx = end[:, None] - max_len + np.arange(max_len)[None, :]
    earliest = (k == n_win[user] - 1)[:, None]
    owned = earliest | (idx >= (end - stride)[:, None])
    targets = np.where(owned & (idx >= 0), targets, 0).astype(np.int32)
    return inputs, targets


def eval_inputs(
    split: Split, which: Which, max_len: int, users: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs and targets for full-ranking evaluation.

    Args:
      split: the split; which: "valid" or "test"; max_len: L;
      users: users to evaluate (default: every evaluated user).
    Returns:
      users [U'], inputs [U', L] int32 (last L items seen before the target), targets [U'].
    """
    users = split.eval_users if users is None else np.asarray(users, np.int64)
    target = (split.valid if which == "valid" else split.test)[users]
    if np.any(target == 0):
        raise ValueError(f"some users have no {which} item (fewer than 3 interactions)")
    n_train = np.diff(split.train_offsets)[users]
    seqs = _left_pad(split.train_items, split.train_offsets[users], n_train, max_len)
    if which == "test":  # shift in the validation item as the most recent one
        seqs = np.concatenate([seqs[:, 1:], split.valid[users][:, None]], axis=1)
    return users, seqs, target.astype(np.int32)


def seen_mask(split: Split, users: np.ndarray, which: Which) -> np.ndarray:
    """bool [len(users), N + 1]: True for items to exclude from the ranking.

    That is the padding id 0 and every item the user saw before the target (all training items,
    plus the validation item when ranking for the test target). The target itself is never in
    it: a user's items are distinct in time order only if the data has no repeats, so repeats
    of the target in the history are explicitly un-masked.
    """
    users = np.asarray(users, np.int64)
    mask = np.zeros((len(users), split.n_items + 1), np.bool_)
    mask[:, 0] = True
    counts = np.diff(split.train_offsets)[users]
    rows = np.repeat(np.arange(len(users)), counts)
    starts = np.repeat(split.train_offsets[users], counts)
    cols = split.train_items[
        starts + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    ]
    mask[rows, cols] = True
    if which == "test":
        mask[np.arange(len(users)), split.valid[users]] = True
    target = (split.valid if which == "valid" else split.test)[users]
    mask[np.arange(len(users)), target] = False
    return mask
