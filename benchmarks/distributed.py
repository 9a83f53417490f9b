"""Epoch time of one process vs a two-process jax.distributed job, on one machine.

    python benchmarks/distributed.py [--variant multiplicative] [--epochs 7] [--loss sampled]

Trains the default preset on ML-100K (offline copy) three ways with `recexplain train`:
1 process x 1 device, 1 process x 2 devices (XLA_FLAGS host device count) and 2 processes x
1 device (jax.distributed over gloo on 127.0.0.1). Validation runs only after the last epoch;
the epoch time is the median over epochs 2..N-1 (epoch 1 compiles, the last one validates).
Writes benchmarks/results/distributed.md. On one machine the processes share its cores, so this
measures the overhead of the job (gradient all-reduce over gloo, duplicated batch building), not
the speed-up that separate machines would give.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import write_table


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(runs: Path, args: list[str], devices: int, extra: list[str]) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    cmd = [sys.executable, "-m", "recexplain.cli", "--runs-dir", str(runs), "train", *args,
           "--devices", str(devices), *extra]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip


def run_setting(name: str, processes: int, devices: int, args: list[str]) -> dict:
    runs = Path(tempfile.mkdtemp(prefix="recexplain-dist-"))
    job = []
    if processes > 1:
        job = ["--coordinator", f"127.0.0.1:{_free_port()}", "--num-processes", str(processes)]
    start = time.perf_counter()
    procs = [
        _launch(runs, args, devices, [*job, "--process-id", str(i)] if job else [])
        for i in range(processes)
    ]
    outputs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - start
    for p, out in zip(procs, outputs, strict=True):
        if p.returncode != 0:
            raise SystemExit(f"{name} failed:\n{out[-3000:]}")
    history = json.loads((runs / "bench" / "history.json").read_text())
    seconds = [h["seconds"] for h in history]
    epochs = [b - a for a, b in zip(seconds, seconds[1:], strict=False)][:-1]  # 2..N-1
    metrics = json.loads((runs / "bench" / "metrics.json").read_text())
    return {
        "setting": name,
        "processes x devices": f"{processes} x {devices}",
        "epoch s (median)": statistics.median(epochs),
        "epoch s (min-max)": f"{min(epochs):.2f}-{max(epochs):.2f}",
        "final loss": history[-1]["loss"],
        "valid NDCG@10": history[-1]["valid_ndcg@10"],
        "wall s (whole command)": wall,
        "test NDCG@10": metrics["test"]["ndcg@10"]["mean"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="multiplicative")
    ap.add_argument("--epochs", type=int, default=7)
    ap.add_argument("--loss", default="sampled", choices=["auto", "full", "sampled"])
    a = ap.parse_args()
    if a.epochs < 4:
        raise SystemExit("--epochs must be >= 4 (epoch 1 compiles, the last one validates)")
    args = ["--dataset", "ml-100k", "--offline", "--attention", a.variant, "--loss", a.loss,
            "--max-epochs", str(a.epochs), "--eval-every", "1000", "--run-id", "bench",
            "--bootstrap", "100"]  # fmt: skip
    rows = [run_setting("one process", 1, 1, args),
            run_setting("one process, two devices", 1, 2, args),
            run_setting("two processes (jax.distributed)", 2, 1, args)]  # fmt: skip
    write_table(
        "distributed.md",
        f"Training across processes: ML-100K, {a.variant}, default preset, loss {a.loss}",
        rows,
        [
            f"Command: python benchmarks/distributed.py --variant {a.variant} "
            f"--epochs {a.epochs} --loss {a.loss}",
            f"Epoch times: median of epochs 2..{a.epochs - 1} of one run per setting.",
            "All processes share this machine's cores: the figures show the cost of the job "
            "(gloo all-reduce, every process building the global batch), not a multi-machine "
            "speed-up.",
        ],
    )


if __name__ == "__main__":
    main()
