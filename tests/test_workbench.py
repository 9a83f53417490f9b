"""recexplain.workbench: the app's streamlit-free helpers (settings, link parsing, run tables)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from recexplain import workbench as W


def test_settings_come_from_the_environment_and_name_the_default_runs(monkeypatch):
    monkeypatch.delenv("RECEXPLAIN_RUNS_DIR", raising=False)
    monkeypatch.setenv("RECEXPLAIN_DATASET", "synthetic")
    s = W.settings()
    assert s.runs_dir == Path("runs") and s.preset == "default"
    variants = ("additive", "multiplicative", "hard")
    assert s.default_ids == [f"synthetic-planted-{v}" for v in variants]
    monkeypatch.setenv("RECEXPLAIN_DATASET", "ml-100k")
    assert W.settings().default_ids[0] == "ml-100k-additive"


def test_known_runs_falls_back_to_the_defaults_and_names_unknown_ids():
    options, defaults = ["a", "b", "c", "pop"], ["a", "b", "c"]
    assert W.known_runs("b,c", options, defaults) == (["b", "c"], [])
    assert W.known_runs(["c"], options, defaults) == (["c"], [])
    assert W.known_runs("b,gone,,x", options, defaults) == (defaults, ["gone", "x"])
    assert W.known_runs("", options, defaults) == (defaults, [])


def test_item_options_keep_the_current_item_first_when_it_drops_out():
    recs = {"additive": pd.DataFrame({"item": [5, 3]}), "hard": pd.DataFrame({"item": [3, 9]})}
    assert W.item_options(recs, [7], None) == ([5, 3, 9, 7], 5)
    assert W.item_options(recs, [7], 9) == ([5, 3, 9, 7], 9)
    assert W.item_options(recs, [], 42) == ([42, 5, 3, 9], 42)


def test_edited_history_removes_then_appends_each_item_once():
    assert W.edited_history([1, 2, 3], [2], [4, 1]) == [1, 3, 4]
    assert W.edited_history([1, 2], [], []) == [1, 2]


def test_expected_rank_breaks_ties_at_random():
    ranks = pd.DataFrame({"n_greater": [0, 4], "n_tied": [0, 3]}, index=[10, 11])
    assert W.expected_rank(ranks, 10) == 1.0 and W.expected_rank(ranks, 11) == 6.5
    assert W.expected_rank(ranks, 12) is None


def test_runs_on_filters_broken_runs_data_and_baselines():
    table = pd.DataFrame({"run_id": ["a", "b", "pop", "broken"],
                          "fingerprint": ["f", "g", "f", None],
                          "model_type": ["attention", "attention", "pop", None],
                          "error": [None, None, None, "bad manifest"]})  # fmt: skip
    assert W.runs_on(table) == ["a", "b", "pop"]
    assert W.runs_on(table, "f") == ["a", "pop"]
    assert W.runs_on(table, "f", attention_only=True) == ["a"]
    assert W.runs_on(pd.DataFrame()) == []


def test_labels_use_run_ids_only_where_variants_repeat():
    runs = [SimpleNamespace(label="additive", run_id="x-additive"),
            SimpleNamespace(label="hard", run_id="x-hard"),
            SimpleNamespace(label="hard", run_id="y-hard")]  # fmt: skip
    assert W.labels(runs) == ["additive", "x-hard", "y-hard"]


def test_cancelled_runs_are_named():
    runs = [SimpleNamespace(run_id="a", metrics={"stop_reason": "cancelled at epoch 1, step 3"}),
            SimpleNamespace(run_id="b", metrics={"stop_reason": "reached max_epochs"}),
            SimpleNamespace(run_id="c", metrics={})]  # fmt: skip
    assert W.cancelled(runs) == ["a"]
    assert "best epoch so far: a." in W.cancelled_note(runs)
