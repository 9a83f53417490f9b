"""Training: sampled-softmax loss, a jit-compiled optax step, early stopping on validation NDCG@10.

One compiled step serves the whole run: every batch has the same shape (the last one is padded
with empty windows whose targets are 0 and carry no loss) and the negatives are always
`n_negatives` ids, so nothing recompiles after the first step.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from recexplain import checkpoints as ckpt
from recexplain import distributed as dist
from recexplain.config import (
    DataConfig,
    ModelConfig,
    TrainConfig,
    to_dict,
)
from recexplain.data import Dataset, check_evaluable, dataset_info, load_dataset
from recexplain.evaluation import metrics_from_ranks, rank_all, summarize
from recexplain.feed import NegativeSampler, Placement, epoch_batches
from recexplain.models.recommender import AttentionRecommender, make_scorer
from recexplain.runs import Run, RunError, check_run_id, load_run, prepare_runs_dir, save_run
from recexplain.split import Split, leave_last_out, training_windows

Progress = Callable[[dict[str, Any]], None]
PAUSED = "paused"  # stop_reason prefix of a training stopped early on purpose (`pause_after`)


class CompileCounter:
    """Counts XLA backend compilations while active (to show nothing recompiles per step)."""

    EVENT = "/jax/core/compile/backend_compile_duration"

    def __init__(self) -> None:
        self.count = 0

    def _listen(self, event: str, duration: float, **kwargs: Any) -> None:
        if event == self.EVENT:
            self.count += 1

    def __enter__(self) -> CompileCounter:
        jax.monitoring.register_event_duration_secs_listener(self._listen)
        return self

    def __exit__(self, *exc: object) -> None:
        jax.monitoring.unregister_event_duration_listener(self._listen)


def full_softmax(model_cfg: ModelConfig, cfg: TrainConfig, n_items: int) -> bool:
    """Whether training uses a full softmax over the catalog (TrainConfig.loss == "auto": for
    the bilinear scorers when the candidate x catalog tables fit in 2^26 entries; the additive
    scorer's tanh over every (candidate, position) pair of the context key is too slow on CPU)."""
    if cfg.loss != "auto":
        return cfg.loss == "full"
    return model_cfg.attention != "additive" and (n_items + 1) ** 2 <= 1 << 26


def make_optimizer(cfg: TrainConfig, total_steps: int) -> optax.GradientTransformation:
    """AdamW with linear warmup then cosine decay, after global-norm gradient clipping."""
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=cfg.learning_rate,
        warmup_steps=min(cfg.warmup_steps, max(total_steps - 1, 1)),
        decay_steps=max(total_steps, 2),
        end_value=cfg.learning_rate * 0.01,
    )
    return optax.chain(
        optax.clip_by_global_norm(cfg.clip_norm),
        optax.adamw(schedule, weight_decay=cfg.weight_decay),
    )


def loss_fn(
    model: AttentionRecommender,
    batch: dict[str, jax.Array],
    key: jax.Array,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Cross-entropy of the next item at every non-empty position.

    With "negatives" in the batch it is a sampled softmax against those shared negatives,
    every logit corrected by the log of its item's sampling probability (logQ; a constant,
    hence no-op, for uniform negatives) so it estimates the full softmax; without, a full
    softmax over every item.

    Args:
      batch: inputs, targets [B, L] int32 (target 0 = no loss); optional negatives [S] int32
        and log_q [N + 1] float32 log sampling probability per item; optional temperature
        (scalar, the hard variant's soft phase: see `soft_temperature`).
      key: PRNG key for dropout / Gumbel noise.
    Returns:
      (mean cross-entropy over real targets, {"n_targets": count}).
    """
    inputs, targets = batch["inputs"], batch["targets"].T  # the logits are time-major
    temperature = batch.get("temperature")  # hard variant's soft phase (TrainConfig.soft_epochs)
    if "negatives" in batch:
        logits, labels = _sampled_logits(model, batch, key), jnp.zeros_like(targets)
    else:
        logits = model.train_logits_full(inputs, key=key, temperature=temperature)
        labels = targets
        pad = jnp.arange(logits.shape[-1])[None, None, :] == 0
        logits = jnp.where(pad, jnp.finfo(jnp.float32).min, logits)  # id 0 is never a target
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    real = targets > 0
    n = real.sum()
    return jnp.where(real, ce, 0.0).sum() / jnp.maximum(n, 1), {"n_targets": n}


def _sampled_logits(model: AttentionRecommender, batch: dict[str, jax.Array], key) -> jax.Array:
    """[L, B, 1 + S] logQ-corrected logits: the target first, then the shared negatives."""
    targets, negatives, log_q = batch["targets"], batch["negatives"], batch["log_q"]
    logits = model.train_logits(
        batch["inputs"], targets, negatives, key=key, temperature=batch.get("temperature")
    )
    targets = targets.T
    hit = negatives[None, None, :] == targets[..., None]  # a negative that is the positive
    neg = logits[..., 1:] - log_q[negatives][None, None, :]
    neg = jnp.where(hit, jnp.finfo(jnp.float32).min, neg)
    return jnp.concatenate([logits[..., :1] - log_q[targets][..., None], neg], axis=-1)


@nnx.jit(donate_argnames=("model", "optimizer"))
def train_step(
    model: AttentionRecommender,
    optimizer: nnx.Optimizer,
    batch: dict[str, jax.Array],
    key: jax.Array,
) -> dict[str, jax.Array]:
    """One AdamW update; returns health metrics (loss, gradient norm, targets in the batch)."""
    grad_fn = nnx.value_and_grad(loss_fn, has_aux=True)
    (loss, aux), grads = grad_fn(model, batch, key)
    optimizer.update(model, grads)
    return {"loss": loss, "grad_norm": optax.tree.norm(grads), **aux}


def validation_ndcg(model: AttentionRecommender, split: Split, cfg: TrainConfig) -> float:
    """Mean full-ranking NDCG@10 on the validation targets (model is put in eval mode)."""
    model.eval()
    ranking = rank_all(make_scorer(model), split, "valid", model.cfg.max_len, batch=cfg.eval_batch)
    model.train()
    return float(metrics_from_ranks(ranking.n_greater, ranking.n_tied, (10,))["ndcg@10"].mean())


@dataclass
class FitResult:
    """What `fit` returns: the model restored to its best epoch, in eval mode, and the story."""

    model: AttentionRecommender
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_valid_ndcg: float = float("-inf")
    stop_reason: str = ""
    seconds: float = 0.0
    steps: int = 0
    loss: str = ""  # which training loss was used


def fit(
    split: Split,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    *,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    verbose: bool = True,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    pause_after: int | None = None,
) -> FitResult:
    """Trains an AttentionRecommender with early stopping on validation NDCG@10.

    Args:
      split: leave-last-out split (validation targets drive early stopping).
      model_cfg, cfg: model and training configs.
      progress: called after every epoch with a dict (epoch, loss, valid_ndcg@10, best, ...).
      should_stop: polled between steps; True cancels (the best epoch so far is kept). Not for
        multi-process jobs: every process must stop at the same step.
      verbose: terminal progress bar.
      checkpoint_dir: if set, the full training state is saved there after every epoch.
      resume: continue from the newest checkpoint in checkpoint_dir (same configs required);
        batches, negatives and dropout depend only on (seed, epoch, step), so a resumed run
        ends exactly where an uninterrupted one would.
      pause_after: stop after this epoch with stop_reason "paused ..." (the schedule is still
        the one of cfg.max_epochs, so a `resume` from the checkpoint continues it: the first
        start's fast models are the default training paused early, see `quickstart`).
    Returns:
      FitResult with the best-validation parameters loaded and the model in eval mode. Each
      history record counts the XLA compilations of its epoch ("compiles"): after the first
      epoch it is 0, since every step and every validation has the same shapes.
    """
    start = time.perf_counter()
    inputs, targets = training_windows(split, model_cfg.max_len, cfg.window_stride)
    dist.same_everywhere(len(inputs), "the number of training windows (load the same data)")
    full = full_softmax(model_cfg, cfg, split.n_items)
    feed = _Feed((inputs, targets), None if full else NegativeSampler(split, cfg), cfg)
    model = AttentionRecommender(model_cfg, split.n_items, rngs=nnx.Rngs(cfg.seed))
    total_steps = math.ceil(len(inputs) / cfg.batch_size) * cfg.max_epochs
    optimizer = nnx.Optimizer(model, make_optimizer(cfg, total_steps), wrt=nnx.Param)
    result = FitResult(
        model=model,
        loss="full softmax"
        if full
        else f"sampled softmax ({cfg.n_negatives} {cfg.negatives} negatives, logQ)",
    )
    digest = ckpt.config_digest({"model": to_dict(model_cfg), "train": to_dict(cfg),
                                 "n_items": split.n_items, "windows": len(inputs)})  # fmt: skip
    best, offset = _snapshot(model), 0.0
    if resume and checkpoint_dir is not None:
        best, offset = _resume(Path(checkpoint_dir), digest, optimizer, result)
        dist.same_everywhere(len(result.history), "the epoch to resume from (a multi-machine "
                             "--resume needs --runs-dir on a shared file system)")  # fmt: skip
    for obj in (model, optimizer):  # parameters and optimizer state on every device
        nnx.update(obj, feed.placement.replicate(nnx.state(obj)))
    step = _make_step(model, optimizer)
    first = cfg.max_epochs + 1 if result.stop_reason else len(result.history) + 1
    bar = tqdm(range(first, cfg.max_epochs + 1), desc=model_cfg.attention,
               disable=not (verbose and dist.is_primary()), initial=first - 1,
               total=cfg.max_epochs)  # fmt: skip
    with CompileCounter() as compiles:
        for epoch in bar:
            before = compiles.count
            losses = _train_epoch(step, feed, result, should_stop)
            if result.stop_reason:
                break
            record = {"epoch": epoch, "loss": float(np.mean(losses)), "steps": result.steps}
            if epoch % cfg.eval_every == 0 or epoch == cfg.max_epochs:
                record["valid_ndcg@10"] = dist.agree(validation_ndcg(model, split, cfg))
                if record["valid_ndcg@10"] > result.best_valid_ndcg:
                    result.best_valid_ndcg, result.best_epoch = record["valid_ndcg@10"], epoch
                    best = _snapshot(model)
            seconds = offset + time.perf_counter() - start
            record.update(seconds=seconds, compiles=compiles.count - before)
            result.history.append(record)
            if epoch >= cfg.min_epochs and epoch - result.best_epoch >= cfg.patience:
                result.stop_reason = f"early stopping: no gain for {cfg.patience} epochs"
            if checkpoint_dir is not None and dist.is_primary():
                _save_checkpoint(Path(checkpoint_dir), digest, optimizer, result, best)
            bar.set_postfix(loss=f"{record['loss']:.4f}", val=f"{result.best_valid_ndcg:.4f}")
            if progress is not None:
                progress({**record, "max_epochs": pause_after or cfg.max_epochs,
                          "best_epoch": result.best_epoch,
                          "best_valid_ndcg@10": result.best_valid_ndcg})  # fmt: skip
            if pause_after is not None and epoch >= pause_after and not result.stop_reason:
                result.stop_reason = f"{PAUSED} after epoch {epoch} of {cfg.max_epochs}"
            if result.stop_reason:
                break
    bar.close()
    result.stop_reason = result.stop_reason or "reached max_epochs"
    nnx.update(model, jax.tree.map(jnp.asarray, best))
    model.eval()
    result.seconds = offset + time.perf_counter() - start
    return result


def _save_checkpoint(folder: Path, digest: str, optimizer, result: FitResult, best) -> None:
    meta = {"digest": digest, "steps": result.steps, "best_epoch": result.best_epoch,
            "best_valid_ndcg": result.best_valid_ndcg, "history": result.history,
            "stop_reason": result.stop_reason}  # fmt: skip
    arrays = {"model": ckpt.pure(result.model, nnx.Param), "optimizer": ckpt.pure(optimizer),
              "best": ckpt.pure(best)}  # fmt: skip
    ckpt.save(folder, len(result.history), arrays, meta)


def _resume(folder: Path, digest: str, optimizer, result: FitResult):
    """Loads the newest checkpoint into the model, optimizer and result; returns (best, secs)."""
    meta = ckpt.latest(folder)
    if meta is None:
        return _snapshot(result.model), 0.0
    if meta.get("digest") != digest:
        raise ValueError(f"checkpoint in {folder} belongs to other configs or data; not resuming")
    target = {"model": ckpt.pure(result.model, nnx.Param), "optimizer": ckpt.pure(optimizer),
              "best": ckpt.pure(result.model, nnx.Param)}  # fmt: skip
    arrays = ckpt.restore(meta, target)
    ckpt.load_into(result.model, arrays["model"], nnx.Param)
    ckpt.load_into(optimizer, arrays["optimizer"])
    best = nnx.state(result.model, nnx.Param)
    nnx.replace_by_pure_dict(best, arrays["best"])
    result.history = list(meta["history"])
    result.steps, result.best_epoch = int(meta["steps"]), int(meta["best_epoch"])
    result.best_valid_ndcg = float(meta["best_valid_ndcg"])
    result.stop_reason = meta.get("stop_reason") or ""
    if result.stop_reason.startswith(PAUSED):  # a paused training goes on when resumed
        result.stop_reason = ""
    seconds = float(result.history[-1]["seconds"]) if result.history else 0.0
    return jax.tree.map(lambda a: np.array(a), best), seconds


@dataclass
class _Feed:
    """Training data, negatives and device placement for `fit`."""

    data: tuple[np.ndarray, np.ndarray]
    sampler: NegativeSampler | None
    cfg: TrainConfig

    def __post_init__(self) -> None:
        self.placement = Placement(self.cfg.devices)
        self.placement.check_batch(self.cfg.batch_size)

    def epoch(self, epoch: int):
        return epoch_batches(self.data, self.sampler, self.cfg, epoch, self.placement,
                             prefetch=self.cfg.prefetch)  # fmt: skip


def soft_temperature(model_cfg: ModelConfig, cfg: TrainConfig, epoch: int) -> float | None:
    """The hard variant's readout temperature in epoch `epoch` (1-based) of its soft phase:
    1 in the first epoch, falling geometrically to cfg.soft_tau in epoch cfg.soft_epochs; None
    (straight-through top-k) afterwards and for the other variants. Leaving the soft phase
    compiles the straight-through step once."""
    if model_cfg.attention != "hard" or epoch > cfg.soft_epochs:
        return None
    return float(cfg.soft_tau ** ((epoch - 1) / max(cfg.soft_epochs - 1, 1)))


def _make_step(model: AttentionRecommender, optimizer: nnx.Optimizer):
    """`train_step` bound to this model and optimizer: `nnx.cached_partial` caches the graph
    traversal that `nnx.jit` otherwise repeats on every call (~100 ms per step measured on the
    default preset, about 15% of the step)."""
    return nnx.cached_partial(train_step, model, optimizer)


def _train_epoch(step, feed, result, should_stop) -> list[float]:
    """One pass over the epoch's batches; sets result.stop_reason on NaN/inf or cancel.

    Losses stay on the device until the epoch ends (one sync per epoch instead of per step,
    so the host prepares the next step while the current one runs).
    """
    base_key, losses = jax.random.key(feed.cfg.seed), []
    epoch = len(result.history) + 1
    temperature = soft_temperature(result.model.cfg, feed.cfg, epoch)
    extra = {} if temperature is None else {"temperature": np.float32(temperature)}
    for batch in feed.epoch(epoch):
        batch = {**batch, **extra}
        losses.append(step(batch, jax.random.fold_in(base_key, result.steps))["loss"])
        result.steps += 1
        if should_stop is not None and should_stop():
            result.stop_reason = f"cancelled at epoch {epoch}, step {result.steps}"
            break
    values = np.asarray(jax.device_get(losses), np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        result.stop_reason = (
            f"stopped: non-finite loss ({values[bad[0]]}) at epoch {epoch}, step "
            f"{result.steps - len(values) + bad[0] + 1}; kept the best checkpoint "
            f"(epoch {result.best_epoch})"
        )
    return values.tolist()


def _snapshot(model: AttentionRecommender) -> nnx.State:
    """A host copy of the parameters (later updates do not alias it)."""
    return jax.tree.map(lambda a: np.array(a), nnx.state(model, nnx.Param))


def default_run_id(data_cfg: DataConfig, model_cfg: ModelConfig, cfg: TrainConfig) -> str:
    """e.g. 'ml-100k-additive-s0-20261127-213501'."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{data_cfg.dataset}-{model_cfg.attention}-s{cfg.seed}-{stamp}"


def train(
    data_cfg: DataConfig,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    *,
    runs_dir: str | Path = "runs",
    run_id: str | None = None,
    dataset: Dataset | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    verbose: bool = True,
    overwrite: bool = False,
    resume: bool = False,
    keep_if_cancelled: bool = True,
    pause_after: int | None = None,
) -> Run | None:
    """Loads data, trains with early stopping, evaluates the best epoch, saves the run.

    Args:
      data_cfg, model_cfg, cfg: the three configs (saved with the run).
      runs_dir, run_id: where to save (run_id defaults to dataset-variant-seed-time).
      dataset: an already-loaded Dataset matching data_cfg (skips loading).
      progress, should_stop, verbose: see `fit`; progress also gets {"stage": ...} events.
      overwrite: replace an existing run with the same id.
      resume: continue from the per-epoch checkpoint a killed `train` left in
        runs_dir/.partial-<run_id> (it is removed once the run is saved).
      keep_if_cancelled: save the best epoch so far when `should_stop` cancels; False leaves
        the existing run untouched and keeps the checkpoint for `resume` (returns None).
      pause_after: save the run after this epoch (its stop_reason says "paused") and keep the
        checkpoint, so a later `train(..., resume=True)` continues the same schedule.
    Returns:
      The saved, reloaded Run; None on processes other than 0 of a multi-process job
      (`recexplain.distributed`), which train alongside process 0 but leave the saving to it,
      and for a cancel with keep_if_cancelled=False.
    """
    run_id = check_run_id(run_id or default_run_id(data_cfg, model_cfg, cfg))
    prepare_runs_dir(runs_dir)  # a file is refused now, not after epoch 1; stale temp folders go
    say = progress or (lambda event: None)
    say({"stage": "loading data"})
    ds = dataset if dataset is not None else load_dataset(data_cfg)
    check_evaluable(ds)  # no user with >= 3 interactions: nothing to evaluate, refuse now
    split = leave_last_out(ds)
    say({"stage": "training"})
    exists = dist.agree(float((Path(runs_dir) / run_id).exists())) > 0  # process 0 decides
    if exists and not overwrite:
        raise RunError(f"run {run_id!r} already exists in {runs_dir} (use overwrite)")
    partial = Path(runs_dir) / f".partial-{run_id}"
    result = fit(split, model_cfg, cfg, progress=progress, should_stop=should_stop,
                 verbose=verbose, checkpoint_dir=partial, resume=resume,
                 pause_after=pause_after)  # fmt: skip
    if not dist.is_primary():  # fit returned host-local parameters: nothing left to share
        return None
    if not keep_if_cancelled and result.stop_reason.startswith("cancelled"):
        return None
    say({"stage": "evaluating"})
    scorer = make_scorer(result.model)
    rankings = {w: rank_all(scorer, split, w, model_cfg.max_len, batch=cfg.eval_batch)
                for w in ("valid", "test")}  # fmt: skip
    popularity = split.item_popularity()
    metrics = {
        w: summarize(r, popularity, split.n_items, n_boot=cfg.bootstrap, seed=cfg.seed)
        for w, r in rankings.items()
    }
    metrics.update(
        best_epoch=result.best_epoch,
        stop_reason=result.stop_reason,
        train_seconds=result.seconds,
        steps=result.steps,
        loss=result.loss,
        protocol="leave-last-out, full ranking over all items, seen items excluded",
    )
    say({"stage": "saving"})
    path = save_run(
        runs_dir,
        run_id,
        model_type="attention",
        configs={"data": to_dict(data_cfg), "model": to_dict(model_cfg), "train": to_dict(cfg),
                 "n_items": split.n_items, "n_users": split.n_users},
        params=nnx.state(result.model, nnx.Param),
        dataset_info={"name": ds.name, "fingerprint": ds.fingerprint, **dataset_info(ds)},
        items=ds.items,
        user_ids=ds.user_ids,
        metrics=metrics,
        history=result.history,
        rankings=rankings,
        overwrite=overwrite,
    )  # fmt: skip
    if not result.stop_reason.startswith(PAUSED):
        shutil.rmtree(partial, ignore_errors=True)
    say({"stage": "done", "run_id": run_id})
    return load_run(path)
