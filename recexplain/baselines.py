"""Baselines in the attention models' harness: tuned on validation, saved as ordinary runs.

Seven models (`BASELINES`): most-popular, item-kNN, EASE (`item_baselines`), BPR-MF (`bpr`),
SASRec (`sasrec`), and two transition models (`transition`): a first-order Markov chain and
decayed multi-step transitions, both backing off to popularity. `SEQUENTIAL` names the ones that
use the order of the history (SASRec and the transition models); the others treat the history as
a set (item-kNN, EASE) or ignore it (most-popular, BPR-MF). Each is scored through
`evaluation.rank_all` like the attention models: the same split, the same full ranking over all
items with seen items excluded, the same metrics.

Protocol (identical for every model, attention variants included): every model is fitted on the
training interactions only. Knobs are chosen on validation NDCG@10 (a small grid, `GRIDS`, every
setting fitted on the training data and ranked against the validation targets; the test set is
never looked at until the chosen model is evaluated once). At test time the validation item is
part of the user's history, as input only: the sequence models (SASRec, the transition models)
see it as the last item of their window, item-kNN and EASE as one more history item; BPR-MF and
most-popular take no history input, so for them it only changes which items are excluded from
the ranking. Nothing is refitted on the validation interactions.

Memory (N items, U users, T training interactions, B users per scoring batch; every model also
holds the B x (N + 1) float32 scores of a scoring batch):
- pop: N + 1 counts.
- itemknn: sparse top-k neighbours, at most (N + 1) * k weights; fitted in blocks of candidate
  columns (`item_baselines.KNN_BLOCK_ENTRIES`), never a dense item x item matrix.
- ease: dense, `item_baselines.EASE_BYTES_PER_ENTRY` * (N + 1)^2 bytes; refuses with the figure
  (`item_baselines.CatalogTooLarge`) above half of physical memory.
- bpr: (U + N + 1) * dim float32 factors plus optimizer state (Adam: x3).
- sasrec: (N + 1 + max_len) * d_model embeddings plus the blocks; a full-softmax training batch
  holds batch x max_len x (N + 1) float32 logits (and their gradient).
- markov, multistep: sparse transition counts, at most T - U entries; no item x item matrix.
`benchmarks/baseline_memory.py` measures peak RSS on synthetic catalogs of 10k-60k items.

Importing this module registers every baseline with `runs.register_model_type`, so `load_run`
rebuilds them like attention runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flax import nnx

from recexplain.bpr import MatrixFactorization, fit_bpr
from recexplain.config import DataConfig, to_dict
from recexplain.data import Dataset, dataset_info, load_dataset
from recexplain.early_stopping import FitOutcome, validation_ndcg
from recexplain.evaluation import ScoreFn, rank_all, summarize
from recexplain.item_baselines import (
    ItemItem,
    Popularity,
    SparseItemItem,
    fit_ease,
    fit_itemknn,
    fit_popularity,
)
from recexplain.runs import Run, check_run_id, load_run, register_model_type, save_run
from recexplain.sasrec import SASRec, fit_sasrec, make_scorer
from recexplain.split import Split, leave_last_out
from recexplain.transition import Transition, fit_markov, fit_multistep

BASELINES: tuple[str, ...] = ("pop", "itemknn", "ease", "bpr", "sasrec", "markov", "multistep")
# the seed does not change the fit
DETERMINISTIC: tuple[str, ...] = ("pop", "itemknn", "ease", "markov", "multistep")
SEQUENTIAL: tuple[str, ...] = ("sasrec", "markov", "multistep")  # use the order of the history
INPUT_LEN = 50  # input window handed to scorers that take one (SASRec cuts it to its max_len)
PROTOCOL = ("leave-last-out, full ranking over all items, seen items excluded; fitted on training "
            "interactions only, knobs chosen on validation NDCG@10")  # fmt: skip

# The attention variants' levers (warmup + cosine over a short schedule, batch 64): one fit
# 114 s on ML-100K (valid NDCG@10 0.1116, dropout 0.5) against 40-75 epochs of ~7 s at a constant
# lr 3e-3 before (benchmarks/results/presets.md)
_SASREC = {"d_model": 64, "n_blocks": 2, "n_heads": 2, "max_len": 50, "max_epochs": 30,
           "patience": 5, "batch_size": 64, "warmup_steps": 20, "cosine": True}  # fmt: skip
# Preset -> model -> the knob settings tried (each fitted on train, compared on validation).
GRIDS: dict[str, dict[str, list[dict[str, Any]]]] = {
    "default": {
        "pop": [{}],
        "itemknn": [{"k": k, "shrink": s} for k in (25, 50, 100, 200, 400)
                    for s in (0.0, 10.0, 50.0, 100.0)],
        "ease": [{"lam": lam} for lam in (50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0)],
        "bpr": [{"dim": d, "lr": lr, "reg": r}
                for d in (64, 128) for lr in (1e-3, 5e-3) for r in (1e-4, 1e-3)],
        # 2 settings: on ML-100K one SASRec fit runs up to 30 epochs of ~4 CPU-seconds each
        "sasrec": [{**_SASREC, "lr": 5e-3, "dropout": p} for p in (0.2, 0.5)],
        "markov": [{}],
        # 40 settings, ~5 s in all on ML-100K (each is one sparse count table and one ranking)
        "multistep": [{"steps": s, "decay": d, "normalize": n} for s in (2, 3, 5, 10, 20)
                      for d in (0.5, 0.7, 0.9, 1.0) for n in (False, True)],
    },
    # Seconds on the synthetic data: for tests and smoke runs, far from tuned.
    "tiny": {
        "pop": [{}],
        "itemknn": [{"k": k, "shrink": 0.0} for k in (5, 20)],
        "ease": [{"lam": lam} for lam in (10.0, 100.0)],
        "bpr": [{"dim": 16, "lr": lr, "reg": 1e-4, "max_epochs": 3} for lr in (1e-2, 3e-2)],
        "sasrec": [{"d_model": 16, "n_blocks": 1, "n_heads": 1, "max_len": 12, "lr": 3e-3,
                    "dropout": 0.2, "max_epochs": 2, "n_negatives": 32}],
        "markov": [{}],
        "multistep": [{"steps": 3, "decay": 0.5, "normalize": n} for n in (False, True)],
    },
}  # fmt: skip


def _scorer(name: str, model: Any) -> ScoreFn:
    return make_scorer(model) if name == "sasrec" else model.scorer()


def _fit(name: str, split: Split, knobs: dict[str, Any], seed: int, progress, verbose: bool):
    """(model, FitOutcome or None) for one knob setting, fitted on the training data only."""
    if name == "pop":
        return fit_popularity(split), None
    if name == "itemknn":
        return fit_itemknn(split, **knobs), None
    if name == "ease":
        return fit_ease(split, **knobs), None
    if name == "markov":
        return fit_markov(split), None
    if name == "multistep":
        return fit_multistep(split, **knobs), None
    fit = {"bpr": fit_bpr, "sasrec": fit_sasrec}[name]
    return fit(split, seed=seed, progress=progress, verbose=verbose, **knobs)


@dataclass
class Tuned:
    """The best knob setting of a grid, its fitted model and the record of every setting."""

    model: Any
    knobs: dict[str, Any]
    valid_ndcg: float
    outcome: FitOutcome | None  # training story of the chosen setting (trained models only)
    records: list[dict[str, Any]] = field(default_factory=list)


def tune(
    name: str,
    split: Split,
    grid: list[dict[str, Any]],
    *,
    seed: int = 0,
    progress: Callable[[dict[str, Any]], None] | None = None,
    verbose: bool = False,
) -> Tuned:
    """Fits every setting of `grid` on the training data; keeps the best validation NDCG@10.

    Args:
      name: one of BASELINES; split: leave-last-out split; grid: knob settings to try.
      seed: for the trained models; progress: gets {"stage": "tuning", "model", "setting",
        "of", ...} events (plus per-epoch events of trained models); verbose: progress bars.
    Returns:
      Tuned with records [{"knobs", "valid_ndcg@10", "seconds", "best_epoch"}] for every setting.
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {BASELINES}")
    if not grid:
        raise ValueError(f"empty knob grid for {name}")
    say = progress or (lambda event: None)
    best: Tuned | None = None
    records = []
    for i, knobs in enumerate(grid):
        start = time.perf_counter()
        tag = lambda e, i=i: say({**e, "model": name, "setting": i + 1, "of": len(grid)})  # noqa: E731
        model, outcome = _fit(name, split, dict(knobs), seed, tag, verbose)
        ndcg = (outcome.best_valid_ndcg if outcome is not None
                else validation_ndcg(_scorer(name, model), split, INPUT_LEN))  # fmt: skip
        records.append({"knobs": dict(knobs), "valid_ndcg@10": ndcg,
                        "seconds": time.perf_counter() - start,
                        "best_epoch": outcome.best_epoch if outcome else None})  # fmt: skip
        say({"stage": "tuning", "model": name, "setting": i + 1, "of": len(grid), **records[-1]})
        if best is None or ndcg > best.valid_ndcg:
            best = Tuned(model, dict(knobs), ndcg, outcome)
    assert best is not None
    best.records = records
    return best


def default_run_id(dataset_name: str, name: str, seed: int) -> str:
    """e.g. 'ml-100k-ease-s0' (deterministic baselines are fitted once, as seed 0)."""
    return f"{dataset_name}-{name}-s{0 if name in DETERMINISTIC else seed}"


def train_baseline(
    name: str,
    data_cfg: DataConfig,
    *,
    seed: int = 0,
    preset: str = "default",
    runs_dir: str | Path = "runs",
    run_id: str | None = None,
    dataset: Dataset | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    verbose: bool = False,
    overwrite: bool = False,
) -> Run:
    """Tunes one baseline on validation, evaluates the chosen model on test, saves the run.

    Args:
      name: one of BASELINES; data_cfg: the data (saved with the run); seed: trained models'
        seed; preset: a key of GRIDS; runs_dir, run_id: where to save (default
        `default_run_id`); dataset: an already-loaded Dataset matching data_cfg;
        progress, verbose: see `tune`; overwrite: replace a run with the same id.
    Returns:
      The saved, reloaded Run (model_type = name; metrics["tuning"] lists every setting).
    """
    if preset not in GRIDS:
        raise ValueError(f"unknown baseline preset {preset!r}; choose one of {sorted(GRIDS)}")
    say = progress or (lambda event: None)
    ds = dataset if dataset is not None else load_dataset(data_cfg)
    run_id = check_run_id(run_id or default_run_id(ds.name, name, seed))
    split = leave_last_out(ds)
    start = time.perf_counter()
    tuned = tune(name, split, GRIDS[preset][name], seed=seed, progress=progress, verbose=verbose)
    seconds = time.perf_counter() - start
    say({"stage": "evaluating", "model": name})
    scorer = _scorer(name, tuned.model)
    rankings = {w: rank_all(scorer, split, w, INPUT_LEN) for w in ("valid", "test")}
    popularity = split.item_popularity()
    metrics: dict[str, Any] = {w: summarize(r, popularity, split.n_items, seed=seed)
                               for w, r in rankings.items()}  # fmt: skip
    outcome = tuned.outcome
    metrics.update(tuning=tuned.records, best_knobs=tuned.knobs, train_seconds=seconds,
                   best_epoch=outcome.best_epoch if outcome else 0,
                   stop_reason=outcome.stop_reason if outcome else "closed form / counts",
                   protocol=PROTOCOL)  # fmt: skip
    params = (nnx.state(tuned.model, nnx.Param) if isinstance(tuned.model, nnx.Module)
              else tuned.model.params())  # fmt: skip
    path = save_run(
        runs_dir, run_id, model_type=name,
        configs={"data": to_dict(data_cfg), "model": tuned.knobs,
                 "train": {"seed": seed, "preset": preset, "grid": GRIDS[preset][name],
                           "selection": "validation ndcg@10"},
                 "n_items": split.n_items, "n_users": split.n_users},
        params=params,
        dataset_info={"name": ds.name, "fingerprint": ds.fingerprint, **dataset_info(ds)},
        items=ds.items, user_ids=ds.user_ids, metrics=metrics,
        history=outcome.history if outcome else [], rankings=rankings, overwrite=overwrite,
    )  # fmt: skip
    say({"stage": "done", "model": name, "run_id": run_id})
    return load_run(path)


def _abstract_sasrec(cfg: dict[str, Any]) -> SASRec:
    m = cfg["model"]
    sizes = {k: m[k] for k in ("d_model", "n_blocks", "n_heads", "max_len", "dropout")}
    return nnx.eval_shape(lambda: SASRec(int(cfg["n_items"]), **sizes, rngs=nnx.Rngs(0)))


register_model_type("pop", lambda cfg: Popularity, lambda m: m.scorer())
register_model_type("itemknn", lambda cfg: SparseItemItem, lambda m: m.scorer())
register_model_type("ease", lambda cfg: ItemItem, lambda m: m.scorer())
register_model_type("bpr", lambda cfg: MatrixFactorization, lambda m: m.scorer())
register_model_type("sasrec", _abstract_sasrec, make_scorer)
register_model_type("markov", lambda cfg: Transition, lambda m: m.scorer())
register_model_type("multistep", lambda cfg: Transition, lambda m: m.scorer())
