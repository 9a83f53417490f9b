"""Runs: atomic save, faithful reload (identical scores), tamper and traversal checks."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from recexplain import runs
from recexplain.runs import RunError, check_run_id, list_runs, load_run, save_run


def test_run_folder_holds_everything(tiny_run):
    names = {p.name for p in tiny_run.path.iterdir()}
    assert names >= {"config.json", "data.json", "items.parquet", "users.parquet", "checkpoint",
                     "metrics.json", "history.json", "ranking_test.parquet",
                     "ranking_valid.parquet", "manifest.json"}  # fmt: skip
    manifest = json.loads((tiny_run.path / "manifest.json").read_text())
    assert manifest["fingerprint"] == tiny_run.fingerprint and manifest["code_version"]
    test = tiny_run.metrics["test"]["ndcg@10"]
    assert test["ci_low"] <= test["mean"] <= test["ci_high"]
    assert len(tiny_run.history) == 2 and tiny_run.model.deterministic


def test_round_trip_gives_identical_scores(tiny_run):
    again = load_run(tiny_run.path)
    x = np.tile(np.arange(1, 13, dtype=np.int32), (3, 1))
    np.testing.assert_array_equal(
        np.asarray(tiny_run.scorer()(None, x)), np.asarray(again.scorer()(None, x))
    )
    r1, r2 = tiny_run.ranking("test"), again.ranking("test")
    np.testing.assert_array_equal(r1.n_greater, r2.n_greater)
    assert again.items.loc[1, "title"] == tiny_run.items.loc[1, "title"]


def test_tampered_file_is_refused(tiny_run, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_run.path, copy)
    metrics = json.loads((copy / "metrics.json").read_text())
    metrics["test"]["ndcg@10"]["mean"] = 0.99
    (copy / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(RunError, match="metrics.json does not match its checksum"):
        load_run(copy)


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", ".hidden", "x" * 101, "..", "a\\b"])
def test_run_ids_cannot_leave_the_runs_folder(bad, tmp_path):
    with pytest.raises(RunError, match="invalid run id"):
        check_run_id(bad)
    with pytest.raises(RunError):
        load_run(bad, tmp_path)


def test_failed_save_leaves_nothing_behind(tiny_run, tmp_path, monkeypatch):
    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(runs, "_write_items", explode)
    with pytest.raises(OSError, match="disk full"):
        save_run(tmp_path, "broken", model_type="attention", configs={"n_items": 1}, params={},
                 dataset_info={}, items=tiny_run.items, user_ids=tiny_run.user_ids, metrics={},
                 history=[], rankings={})  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_existing_run_is_not_overwritten_by_default(tiny_run):
    with pytest.raises(RunError, match="already exists"):
        save_run(tiny_run.path.parent, tiny_run.run_id, model_type="attention",
                 configs={"n_items": 1}, params={}, dataset_info={}, items=tiny_run.items,
                 user_ids=tiny_run.user_ids, metrics={}, history=[], rankings={})  # fmt: skip


def test_list_runs_skips_temp_folders_and_reports_broken_ones(tiny_run, tmp_path):
    shutil.copytree(tiny_run.path, tmp_path / "good")
    (tmp_path / ".tmp-half-written").mkdir()
    (tmp_path / "broken").mkdir()
    table = list_runs(tmp_path)
    assert list(table["run_id"]) == ["broken", "good"]
    assert "missing manifest.json" in table.set_index("run_id").loc["broken", "error"]
    assert table.set_index("run_id").loc["good", "attention"] == "additive"


def test_missing_run_gives_a_clear_error(tmp_path):
    with pytest.raises(RunError, match="no run at"):
        load_run("nothing-here", tmp_path)
