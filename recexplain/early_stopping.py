"""Early stopping on validation NDCG@10 for the trained baselines (BPR-MF, SASRec)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from recexplain.evaluation import ScoreFn, metrics_from_ranks, rank_all
from recexplain.split import Split


def validation_ndcg(score_fn: ScoreFn, split: Split, max_len: int, batch: int = 256) -> float:
    """Mean full-ranking NDCG@10 on the validation targets (training items are excluded)."""
    ranking = rank_all(score_fn, split, "valid", max_len, batch=batch)
    return float(metrics_from_ranks(ranking.n_greater, ranking.n_tied, (10,))["ndcg@10"].mean())


@dataclass
class FitOutcome:
    """The best-validation state of a trained baseline and how training went."""

    best: Any = None  # whatever `snapshot` returned at the best epoch
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_valid_ndcg: float = float("-inf")
    stop_reason: str = ""
    seconds: float = 0.0


def early_stopping(
    train_epoch: Callable[[int], float],
    scorer: Callable[[], ScoreFn],
    snapshot: Callable[[], Any],
    split: Split,
    *,
    max_len: int,
    max_epochs: int,
    patience: int,
    label: str = "",
    progress: Callable[[dict[str, Any]], None] | None = None,
    verbose: bool = False,
) -> FitOutcome:
    """Runs epochs until validation NDCG@10 has not improved for `patience` epochs.

    Args:
      train_epoch: runs one epoch (1-based number) and returns its mean loss.
      scorer: a score function of the model as it is now; snapshot: a host copy of its state.
      split, max_len: validation data and the input window length.
      max_epochs, patience: stopping rule; label: progress-bar title.
      progress: called after every epoch with {"epoch", "loss", "valid_ndcg@10", ...}.
    Returns:
      FitOutcome holding the snapshot of the best epoch (a non-finite loss stops training and
      keeps the best epoch so far).
    """
    out, start = FitOutcome(best=snapshot()), time.perf_counter()  # epoch 0: the initial state
    bar = tqdm(range(1, max_epochs + 1), desc=label, disable=not verbose)
    for epoch in bar:
        loss = train_epoch(epoch)
        if not math.isfinite(loss):
            out.stop_reason = f"stopped: non-finite loss ({loss}) at epoch {epoch}"
            break
        ndcg = validation_ndcg(scorer(), split, max_len)
        if ndcg > out.best_valid_ndcg:
            out.best, out.best_epoch, out.best_valid_ndcg = snapshot(), epoch, ndcg
        record = {"epoch": epoch, "loss": loss, "valid_ndcg@10": ndcg,
                  "seconds": time.perf_counter() - start}  # fmt: skip
        out.history.append(record)
        bar.set_postfix(loss=f"{loss:.4f}", val=f"{out.best_valid_ndcg:.4f}")
        if progress is not None:
            progress({**record, "max_epochs": max_epochs, "best_epoch": out.best_epoch})
        if epoch - out.best_epoch >= patience:
            out.stop_reason = f"early stopping: no gain for {patience} epochs"
            break
    bar.close()
    out.stop_reason = out.stop_reason or "reached max_epochs"
    out.seconds = time.perf_counter() - start
    return out
