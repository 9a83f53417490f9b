"""Streamlit glue (the only streamlit-aware module): page chrome, cached loaders, widgets."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from recexplain import explain as X
from recexplain import export, jobs, viz
from recexplain import workbench as W
from recexplain.config import DataConfig, dumps, from_dict
from recexplain.data import DataError, Dataset, load_dataset
from recexplain.quickstart import is_fast, phases
from recexplain.runs import Run, RunError, check_run_id, list_runs, load_run, load_split
from recexplain.sources import clean_text
from recexplain.workbench import Settings, settings

KNOWN_ERRORS = (RunError, DataError, ValueError, KeyError, OSError)

W.enable_compilation_cache()

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


_JOIN = "\u2060"  # WORD JOINER: invisible; breaks the patterns below without changing the text
_AUTOMATIC = re.compile(r"(?<=:)(?=\S)|(?<=@)(?=\S)|(?<=www)(?=\.)", re.IGNORECASE)


def md(text: Any) -> str:
    """Text from data, escaped for st.markdown: shown as plain text (no formatting, links, HTML,
    headings, emoji or icons).

    Markdown punctuation is backslash-escaped and line breaks become spaces; Streamlit turns
    `www.x`, `http://x`, `a@b.c`, `:smile:` and `:material/...:` into links and icons after
    markdown's escaping, so a word joiner follows each ':' and '@' and sits inside "www.".
    """
    out = _AUTOMATIC.sub(_JOIN, clean_text(text))
    for ch in "\\`*_{}[]()#+-.!|<>~$=":
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
    """A run by id (cached per folder version); RunError when missing, e.g. deleted.

    The id is checked (`check_run_id`) and looked up inside runs_dir only: never as a path.
    """
    path = Path(runs_dir or settings().runs_dir) / check_run_id(run_id)
    if not (path / "manifest.json").is_file():
        raise RunError(f"no run {run_id!r} in {path.parent} (missing manifest.json)")
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


def runs_table(runs_dir: Path | None = None) -> pd.DataFrame:
    """list_runs (not cached here: it re-checks a run's checksums only when a file changed, so
    an edited metrics.json is marked broken at once)."""
    return list_runs(Path(runs_dir or settings().runs_dir))


# -- recommendations and explanations ------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=512)
def _recommend(key: tuple, history: tuple, k: int, exclude: tuple, _run: Run) -> pd.DataFrame:
    excl = np.asarray(exclude, np.int32) if exclude else None
    return X.recommend(_run, np.asarray(history, np.int32), k, exclude=excl)


def recommendations(
    runs: list[Run], history: np.ndarray, k: int = 10, exclude: tuple[int, ...] = ()
) -> dict[str, pd.DataFrame]:
    """{label: recommend(...)} for every run (cached per run, history and exclusions)."""
    hist = tuple(int(i) for i in history)
    return {lab: _recommend(run_key(r), hist, k, tuple(exclude), r) for lab, r in W.labelled(runs)}


@st.cache_data(show_spinner=False, max_entries=512)
def _explain(key: tuple, history: tuple, item: int, method: str, _run: Run) -> X.Attribution:
    return X.explain(_run, np.asarray(history, np.int32), item, method=method)


def explanations(
    runs: list[Run], history: np.ndarray, item: int, method: str = "attention"
) -> dict[str, X.Attribution]:
    """{label: explain(...)} for every run (cached)."""
    hist = tuple(int(i) for i in history)
    return {lab: _explain(run_key(r), hist, int(item), method, r) for lab, r in W.labelled(runs)}


@st.cache_data(show_spinner=False, max_entries=32)
def _rank_frame(key: tuple, _run: Run) -> pd.DataFrame:
    return W.rank_frame(_run, "test")


def held_out_rank(run: Run, user: int) -> float | None:
    """1-based expected rank of the user's held-out test item (ties broken at random)."""
    try:
        return W.expected_rank(_rank_frame(run_key(run), run), user)
    except RunError:
        return None


@st.cache_data(show_spinner=False, max_entries=16)
def _item_labels(key: tuple, _items: pd.DataFrame) -> dict[int, str]:
    return W.item_labels(_items)


def item_label(run: Run) -> Callable[[int], str]:
    """format_func for item pickers: 'Title (id 50)' (labels built once per run)."""
    labels_ = _item_labels(run_key(run), run.items)
    return lambda i: labels_.get(int(i), str(i))


@st.cache_data(show_spinner=False, max_entries=16)
def _compare(keys: tuple, metrics: tuple[str, ...], _runs: list[Run]) -> pd.DataFrame:
    return W.compare(_runs, metrics)


def compare_runs(runs: list[Run], metrics: tuple[str, ...]) -> pd.DataFrame:
    """evaluation.compare over the runs' saved test rankings (cached)."""
    return _compare(tuple(run_key(r) for r in runs), metrics, runs)


@st.cache_data(show_spinner=False, max_entries=16)
def _agreement(keys: tuple, _runs: list[Run], _split: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    return W.agreement(_runs, _split)


def agreement(runs: list[Run], split: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-user top-10 Jaccard for each pair of runs, which run serves which users best)."""
    return _agreement(tuple(run_key(r) for r in runs), runs, split)


# -- background jobs (recexplain.jobs) -----------------------------------------------------------
def show_job(job: jobs.Job, cancel: str | None = None) -> None:
    """Progress bar, live loss / validation chart and (with a label) a cancel button."""
    frac, text = viz.training_progress(list(job.events), job.parts)
    st.progress(frac, text=text)
    curves = viz.progress_curves(list(job.events))
    if len(curves):
        st.altair_chart(viz.training_curves(curves), theme=None)
    if cancel and not job.done:
        if job.cancelled:
            st.caption("Cancelling: the current training step finishes first…")
        else:
            st.button(cancel, on_click=job.cancel.set, icon=":material/cancel:")


def watch(key: str, cancel: str | None = None, compact: bool = False) -> None:
    """Re-renders a job's progress every second; reruns the whole page when a model is saved
    (so pages show each variant as soon as it exists) and when the job finishes."""
    job = jobs.get_job(key)
    saved = _saved(job)

    @st.fragment(run_every=1.0)
    def _poll() -> None:
        job = jobs.get_job(key)
        if job is None:
            return
        if compact:
            st.progress(*viz.training_progress(list(job.events), job.parts))
            st.caption(md(W.first_start_line(list(job.events))))
        else:
            show_job(job, cancel)
        if job.done or _saved(job) != saved:
            st.rerun()

    _poll()


def _saved(job: jobs.Job | None) -> int:
    return 0 if job is None else sum(e.get("stage") == "done" for e in list(job.events))


# -- the default runs ----------------------------------------------------------------------------
def _default_runs_now(s: Settings) -> tuple[list[Run], bool]:
    """(the default runs that load on this data now, whether the first start has work left: a
    variant is missing, or is a fast model still to be refined)."""
    ds = get_dataset(s.data_cfg)
    refines = len(phases(s.preset)) > 1
    runs, todo = [], False
    for run_id in s.default_ids:
        try:
            run = get_run(run_id, s.runs_dir)
        except RunError:
            todo = True
            continue
        if run.fingerprint != ds.fingerprint:
            todo = True
            continue
        runs.append(run)
        todo |= refines and is_fast(run)
    return runs, todo


def _stopped_default_runs(job: jobs.Job, runs: list[Run]) -> None:
    """The first-start job ended with work left: says why and offers a restart (stops the page
    only when no variant can be shown)."""
    (st.warning if job.cancelled else st.error)(md(jobs.default_runs_outcome(job)))
    if st.button("Resume training" if job.cancelled else "Try again"):
        jobs.forget_job(job.key)
        st.rerun()
    if not runs:
        st.stop()


def ensure_default_runs(s: Settings | None = None, *, compact: bool = True) -> list[Run]:
    """The default variants that exist now (fast or refined ones), in variant order.

    On a fresh machine starts the first-start job (`quickstart.default_runs`: fast models, then
    refined ones) and shows its progress; the page goes on with the variants that are ready and
    stops only while none is. compact=False draws the full progress (curves, cancel button).
    """
    s = s or settings()
    key = jobs.default_runs_key(s.runs_dir, s.data_cfg, s.preset)
    with guard("Could not open the default runs"):
        runs, todo = _default_runs_now(s)
    job = jobs.get_job(key)
    if todo and job is None:
        job = jobs.start_default_runs(s.runs_dir, s.data_cfg, s.preset)
    if todo and job is not None and job.done:
        _stopped_default_runs(job, runs)
    if job is not None and not job.done:
        ready = ", ".join(r.label for r in runs) or "none yet"
        how = (", a fast model of each first, then the full-quality ones, which replace them "
               "when done" if len(phases(s.preset)) > 1 else "")  # fmt: skip
        st.info(
            f"First start: training the three attention variants on {s.dataset}{how} (preset "
            f"{s.preset!r}). Ready: {ready}. Later starts reuse the saved runs in {s.runs_dir}."
        )
        watch(
            key, cancel="Cancel (keeps the variants trained so far)", compact=compact and bool(runs)
        )
    if not runs:
        st.stop()
    if W.cancelled(runs):
        st.caption(md(W.cancelled_note(runs)))
    return runs


def follow_defaults(key: str, defaults: list[str], options: list[str]) -> None:
    """Selects `defaults` in the multiselect `key` on the first render, and adds default runs
    that appear later (the first start saves one variant after another) to the selection."""
    seen = st.session_state.get(f"{key}__defaults")
    if key not in st.session_state:
        st.session_state[key] = list(defaults)
    elif seen is not None:
        new = [r for r in defaults if r not in seen]
        st.session_state[key] = [r for r in [*st.session_state[key], *new] if r in options]
    st.session_state[f"{key}__defaults"] = list(defaults)


# -- selections shared by Explain and Share (query params <-> widgets) ---------------------------
def _selection() -> dict[str, Any]:
    """The last view picked on Explain or Share (kept across pages in session state)."""
    return st.session_state.setdefault("selection", {})


def pick_runs(s: Settings, defaults: list[Run]) -> list[Run]:
    """Attention runs from `?run=a,b` or a multiselect (default: the three default variants)."""
    default_ids = [r.run_id for r in defaults]
    options = W.runs_on(runs_table(s.runs_dir), attention_only=True)
    options += [r for r in default_ids if r not in options]
    kept = st.session_state.get("pick_runs")
    if kept is not None and any(r not in options for r in kept):
        gone = ", ".join(r for r in kept if r not in options)
        st.error(md(f"Run(s) no longer available (folder deleted or broken): {gone}."))
        st.session_state["pick_runs"] = [r for r in kept if r in options]
    if "pick_runs" not in st.session_state:
        wanted = st.query_params.get("run") or _selection().get("runs") or default_ids
        st.session_state["pick_runs"], bad = W.known_runs(wanted, options, default_ids)
        if bad:
            st.error(md(f"Unknown or non-attention run(s) in the link: {', '.join(bad)}. Showing "
                        "the default runs; baselines have no attention to explain."))  # fmt: skip
    seen = st.session_state.get("pick_runs__defaults")
    if seen is not None and st.session_state["pick_runs"] == seen != default_ids:
        st.session_state["pick_runs"] = default_ids  # the first start saved another variant
    st.session_state["pick_runs__defaults"] = default_ids
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
    chosen = st.session_state.setdefault("item_choice", {})
    if user not in chosen:
        wanted = st.query_params.get("item") or _selection().get("item")
        if wanted is not None:
            try:
                chosen[user] = run.item_index(wanted)
            except ValueError:
                st.error(md(f"Unknown item {wanted!r} in the link: explaining the top item."))
    options, current = W.item_options(recs, extra, chosen.get(user))
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
    votes = _votes(user)
    history, removed, added = [int(i) for i in base], [], []
    if st.toggle("What if… edit the history (no retraining)", key="whatif_on"):
        label = item_label(run)
        removed = st.multiselect("Remove from the history", history, key=f"wi_rm_{user}",
                                 format_func=label)  # fmt: skip
        others = [int(i) for i in run.items.index if i not in set(history)]
        added = st.multiselect("Add to the history (newest last)", others, key=f"wi_add_{user}",
                               format_func=label)  # fmt: skip
    if votes["up"] or votes["down"]:
        st.caption(f"Thumbs up: {len(votes['up'])} · thumbs down (hidden): {len(votes['down'])}")
    if removed or added or votes["up"] or votes["down"]:
        st.button("Reset what-if", on_click=_reset_whatif, args=(user,))
    edited = W.edited_history(history, removed, added + votes["up"])
    return np.asarray(edited, np.int32), tuple(votes["down"])


def _votes(user: int) -> dict[str, list[int]]:
    """The user's thumbs up / down this session (items appended / hidden)."""
    return st.session_state.setdefault("thumbs", {}).setdefault(user, {"up": [], "down": []})


def _reset_whatif(user: int) -> None:
    st.session_state["thumbs"].pop(user, None)
    for key in (f"wi_rm_{user}", f"wi_add_{user}"):
        st.session_state.pop(key, None)


def thumbs(user: int, item: int) -> None:
    """Thumbs up appends the explained item to the history; down hides it from the lists."""
    state = _votes(user)

    def vote(kind: str) -> None:
        if item not in state[kind]:
            state[kind].append(item)
        st.session_state["item_choice"].pop(user, None)

    left, right = st.columns(2)
    left.button("More like this (add it to the history)", on_click=vote, args=("up",),
                icon=":material/thumb_up:", key=f"up_{user}_{item}")  # fmt: skip
    right.button("Not for me (hide it)", on_click=vote, args=("down",),
                 icon=":material/thumb_down:", key=f"down_{user}_{item}")  # fmt: skip


def pick_method() -> str:
    """Attribution method from `?method=` or a picker (default: attention)."""
    options = list(W.methods())
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


def pick_view(s: Settings) -> tuple[list[Run], Dataset, Any, int, str]:
    """The row of pickers Explain and Share share: runs | user | attribution method.

    Returns:
      (runs, their data set, its split, internal user index, method); stops the page with a
      message when the runs cannot be loaded or were trained on different data.
    """
    defaults = ensure_default_runs(s)
    top = st.columns([2, 1, 1])
    with top[0]:
        runs = pick_runs(s, defaults)
    with guard("Could not load the data of these runs"):
        if len({r.fingerprint for r in runs}) > 1:
            raise ValueError("the chosen runs were trained on different data; pick runs of one set")
        ds, split = get_split(runs[0])
    with top[1]:
        user = pick_user(runs[0], split)
    with top[2]:
        method = pick_method()
    return runs, ds, split, user, method


def check_dataset_param(name: str) -> None:
    """Warns when a link's `?dataset=` names another data set than the runs shown."""
    wanted = st.query_params.get("dataset")
    if wanted and wanted != name:
        st.warning(md(f"This link was made for data set {wanted!r}; these runs use {name!r}."))


def permalink(page_name: str, params: dict[str, str]) -> str:
    """Absolute link to a page with query params (relative when the app URL is unknown)."""
    return export.permalink_url(getattr(st.context, "url", None), page_name, params)
