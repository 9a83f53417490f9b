"""Training across several processes or machines with `jax.distributed`.

Every process runs the same `recexplain train` command with its own `--process-id`; process 0
also hosts the coordinator. Each process loads the data and builds the same (seeded) global
batches; `feed.Placement` puts its share of each batch on its own devices, so the batch axis
is sharded over every device of every process and the parameters are replicated. Gradients are
averaged by XLA's collectives (gloo between CPU processes, NCCL between GPUs).

Only process 0 writes: per-epoch checkpoints and the finished run. Early-stopping decisions use
process 0's validation score, so the processes cannot drift apart.

    # machine A (10.0.0.1), and machine B: the same command with --process-id 1
    recexplain train --attention multiplicative \
        --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 0
"""

from __future__ import annotations

import re
import socket
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.\-]+):(\d{1,5})$")


def check_address(address: str) -> str:
    """'host:port' (IPv6 as '[::1]:port') or a ValueError naming what is wrong."""
    match = _ADDRESS.match(address or "")
    if match is None:
        raise ValueError(f"--coordinator must be host:port (e.g. 10.0.0.1:1234), got {address!r}")
    if not 0 < int(match.group(2)) < 65536:
        raise ValueError(f"--coordinator port must be 1..65535, got {match.group(2)}")
    return address


def _host_port(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host.strip("[]"), int(port)


def _check_can_listen(address: str) -> None:
    """Process 0: the coordinator's address must be this machine's and its port free."""
    host, port = _host_port(address)
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(info[0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC does
            probe.bind(info[4])
    except OSError as err:
        raise ValueError(
            f"process 0 cannot listen on {address} ({err.strerror or err}): give an address "
            "of this machine and a free port"
        ) from err


def _wait_for_coordinator(address: str, timeout_s: float) -> None:
    """Processes > 0: wait until process 0 listens (JAX aborts the process if it never does)."""
    host, port = _host_port(address)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=2):
                return
        except OSError as err:
            if time.monotonic() >= deadline:
                raise ValueError(
                    f"no coordinator at {address} after {timeout_s:.0f} s ({err.strerror or err}):"
                    " start process 0 with the same --coordinator, and check the address and "
                    "firewall"
                ) from err
            time.sleep(0.5)


def initialize(
    coordinator: str,
    num_processes: int,
    process_id: int,
    *,
    timeout_s: int = 300,
) -> None:
    """Joins this process to a multi-process JAX job (call before any JAX computation).

    Args:
      coordinator: host:port of process 0 (it listens there; the others connect to it).
      num_processes: how many processes take part (>= 1).
      process_id: this process, 0..num_processes - 1.
      timeout_s: how long to wait for the other processes to join.
    Raises:
      ValueError: a bad address, count or id; process 0 cannot listen there; no process 0
        answers within timeout_s; or a JAX backend is already running.
    """
    check_address(coordinator)
    if num_processes < 1:
        raise ValueError(f"--num-processes must be >= 1, got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise ValueError(
            f"--process-id must be in 0..{num_processes - 1} for {num_processes} processes, "
            f"got {process_id}"
        )
    if process_id == 0:
        _check_can_listen(coordinator)
    else:
        _wait_for_coordinator(coordinator, timeout_s)
    try:  # process 0 listens on exactly that address (JAX's default is every interface)
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id, coordinator_bind_address=coordinator,
                                   initialization_timeout=timeout_s)  # fmt: skip
    except RuntimeError as err:  # e.g. "must be called before any JAX computations"
        raise ValueError(f"could not join the job at {coordinator}: {err}") from err


def is_primary() -> bool:
    """True on process 0 (and in a single-process run): the process that writes files."""
    return jax.process_index() == 0


def is_multiprocess() -> bool:
    return jax.process_count() > 1


def agree(value: float) -> float:
    """Process 0's value on every process (unchanged in a single-process run).

    Used for validation scores, so that the early-stopping decision is the same everywhere
    even if floating-point results differed between machines.
    """
    if not is_multiprocess():
        return value
    from jax.experimental import multihost_utils

    return float(multihost_utils.broadcast_one_to_all(np.asarray(value, np.float32)))


def same_everywhere(value: int, what: str) -> None:
    """Raises ValueError on every process unless all of them hold the same integer."""
    if not is_multiprocess():
        return
    from jax.experimental import multihost_utils

    values = np.asarray(multihost_utils.process_allgather(np.asarray(value, np.int32)))
    if len(set(values.ravel().tolist())) > 1:
        raise ValueError(f"processes disagree on {what}: {values.ravel().tolist()} (by process)")


def checkpointer() -> ocp.StandardCheckpointer:
    """An Orbax checkpointer that reads and writes from this process alone.

    Orbax's default synchronises every process of a multi-process job at each save and
    restore; here only process 0 saves, so the others must not be waited for.
    """
    if not is_multiprocess():
        return ocp.StandardCheckpointer()
    me = jax.process_index()
    options = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
    return ocp.StandardCheckpointer(multiprocessing_options=options)


def describe() -> dict[str, Any]:
    """Process and device counts, for logs."""
    return {"process": jax.process_index(), "processes": jax.process_count(),
            "local_devices": jax.local_device_count(), "devices": jax.device_count()}  # fmt: skip
