"""The workbench's streamlit-free helpers: settings, run tables, labels, comparisons."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd

from recexplain import evaluation, viz
from recexplain import explain as X
from recexplain.config import ATTENTION_VARIANTS, DataConfig
from recexplain.faithfulness import read_report
from recexplain.quickstart import FAST, default_run_ids
from recexplain.runs import Run, RunError, resolve_run


def enable_compilation_cache() -> str:
    """Turns on JAX's persistent compilation cache (default .cache/jax) unless already set."""
    path = getattr(jax.config, "jax_compilation_cache_dir", None) or os.environ.get(
        "JAX_COMPILATION_CACHE_DIR", ".cache/jax"
    )
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    return str(path)


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
        """Run ids of the three default variants (`quickstart.default_run_ids`)."""
        return default_run_ids(self.data_cfg)


def settings() -> Settings:
    """Settings from RECEXPLAIN_RUNS_DIR, RECEXPLAIN_DATASET and RECEXPLAIN_PRESET."""
    env = os.environ.get
    return Settings(Path(env("RECEXPLAIN_RUNS_DIR", "runs")), env("RECEXPLAIN_DATASET", "ml-100k"),
                    env("RECEXPLAIN_PRESET", "default"))  # fmt: skip


# -- run tables ----------------------------------------------------------------------------------
def runs_on(
    table: pd.DataFrame, fingerprint: str | None = None, attention_only: bool = False
) -> list[str]:
    """Loadable run ids in a `runs.list_runs` table (trained on this data if given)."""
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
        data = read_report(run)
    except (RunError, ValueError, OSError):
        return None
    return data if isinstance(data, dict) else None


def cancelled(runs: list[Run]) -> list[str]:
    """Ids of the runs whose training was cancelled (saved with their best epoch so far)."""
    return [r.run_id for r in runs if str(r.metrics.get("stop_reason", "")).startswith("cancel")]


def cancelled_note(runs: list[Run]) -> str:
    """A line naming the cancelled runs and how to retrain them."""
    return (f"Cancelled while training, kept with the best epoch so far: "
            f"{', '.join(cancelled(runs))}. To retrain one, train it on the Train page under the "
            "same run id with 'Replace the existing run'.")  # fmt: skip


def first_start_status(events: list[dict[str, Any]]) -> dict[str, str]:
    """What the first-start job (`quickstart.default_runs`) says about each variant now.

    Returns:
      {variant: "waiting" | "fast model: epoch 3/8, valid NDCG@10 0.061" | "fast model ready" |
      "refining: epoch 12/30, valid NDCG@10 0.104" | "ready" | ...} in ATTENTION_VARIANTS order.
    """
    status = dict.fromkeys(ATTENTION_VARIANTS, "waiting")
    two_phase = any(e.get("phase") == FAST for e in events)
    for e in events:
        variant, phase = e.get("variant"), e.get("phase")
        if variant not in status:
            continue
        what = "fast model" if phase == FAST else "refining" if two_phase else "training"
        stage = e.get("stage")
        if stage in ("reused", "done"):
            status[variant] = "fast model ready" if phase == FAST else "ready"
        elif "epoch" in e:
            status[variant] = (f"{what}: epoch {e['epoch']}/{e.get('max_epochs', '?')}, valid "
                               f"NDCG@10 {e.get('valid_ndcg@10', float('nan')):.3f}")  # fmt: skip
        elif stage == "training":
            status[variant] = f"{what}: first epoch (includes compiling)"
        elif stage:
            status[variant] = f"{what}: {stage}"
    return status


def first_start_line(events: list[dict[str, Any]]) -> str:
    """One line for every page: e.g. "additive: fast model ready · multiplicative: refining:
    epoch 12/30, valid NDCG@10 0.104 · hard: waiting"."""
    return " · ".join(f"{v}: {s}" for v, s in first_start_status(events).items())


def known_runs(
    wanted: str | list[str], options: list[str], defaults: list[str]
) -> tuple[list[str], list[str]]:
    """Runs to show for `?run=a,b` (or a list): (the wanted ids, []) when all are options, else
    (the defaults, the unknown ids)."""
    ids = [r for r in wanted.split(",") if r] if isinstance(wanted, str) else list(wanted)
    bad = [r for r in ids if r not in options]
    return (list(defaults) if bad or not ids else ids), bad


# -- labels --------------------------------------------------------------------------------------
def labels(runs: list[Run]) -> list[str]:
    """Variant names, or run ids where two runs share a variant."""
    names = [r.label for r in runs]
    return [n if names.count(n) == 1 else r.run_id for n, r in zip(names, runs, strict=True)]


def labelled(runs: list[Run]) -> list[tuple[str, Run]]:
    """(label, run) pairs."""
    return list(zip(labels(runs), runs, strict=True))


def item_labels(items: pd.DataFrame) -> dict[int, str]:
    """{internal item index: 'Title (id 50)'} for item pickers."""
    titles, ids = items["title"].astype(str), items["item_id"].astype(str)
    return {int(i): f"{t} (id {o})" for i, t, o in zip(items.index, titles, ids, strict=True)}


def item_options(
    recs: dict[str, pd.DataFrame], extra: list[int], current: int | None
) -> tuple[list[int], int]:
    """(items to offer for explaining, the one to select): every recommended item, then
    `extra` (e.g. the held-out item); `current` is kept (first) even when no longer recommended,
    else the top recommendation is selected."""
    options = list(dict.fromkeys([int(i) for df in recs.values() for i in df["item"]] + extra))
    if current is None:
        return options, options[0]
    return ([] if current in options else [current]) + options, current


def edited_history(history: list[int], removed: list[int], added: list[int]) -> list[int]:
    """A what-if history: `removed` items dropped, `added` appended (newest last), each once."""
    gone = set(removed)
    return list(dict.fromkeys([i for i in history if i not in gone] + list(added)))


def methods() -> tuple[str, ...]:
    """Attribution methods the installed explain module offers."""
    return tuple(getattr(X, "METHODS", ("attention",)))


# -- comparisons ---------------------------------------------------------------------------------
def rank_frame(run: Run, which: str = "test") -> pd.DataFrame:
    """The run's saved ranking ("valid" or "test") as n_greater, n_tied, indexed by user."""
    r = run.ranking(which)
    return pd.DataFrame({"n_greater": r.n_greater, "n_tied": r.n_tied}, index=r.users)


def expected_rank(ranks: pd.DataFrame, user: int) -> float | None:
    """1-based expected rank of the user's held-out item in a `rank_frame` (ties at random)."""
    if user not in ranks.index:
        return None
    row = ranks.loc[user]
    return float(row["n_greater"] + 1 + row["n_tied"] / 2)


def compare(runs: list[Run], metrics: tuple[str, ...]) -> pd.DataFrame:
    """evaluation.compare over the runs' saved test rankings, labelled by `labels`."""
    rankings = {lab: r.ranking("test") for lab, r in labelled(runs)}
    return evaluation.compare(rankings, metrics=metrics)


def agreement(runs: list[Run], split: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-user top-10 Jaccard for each pair of runs, which run serves which users best)."""
    rankings = {lab: r.ranking("test") for lab, r in labelled(runs)}
    first = next(iter(rankings.values()))
    per_user = {
        lab: evaluation.metrics_from_ranks(r.n_greater, r.n_tied, (10,))["ndcg@10"]
        for lab, r in rankings.items()
    }
    history_len = np.diff(split.train_offsets)[first.users] + 1
    jaccard = viz.jaccard_frame({lab: r.topk for lab, r in rankings.items()})
    return jaccard, viz.wins_frame(per_user, history_len)
