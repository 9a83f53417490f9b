"""Background training jobs and uploaded files for the workbench (no streamlit here)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from recexplain.config import ATTENTION_VARIANTS, DataConfig, ModelConfig, TrainConfig
from recexplain.data import DataError, cache_root, dataset_name
from recexplain.quickstart import default_runs
from recexplain.runs import Run
from recexplain.training import train

Progress = Callable[[dict[str, Any]], None]
Target = Callable[[Progress, Callable[[], bool]], Any]  # target(progress, should_stop) -> result


@dataclass
class Job:
    """A function running in a background thread; pages poll its progress events."""

    key: str
    parts: int = 1  # how many models the job trains (progress is split evenly)
    events: list[dict[str, Any]] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: str | None = None  # "<ExceptionType>: <message>" when the target raised
    started: float = field(default_factory=time.time)

    @property
    def done(self) -> bool:
        return self.finished.is_set()

    @property
    def cancelled(self) -> bool:
        """Whether someone asked the job to stop (it may still be finishing its step)."""
        return self.cancel.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Blocks until the job ends (or `timeout` seconds pass); returns `done`."""
        return self.finished.wait(timeout)

    def run(self, target: Target) -> None:
        try:
            self.result = target(self.events.append, self.cancel.is_set)
        except Exception as err:  # shown on the page; the traceback goes to the terminal
            traceback.print_exc()
            self.error = f"{type(err).__name__}: {err}"
        finally:
            self.finished.set()


# One registry per server process, shared by every browser session (like st.cache_resource).
_JOBS: dict[str, Job] = {}
_LOCK = threading.Lock()


def get_job(key: str) -> Job | None:
    """The job started under `key` (running or finished), or None."""
    return _JOBS.get(key)


def start_job(key: str, target: Target, parts: int = 1) -> Job:
    """Starts `target(progress, should_stop)` in a daemon thread unless `key` is already running.

    Returns:
      The running job under `key` (a new one when there was none or the last one had finished).
    """
    with _LOCK:
        job = _JOBS.get(key)
        if job is None or job.done:
            job = Job(key, parts)
            _JOBS[key] = job
            threading.Thread(target=job.run, args=(target,), daemon=True, name=key).start()
    return job


def forget_job(key: str) -> None:
    """Drops a finished job, so that the next start begins afresh (a running one is kept)."""
    with _LOCK:
        job = _JOBS.get(key)
        if job is not None and job.done:
            del _JOBS[key]


def start_training(
    runs_dir: Path,
    data_cfg: DataConfig,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    run_id: str,
    *,
    overwrite: bool = False,
) -> Job:
    """Starts `training.train` in the background; cancel keeps the best epoch so far."""
    runs_dir = Path(runs_dir)

    def target(progress: Progress, should_stop: Callable[[], bool]) -> Run:
        return train(data_cfg, model_cfg, train_cfg, runs_dir=runs_dir, run_id=run_id,
                     progress=lambda e: progress({**e, "variant": run_id}),
                     should_stop=should_stop, verbose=True, overwrite=overwrite)  # fmt: skip

    return start_job(f"train:{runs_dir.resolve()}:{run_id}", target)


def default_runs_key(runs_dir: Path, data_cfg: DataConfig, preset_name: str) -> str:
    """The job key of `start_default_runs` for these settings."""
    return f"default-runs:{Path(runs_dir).resolve()}:{dataset_name(data_cfg)}:{preset_name}"


def start_default_runs(runs_dir: Path, data_cfg: DataConfig, preset_name: str) -> Job:
    """Starts `quickstart.default_runs` in the background (reuses finished variants).

    Cancelling stops between steps: the variant in progress is saved with its best epoch so
    far and the variants not started yet are skipped (the job's result lists the saved runs).
    """

    def target(progress: Progress, should_stop: Callable[[], bool]) -> list[Run]:
        return default_runs(runs_dir, data_cfg=data_cfg, preset_name=preset_name,
                            progress=progress, should_stop=should_stop, verbose=True)  # fmt: skip

    key = default_runs_key(runs_dir, data_cfg, preset_name)
    return start_job(key, target, parts=len(ATTENTION_VARIANTS))


def default_runs_outcome(job: Job) -> str:
    """What to tell the user when a finished `start_default_runs` job left runs missing."""
    if job.cancelled:
        saved = len(job.result or [])
        kept = (f"{saved} of {job.parts} variants are saved (the one in progress with its best "
                "epoch so far)") if saved else "no variant is saved yet"  # fmt: skip
        return (f"Training the default runs was cancelled: {kept}; resuming trains the rest. "
                "The Train and Attention playground pages work without them.")  # fmt: skip
    return f"Training the default runs failed: {job.error or 'the runs did not load'}"


# -- uploads -------------------------------------------------------------------------------------
UPLOAD_LIMIT_MB = 200  # also server.maxUploadSize in .streamlit/config.toml
UPLOAD_TYPES = ("csv", "tsv", "txt", "parquet", "pq")


def save_upload(name: str, data: bytes, limit_mb: int = UPLOAD_LIMIT_MB) -> Path:
    """Stores an uploaded file under <cache>/uploads/<sha256>/ (atomically) and returns its path.

    The file name is reduced to letters, digits, '.', '_' and '-' (no folders).

    Raises:
      DataError: empty, too large, or not a CSV/TSV/Parquet file.
    """
    suffix = Path(name).suffix.lower()
    if suffix.lstrip(".") not in UPLOAD_TYPES:
        raise DataError(f"unsupported file type {suffix or '(none)'}; use CSV, TSV or Parquet",
                        file=name)  # fmt: skip
    if not data:
        raise DataError("file is empty", file=name)
    if len(data) > limit_mb * 2**20:
        raise DataError(f"{len(data) / 2**20:.0f} MB is over the {limit_mb} MB limit", file=name)
    folder = cache_root() / "uploads" / hashlib.sha256(data).hexdigest()[:20]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem).strip("._-")[:60] or "upload"
    path = folder / f"{stem}{suffix}"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{stem}.{os.getpid()}.{threading.get_ident()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path


def file_columns(path: Path) -> tuple[list[str], pd.DataFrame]:
    """(column names, first rows) of a CSV/TSV/Parquet file, for the column mapping.

    Raises:
      DataError: the file does not parse (the message names the file); an upload that does
        not parse is removed from the upload cache (`discard_upload`).
    """
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            head = pq.ParquetFile(path).read_row_group(0).slice(0, 5).to_pandas()
        else:
            sep = {".csv": ",", ".tsv": "\t"}.get(path.suffix.lower())
            head = pd.read_csv(path, sep=sep, engine="python", nrows=5)
    except Exception as err:  # any parser error becomes a message naming the file
        discard_upload(path)
        message = f"cannot read the file ({type(err).__name__}: {err})"
        raise DataError(message, file=path.name) from err
    return [str(c) for c in head.columns], head


def discard_upload(path: Path | str) -> bool:
    """Removes a rejected upload (its <cache>/uploads/<sha256>/ folder); any other path is left
    alone. Returns whether something was removed."""
    path = Path(path)
    uploads = (cache_root() / "uploads").resolve()
    folder = path.resolve().parent
    if folder.parent != uploads or not folder.is_dir():
        return False
    shutil.rmtree(folder, ignore_errors=True)
    return True
