"""Leaderboard: every model on one data set, one protocol, CIs and paired tests against the best.

`build` trains or reuses the three attention variants (`quickstart.default_runs`, plus
`<dataset>-<variant>-s<seed>` runs for further seeds) and the baselines
(`baselines.train_baseline`, runs `<dataset>-<baseline>-s<seed>`; the deterministic ones are
fitted once), then tabulates their saved test rankings. A baseline that refuses the catalog as
too large for memory (EASE on tens of thousands of items) is left out with a "skipped" event.
`write` puts the table in the runs folder as `leaderboard-<dataset>.csv` (columns `COLUMNS`,
stable for the dashboard) and `.md`.

With several seeds, a model's per-user metric is first averaged over its seeds; the CI is the
per-user bootstrap of that average, the p-value a paired sign-flip test of it against the
reference (the model with the best mean NDCG@10), and `<m>_std` the standard deviation of the
per-seed means (0 for one seed or a deterministic model).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recexplain.baselines import (
    BASELINES,
    DETERMINISTIC,
    PROTOCOL,
    SEQUENTIAL,
    default_run_id,
    train_baseline,
)
from recexplain.config import ATTENTION_VARIANTS, DataConfig, preset
from recexplain.data import Dataset, load_dataset
from recexplain.evaluation import Ranking, bootstrap_ci, metrics_from_ranks, paired_test
from recexplain.item_baselines import CatalogTooLarge
from recexplain.quickstart import default_runs
from recexplain.runs import Run, RunError, load_run
from recexplain.training import train

METRICS: tuple[str, ...] = ("ndcg@10", "hr@10", "mrr@10")
COLUMNS: list[str] = [
    "model", "kind", "seeds",
    *[f"{m}{s}" for m in METRICS for s in ("", "_std", "_ci_low", "_ci_high", "_p")],
    "train_seconds", "run_ids",
]  # fmt: skip
Progress = Callable[[dict[str, Any]], None]
# Baselines that use the order of the history, and those that treat it as a set or ignore it.
BASELINE_GROUPS: dict[str, tuple[str, ...]] = {
    "sequential": SEQUENTIAL,
    "non-sequential": tuple(b for b in BASELINES if b not in SEQUENTIAL),
}


def table(
    rankings: dict[str, list[Ranking]],
    *,
    metrics: tuple[str, ...] = METRICS,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Metrics with 95% CIs, seed std and paired p-values against the best model.

    Args:
      rankings: model -> test Rankings of its seeds; all on the same users and targets.
      metrics: per-user metrics to report; the first picks the reference (best mean).
    Returns:
      One row per model, best first: model, seeds, and per metric m: m, m_std, m_ci_low,
      m_ci_high, m_p (NaN for the reference); attrs["reference"] names the reference.
    """
    if not rankings or any(not rs for rs in rankings.values()):
        raise ValueError("every model needs at least one ranking")
    first = next(iter(rankings.values()))[0]
    for label, rs in rankings.items():
        same = [np.array_equal(r.users, first.users) and np.array_equal(r.targets, first.targets)
                for r in rs]  # fmt: skip
        if not all(same):
            raise ValueError(f"model {label!r} was evaluated on different users or targets")
    ks = tuple(sorted({int(m.split("@")[1]) for m in metrics}))
    per_seed = {lab: [metrics_from_ranks(r.n_greater, r.n_tied, ks) for r in rs]
                for lab, rs in rankings.items()}  # fmt: skip
    per_user = {lab: {m: np.mean([s[m] for s in seeds], axis=0) for m in metrics}
                for lab, seeds in per_seed.items()}  # fmt: skip
    reference = max(per_user, key=lambda lab: per_user[lab][metrics[0]].mean())
    rows = []
    for label, values in per_user.items():
        row: dict[str, Any] = {"model": label, "seeds": len(rankings[label])}
        for m in metrics:
            means = [s[m].mean() for s in per_seed[label]]
            lo, hi = bootstrap_ci(values[m], n_boot=n_boot, seed=seed)
            ref = per_user[reference][m]
            nan = float("nan")
            p = paired_test(values[m], ref, seed=seed)["p_value"] if label != reference else nan
            std = float(np.std(means, ddof=1)) if len(means) > 1 else 0.0
            row.update({m: float(values[m].mean()), f"{m}_std": std, f"{m}_ci_low": lo,
                        f"{m}_ci_high": hi, f"{m}_p": p})  # fmt: skip
        rows.append(row)
    df = pd.DataFrame(rows).sort_values(metrics[0], ascending=False, ignore_index=True)
    df.attrs["reference"] = reference
    return df


def _reuse(run_id: str, runs_dir: Path, ds: Dataset, check: Callable[[Run], bool]) -> Run | None:
    try:
        run = load_run(run_id, runs_dir)
    except RunError:
        return None
    return run if run.fingerprint == ds.fingerprint and check(run) else None


def _attention_runs(data_cfg, ds, runs_dir, seeds, preset_name, say, verbose) -> dict[str, list]:
    """Seed 0 from `default_runs` (reused or trained); further seeds as <ds>-<variant>-s<seed>."""
    out = {r.label: [r] for r in default_runs(runs_dir, data_cfg=data_cfg,
                                              preset_name=preset_name, progress=say,
                                              verbose=verbose)}  # fmt: skip
    for seed in range(1, seeds):
        for variant in ATTENTION_VARIANTS:
            run_id = f"{ds.name}-{variant}-s{seed}"
            run = _reuse(run_id, runs_dir, ds, lambda r, s=seed: r.train_cfg.seed == s)
            if run is None:
                model_cfg, cfg = preset(preset_name, variant)
                say({"stage": "training", "model": variant, "seed": seed})
                run = train(data_cfg, model_cfg, dataclasses.replace(cfg, seed=seed),
                            runs_dir=runs_dir, run_id=run_id, dataset=ds, verbose=verbose,
                            overwrite=True)  # fmt: skip
            out[variant].append(run)
    return out


def baseline_runs(
    data_cfg: DataConfig,
    ds: Dataset,
    runs_dir: str | Path,
    *,
    models: tuple[str, ...] = BASELINES,
    seeds: int = 1,
    preset_name: str = "default",
    retrain: bool = False,
    progress: Progress | None = None,
    verbose: bool = False,
) -> dict[str, list[Run]]:
    """Baseline runs <dataset>-<name>-s<seed>: reused when saved for this data, preset and seed,
    else tuned and saved (`baselines.train_baseline`); deterministic baselines use seed 0 only.

    Returns:
      name -> its runs; a baseline refusing the catalog (`CatalogTooLarge`) is left out.
    """
    say, runs_dir = progress or (lambda event: None), Path(runs_dir)
    out: dict[str, list[Run]] = {}
    for name in models:
        for seed in range(1 if name in DETERMINISTIC else seeds):
            run_id = default_run_id(ds.name, name, seed)
            wanted = {"preset": preset_name, "seed": seed}
            same = lambda r, w=wanted: all(r.train_cfg.get(k) == v for k, v in w.items())  # noqa: E731
            run = None if retrain else _reuse(run_id, runs_dir, ds, same)
            if run is None:
                say({"stage": "training", "model": name, "seed": seed})
                try:
                    run = train_baseline(name, data_cfg, seed=seed, preset=preset_name,
                                         runs_dir=runs_dir, dataset=ds, progress=say,
                                         verbose=verbose, overwrite=True)  # fmt: skip
                except CatalogTooLarge as err:
                    say({"stage": "skipped", "model": name, "reason": str(err)})
                    break
            else:
                say({"stage": "reused", "model": name, "run_id": run_id})
            out.setdefault(name, []).append(run)
    return out


def build(
    dataset_cfg: DataConfig | None = None,
    runs_dir: str | Path = "runs",
    seeds: int = 1,
    progress: Progress | None = None,
    *,
    preset_name: str = "default",
    models: tuple[str, ...] = BASELINES,
    retrain: bool = False,
    verbose: bool = False,
) -> pd.DataFrame:
    """Trains or reuses every model, then tabulates their test rankings (see `table`).

    Args:
      dataset_cfg: the data (default ML-100K); runs_dir: where runs are read and saved;
      seeds: seeds per trained model; progress: gets {"stage", "model", ...} events;
      preset_name: attention preset and baseline grid ("default" or "tiny");
      models: baselines to include; retrain: refit the baselines even if saved runs exist;
      verbose: progress bars.
    Returns:
      DataFrame with COLUMNS, best NDCG@10 first; attrs: reference, dataset, protocol,
      n_users, seconds (wall time of this call).
    """
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    unknown = sorted(set(models) - set(BASELINES))
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; choose from {BASELINES}")
    start, say = time.perf_counter(), progress or (lambda event: None)
    data_cfg, runs_dir = dataset_cfg or DataConfig(), Path(runs_dir)
    say({"stage": "loading data"})
    ds = load_dataset(data_cfg)
    runs = _attention_runs(data_cfg, ds, runs_dir, seeds, preset_name, say, verbose)
    runs.update(baseline_runs(data_cfg, ds, runs_dir, models=models, seeds=seeds,
                              preset_name=preset_name, retrain=retrain, progress=say,
                              verbose=verbose))  # fmt: skip
    say({"stage": "tabulating"})
    df = table({label: [r.ranking("test") for r in rs] for label, rs in runs.items()})
    kinds = {label: "attention" if label in ATTENTION_VARIANTS else "baseline" for label in runs}
    df["kind"] = df["model"].map(kinds)
    df["train_seconds"] = [float(np.mean([r.metrics.get("train_seconds", np.nan)
                                          for r in runs[m]])) for m in df["model"]]  # fmt: skip
    df["run_ids"] = [" ".join(r.run_id for r in runs[m]) for m in df["model"]]
    reference, df = df.attrs["reference"], df[COLUMNS].copy()
    n_users = len(next(iter(runs.values()))[0].ranking("test").users)
    df.attrs.update(dataset=ds.name, protocol=PROTOCOL, n_users=n_users, reference=reference,
                    seconds=time.perf_counter() - start)  # fmt: skip
    return df


def verdict(df: pd.DataFrame, metric: str = "ndcg@10", alpha: float = 0.05) -> str:
    """Does the best attention variant beat every baseline (paired p < alpha)? Then the best
    sequential and the best non-sequential baseline (`baselines_line`)."""
    att, base = df[df["kind"] == "attention"], df[df["kind"] == "baseline"]
    if att.empty or base.empty:
        return "needs at least one attention variant and one baseline"
    best_att, best_base = att.loc[att[metric].idxmax()], base.loc[base[metric].idxmax()]
    gap = best_att[metric] - best_base[metric]
    if df.attrs.get("reference") == best_att["model"]:
        worst_p = base[f"{metric}_p"].max()
        beats = "beats every baseline" if worst_p < alpha else "does not beat every baseline"
        head = (
            f"{best_att['model']} (best attention variant) {beats} with p < {alpha} on "
            f"{metric}: +{gap:.4f} over {best_base['model']}, largest p = {worst_p:.4f}"
        )
    else:
        head = (
            f"the best attention variant, {best_att['model']}, does not beat every baseline: "
            f"{best_base['model']} leads by {-gap:.4f} {metric} "
            f"(paired p = {best_att[f'{metric}_p']:.4f})"
        )
    return f"{head}; {baselines_line(base, metric)}"


def best_baselines(
    df: pd.DataFrame,
    metric: str = "ndcg@10",
    *,
    label: str = "model",
    model_types: dict[str, str] | None = None,
) -> dict[str, pd.Series | None]:
    """The best sequential and the best non-sequential baseline of a metrics table.

    Args:
      df: a leaderboard table (labels in "model") or an `evaluation.compare` table (label="run");
      metric: the column to maximise; model_types: label -> model type, for labels that are not
        model types themselves (run ids); rows of other types (attention variants) are ignored.
    Returns:
      {"sequential": the best row or None, "non-sequential": the best row or None}.
    """
    types = df[label].map(lambda lab: (model_types or {}).get(lab, lab))
    out: dict[str, pd.Series | None] = {}
    for group, members in BASELINE_GROUPS.items():
        rows = df[types.isin(members)]
        out[group] = None if rows.empty else rows.loc[rows[metric].idxmax()]
    return out


def baselines_line(
    df: pd.DataFrame,
    metric: str = "ndcg@10",
    *,
    label: str = "model",
    model_types: dict[str, str] | None = None,
) -> str:
    """'best sequential baseline: markov (ndcg@10 0.0768 [0.0650, 0.0890]); best non-sequential
    baseline: ease (...)', or 'no sequential baseline' where there is none (`best_baselines`)."""
    parts = []
    for group, row in best_baselines(df, metric, label=label, model_types=model_types).items():
        if row is None:
            parts.append(f"no {group} baseline")
            continue
        lo, hi = row.get(f"{metric}_ci_low"), row.get(f"{metric}_ci_high")
        ci = "" if lo is None or hi is None else f" [{lo:.4f}, {hi:.4f}]"
        parts.append(f"best {group} baseline: {row[label]} ({metric} {row[metric]:.4f}{ci})")
    return "; ".join(parts)


def _cell(row: pd.Series, m: str) -> str:
    std = f" ± {row[f'{m}_std']:.4f}" if row["seeds"] > 1 else ""
    return f"{row[m]:.4f}{std} [{row[f'{m}_ci_low']:.4f}, {row[f'{m}_ci_high']:.4f}]"


def markdown(df: pd.DataFrame) -> str:
    """The leaderboard as a Markdown document (table, protocol, reference and verdict)."""
    a = df.attrs
    head = ["model", "kind", "seeds", *[f"{m} [95% CI]" for m in METRICS],
            *[f"p({m})" for m in METRICS], "train s"]  # fmt: skip
    lines = [f"# Leaderboard: {a.get('dataset', '?')}", "",
             f"Protocol: {a.get('protocol', PROTOCOL)}. Test users: {a.get('n_users', '?')}. "
             f"p: paired sign-flip test over users against the reference, "
             f"**{a.get('reference', '?')}**. Mean ± std over seeds where seeds > 1.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]  # fmt: skip
    for _, row in df.iterrows():
        ps = ["-" if pd.isna(row[f"{m}_p"]) else f"{row[f'{m}_p']:.4f}" for m in METRICS]
        cells = [str(row["model"]), str(row["kind"]), str(row["seeds"]),
                 *[_cell(row, m) for m in METRICS], *ps, f"{row['train_seconds']:.0f}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Verdict: {verdict(df)}.", ""]
    if "seconds" in a:
        lines.append(f"Built in {a['seconds']:.0f} s (trained what was missing, reused the rest).")
    return "\n".join(lines) + "\n"


def write(df: pd.DataFrame, runs_dir: str | Path = "runs") -> tuple[Path, Path]:
    """Writes runs_dir/leaderboard-<dataset>.csv (COLUMNS) and .md; returns both paths."""
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    stem = runs_dir / f"leaderboard-{df.attrs.get('dataset', 'data')}"
    csv, md = stem.with_suffix(".csv"), stem.with_suffix(".md")
    df[COLUMNS].to_csv(csv, index=False)
    md.write_text(markdown(df))
    return md, csv


def read(dataset: str = "ml-100k", runs_dir: str | Path = "runs") -> pd.DataFrame:
    """The leaderboard CSV written by `write` (FileNotFoundError if it was never built)."""
    return pd.read_csv(Path(runs_dir) / f"leaderboard-{dataset}.csv")
