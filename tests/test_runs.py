"""Runs: atomic save, faithful reload (identical scores), tamper and traversal checks."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
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


# -- issue 15: listings verify checksums, malformed manifests, ids, stale temp folders ---------
def _edit_metrics(folder, ndcg: float = 0.99) -> None:
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["test"]["ndcg@10"]["mean"] = ndcg
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_list_runs_marks_a_run_with_edited_metrics_as_broken(tiny_run, tmp_path, monkeypatch):
    shutil.copytree(tiny_run.path, tmp_path / "good")
    shutil.copytree(tiny_run.path, tmp_path / "edited")
    _edit_metrics(tmp_path / "edited")
    table = list_runs(tmp_path).set_index("run_id")
    assert table.loc["good", "status"] == "ok" and table.loc["good", "ndcg_at_10"] < 0.99
    assert table.loc["edited", "status"] == "broken"
    assert "metrics.json does not match its checksum" in table.loc["edited", "error"]
    assert pd.isna(table.loc["edited", "ndcg_at_10"])  # an unverified figure is not shown
    hashed = []
    real = runs._sha256
    monkeypatch.setattr(runs, "_sha256", lambda p: hashed.append(p.name) or real(p))
    list_runs(tmp_path)  # unchanged folders: checksums come from the cache (stat only)
    assert hashed == []
    _edit_metrics(tmp_path / "good", 0.5)  # a new size / mtime is noticed
    assert list_runs(tmp_path).set_index("run_id").loc["good", "status"] == "broken"
    assert "metrics.json" in hashed


@pytest.mark.parametrize("files", [[1, 2], "x", {"a": 1}, {"../x": "0" * 64}, None])
def test_a_malformed_manifest_is_a_run_error(tiny_run, tmp_path, files):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_run.path, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"] = files
    (copy / "manifest.json").write_text(json.dumps(manifest if files is not None else [1]))
    with pytest.raises(RunError, match="copy: "):
        load_run(copy)
    assert list_runs(tmp_path).loc[0, "status"] == "broken"


@pytest.mark.parametrize("bad", ["k1\n", "k1\r\n", "run\n\n", "a\x00"])
def test_run_ids_with_a_trailing_newline_are_refused(bad, tmp_path):
    with pytest.raises(RunError, match="invalid run id"):
        check_run_id(bad)


def test_a_folder_in_the_working_directory_does_not_shadow_a_run_id(
    tiny_run, tmp_path, monkeypatch
):
    runs_dir = tmp_path / "runs"
    shutil.copytree(tiny_run.path, runs_dir / "xss")
    shutil.copytree(tiny_run.path, tmp_path / "xss")  # ./xss: a folder of the same name
    _edit_metrics(tmp_path / "xss")
    monkeypatch.chdir(tmp_path)
    assert runs.resolve_run("xss", runs_dir) == runs_dir / "xss"
    assert load_run("xss", runs_dir).path == runs_dir / "xss"
    with pytest.raises(RunError, match="checksum"):  # a path only when given as a path
        load_run("./xss", runs_dir)
    with pytest.raises(RunError, match="no run"):
        load_run("xss", tmp_path / "empty")


def test_stale_temp_folders_are_removed_and_resumable_checkpoints_kept(tmp_path):
    import os
    import time

    old = time.time() - 2 * 3600
    names = [".tmp-a-x1", ".tmp-b-x2", ".old-c-123", ".partial-d", ".partial-e", "e", ".keep"]
    for name in names:
        (tmp_path / name / "sub").mkdir(parents=True)
        (tmp_path / name / "sub" / "f").write_text("x")
    (tmp_path / "e" / "manifest.json").write_text("{}")  # run "e" finished after its partial
    for name in [".tmp-a-x1", ".old-c-123", ".partial-d", ".partial-e", ".keep"]:
        for p in [tmp_path / name, *(tmp_path / name).rglob("*")]:
            os.utime(p, (old, old))
    removed = runs.prepare_runs_dir(tmp_path)
    left = sorted(p.name for p in tmp_path.iterdir())
    # fresh .tmp-b (a save in progress?), .partial-d (resumable: train --resume) and folders
    # that recexplain did not make stay; old temp folders and the partial of a saved run go
    assert left == [".keep", ".partial-d", ".tmp-b-x2", "e"]
    assert sorted(p.name for p in removed) == [".old-c-123", ".partial-e", ".tmp-a-x1"]


def test_a_runs_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="file.*not a folder"):
        runs.prepare_runs_dir(tmp_path / "file")
    with pytest.raises(RunError, match="not a folder"):
        runs.prepare_runs_dir(tmp_path / "file" / "below")
