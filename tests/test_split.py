"""Leave-last-out split, training windows and evaluation inputs: exact contents, no leakage."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from recexplain.split import eval_inputs, leave_last_out, seen_mask, training_windows


def _ds(seqs: list[list[int]], n_items: int):
    rows = [(u, item, t) for u, seq in enumerate(seqs) for t, item in enumerate(seq)]
    df = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    return SimpleNamespace(interactions=df, user_ids=np.arange(len(seqs)), n_items=n_items)


SEQS = [[1, 2, 3, 4, 5, 6, 7], [8, 9], [3, 1, 4]]


def test_leave_last_out_targets_and_training_items():
    split = leave_last_out(_ds(SEQS, 9))
    np.testing.assert_array_equal(split.test, [7, 0, 4])
    np.testing.assert_array_equal(split.valid, [6, 0, 1])
    np.testing.assert_array_equal(split.train_seq(0), [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(split.train_seq(1), [8, 9])  # < 3 interactions: train only
    np.testing.assert_array_equal(split.train_seq(2), [3])
    np.testing.assert_array_equal(split.eval_users, [0, 2])
    np.testing.assert_array_equal(split.history(0, "test"), [1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(split.history(0, "valid"), [1, 2, 3, 4, 5])
    assert split.item_popularity()[[0, 1, 3, 8]].tolist() == [0, 1, 2, 1]


def test_training_windows_exact_left_padding():
    split = leave_last_out(_ds(SEQS, 9))
    x, y = training_windows(split, max_len=3)
    # user 0 trains on 1..5: pairs (1,2) (2,3) (3,4) (4,5); windows end at the latest pair
    np.testing.assert_array_equal(x, [[2, 3, 4], [0, 0, 1], [0, 0, 8]])
    np.testing.assert_array_equal(y, [[3, 4, 5], [0, 0, 2], [0, 0, 9]])
    assert x.dtype == np.int32 and y.dtype == np.int32


@pytest.mark.parametrize("stride", [1, 2, 3, 5])
def test_overlapping_windows_use_every_pair_exactly_once(stride):
    rng = np.random.default_rng(stride)
    seqs = [list(rng.integers(1, 50, size=n)) for n in rng.integers(3, 30, size=20)]
    split = leave_last_out(_ds(seqs, 50))
    x, y = training_windows(split, max_len=5, stride=stride)
    n_pairs = sum(max(len(split.train_seq(u)) - 1, 0) for u in range(split.n_users))
    assert int((y > 0).sum()) == n_pairs
    ends = x[:, -1]
    assert np.all(ends > 0)  # every window ends on a real item
    with pytest.raises(ValueError, match="stride must be in"):
        training_windows(split, max_len=5, stride=6)


def test_eval_inputs_shift_in_the_validation_item():
    split = leave_last_out(_ds(SEQS, 9))
    users, x, y = eval_inputs(split, "valid", 4)
    np.testing.assert_array_equal(users, [0, 2])
    np.testing.assert_array_equal(x, [[2, 3, 4, 5], [0, 0, 0, 3]])
    np.testing.assert_array_equal(y, [6, 1])
    _, x, y = eval_inputs(split, "test", 4)
    np.testing.assert_array_equal(x, [[3, 4, 5, 6], [0, 0, 3, 1]])
    np.testing.assert_array_equal(y, [7, 4])
    with pytest.raises(ValueError, match="no test item"):
        eval_inputs(split, "test", 4, users=np.array([1]))


def test_no_leakage_test_item_never_in_training_or_validation_inputs(planted_split):
    split = planted_split
    x, y = training_windows(split, max_len=10)
    for u in split.eval_users[:100]:
        train = split.train_seq(u)
        assert split.test[u] not in train and split.valid[u] not in train
        _, xv, _ = eval_inputs(split, "valid", 10, users=np.array([u]))
        _, xt, _ = eval_inputs(split, "test", 10, users=np.array([u]))
        assert split.test[u] not in xv and split.valid[u] not in xv
        assert split.test[u] not in xt
    # training windows only contain training items: compare multisets per data set
    train_items = np.sort(split.train_items)
    assert set(np.unique(y[y > 0])) <= set(np.unique(train_items))


def test_seen_mask_hides_history_but_never_the_target():
    seqs = [[1, 2, 3, 2, 4], [5, 6, 5]]  # user 1 re-watches item 5 as its test target
    split = leave_last_out(_ds(seqs, 6))
    m = seen_mask(split, np.array([0, 1]), "test")
    assert m[:, 0].all()  # padding
    np.testing.assert_array_equal(np.flatnonzero(m[0]), [0, 1, 2, 3])  # 1,2,3 + valid 2
    assert not m[1, 5]  # target 5 stays rankable even though it was seen
    assert m[1, 6]  # the validation item is excluded when ranking the test target
    mv = seen_mask(split, np.array([0]), "valid")
    assert not mv[0, 2]  # validation target 2 is also a training item: still rankable
