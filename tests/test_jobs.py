"""recexplain.jobs: background jobs (errors, cancel, one job per key) and upload checks."""

from __future__ import annotations

import threading
from pathlib import Path

import pandas as pd
import pytest

from recexplain import jobs
from recexplain.config import DataConfig, preset
from recexplain.data import DataError

WAIT = 10  # seconds: every target below ends in milliseconds


@pytest.fixture
def cache(monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("RECEXPLAIN_CACHE", str(tmp_path))
    return tmp_path


def test_save_upload_rejects_bad_types_empty_and_oversized_files(cache):
    with pytest.raises(DataError, match=r"unsupported file type \.exe"):
        jobs.save_upload("ratings.exe", b"x")
    with pytest.raises(DataError, match=r"unsupported file type \(none\)"):
        jobs.save_upload("ratings", b"x")
    with pytest.raises(DataError, match="empty"):
        jobs.save_upload("empty.csv", b"")
    with pytest.raises(DataError, match="3 MB is over the 2 MB limit"):
        jobs.save_upload("big.csv", b"x" * (3 << 20), limit_mb=2)
    jobs.save_upload("just-fits.csv", b"x" * (2 << 20), limit_mb=2)
    assert not (cache / "uploads").exists() or len(list((cache / "uploads").iterdir())) == 1


def test_save_upload_sanitises_the_name_and_stores_by_content(cache):
    path = jobs.save_upload("../../evil name;rm -rf.CSV", b"a,b\n1,2\n")
    assert path.parent.parent == cache / "uploads" and path.name == "evil_name_rm_-rf.csv"
    assert path.read_bytes() == b"a,b\n1,2\n" and not list(path.parent.glob(".*.tmp"))
    assert jobs.save_upload("../../evil name;rm -rf.CSV", b"a,b\n1,2\n") == path
    other = jobs.save_upload("evil name.csv", b"a,b\n3,4\n")
    assert other.parent != path.parent  # a folder per content hash
    assert jobs.save_upload("....csv", b"x").name == "upload.csv"


def test_file_columns_reads_csv_tsv_and_parquet_heads(cache, tmp_path):
    csv = jobs.save_upload("r.csv", b"user,item,time\n1,2,3\n4,5,6\n")
    assert jobs.file_columns(csv)[0] == ["user", "item", "time"]
    tsv = jobs.save_upload("r.tsv", b"u\ti\n1\t2\n")
    names, head = jobs.file_columns(tsv)
    assert names == ["u", "i"] and len(head) == 1
    pq = tmp_path / "r.parquet"
    pd.DataFrame({"who": range(10), "what": range(10)}).to_parquet(pq)
    names, head = jobs.file_columns(pq)
    assert names == ["who", "what"] and len(head) == 5
    broken = jobs.save_upload("broken.parquet", b"not parquet")
    with pytest.raises(DataError, match="broken.parquet.*cannot read the file"):
        jobs.file_columns(broken)


def test_a_job_reports_its_result_and_progress():
    job = jobs.start_job("test:ok", lambda progress, stop: progress({"step": 1}) or 42)
    assert job.wait(WAIT) and job.done
    assert job.result == 42 and job.error is None and job.events == [{"step": 1}]
    assert jobs.get_job("test:ok") is job


def test_a_job_that_raises_reports_the_error(capsys):
    def target(progress, should_stop):
        raise RuntimeError("the data went away")

    job = jobs.start_job("test:raises", target)
    assert job.wait(WAIT)
    assert job.error == "RuntimeError: the data went away" and job.result is None
    assert "Traceback" in capsys.readouterr().err  # for the terminal


def test_cancel_stops_the_target_and_a_key_runs_one_job_at_a_time():
    started, steps = threading.Event(), []

    def target(progress, should_stop):
        started.set()
        while not should_stop():
            steps.append(1)
            threading.Event().wait(0.01)
        return "stopped"

    job = jobs.start_job("test:cancel", target)
    assert started.wait(WAIT)
    assert jobs.start_job("test:cancel", target) is job  # already running: the same job
    jobs.forget_job("test:cancel")  # a running job is kept
    assert jobs.get_job("test:cancel") is job and not job.cancelled
    job.cancel.set()
    assert job.wait(WAIT) and job.cancelled and job.result == "stopped" and steps
    again = jobs.start_job("test:cancel", lambda progress, stop: "new")  # finished: a new one
    assert again is not job and again.wait(WAIT) and again.result == "new"
    jobs.forget_job("test:cancel")
    assert jobs.get_job("test:cancel") is None


def test_start_default_runs_passes_should_stop_and_reports_a_cancel(monkeypatch, tmp_path):
    calls = {}

    def fake(runs_dir, *, data_cfg, preset_name, progress, should_stop, verbose):
        calls.update(runs_dir=runs_dir, data_cfg=data_cfg, preset_name=preset_name)
        while not should_stop():
            threading.Event().wait(0.01)
        return ["one-run"]

    monkeypatch.setattr(jobs, "default_runs", fake)
    cfg = DataConfig(dataset="synthetic")
    job = jobs.start_default_runs(tmp_path, cfg, "tiny")
    assert job.key == jobs.default_runs_key(tmp_path, cfg, "tiny") and job.parts == 3
    assert "synthetic-planted" in job.key and str(tmp_path.resolve()) in job.key
    job.cancel.set()
    assert job.wait(WAIT)
    assert calls == {"runs_dir": tmp_path, "data_cfg": cfg, "preset_name": "tiny"}
    assert "cancelled: 1 of 3 variants are saved" in jobs.default_runs_outcome(job)
    jobs.forget_job(job.key)


def test_default_runs_outcome_names_the_error():
    job = jobs.Job("test:failed", parts=3, error="DataError: no network")
    message = jobs.default_runs_outcome(job)
    assert message == "Training the default runs failed: DataError: no network"
    assert jobs.default_runs_outcome(jobs.Job("x")).endswith("the runs did not load")
    none = jobs.Job("test:none", parts=3, result=[])
    none.cancel.set()
    assert "cancelled: no variant is saved yet" in jobs.default_runs_outcome(none)


def test_start_training_tags_progress_with_the_run_id(monkeypatch, tmp_path):
    seen = {}

    def fake_train(data_cfg, model_cfg, train_cfg, *, runs_dir, run_id, progress, should_stop,
                   verbose, overwrite):  # fmt: skip
        seen.update(runs_dir=runs_dir, run_id=run_id, overwrite=overwrite)
        progress({"epoch": 1})
        return "a run"

    monkeypatch.setattr(jobs, "train", fake_train)
    model_cfg, train_cfg = preset("tiny", "hard")
    job = jobs.start_training(tmp_path, DataConfig(), model_cfg, train_cfg, "my-run",
                              overwrite=True)  # fmt: skip
    assert job.wait(WAIT) and job.result == "a run" and job.error is None
    assert job.events == [{"epoch": 1, "variant": "my-run"}]
    assert seen == {"runs_dir": tmp_path, "run_id": "my-run", "overwrite": True}
    assert job.key == f"train:{tmp_path.resolve()}:my-run"


# -- issue 15: rejected uploads leave nothing in the cache; the docs say what the code does ----
def test_an_upload_that_does_not_parse_is_removed_from_the_cache(cache, tmp_path):
    broken = jobs.save_upload("broken.parquet", b"not parquet")
    with pytest.raises(DataError, match="cannot read the file"):
        jobs.file_columns(broken)
    assert not broken.exists() and not broken.parent.exists()
    outside = tmp_path / "mine.parquet"  # a file outside the upload cache is never deleted
    outside.write_bytes(b"not parquet either")
    with pytest.raises(DataError):
        jobs.file_columns(outside)
    assert outside.exists()
    kept = jobs.save_upload("ok.csv", b"u,i,t\n1,2,3\n")
    jobs.discard_upload(kept)  # the Train page calls this when the data does not load
    assert not kept.parent.exists() and (cache / "uploads").is_dir()
    jobs.discard_upload(outside)
    assert outside.exists()


def test_security_doc_names_the_stored_upload_name_the_code_uses(cache):
    doc = " ".join(
        (Path(__file__).resolve().parents[1] / "docs" / "SECURITY.md").read_text().split()
    )
    name = jobs.save_upload("../../etc/passwd.csv", b"a,b\n1,2\n").name
    assert f"`../../etc/passwd.csv` becomes `{name}`" in doc, name
