"""The first start: the three default variants, a fast model of each first, then refined ones.

`default_runs` trains the runs named `<data set>-<variant>` that the workbench opens by default.
With the "default" preset it works in two phases, so that every page has something real to show
within minutes on a laptop:

1. fast: each missing variant is trained with the "fast" preset (seconds to a minute each);
2. refine: each variant whose run is a fast one is trained with the full "default" preset and
   replaces its fast run when done (the fast run stays in place, and in use, until then).

A restart reuses what is done: finished runs are kept, and an interrupted refinement resumes
from its per-epoch checkpoint (`train(resume=True)`); cancelling a refinement keeps the fast run.
Any other run under a default name (another preset, a custom config) counts as final.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from recexplain.config import ATTENTION_VARIANTS, DataConfig, preset
from recexplain.data import Dataset, dataset_name, load_dataset
from recexplain.runs import Run, RunError, check_run_id, load_run
from recexplain.training import train

Progress = Callable[[dict[str, Any]], None]
FAST = "fast"  # the preset the first phase trains
State = Literal["missing", "fast", "final"]


def default_run_ids(data_cfg: DataConfig) -> list[str]:
    """Run ids of the three default variants on a data set: `<dataset>-<variant>`."""
    name = "".join(c if c.isalnum() or c in "._-" else "_" for c in dataset_name(data_cfg))
    return [check_run_id(f"{name.lstrip('._-') or 'data'}-{v}") for v in ATTENTION_VARIANTS]


def phases(preset_name: str) -> list[str]:
    """Presets trained one after the other: fast then default for "default", else just one."""
    return [FAST, preset_name] if preset_name == "default" else [preset_name]


def run_state(run_id: str, runs_dir: str | Path, ds: Dataset) -> State:
    """ "missing" (absent, broken, other data, or cancelled), "fast" (trained with the fast
    preset: to be refined) or "final"."""
    try:
        run = load_run(run_id, runs_dir)
    except RunError:
        return "missing"
    cancelled = str(run.metrics.get("stop_reason", "")).startswith("cancelled")
    if run.fingerprint != ds.fingerprint or cancelled:
        return "missing"
    return "fast" if is_fast(run) else "final"


def is_fast(run: Run) -> bool:
    """Whether the run was trained with the fast preset (exactly its configs)."""
    return (run.model_cfg, run.train_cfg) == preset(FAST, run.model_cfg.attention)


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
            model_cfg, cfg = preset(phase, variant)
            tagged = lambda e, v=variant, p=phase: say({**e, "variant": v, "phase": p})
            train(data_cfg, model_cfg, cfg, runs_dir=runs_dir, run_id=run_id, dataset=ds,
                  progress=tagged, should_stop=should_stop, verbose=verbose, overwrite=True,
                  resume=refine, keep_if_cancelled=not refine)  # fmt: skip
    loaded = (_load(r, runs_dir) for r in ids.values())
    return [run for run in loaded if run is not None and run.fingerprint == ds.fingerprint]


def _load(run_id: str, runs_dir: str | Path) -> Run | None:
    try:
        return load_run(run_id, runs_dir)
    except RunError:
        return None
