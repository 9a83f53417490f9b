"""Per-epoch training checkpoints that survive a kill -9, for `recexplain train --resume`.

Layout of a checkpoint folder (the trainer uses `runs/.partial-<run_id>/`, which list_runs
skips because it starts with a dot):

    epoch-0007/state/   Orbax: model parameters, optimizer state, best-epoch parameters
    epoch-0007/meta.json  epoch, steps, best epoch and score, history, config fingerprint
    latest.json         {"epoch": 7, "folder": "epoch-0007"}, replaced atomically

An epoch folder is written under a temporary name and renamed into place; only then does
latest.json (written to a temporary file and os.replace'd) point at it, and older epoch folders
are removed afterwards. A kill at any moment leaves latest.json pointing at a complete epoch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from recexplain.distributed import checkpointer as _checkpointer

LATEST = "latest.json"


def config_digest(configs: dict[str, Any]) -> str:
    """SHA-256 of the JSON configs + data fingerprint a checkpoint belongs to."""
    return hashlib.sha256(json.dumps(configs, sort_keys=True).encode()).hexdigest()


def save(
    folder: Path, epoch: int, arrays: dict[str, Any], meta: dict[str, Any], keep: int = 1
) -> None:
    """Writes epoch `epoch` atomically and points latest.json at it.

    Args:
      folder: the checkpoint folder (created if missing).
      epoch: epoch number (1-based).
      arrays: {"model": pure dict, "optimizer": pure dict, "best": pure dict} of arrays.
      meta: JSON-ready training state.
      keep: how many epoch folders to keep.
    """
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    name = f"epoch-{epoch:04d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=folder))
    try:
        checkpointer = _checkpointer()
        checkpointer.save(tmp / "state", jax.tree.map(np.asarray, arrays))
        checkpointer.wait_until_finished()
        (tmp / "meta.json").write_text(json.dumps({**meta, "epoch": epoch}, sort_keys=True))
        final = folder / name
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _write_atomic(folder / LATEST, json.dumps({"epoch": epoch, "folder": name}))
    epochs = sorted(p for p in folder.glob("epoch-*") if p.is_dir())
    for old in epochs[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def latest(folder: Path) -> dict[str, Any] | None:
    """The newest complete checkpoint's meta (with "path"), or None if there is none."""
    folder = Path(folder)
    try:
        pointer = json.loads((folder / LATEST).read_text())
        path = (folder / str(pointer["folder"])).resolve()
        if not path.is_relative_to(folder.resolve()):
            return None
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {**meta, "path": str(path)}


def restore(meta: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    """Restores the arrays of checkpoint `meta` into the structure of `target` (pure dicts)."""
    return _checkpointer().restore(Path(meta["path"]) / "state", target)


def pure(obj: Any, *filters: Any) -> dict[str, Any]:
    """nnx object (or state) -> plain nested dict of arrays."""
    state = obj if isinstance(obj, nnx.State) else nnx.state(obj, *filters)
    return nnx.to_pure_dict(state)


def load_into(obj: Any, arrays: dict[str, Any], *filters: Any) -> None:
    """Writes restored arrays back into an nnx object."""
    state = nnx.state(obj, *filters)
    nnx.replace_by_pure_dict(state, jax.tree.map(jax.numpy.asarray, arrays))
    nnx.update(obj, state)
