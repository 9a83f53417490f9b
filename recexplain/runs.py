"""Saved runs: `runs/<run_id>/` with an Orbax checkpoint and JSON/Parquet side files.

A run folder holds everything needed to reload and re-run a model:

    config.json          model type + frozen data / model / train configs, catalog size
    data.json            data set name, SHA-256 fingerprint, data report
    items.parquet        internal item id -> original id, title, genres, year
    users.parquet        internal user id -> original id
    checkpoint/          Orbax checkpoint of the parameters (arrays only)
    metrics.json         test and validation metrics with bootstrap CIs, best epoch, timings
    history.json         one record per epoch
    ranking_test.parquet per-user test rank (n_greater, n_tied) and top-20 list, for paired tests
    manifest.json        run id, creation time, code version, SHA-256 of every other file

A run is written into a hidden temporary folder and renamed into place only when complete, so
`runs/` never holds a half-written run under a real name. Loading reads JSON, Parquet and Orbax
array files only: nothing from a run folder is unpickled or executed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd
from flax import nnx

from recexplain import config as C
from recexplain.distributed import checkpointer
from recexplain.evaluation import Ranking

RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # the whole id (fullmatch: no "\n")
CHECKPOINT = "checkpoint"
STALE_AFTER_S = 30 * 60  # hidden temp folders untouched this long belong to a killed process


class RunError(ValueError):
    """A run is missing, malformed, tampered with, or its id is not allowed."""


def check_run_id(run_id: str) -> str:
    """Returns run_id if it is a safe folder name (letters, digits, . _ -), else raises RunError."""
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise RunError(
            f"invalid run id {run_id!r}: use 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return run_id


def code_version() -> str:
    """Package version plus the git commit when the code runs from a checkout."""
    from recexplain import __version__

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}+{commit}" if commit else __version__


@dataclass
class Run:
    """A loaded run: configs, the model in eval mode, metrics and id maps."""

    run_id: str
    path: Path
    model_type: str  # "attention" or a baseline name
    data_cfg: C.DataConfig
    model_cfg: Any  # ModelConfig for attention runs; a dict of knobs for baselines
    train_cfg: Any
    model: Any
    items: pd.DataFrame  # index: internal item id 1..N; item_id, title, genres, year
    user_ids: np.ndarray  # [U] original user ids
    fingerprint: str
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def max_len(self) -> int:
        return int(getattr(self.model_cfg, "max_len", 0) or self.manifest.get("max_len", 50))

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def label(self) -> str:
        """Short human label, e.g. 'additive' or 'ease'."""
        if self.model_type == "attention":
            return str(self.model_cfg.attention)
        return self.model_type

    def scorer(self) -> Callable[[np.ndarray, np.ndarray], Any]:
        """(users, inputs [B, L]) -> scores [B, N + 1] for full ranking."""
        return _SCORERS[self.model_type](self.model)

    def user_index(self, user_id: Any) -> int:
        """Internal index of an original user id (compared as text); ValueError if unknown."""
        hits = np.flatnonzero(self.user_ids.astype(str) == str(user_id))
        if len(hits) == 0:
            raise ValueError(f"unknown user {user_id!r} in run {self.run_id}")
        return int(hits[0])

    def item_index(self, item_id: Any) -> int:
        """Internal id (1..N) of an original item id (compared as text); ValueError if unknown."""
        hits = self.items.index[self.items["item_id"].astype(str) == str(item_id)]
        if len(hits) == 0:
            raise ValueError(f"unknown item {item_id!r} in run {self.run_id}")
        return int(hits[0])

    def ranking(self, which: str = "test") -> Ranking:
        """The per-user ranking saved with the run."""
        return read_ranking(self.path / f"ranking_{which}.parquet")


# model_type -> (build an empty model from the saved config, make a scorer from a model)
_BUILDERS: dict[str, Callable[[dict[str, Any]], Any]] = {}
_SCORERS: dict[str, Callable[[Any], Callable]] = {}


def register_model_type(name: str, build_abstract: Callable, make_scorer: Callable) -> None:
    """Lets baselines plug into save/load: an abstract-model builder and a scorer factory."""
    _BUILDERS[name], _SCORERS[name] = build_abstract, make_scorer


def _build_attention(cfg: dict[str, Any]) -> Any:
    from recexplain.models.recommender import AttentionRecommender

    model_cfg = C.from_dict(C.ModelConfig, cfg["model"])
    return nnx.eval_shape(
        lambda: AttentionRecommender(model_cfg, int(cfg["n_items"]), rngs=nnx.Rngs(0))
    )


def _attention_scorer(model: Any) -> Callable:
    from recexplain.models.recommender import make_scorer

    return make_scorer(model)


register_model_type("attention", _build_attention, _attention_scorer)


# -- writing ---------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def ranking_frame(r: Ranking) -> pd.DataFrame:
    """A Ranking as a flat table (one row per user, top-20 as columns top_1..top_20)."""
    df = pd.DataFrame(
        {"user": r.users, "target": r.targets, "n_greater": r.n_greater, "n_tied": r.n_tied}
    )
    top = pd.DataFrame(r.topk, columns=[f"top_{i + 1}" for i in range(r.topk.shape[1])])
    return pd.concat([df, top], axis=1)


def read_ranking(path: Path) -> Ranking:
    """Inverse of `ranking_frame` (written with pyarrow, read the same way)."""
    if not path.exists():
        raise RunError(f"{path.parent.name}: missing {path.name}")
    df = pd.read_parquet(path)
    top_cols = [c for c in df.columns if c.startswith("top_")]
    return Ranking(
        df["user"].to_numpy(np.int64),
        df["target"].to_numpy(np.int32),
        df["n_greater"].to_numpy(np.int64),
        df["n_tied"].to_numpy(np.int64),
        df[top_cols].to_numpy(np.int32),
    )


def save_run(
    runs_dir: str | Path,
    run_id: str,
    *,
    model_type: str,
    configs: dict[str, Any],
    params: Any,
    dataset_info: dict[str, Any],
    items: pd.DataFrame,
    user_ids: np.ndarray,
    metrics: dict[str, Any],
    history: list[dict[str, Any]],
    rankings: dict[str, Ranking],
    overwrite: bool = False,
) -> Path:
    """Writes a complete run folder atomically and returns its path.

    Args:
      runs_dir: parent folder; run_id: folder name (validated).
      model_type: "attention" or a registered baseline; configs: JSON-ready config dicts
        (must include "n_items"); params: pytree of arrays for Orbax.
      dataset_info: {"name", "fingerprint", ...}; items, user_ids: id maps.
      metrics, history: JSON-ready; rankings: {"test": Ranking, "valid": Ranking}.
      overwrite: replace an existing run of the same id (atomically) instead of failing.
    Returns:
      The final run folder.
    """
    check_run_id(run_id)
    prepare_runs_dir(runs_dir)
    runs_dir = Path(runs_dir).resolve()
    runs_dir.mkdir(parents=True, exist_ok=True)
    final = runs_dir / run_id
    if final.exists() and not overwrite:
        raise RunError(f"run {run_id!r} already exists in {runs_dir}")
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{run_id}-", dir=runs_dir))
    try:
        _write_json(tmp / "config.json", {"model_type": model_type, **configs})
        _write_json(tmp / "data.json", dataset_info)
        _write_json(tmp / "metrics.json", metrics)
        _write_json(tmp / "history.json", history)
        _write_items(tmp, items, user_ids)
        for which, ranking in rankings.items():
            ranking_frame(ranking).to_parquet(tmp / f"ranking_{which}.parquet", index=False)
        if isinstance(params, nnx.State):
            params = nnx.to_pure_dict(params)
        saver = checkpointer()
        saver.save(tmp / CHECKPOINT, jax.tree.map(np.asarray, params))
        saver.wait_until_finished()
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        manifest = {
            "run_id": run_id,
            "model_type": model_type,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "code_version": code_version(),
            "fingerprint": dataset_info.get("fingerprint"),
            "files": {str(p.relative_to(tmp)): _sha256(p) for p in files},
        }
        _write_json(tmp / "manifest.json", manifest)
        _fsync_tree(tmp)
        _replace(tmp, final, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _write_items(folder: Path, items: pd.DataFrame, user_ids: np.ndarray) -> None:
    items = items.copy()
    items["item_id"] = items["item_id"].astype(str)
    items.reset_index(names="item").to_parquet(folder / "items.parquet", index=False)
    users = pd.DataFrame({"user": np.arange(len(user_ids)), "user_id": np.asarray(user_ids)})
    users["user_id"] = users["user_id"].astype(str)
    users.to_parquet(folder / "users.parquet", index=False)


def _fsync_tree(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())


def _replace(tmp: Path, final: Path, overwrite: bool) -> None:
    if final.exists() and overwrite:
        old = final.with_name(f".old-{final.name}-{os.getpid()}")
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)  # atomic on POSIX within one file system


# -- reading ---------------------------------------------------------------------------------
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"{path.parent.name}: missing {path.name}") from None
    except json.JSONDecodeError as err:
        raise RunError(f"{path.parent.name}: {path.name} is not valid JSON ({err})") from None


def resolve_run(run: str | Path, runs_dir: str | Path = "runs") -> Path:
    """The folder of a run: a run id is looked up in runs_dir only; a Path, or text with a
    path separator ("./xss", "/abs/run"), is a folder path. Raises RunError if absent.

    (A folder named like a run id in the working directory never shadows the run.)
    """
    text = str(run)
    if isinstance(run, Path) or any(sep and sep in text for sep in ("/", os.sep, os.altsep)):
        path = Path(run)
        if isinstance(run, str) and not path.is_dir():
            check_run_id(text)  # neither a folder nor an id: "invalid run id"
    else:
        path = Path(runs_dir) / check_run_id(text)
    if not (path / "manifest.json").is_file():
        raise RunError(f"no run at {path} (missing manifest.json)")
    return path


def _manifest_files(path: Path, manifest: Any) -> dict[str, str]:
    """The manifest's {relative file name: sha256}; RunError when it is malformed."""
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in files.items()
    ):
        raise RunError(f"{path.name}: manifest.json is malformed (expected \"files\": a mapping"
                       " of file names to SHA-256 digests)")  # fmt: skip
    return files


def verify_manifest(path: Path) -> dict[str, Any]:
    """Checks every file listed in manifest.json against its SHA-256; returns the manifest."""
    manifest = _read_json(path / "manifest.json")
    for name, digest in _manifest_files(path, manifest).items():
        file = path / name
        if not file.resolve().is_relative_to(path.resolve()):
            raise RunError(f"{path.name}: manifest names a file outside the run: {name!r}")
        if not file.is_file():
            raise RunError(f"{path.name}: missing file {name}")
        if _sha256(file) != digest:
            raise RunError(f"{path.name}: {name} does not match its checksum (modified?)")
    return manifest


def load_run(run: str | Path, runs_dir: str | Path = "runs", *, verify: bool = True) -> Run:
    """Loads a run folder: configs, id maps, metrics and the model in eval mode.

    Args:
      run: run id (inside runs_dir) or a folder path.
      verify: check file checksums against the manifest first.
    Returns:
      Run.
    Raises:
      RunError: missing, malformed or modified run.
    """
    path = resolve_run(run, runs_dir)
    manifest = verify_manifest(path) if verify else _read_json(path / "manifest.json")
    cfg = _read_json(path / "config.json")
    model_type = cfg.get("model_type")
    if model_type not in _BUILDERS:
        _import_baselines()
    if model_type not in _BUILDERS:
        raise RunError(f"{path.name}: unknown model_type {model_type!r}")
    try:
        data_cfg = C.from_dict(C.DataConfig, cfg["data"])
        abstract = _BUILDERS[model_type](cfg)
        model = _restore(path / CHECKPOINT, abstract)
    except (KeyError, ValueError, TypeError) as err:
        raise RunError(f"{path.name}: cannot rebuild the model ({err})") from err
    items = pd.read_parquet(path / "items.parquet").set_index("item")
    users = pd.read_parquet(path / "users.parquet")
    data = _read_json(path / "data.json")
    model_cfg = cfg.get("model")
    train_cfg = cfg.get("train")
    if model_type == "attention":
        model_cfg = C.from_dict(C.ModelConfig, model_cfg)
        train_cfg = C.from_dict(C.TrainConfig, train_cfg)
    return Run(
        run_id=path.name,
        path=path,
        model_type=model_type,
        data_cfg=data_cfg,
        model_cfg=model_cfg,
        train_cfg=train_cfg,
        model=model,
        items=items,
        user_ids=users["user_id"].to_numpy(),
        fingerprint=data.get("fingerprint", ""),
        metrics=_read_json(path / "metrics.json"),
        history=_read_json(path / "history.json"),
        manifest=manifest,
    )


def _restore(ckpt: Path, abstract: Any) -> Any:
    """Restores Orbax params into an abstract (eval_shape) model; returns it in eval mode."""
    if isinstance(abstract, nnx.Module):
        graphdef, state = nnx.split(abstract)
        target = nnx.to_pure_dict(state)
        restored = checkpointer().restore(ckpt.resolve(), target)
        nnx.replace_by_pure_dict(state, restored)
        model = nnx.merge(graphdef, state)
        model.eval()
        return model
    return abstract.restore(checkpointer().restore(ckpt.resolve()))


def _import_baselines() -> None:
    try:  # baselines register their model types on import
        import recexplain.baselines  # noqa: F401
    except ImportError:
        pass


def load_split(run: Run, dataset: Any = None) -> Any:
    """The run's data set and leave-last-out split, after checking the data fingerprint.

    Args:
      run: a loaded run; dataset: an already-loaded Dataset (else loaded from run.data_cfg).
    Returns:
      (dataset, split).
    Raises:
      RunError: the data set's fingerprint differs from the one the run was trained on.
    """
    from recexplain.data import load_dataset
    from recexplain.split import leave_last_out

    ds = dataset if dataset is not None else load_dataset(run.data_cfg)
    if ds.fingerprint != run.fingerprint:
        raise RunError(
            f"run {run.run_id} was trained on data with fingerprint {run.fingerprint[:12]}…, "
            f"but {ds.name} has {ds.fingerprint[:12]}…: the data changed"
        )
    return ds, leave_last_out(ds)


# checked run folder -> (stat of its manifest and of every file it lists, error or None)
_CHECKED: dict[str, tuple[tuple, str | None]] = {}


def check_run(path: Path) -> str | None:
    """Why a run folder fails `verify_manifest` (None: it passes), cached until a file changes.

    The cache key is the size and mtime of manifest.json and of every file it lists, so a
    listing costs a few stat calls per run; a changed, added or removed file is hashed again.
    """
    try:
        manifest = _read_json(path / "manifest.json")
        files = _manifest_files(path, manifest)
    except RunError as err:
        return str(err)
    stamp = tuple(_stat(path / name) for name in ["manifest.json", *sorted(files)])
    key = str(path.resolve())
    cached = _CHECKED.get(key)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    try:
        verify_manifest(path)
        error = None
    except (RunError, OSError) as err:
        error = str(err)
    _CHECKED[key] = (stamp, error)
    return error


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def list_runs(runs_dir: str | Path = "runs") -> pd.DataFrame:
    """One row per run folder: status "ok", or "broken" with the error (a missing or changed
    file, a checksum that does not match); a broken run's metrics are not shown. Hidden temp
    folders are skipped."""
    rows = []
    runs_dir = Path(runs_dir)
    for path in sorted(runs_dir.iterdir()) if runs_dir.is_dir() else []:
        if path.name.startswith(".") or not path.is_dir():
            continue
        row: dict[str, Any] = {"run_id": path.name}
        error = check_run(path)
        try:
            manifest = _read_json(path / "manifest.json")
            cfg = _read_json(path / "config.json")
            metrics = {} if error else _read_json(path / "metrics.json")
        except RunError as err:
            rows.append({**row, "status": "broken", "error": error or str(err)})
            continue
        test = metrics.get("test", {}) if isinstance(metrics, dict) else {}
        cfg = cfg if isinstance(cfg, dict) else {}
        row.update(
            status="broken" if error else "ok",
            model_type=cfg.get("model_type"),
            attention=(cfg.get("model") or {}).get("attention"),
            dataset=(cfg.get("data") or {}).get("dataset"),
            fingerprint=manifest.get("fingerprint") if isinstance(manifest, dict) else None,
            created=manifest.get("created") if isinstance(manifest, dict) else None,
            ndcg_at_10=test.get("ndcg@10", {}).get("mean"),
            hr_at_10=test.get("hr@10", {}).get("mean"),
            error=error,
        )
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else ["run_id", "status", "error"])


def prepare_runs_dir(runs_dir: str | Path) -> list[Path]:
    """Checks that runs_dir is (or can become) a folder, and removes what killed processes left.

    Removed, once untouched for STALE_AFTER_S: `.tmp-*` (a run being written by save_run),
    `.old-*` (a run being replaced), and `.partial-<id>` only when the run <id> was saved after
    it. Any other `.partial-<id>` is the checkpoint `train --resume` continues from: kept.

    Returns:
      The folders removed.
    Raises:
      RunError: runs_dir, or a folder above it, is a file.
    """
    runs_dir = Path(runs_dir)
    above = runs_dir
    while not above.exists() and above != above.parent:
        above = above.parent
    if above.exists() and not above.is_dir():
        where = "" if above == runs_dir else f"{runs_dir}: "
        raise RunError(f"runs folder {where}{above} is a file, not a folder")
    if not runs_dir.is_dir():
        return []
    removed, now = [], time.time()
    for path in runs_dir.iterdir():
        name = path.name
        saved = runs_dir / name.removeprefix(".partial-") / "manifest.json"
        finished = name.startswith(".partial-") and saved.is_file()
        if path.is_symlink() or not path.is_dir():
            continue
        if not (name.startswith((".tmp-", ".old-")) or finished):
            continue
        newest = _newest_mtime(path)
        if now - newest < STALE_AFTER_S or (finished and newest >= saved.stat().st_mtime):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _newest_mtime(folder: Path) -> float:
    """The latest mtime in a folder tree (a checkpoint being written touches files deep down)."""
    times = [folder.stat().st_mtime]
    for p in folder.rglob("*"):
        try:
            times.append(p.lstat().st_mtime)
        except OSError:
            continue
    return max(times)
