"""Transition baselines: planted transitions ranked exactly, popularity backoff, protocol, runs."""

from __future__ import annotations

import numpy as np
import pytest

from recexplain import transition
from recexplain.runs import load_run
from recexplain.split import Split, eval_inputs

# users' training sequences; from item 1: 1 -> 3 three times, 1 -> 2 once; from 2: -> 6, -> 1.
# training counts: item 1: 4, 2: 2, 3: 3, 4: 1, 5: 1, 6: 1 -> popularity levels (L = 5):
# count 0 (padding) 0, count 1 -> 1, 2 -> 2, 3 -> 3, 4 -> 4.
SEQUENCES = [[1, 3, 5], [1, 3, 4], [1, 2, 6], [2, 1, 3]]


def _split(histories: list[list[int]], n_items: int) -> Split:
    """A Split holding these training histories (no evaluated users)."""
    offsets = np.concatenate([[0], np.cumsum([len(h) for h in histories])]).astype(np.int64)
    items = np.array([i for h in histories for i in h], np.int32)
    zeros = np.zeros(len(histories), np.int32)
    return Split(len(histories), n_items, items, offsets, zeros, zeros)


def test_counts_are_consecutive_training_items_of_one_user():
    c = transition.transition_counts(_split(SEQUENCES, 6)).toarray()
    assert c[1, 3] == 3 and c[1, 2] == 1 and c[2, 6] == 1 and c[2, 1] == 1
    assert c[5, 1] == 0 and c[4, 1] == 0 and c[6, 2] == 0  # never across two users
    assert c.sum() == 12 - 4  # one transition per training item but each user's first


def test_markov_recovers_the_planted_transition_with_popularity_breaking_ties():
    model = transition.fit_markov(_split(SEQUENCES, 6))
    inputs = np.array([[0, 5, 1], [0, 5, 2]])  # last items 1 and 2
    codes = model.scorer()(None, inputs)
    # after 1: item 3 (3 times) > item 2 (once) > the rest by popularity (1, then 4 = 5 = 6)
    np.testing.assert_array_equal(codes[0], [0, 4, 7, 13, 1, 1, 1])
    # after 2: items 1 and 6 once each, popularity puts 1 (4 plays) before 6 (1 play)
    np.testing.assert_array_equal(codes[1], [0, 9, 2, 3, 1, 1, 6])
    ranking = np.argsort(-codes[0], kind="stable")
    assert list(ranking[:3]) == [3, 2, 1] and set(ranking[3:6]) == {4, 5, 6}


@pytest.mark.parametrize(
    ("normalize", "expected"),
    [  # s = C[1] + 0.5 C[2]; normalized: P[1] = {3: .75, 2: .25}, P[2] = {6: .5, 1: .5}
        (False, [0, 9, 12, 18, 1, 1, 6]),  # 3: 3, 2: 1, 1 and 6: 0.5 (1 more popular)
        (True, [0, 9, 7, 13, 1, 1, 6]),  # 3: .75, then 2, 6, 1 tied at .25: popularity decides
    ],
)
def test_multistep_weights_the_last_items_by_recency(normalize, expected):
    model = transition.fit_multistep(_split(SEQUENCES, 6), steps=2, decay=0.5,
                                     normalize=normalize)  # fmt: skip
    np.testing.assert_array_equal(model.step_weights, [1.0, 0.5])
    np.testing.assert_array_equal(model.scorer()(None, np.array([[0, 2, 1]])), [expected])
    with pytest.raises(ValueError, match="steps >= 1 and 0 < decay <= 1"):
        transition.fit_multistep(_split(SEQUENCES, 6), steps=0, decay=0.5, normalize=False)


def test_one_step_equals_the_markov_chain_and_windows_shorter_than_steps_work(planted_split):
    users, x, _ = eval_inputs(planted_split, "test", 12)
    markov = transition.fit_markov(planted_split).scorer()(users, x)
    one = transition.fit_multistep(planted_split, 1, 0.5, False).scorer()(users, x)
    np.testing.assert_array_equal(markov, one)
    five = transition.fit_multistep(planted_split, 5, 0.5, False).scorer()
    assert five(users[:4], x[:4, -2:]).shape == (4, planted_split.n_items + 1)


def test_test_ranking_follows_the_validation_item_as_the_last_input(planted_split):
    split = planted_split
    model = transition.fit_markov(split)
    counts = transition.transition_counts(split)
    users, x, _ = eval_inputs(split, "test", 50)
    assert (x[:, -1] == split.valid[users]).all()  # the validation item is input only
    codes = model.scorer()(users[:50], x[:50])
    n_levels = int(model.level.max()) + 1
    for row, user in zip(codes, users[:50], strict=True):
        followers = counts[split.valid[user]].indices
        np.testing.assert_array_equal(np.flatnonzero(row >= n_levels), np.sort(followers))


def test_memory_is_bounded_by_the_training_transitions(planted_split):
    split = planted_split
    model = transition.fit_multistep(split, 3, 0.7, True)
    transitions = len(split.train_items) - np.count_nonzero(np.diff(split.train_offsets))
    assert len(model.data) == transition.transition_counts(split).nnz <= transitions
    assert sorted(model.params()) == ["data", "indices", "indptr", "level", "step_weights"]


def test_order_codes_handle_rows_without_any_transition():
    level = np.array([0, 2, 1, 0], np.float32)
    empty = transition.recent_items(np.zeros((2, 3), np.int64), np.ones(2), 4)
    np.testing.assert_array_equal(transition.order_codes(empty, level, 3), [level, level])


@pytest.mark.parametrize("name", ["markov", "multistep"])
def test_saved_transition_run_restores_the_same_model(name, baseline_runs):
    run = baseline_runs[name]
    again = load_run(run.path)
    for key, value in run.model.params().items():
        np.testing.assert_array_equal(value, again.model.params()[key])
        assert value.dtype == again.model.params()[key].dtype
    assert again.metrics["stop_reason"] == "closed form / counts"
    if name == "multistep":
        knobs = again.model_cfg
        assert len(again.model.step_weights) == knobs["steps"]
        assert again.model.step_weights[1] == pytest.approx(knobs["decay"])
