"""Training across processes with jax.distributed (two CPU processes over gloo on 127.0.0.1)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from recexplain import cli
from recexplain.distributed import check_address
from recexplain.runs import list_runs, load_run

TINY = ["--attention", "multiplicative", "--d-model", "16", "--n-blocks", "1", "--n-heads", "2",
        "--max-len", "12", "--batch-size", "32", "--max-epochs", "3", "--bootstrap", "50",
        "--eval-every", "1"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(runs: Path, args: list[str]) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device each
    cmd = [sys.executable, "-m", "recexplain.cli", "--runs-dir", str(runs), "train", *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip


def _job(runs: Path, args: list[str], per_process: list[list[str]] | None = None):
    """Starts a 2-process job; returns [(returncode, output)] by process id."""
    job = ["--coordinator", f"127.0.0.1:{_free_port()}", "--num-processes", "2"]
    extra = per_process or [[], []]
    return [_start(runs, [*args, *job, "--process-id", str(i), *extra[i]]) for i in (0, 1)]


def _finish(procs: list[subprocess.Popen]) -> list[tuple[int, str]]:
    out = []
    for proc in procs:
        try:
            text, _ = proc.communicate(timeout=400)
        except subprocess.TimeoutExpired:
            proc.kill()
            text, _ = proc.communicate()
        out.append((proc.returncode, text))
    return out


def test_two_processes_train_like_one_process_and_save_one_run(tmp_path):
    data = ["--dataset", "synthetic", *TINY]
    two = _job(tmp_path / "two", [*data, "--run-id", "job"])
    one = _start(tmp_path / "one", [*data, "--run-id", "job"])
    (rc0, out0), (rc1, out1) = _finish(two)
    [(rc, out)] = _finish([one])
    assert rc0 == 0 and rc1 == 0 and rc == 0, (out0[-3000:], out1[-3000:], out[-3000:])
    assert "'processes': 2" in out0 and "'devices': 2" in out0
    assert "process 1: training finished; process 0 saves the run" in out1
    assert "saved run job" in out0 and "saved run" not in out1
    assert list(list_runs(tmp_path / "two")["run_id"]) == ["job"]
    assert not list((tmp_path / "two").glob(".partial-*"))
    sharded, single = load_run("job", tmp_path / "two"), load_run("job", tmp_path / "one")
    assert len(sharded.history) == len(single.history) == 3
    for a, b in zip(sharded.history, single.history, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4), (sharded.history, single.history)
        assert a["valid_ndcg@10"] == pytest.approx(b["valid_ndcg@10"], abs=1e-4)
    assert [h["compiles"] for h in sharded.history[1:]] == [0, 0]
    test_two, test_one = sharded.metrics["test"]["ndcg@10"], single.metrics["test"]["ndcg@10"]
    assert test_two["mean"] == pytest.approx(test_one["mean"], abs=2e-3)
    assert json.loads((tmp_path / "two" / "job" / "config.json").read_text())["train"]["seed"] == 0


def test_processes_with_different_data_stop_with_a_clear_error(tmp_path):
    files = []
    for i, users in enumerate((30, 40)):
        rows = [f"{u},{(u * 7 + t) % 50 + 1},{t}" for u in range(users) for t in range(12)]
        path = tmp_path / f"part{i}.csv"
        path.write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
        files.append(path)
    args = ["--dataset", "file", *TINY]
    per = [["--path", str(files[0])], ["--path", str(files[1])]]
    results = _finish(_job(tmp_path / "runs", args, per))
    for rc, out in results:
        assert rc == cli.EXIT_USAGE, out[-3000:]
        assert "processes disagree on the number of training windows" in out, out[-3000:]
    assert list_runs(tmp_path / "runs").empty


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--coordinator", "no-port"], "--coordinator must be host:port"),
        (["--coordinator", "h:99999"], "port must be 1..65535"),
        (["--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"],
         "--process-id must be in 0..1"),
        (["--coordinator", "h:1", "--num-processes", "0"], "--num-processes must be >= 1"),
        (["--num-processes", "2"], "need --coordinator"),
        (["--process-id", "1"], "need --coordinator"),
    ],
)  # fmt: skip
def test_bad_job_arguments_are_named(tmp_path, capsys, argv, message):
    rc = cli.main(["--runs-dir", str(tmp_path), "train", "--dataset", "synthetic", *argv])
    assert rc == cli.EXIT_USAGE
    assert message in capsys.readouterr().err


def test_a_missing_coordinator_is_reported_not_aborted(tmp_path, capsys):
    port = _free_port()  # nobody listens there
    rc = cli.main(["--runs-dir", str(tmp_path), "train", "--dataset", "synthetic",
                   "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                   "--process-id", "1", "--join-timeout", "1"])  # fmt: skip
    assert rc == cli.EXIT_USAGE
    assert f"no coordinator at 127.0.0.1:{port} after 1 s" in capsys.readouterr().err


def test_process_0_needs_a_free_local_port(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        rc = cli.main(["--runs-dir", str(tmp_path), "train", "--dataset", "synthetic",
                       "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"])  # fmt: skip
    assert rc == cli.EXIT_USAGE
    assert f"process 0 cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_addresses():
    assert check_address("10.0.0.1:1234") == "10.0.0.1:1234"
    assert check_address("[::1]:80") == "[::1]:80"
    assert check_address("node-3.cluster:8476") == "node-3.cluster:8476"
    for bad in ("", ":1", "host:", "a b:1", "host:port"):
        with pytest.raises(ValueError, match="host:port"):
            check_address(bad)
