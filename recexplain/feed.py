"""Feeding training steps: shuffled fixed-shape batches, shared negatives, prefetch, sharding.

Batches are built on a background thread (numpy indexing and the host-to-device copy) while
the previous step runs, and, when several devices exist, the batch axis is sharded over them
with `jax.sharding` (Mesh("data") + NamedSharding; parameters are replicated). In a
multi-process job (`recexplain.distributed`) the mesh spans the devices of every process; each
process builds the same global batch and hands only its own rows to its own devices.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from recexplain.config import TrainConfig
from recexplain.split import Split

Batch = dict[str, Any]


class NegativeSampler:
    """Shared negatives per step: uniform, or half uniform + half by training popularity."""

    def __init__(self, split: Split, cfg: TrainConfig):
        n = split.n_items
        if cfg.negatives == "uniform":
            q = np.full(n + 1, 1.0 / n)
        else:
            pop = split.item_popularity().astype(np.float64)
            q = 0.5 / n + 0.5 * pop / max(pop.sum(), 1.0)
        q[0] = 1.0  # padding: never sampled, log q = 0
        self.cdf = np.cumsum(q[1:]) / q[1:].sum()
        self.log_q = np.log(q).astype(np.float32)
        self.size = cfg.n_negatives

    def __call__(self, rng: np.random.Generator) -> np.ndarray:
        """int32 [n_negatives] item ids in 1..N."""
        u = rng.random(self.size)
        return (np.searchsorted(self.cdf, u, side="right") + 1).astype(np.int32)


def batches(inputs: np.ndarray, targets: np.ndarray, size: int, rng: np.random.Generator):
    """Shuffled (inputs, targets) batches of exactly `size` rows; the last is zero-padded."""
    order = rng.permutation(len(inputs))
    for start in range(0, len(order), size):
        idx = order[start : start + size]
        pad = size - len(idx)
        yield (np.pad(inputs[idx], ((0, pad), (0, 0))), np.pad(targets[idx], ((0, pad), (0, 0))))


class Placement:
    """Where batches and parameters live: one device, or the batch axis over several.

    `n_devices` counts devices per process; with several processes the mesh takes that many
    from each, so a batch is split over n_devices x processes devices.
    """

    def __init__(self, n_devices: int = 0):
        """Args: n_devices: local devices to use (0 = every local device)."""
        local = jax.local_devices()
        n = len(local) if n_devices == 0 else n_devices
        if not 1 <= n <= len(local):
            raise ValueError(f"asked for {n_devices} devices, {len(local)} are available")
        per_process: dict[int, list] = {}
        for device in jax.devices():
            per_process.setdefault(device.process_index, []).append(device)
        devices = [d for p in sorted(per_process) for d in per_process[p][:n]]
        self.n_devices = len(devices)
        self.mesh = Mesh(np.array(devices), ("data",)) if len(devices) > 1 else None

    def check_batch(self, batch_size: int) -> None:
        if batch_size % self.n_devices:
            raise ValueError(
                f"batch_size {batch_size} must be divisible by the {self.n_devices} devices"
            )

    def replicate(self, tree: Any) -> Any:
        """Parameters and optimizer state: a full copy on every device."""
        if self.mesh is None:
            return tree
        return jax.device_put(tree, NamedSharding(self.mesh, PartitionSpec()))

    def put(self, batch: Batch) -> Batch:
        """Inputs/targets split along the batch axis; shared arrays replicated."""
        if self.mesh is None:
            return jax.device_put(batch)
        rows = NamedSharding(self.mesh, PartitionSpec("data"))
        full = NamedSharding(self.mesh, PartitionSpec())
        return {k: _global(v, rows if k in ("inputs", "targets") else full)
                for k, v in batch.items()}  # fmt: skip


def _global(value: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global array from a host array every process holds: each fills its own devices."""
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def epoch_batches(
    data: tuple[np.ndarray, np.ndarray],
    sampler: NegativeSampler | None,
    cfg: TrainConfig,
    epoch: int,
    placement: Placement,
    prefetch: int = 2,
) -> Iterator[Batch]:
    """The epoch's device-ready batches, built `prefetch` steps ahead on a worker thread.

    Deterministic: the seed and epoch fix the order and the negatives.
    """
    rng = np.random.default_rng([cfg.seed, epoch])

    def produce() -> Iterator[Batch]:
        for x, y in batches(*data, cfg.batch_size, rng):
            batch = {"inputs": x, "targets": y}
            if sampler is not None:  # sampled softmax; None = full softmax over the catalog
                batch.update(negatives=sampler(rng), log_q=sampler.log_q)
            yield placement.put(batch)

    return _prefetched(produce(), prefetch) if prefetch > 0 else produce()


_DONE = object()


def _prefetched(source: Iterator[Batch], size: int) -> Iterator[Batch]:
    """Runs `source` on a daemon thread, `size` items ahead; re-raises its errors here."""
    buffer: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in source:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as err:  # surfaced in the consumer
            put(err)

    thread = threading.Thread(target=work, daemon=True, name="recexplain-prefetch")
    thread.start()
    try:
        while (item := buffer.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
