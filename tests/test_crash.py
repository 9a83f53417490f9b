"""Crash safety: kill -9 the trainer at random moments; runs/ never holds a half-written run,
and --resume ends exactly where an uninterrupted run with the same seed ends."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recexplain.runs import RunError, load_run

ARGS = ["train", "--dataset", "synthetic", "--preset", "tiny", "--attention", "multiplicative",
        "--max-epochs", "12", "--patience", "12", "--seed", "3"]  # fmt: skip


def _cli(runs: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "recexplain.cli", "--runs-dir", str(runs), *ARGS, *extra]


def _env(cache: Path) -> dict[str, str]:
    return dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(cache), PYTHONUNBUFFERED="1")


def _check_no_half_written_run(runs: Path) -> None:
    """Every visible folder is a complete run that loads; temp/partial folders are hidden."""
    for path in runs.iterdir() if runs.exists() else []:
        if path.name.startswith("."):
            continue
        load_run(path)  # raises RunError if anything is missing or modified


@pytest.mark.slow
def test_kill_9_at_random_points_then_resume_matches_an_uninterrupted_run(tmp_path):
    cache = tmp_path / "jax-cache"
    clean = subprocess.run(_cli(tmp_path / "clean", "--run-id", "r"), env=_env(cache),
                           capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert clean.returncode == 0, clean.stderr[-2000:]
    reference = load_run("r", tmp_path / "clean")

    runs, rng, kills = tmp_path / "crashy", random.Random(7), 0
    while kills < 12:
        proc = subprocess.Popen(_cli(runs, "--run-id", "r", "--resume"), env=_env(cache),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(rng.uniform(1.0, 7.0))
        if proc.poll() is not None:  # finished before the kill: nothing left to interrupt
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        _check_no_half_written_run(runs)
    if not (runs / "r").exists():
        done = subprocess.run(_cli(runs, "--run-id", "r", "--resume"), env=_env(cache),
                              capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
    assert kills >= 10, f"only {kills} kills landed before training finished"
    resumed = load_run("r", runs)
    assert not (runs / ".partial-r").exists()
    keys = ("epoch", "loss", "valid_ndcg@10")
    assert [[h[k] for k in keys] for h in resumed.history] == [
        [h[k] for k in keys] for h in reference.history
    ]
    assert resumed.metrics["test"]["ndcg@10"] == reference.metrics["test"]["ndcg@10"]
    assert resumed.metrics["best_epoch"] == reference.metrics["best_epoch"]


def test_resume_refuses_a_checkpoint_of_other_configs(tmp_path, planted):
    from recexplain.config import DataConfig, preset
    from recexplain.training import train

    model_cfg, cfg = preset("tiny", "hard")
    partial = tmp_path / ".partial-x"
    partial.mkdir(parents=True)
    (partial / "latest.json").write_text(json.dumps({"epoch": 1, "folder": "epoch-0001"}))
    (partial / "epoch-0001").mkdir()
    (partial / "epoch-0001" / "meta.json").write_text(json.dumps({"digest": "other"}))
    with pytest.raises(ValueError, match="belongs to other configs or data"):
        train(DataConfig(dataset="synthetic"), model_cfg, cfg, runs_dir=tmp_path, run_id="x",
              dataset=planted[0], resume=True, verbose=False)  # fmt: skip
    with pytest.raises(RunError):
        load_run("x", tmp_path)
