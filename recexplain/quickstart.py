"""The first start: the three default variants, a fast model of each first, then refined ones.

`default_runs` trains the runs named `<data set>-<variant>` that the workbench opens by default.
With the "default" preset it works in two phases, so that every page has something real to show
within minutes:

1. fast: each missing variant starts the default preset's training and pauses it after
   FAST_EPOCHS epochs (`train(pause_after=...)`): the fast model is saved as the run and the
   training's checkpoint is kept;
2. refine: each paused variant resumes that training from its checkpoint (same schedule, same
   batches: the result is what an uninterrupted training gives) and replaces its fast run when
   done. The fast run stays in place, and in use, until then.

A restart reuses what is done (finished runs; a paused or interrupted training resumes from its
checkpoint); cancelling a refinement keeps the fast run. Any other run under a default name
(another preset, a custom config) counts as final.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from recexplain.config import ATTENTION_VARIANTS, DataConfig, preset
from recexplain.data import Dataset, dataset_name, load_dataset
from recexplain.runs import Run, RunError, check_run_id, load_run
from recexplain.training import PAUSED, train

Progress = Callable[[dict[str, Any]], None]
FAST = "fast"  # the first phase's name in progress events
# Epochs of the default training before the fast model is saved: on ML-100K, 2 CPU cores, about
# 40 s for the multiplicative variant (benchmarks/results/time_to_model.md).
FAST_EPOCHS = 3
State = Literal["missing", "fast", "final"]


def default_run_ids(data_cfg: DataConfig) -> list[str]:
    """Run ids of the three default variants on a data set: `<dataset>-<variant>`."""
    name = "".join(c if c.isalnum() or c in "._-" else "_" for c in dataset_name(data_cfg))
    return [check_run_id(f"{name.lstrip('._-') or 'data'}-{v}") for v in ATTENTION_VARIANTS]


def phases(preset_name: str) -> list[str]:
    """The phases of a first start: [FAST, "default"] for the default preset, else just one."""
    return [FAST, preset_name] if preset_name == "default" else [preset_name]


def run_state(run_id: str, runs_dir: str | Path, ds: Dataset) -> State:
    """ "missing" (absent, broken, other data, or cancelled), "fast" (a paused training, to be
    refined) or "final"."""
    try:
        run = load_run(run_id, runs_dir)
    except RunError:
        return "missing"
    cancelled = str(run.metrics.get("stop_reason", "")).startswith("cancelled")
    if run.fingerprint != ds.fingerprint or cancelled:
        return "missing"
    return "fast" if is_fast(run) else "final"


def is_fast(run: Run) -> bool:
    """Whether the run is a fast model: a training paused early, to be resumed."""
    return str(run.metrics.get("stop_reason", "")).startswith(PAUSED)


def default_runs(
    runs_dir: str | Path = "runs",
    *,
    data_cfg: DataConfig | None = None,
    preset_name: str = "default",
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    verbose: bool = True,
) -> list[Run]:
    """The three variants on the default data, trained once (fast, then refined) and reused.

    Args:
      runs_dir: where the runs live; data_cfg: data (default ML-100K); preset_name: the final
      preset ("default" trains fast runs first, see the module docstring); progress: gets
      {"stage", "variant", "phase", ...} events (phase: the preset being trained); should_stop:
      polled between steps, True cancels (variants not trained yet are skipped); verbose: bars.
    Returns:
      The runs in ATTENTION_VARIANTS order as they stand at the end (fewer when cancelled
      before every variant had one; a fast run where its refinement was cancelled).
    """
    data_cfg = data_cfg or DataConfig()
    say = progress or (lambda event: None)
    say({"stage": "loading data"})
    ds = load_dataset(data_cfg)
    ids = dict(zip(ATTENTION_VARIANTS, default_run_ids(data_cfg), strict=True))
    stages = phases(preset_name)
    for phase in stages:
        refine = phase != stages[0]
        for variant, run_id in ids.items():
            state = run_state(run_id, runs_dir, ds)
            if state == "final" or (state == "fast" and not refine):
                say({"stage": "reused", "variant": variant, "phase": phase, "run_id": run_id})
                continue
            if should_stop is not None and should_stop():
                break
            model_cfg, cfg = preset(stages[-1], variant)
            tagged = lambda e, v=variant, p=phase: say({**e, "variant": v, "phase": p})  # noqa: E731
            kwargs = dict(runs_dir=runs_dir, run_id=run_id, dataset=ds, progress=tagged,
                          should_stop=should_stop, verbose=verbose, overwrite=True,
                          keep_if_cancelled=not refine,
                          pause_after=FAST_EPOCHS if phase == FAST else None)  # fmt: skip
            try:
                train(data_cfg, model_cfg, cfg, resume=True, **kwargs)
            except ValueError as err:  # a checkpoint of other configs (an older preset)
                if "not resuming" not in str(err):
                    raise
                shutil.rmtree(Path(runs_dir) / f".partial-{run_id}", ignore_errors=True)
                train(data_cfg, model_cfg, cfg, **kwargs)
    loaded = (_load(r, runs_dir) for r in ids.values())
    return [run for run in loaded if run is not None and run.fingerprint == ds.fingerprint]


def _load(run_id: str, runs_dir: str | Path) -> Run | None:
    try:
        return load_run(run_id, runs_dir)
    except RunError:
        return None
