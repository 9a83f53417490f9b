"""Streamlit glue: settings, page chrome, cached loaders, explanation views, training jobs."""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import streamlit as st

from recexplain import evaluation, export, viz
from recexplain import explain as X
from recexplain.config import ATTENTION_VARIANTS, DataConfig, dumps, from_dict
from recexplain.data import DataError, Dataset, cache_root, load_dataset
from recexplain.runs import Run, RunError, list_runs, load_run, load_split, resolve_run
from recexplain.training import default_runs, train

KNOWN_ERRORS = (RunError, DataError, ValueError, KeyError, OSError)
CAVEAT = export.CAVEAT


def enable_compilation_cache() -> str:
    """Turns on JAX's persistent compilation cache (default .cache/jax) unless already set."""
    path = jax.config.jax_compilation_cache_dir or os.environ.get(
        "JAX_COMPILATION_CACHE_DIR", ".cache/jax"
    )
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    return str(path)


enable_compilation_cache()


@dataclass(frozen=True)
class Settings:
    """Where the app reads runs from and which data set it opens on (from the environment)."""

    runs_dir: Path  # RECEXPLAIN_RUNS_DIR, default "runs"
    dataset: str  # RECEXPLAIN_DATASET, default "ml-100k"
    preset: str  # RECEXPLAIN_PRESET: what the first start trains, default "default"

    @property
    def data_cfg(self) -> DataConfig:
        return DataConfig(dataset=self.dataset)

    @property
    def default_ids(self) -> list[str]:
        """Run ids `default_runs` uses: <data set name>-<variant>."""
        name = "synthetic-planted" if self.dataset.startswith("synthetic") else self.dataset
        return [f"{name}-{v}" for v in ATTENTION_VARIANTS]


def settings() -> Settings:
    env = os.environ.get
    return Settings(Path(env("RECEXPLAIN_RUNS_DIR", "runs")), env("RECEXPLAIN_DATASET", "ml-100k"),
                    env("RECEXPLAIN_PRESET", "default"))  # fmt: skip


PAGES = (  # (script, label, icon): classic multipage mode, the file names give the URLs
    ("app.py", "Overview", ":material/home:"),
    ("pages/1_Train.py", "Train", ":material/model_training:"),
    ("pages/2_Compare.py", "Compare", ":material/compare_arrows:"),
    ("pages/3_Explain.py", "Explain", ":material/lightbulb:"),
    ("pages/4_Attention_playground.py", "Attention playground", ":material/calculate:"),
    ("pages/5_Share.py", "Share", ":material/share:"),
)


def page(title: str) -> Settings:
    """Page config (wide layout, its own browser title), the sidebar navigation and settings."""
    icon = next(i for _, label, i in PAGES if label == title)
    st.set_page_config(page_title=f"{title} · recexplain", page_icon=icon, layout="wide")
    s = settings()
    with st.sidebar:
        for script, label, page_icon in PAGES:
            st.page_link(script, label=label, icon=page_icon)
        st.caption(f"Data set `{s.dataset}` · runs in `{s.runs_dir}`")
    st.title(title)
    return s


@contextmanager
def guard(what: str) -> Iterator[None]:
    """Turns a library error into a message on the page (and stops the page), not a traceback."""
    try:
        yield
    except KNOWN_ERRORS as err:
        st.error(md(f"{what}: {err}"))
        st.stop()


def md(text: Any) -> str:
    """Text from data, escaped for st.markdown (no formatting, links or HTML)."""
    out = str(text)
    for ch in "\\`*_{}[]()#+-.!|<>~$":
        out = out.replace(ch, "\\" + ch)
    return out


def table(df: pd.DataFrame, where: Any = st) -> None:
    """A static table (lighter than st.dataframe's grid); text cells are escaped, since
    st.table renders markdown."""
    out = df.copy()
    for col in out.columns:
        if not pd.api.types.is_numeric_dtype(out[col]):
            out[col] = out[col].map(md)
    where.table(out, hide_index=True)


# -- cached loaders ------------------------------------------------------------------------------
@st.cache_resource(show_spinner=False, max_entries=16)
def _load_run(path: str, stamp: int) -> Run:
    return load_run(path)


def get_run(run_id: str, runs_dir: Path | None = None) -> Run:
    """A run by id (cached per folder version); RunError when missing, e.g. deleted."""
    path = resolve_run(run_id, runs_dir or settings().runs_dir)
    return _load_run(str(path.resolve()), (path / "manifest.json").stat().st_mtime_ns)


def run_key(run: Run) -> tuple[str, str]:
    return str(run.path), str(run.manifest.get("created"))


@st.cache_resource(show_spinner=False, max_entries=4)
def _dataset(cfg_json: str) -> Dataset:
    return load_dataset(from_dict(DataConfig, json.loads(cfg_json)))


def get_dataset(cfg: DataConfig) -> Dataset:
    return _dataset(dumps(cfg))


@st.cache_resource(show_spinner=False, max_entries=4)
def _split(cfg_json: str, fingerprint: str, _run: Run) -> Any:
    return load_split(_run, _dataset(cfg_json))[1]


def get_split(run: Run) -> tuple[Dataset, Any]:
    """The run's data set and split (RunError when the data changed since training)."""
    cfg_json = dumps(run.data_cfg)
    return _dataset(cfg_json), _split(cfg_json, run.fingerprint, run)


@st.cache_data(show_spinner=False, max_entries=8)
def _runs_table(runs_dir: str, stamp: int) -> pd.DataFrame:
    return list_runs(runs_dir)


def runs_table(runs_dir: Path | None = None) -> pd.DataFrame:
    """list_runs, re-read whenever a run folder appears or disappears."""
    d = Path(runs_dir or settings().runs_dir)
    return _runs_table(str(d), d.stat().st_mtime_ns if d.is_dir() else 0)


def runs_on(
    table: pd.DataFrame, fingerprint: str | None = None, attention_only: bool = False
) -> list[str]:
    """Loadable run ids in a runs table (trained on the data with this fingerprint if given)."""
    if not len(table) or "fingerprint" not in table:
        return []
    ok = table["error"].isna() if "error" in table else table["run_id"].notna()
    if fingerprint is not None:
        ok &= table["fingerprint"] == fingerprint
    if attention_only:
        ok &= table["model_type"] == "attention"
    return table.loc[ok, "run_id"].tolist()


def run_metrics(run_id: str, runs_dir: Path | None = None) -> dict[str, Any]:
    """metrics.json of a run without loading its model ({} when unreadable)."""
    try:
        path = resolve_run(run_id, runs_dir or settings().runs_dir)
        return json.loads((path / "metrics.json").read_text())
    except (RunError, OSError, json.JSONDecodeError):
        return {}


def faithfulness(run: Run) -> dict[str, Any] | None:
    """The run's faithfulness.json (recexplain.faithfulness) when present and valid, else None."""
    try:
        from recexplain.faithfulness import read_report
    except ImportError:  # an older library: read the file directly
        read_report = None
    try:
        if read_report is not None:
            data = read_report(run)
        else:
            data = json.loads((run.path / "faithfulness.json").read_text())
    except (RunError, ValueError, OSError):
        return None
    return data if isinstance(data, dict) else None


# -- recommendations and explanations ------------------------------------------------------------
def labels(runs: list[Run]) -> list[str]:
    """Variant names, or run ids where two runs share a variant."""
    names = [r.label for r in runs]
    return [n if names.count(n) == 1 else r.run_id for n, r in zip(names, runs, strict=True)]


def labelled(runs: list[Run]) -> list[tuple[str, Run]]:
    """(label, run) pairs."""
    return list(zip(labels(runs), runs, strict=True))


@st.cache_data(show_spinner=False, max_entries=512)
def _recommend(key: tuple, history: tuple, k: int, exclude: tuple, _run: Run) -> pd.DataFrame:
    excl = np.asarray(exclude, np.int32) if exclude else None
    return X.recommend(_run, np.asarray(history, np.int32), k, exclude=excl)


def recommendations(
    runs: list[Run], history: np.ndarray, k: int = 10, exclude: tuple[int, ...] = ()
) -> dict[str, pd.DataFrame]:
    """{label: recommend(...)} for every run (cached per run, history and exclusions)."""
    hist = tuple(int(i) for i in history)
    return {
        lab: _recommend(run_key(r), hist, k, tuple(exclude), r)
        for lab, r in zip(labels(runs), runs, strict=True)
    }


@st.cache_data(show_spinner=False, max_entries=512)
def _explain(key: tuple, history: tuple, item: int, method: str, _run: Run) -> X.Attribution:
    return X.explain(_run, np.asarray(history, np.int32), item, method=method)


def explanations(
    runs: list[Run], history: np.ndarray, item: int, method: str = "attention"
) -> dict[str, X.Attribution]:
    """{label: explain(...)} for every run (cached)."""
    hist = tuple(int(i) for i in history)
    return {
        lab: _explain(run_key(r), hist, int(item), method, r)
        for lab, r in zip(labels(runs), runs, strict=True)
    }


def methods() -> tuple[str, ...]:
    """Attribution methods the installed explain module offers."""
    return tuple(getattr(X, "METHODS", ("attention",)))


@st.cache_data(show_spinner=False, max_entries=32)
def _test_ranks(key: tuple, _run: Run) -> pd.DataFrame:
    r = _run.ranking("test")
    return pd.DataFrame({"n_greater": r.n_greater, "n_tied": r.n_tied}, index=r.users)


def held_out_rank(run: Run, user: int) -> float | None:
    """1-based expected rank of the user's held-out test item (ties broken at random)."""
    try:
        ranks = _test_ranks(run_key(run), run)
    except RunError:
        return None
    if user not in ranks.index:
        return None
    row = ranks.loc[user]
    return float(row["n_greater"] + 1 + row["n_tied"] / 2)


@st.cache_data(show_spinner=False, max_entries=16)
def _item_labels(key: tuple, _items: pd.DataFrame) -> dict[int, str]:
    titles, ids = _items["title"].astype(str), _items["item_id"].astype(str)
    return {int(i): f"{t} (id {o})" for i, t, o in zip(_items.index, titles, ids, strict=True)}


def item_label(run: Run) -> Callable[[int], str]:
    """format_func for item pickers: 'Title (id 50)' (labels built once per run)."""
    labels_ = _item_labels(run_key(run), run.items)
    return lambda i: labels_.get(int(i), str(i))


# -- background jobs -----------------------------------------------------------------------------
Target = Callable[[Callable[[dict], None], Callable[[], bool]], Any]


@dataclass
class Job:
    """A training run in a background thread; pages poll its progress events."""

    key: str
    parts: int = 1  # how many models the job trains (progress is split evenly)
    events: list[dict[str, Any]] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: str | None = None
    done: bool = False
    started: float = field(default_factory=time.time)

    def run(self, target: Target) -> None:
        try:
            self.result = target(self.events.append, self.cancel.is_set)
        except Exception as err:  # shown on the page; the traceback goes to the terminal
            traceback.print_exc()
            self.error = f"{type(err).__name__}: {err}"
        finally:
            self.done = True


_JOBS_LOCK = threading.Lock()


@st.cache_resource
def _jobs() -> dict[str, Job]:
    return {}


def get_job(key: str) -> Job | None:
    return _jobs().get(key)


def start_job(key: str, target: Target, parts: int = 1) -> Job:
    """Starts `target(progress, should_stop)` in a thread unless that job is already running."""
    with _JOBS_LOCK:
        job = _jobs().get(key)
        if job is None or job.done:
            job = Job(key, parts)
            _jobs()[key] = job
            threading.Thread(target=job.run, args=(target,), daemon=True, name=key).start()
    return job


def show_job(job: Job, *, cancellable: bool = False) -> None:
    """Progress bar, live loss / validation chart and a cancel button for a running job."""
    frac, text = viz.training_progress(list(job.events), job.parts)
    st.progress(frac, text=text)
    curves = viz.progress_curves(list(job.events))
    if len(curves):
        st.altair_chart(viz.training_curves(curves), theme=None)
    if cancellable and not job.done:
        st.button("Cancel training (keeps the best epoch so far)", on_click=job.cancel.set)


def watch(key: str, *, cancellable: bool = False) -> None:
    """Re-renders a job's progress every second; reruns the whole page once it finishes."""

    @st.fragment(run_every=1.0)
    def _poll() -> None:
        job = get_job(key)
        if job is None:
            return
        show_job(job, cancellable=cancellable)
        if job.done:
            st.rerun()

    _poll()


# -- the default runs ----------------------------------------------------------------------------
def _loaded_default_runs(s: Settings) -> list[Run] | None:
    try:
        runs = [get_run(r, s.runs_dir) for r in s.default_ids]
    except RunError:
        return None
    ds = get_dataset(s.data_cfg)
    return runs if all(r.fingerprint == ds.fingerprint for r in runs) else None


def ensure_default_runs(s: Settings | None = None) -> list[Run]:
    """The three default variants; on a fresh machine trains them, showing progress, and stops."""
    s = s or settings()
    key = f"default-runs:{s.runs_dir.resolve()}:{s.dataset}:{s.preset}"
    job = get_job(key)
    if job is None or job.done:
        with guard("Could not open the default runs"):
            runs = _loaded_default_runs(s)
        if runs is not None:
            return runs
        if job is not None and job.done:
            st.error(
                md(f"Training the default runs failed: {job.error or 'the runs did not load'}")
            )
            if st.button("Try again"):
                _jobs().pop(key, None)
                st.rerun()
            st.stop()
        target = lambda progress, should_stop: default_runs(  # noqa: E731
            s.runs_dir, data_cfg=s.data_cfg, preset_name=s.preset, progress=progress, verbose=True
        )
        start_job(key, target, parts=len(ATTENTION_VARIANTS))
    st.info(
        f"First start: training the three attention variants on {s.dataset} "
        f"(preset {s.preset!r}). Later starts reuse the saved runs in {s.runs_dir}."
    )
    watch(key)
    st.stop()


# -- selections shared by Explain and Share (query params <-> widgets) ---------------------------
def _selection() -> dict[str, Any]:
    """The last view picked on Explain or Share (kept across pages in session state)."""
    return st.session_state.setdefault("selection", {})


def pick_runs(s: Settings, defaults: list[Run]) -> list[Run]:
    """Attention runs from `?run=a,b` or a multiselect (default: the three default variants)."""
    options = runs_on(runs_table(s.runs_dir), attention_only=True)
    options += [r.run_id for r in defaults if r.run_id not in options]
    default_ids = [r.run_id for r in defaults]
    kept = st.session_state.get("pick_runs")
    if kept is not None and any(r not in options for r in kept):
        gone = ", ".join(r for r in kept if r not in options)
        st.error(md(f"Run(s) no longer available (folder deleted or broken): {gone}."))
        st.session_state["pick_runs"] = [r for r in kept if r in options]
    if "pick_runs" not in st.session_state:
        wanted = [r for r in st.query_params.get("run", "").split(",") if r]
        wanted = wanted or _selection().get("runs") or default_ids
        bad = [r for r in wanted if r not in options]
        if bad:
            st.error(md(f"Unknown or non-attention run(s) in the link: {', '.join(bad)}. Showing "
                        "the default runs; baselines have no attention to explain."))  # fmt: skip
            wanted = default_ids
        st.session_state["pick_runs"] = wanted
    chosen = st.multiselect("Runs (attention variants)", options, key="pick_runs")
    if not chosen:
        st.warning("Pick at least one run.")
        st.stop()
    with guard("Could not load a run"):
        runs = [get_run(r, s.runs_dir) for r in chosen]
    _selection()["runs"] = chosen
    _set_param("run", ",".join(chosen) if chosen != default_ids else None)
    return runs


def _set_param(name: str, value: Any) -> None:
    if value is None:
        st.query_params.pop(name, None)
    elif st.query_params.get(name) != str(value):
        st.query_params[name] = str(value)


def pick_user(run: Run, split: Any) -> int:
    """Internal user index from `?user=<original id>` or a searchable picker."""
    options = run.user_ids.astype(str).tolist()
    if "pick_user" not in st.session_state:
        wanted = st.query_params.get("user")
        if wanted is not None and wanted not in options:
            st.error(md(f"Unknown user {wanted!r} in the link: showing the first user instead."))
            wanted = None
        first = options[int(split.eval_users[0])] if len(split.eval_users) else options[0]
        st.session_state["pick_user"] = wanted or _selection().get("user") or first
    user = st.selectbox("User (type to search)", options, key="pick_user")
    _selection()["user"] = user
    _set_param("user", user)
    return options.index(user)


def pick_item(run: Run, recs: dict[str, pd.DataFrame], extra: list[int], user: int) -> int:
    """The item to explain: `?item=<original id>`, else a recommended item; kept while the
    recommendations change under what-if edits."""
    options = list(dict.fromkeys([int(i) for df in recs.values() for i in df["item"]] + extra))
    chosen = st.session_state.setdefault("item_choice", {})
    if user not in chosen:
        wanted = st.query_params.get("item") or _selection().get("item")
        if wanted is not None:
            try:
                chosen[user] = run.item_index(wanted)
            except ValueError:
                st.error(md(f"Unknown item {wanted!r} in the link: explaining the top item."))
    current = chosen.get(user)
    if current is None or current not in options:
        options = ([current] if current is not None else []) + options
        current = options[0]
    key = f"pick_item_{user}_{hash(tuple(options))}"
    item = st.selectbox("Explain item", options, index=options.index(current), key=key,
                        format_func=item_label(run))  # fmt: skip
    chosen[user] = item
    _selection()["item"] = str(run.items.at[item, "item_id"])
    _set_param("item", _selection()["item"])
    return int(item)


def whatif(user: int, base: np.ndarray, run: Run) -> tuple[np.ndarray, tuple]:
    """Remove / add history items and thumbs up (appended) / down (hidden), without retraining.

    Returns:
      (the edited history, items to exclude from the recommendations).
    """
    thumbs = st.session_state.setdefault("thumbs", {}).setdefault(user, {"up": [], "down": []})
    history, edited = [int(i) for i in base], False
    if st.toggle("What if… edit the history (no retraining)", key="whatif_on"):
        label = item_label(run)
        removed = st.multiselect("Remove from the history", history, key=f"wi_rm_{user}",
                                 format_func=label)  # fmt: skip
        seen = set(history)
        others = [int(i) for i in run.items.index if i not in seen]
        added = st.multiselect("Add to the history (newest last)", others, key=f"wi_add_{user}",
                               format_func=label)  # fmt: skip
        history = [i for i in history if i not in set(removed)] + added
        edited = bool(removed or added)
    history = list(dict.fromkeys(history + thumbs["up"]))
    if thumbs["up"] or thumbs["down"]:
        st.caption(f"Thumbs up: {len(thumbs['up'])} · thumbs down (hidden): {len(thumbs['down'])}")
    if edited or thumbs["up"] or thumbs["down"]:
        st.button("Reset what-if", on_click=_reset_whatif, args=(user,))
    return np.asarray(history, np.int32), tuple(thumbs["down"])


def _reset_whatif(user: int) -> None:
    st.session_state["thumbs"].pop(user, None)
    for key in (f"wi_rm_{user}", f"wi_add_{user}"):
        st.session_state.pop(key, None)


def thumbs(user: int, item: int) -> None:
    """Thumbs up appends the explained item to the history; down hides it from the lists."""
    state = st.session_state.setdefault("thumbs", {}).setdefault(user, {"up": [], "down": []})

    def vote(kind: str) -> None:
        if item not in state[kind]:
            state[kind].append(item)
        st.session_state["item_choice"].pop(user, None)

    left, right = st.columns(2)
    left.button("More like this (add it to the history)", on_click=vote, args=("up",),
                icon=":material/thumb_up:", key=f"up_{user}_{item}")  # fmt: skip
    right.button("Not for me (hide it)", on_click=vote, args=("down",),
                 icon=":material/thumb_down:", key=f"down_{user}_{item}")  # fmt: skip


# -- comparisons ---------------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=16)
def _compare(keys: tuple, metrics: tuple[str, ...], _runs: list[Run]) -> pd.DataFrame:
    rankings = {lab: r.ranking("test") for lab, r in zip(labels(_runs), _runs, strict=True)}
    return evaluation.compare(rankings, metrics=metrics)


def compare_runs(runs: list[Run], metrics: tuple[str, ...]) -> pd.DataFrame:
    """evaluation.compare over the runs' saved test rankings (cached)."""
    return _compare(tuple(run_key(r) for r in runs), metrics, runs)


@st.cache_data(show_spinner=False, max_entries=16)
def _agreement(keys: tuple, _runs: list[Run], _split: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    rankings = {lab: r.ranking("test") for lab, r in zip(labels(_runs), _runs, strict=True)}
    first = next(iter(rankings.values()))
    per_user = {
        lab: evaluation.metrics_from_ranks(r.n_greater, r.n_tied, (10,))["ndcg@10"]
        for lab, r in rankings.items()
    }
    history_len = np.diff(_split.train_offsets)[first.users] + 1
    jaccard = viz.jaccard_frame({lab: r.topk for lab, r in rankings.items()})
    return jaccard, viz.wins_frame(per_user, history_len)


def agreement(runs: list[Run], split: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-user top-10 Jaccard for each pair of runs, which run serves which users best)."""
    return _agreement(tuple(run_key(r) for r in runs), runs, split)


# -- uploads and training ------------------------------------------------------------------------
UPLOAD_LIMIT_MB = 200  # also server.maxUploadSize in .streamlit/config.toml
UPLOAD_TYPES = ("csv", "tsv", "txt", "parquet", "pq")


def save_upload(name: str, data: bytes, limit_mb: int = UPLOAD_LIMIT_MB) -> Path:
    """Stores an uploaded file under <cache>/uploads/<sha256>/ (atomically) and returns its path.

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
        tmp = folder / f".{stem}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path


def file_columns(path: Path) -> tuple[list[str], pd.DataFrame]:
    """(column names, first rows) of a CSV/TSV/Parquet file, for the column mapping."""
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            head = pq.ParquetFile(path).read_row_group(0).slice(0, 5).to_pandas()
        else:
            sep = {".csv": ",", ".tsv": "\t"}.get(path.suffix.lower())
            head = pd.read_csv(path, sep=sep, engine="python", nrows=5)
    except Exception as err:  # any parser error becomes a message naming the file
        message = f"cannot read the file ({type(err).__name__}: {err})"
        raise DataError(message, file=path.name) from err
    return [str(c) for c in head.columns], head


def train_job(
    data_cfg: DataConfig, model_cfg: Any, train_cfg: Any, run_id: str, overwrite: bool
) -> Job:
    """Starts `training.train` in the background (cancel keeps the best epoch so far)."""
    runs_dir = settings().runs_dir

    def target(progress: Callable[[dict], None], should_stop: Callable[[], bool]) -> Run:
        return train(data_cfg, model_cfg, train_cfg, runs_dir=runs_dir, run_id=run_id,
                     progress=lambda e: progress({**e, "variant": run_id}),
                     should_stop=should_stop, verbose=True, overwrite=overwrite)  # fmt: skip

    return start_job(f"train:{runs_dir.resolve()}:{run_id}", target)


def pick_method() -> str:
    """Attribution method from `?method=` or a picker (default: attention)."""
    options = list(methods())
    default = "attention" if "attention" in options else options[0]
    if "pick_method" not in st.session_state:
        wanted = st.query_params.get("method") or _selection().get("method") or default
        if wanted not in options:
            st.error(md(f"Unknown attribution method {wanted!r} in the link: using {default}."))
            wanted = default
        st.session_state["pick_method"] = wanted
    method = st.selectbox("Attribution method", options, key="pick_method")
    _selection()["method"] = method
    _set_param("method", None if method == default else method)
    return method


def check_dataset_param(name: str) -> None:
    """Warns when a link's `?dataset=` names another data set than the runs shown."""
    wanted = st.query_params.get("dataset")
    if wanted and wanted != name:
        st.warning(md(f"This link was made for data set {wanted!r}; these runs use {name!r}."))


def permalink(page_name: str, params: dict[str, str]) -> str:
    """Absolute link to a page with query params (relative when the app URL is unknown)."""
    return export.permalink_url(getattr(st.context, "url", None), page_name, params)
