"""SASRec (Kang & McAuley 2018): causal self-attention, scored by a last-position dot product.

    h = Blocks(E[x] * sqrt(d) + P)          pre-LayerNorm causal multi-head self-attention + FFN
    s(c) = h_L . E[c]                        the last position against the shared item embedding

No candidate-specific readout: one matmul scores every item. Trained with cross-entropy at every
position of each training window, either a full softmax over all N items (the default; on
ML-100K the [B*L, d] x [d, N] output layer is affordable) or a sampled softmax against shared
uniform negatives like `training.loss_fn`. Dropout draws from an explicit key, so the model state
holds parameters only and restores with `nnx.eval_shape` + Orbax like the attention models.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from recexplain.early_stopping import FitOutcome, early_stopping
from recexplain.split import Split, training_windows

Array = jax.Array


def _keys(key: Array | None, n: int) -> list[Array | None]:
    return [None] * n if key is None else list(jax.random.split(key, n))


class Block(nnx.Module):
    """Pre-LayerNorm transformer block: causal multi-head self-attention, then a ReLU FFN."""

    def __init__(self, d: int, heads: int, dropout: float, *, rngs: nnx.Rngs):
        self.norm1, self.norm2 = nnx.LayerNorm(d, rngs=rngs), nnx.LayerNorm(d, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(heads, d, dropout_rate=dropout, decode=False,
                                           keep_rngs=False, rngs=rngs)  # fmt: skip
        self.ff1, self.ff2 = nnx.Linear(d, d, rngs=rngs), nnx.Linear(d, d, rngs=rngs)
        self.drop = nnx.Dropout(dropout)

    def __call__(self, x: Array, mask: Array, key: Array | None) -> Array:
        """x: [B, L, d], mask: [B, 1, L, L] bool -> [B, L, d]; key None = no dropout."""
        k = _keys(key, 4)
        det = key is None
        rngs = None if det else nnx.Rngs(dropout=k[0])
        a = self.attn(self.norm1(x), mask=mask, deterministic=det, rngs=rngs)
        x = x + self.drop(a, deterministic=det, rngs=k[1])
        f = self.ff2(self.drop(jax.nn.relu(self.ff1(self.norm2(x))), deterministic=det, rngs=k[2]))
        return x + self.drop(f, deterministic=det, rngs=k[3])


class SASRec(nnx.Module):
    """Item + position embeddings, causal blocks, final LayerNorm; h_L . E[c] scores item c."""

    def __init__(
        self,
        n_items: int,
        *,
        d_model: int = 64,
        n_blocks: int = 2,
        n_heads: int = 2,
        max_len: int = 50,
        dropout: float = 0.2,
        rngs: nnx.Rngs,
    ):
        if min(n_items, d_model, n_heads, max_len) < 1 or n_blocks < 0 or d_model % n_heads:
            raise ValueError(f"bad SASRec size: {n_items=}, {d_model=}, {n_blocks=}, "
                             f"{n_heads=}, {max_len=}")  # fmt: skip
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.n_items, self.d_model, self.max_len = n_items, d_model, max_len
        self.item = nnx.Embed(n_items + 1, d_model, rngs=rngs)
        self.pos = nnx.Embed(max_len, d_model, rngs=rngs)
        self.blocks = nnx.List([Block(d_model, n_heads, dropout, rngs=rngs)
                                for _ in range(n_blocks)])  # fmt: skip
        self.norm = nnx.LayerNorm(d_model, rngs=rngs)
        self.drop = nnx.Dropout(dropout)

    def __call__(self, seq: Array, *, key: Array | None = None) -> Array:
        """seq: [B, L] int32 left-padded with 0 -> hidden states [B, L, d]."""
        keys = _keys(key, len(self.blocks) + 1)
        real = (seq > 0)[..., None]  # [B, L, 1]
        x = self.item(seq) * math.sqrt(self.d_model) + self.pos(jnp.arange(seq.shape[1]))[None]
        x = self.drop(x, deterministic=key is None, rngs=keys[0]) * real
        causal = nnx.make_causal_mask(seq, dtype=jnp.bool_)  # [B, 1, L, L]
        keep = nnx.make_attention_mask(jnp.ones_like(seq), seq > 0, dtype=jnp.bool_)
        mask = nnx.combine_masks(causal, keep, dtype=jnp.bool_)
        for block, k in zip(self.blocks, keys[1:], strict=True):
            x = block(x, mask, k) * real
        return self.norm(x)

    def logits(self, seq: Array, *, key: Array | None = None) -> Array:
        """Scores of every item at every position: [B, L, N + 1] (the padding id included)."""
        return self(seq, key=key) @ self.item.embedding[...].T

    def score_all(self, seq: Array) -> Array:
        """Last-position scores of every item, [B, N + 1] (no dropout)."""
        return self(seq)[:, -1] @ self.item.embedding[...].T


def loss_fn(
    model: SASRec, inputs: Array, targets: Array, negatives: Array | None, key: Array
) -> tuple[Array, dict[str, Array]]:
    """Cross-entropy of the next item at every non-empty position.

    Args:
      inputs, targets: [B, L] int32 (target 0 = no loss); key: dropout key;
      negatives: None for a full softmax over items 1..N, else [S] int32 shared uniform negatives
        (sampled softmax; a negative equal to the positive is masked out).
    Returns:
      (mean cross-entropy over real targets, {"n_targets": count}).
    """
    h = model(inputs, key=key)  # [B, L, d]
    emb = model.item.embedding[...]
    low = jnp.finfo(jnp.float32).min
    if negatives is None:
        logits = jnp.where(jnp.arange(emb.shape[0])[None, None, :] == 0, low, h @ emb.T)
        labels = targets
    else:
        pos = (h * emb[targets]).sum(-1, keepdims=True)  # [B, L, 1]
        neg = h @ emb[negatives].T  # [B, L, S]
        neg = jnp.where(negatives[None, None, :] == targets[..., None], low, neg)
        logits, labels = jnp.concatenate([pos, neg], axis=-1), jnp.zeros_like(targets)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    real = targets > 0
    n = real.sum()
    return jnp.where(real, ce, 0.0).sum() / jnp.maximum(n, 1), {"n_targets": n}


@nnx.jit
def train_step(model: SASRec, optimizer: nnx.Optimizer, inputs, targets, negatives, key):
    """One optimizer update; returns health metrics (loss, gradient norm, targets)."""
    grad_fn = nnx.value_and_grad(loss_fn, has_aux=True)
    (loss, aux), grads = grad_fn(model, inputs, targets, negatives, key)
    optimizer.update(model, grads)
    return {"loss": loss, "grad_norm": optax.tree.norm(grads), **aux}


@partial(jax.jit, static_argnums=0)
def _score_all(graphdef, state, seq):
    return nnx.merge(graphdef, state).score_all(seq)


def make_scorer(model: SASRec) -> Callable[[Any, np.ndarray], Array]:
    """A jitted (users, inputs [B, L']) -> scores [B, N + 1]; inputs are cut or left-padded to
    the model's window (users are not used: the history is the input)."""
    graphdef, state = nnx.split(model)
    length = model.max_len

    def score(users, inputs):
        x = np.asarray(inputs, np.int32)[:, -length:]
        x = np.pad(x, ((0, 0), (length - x.shape[1], 0)))
        return _score_all(graphdef, state, jnp.asarray(x))

    return score


def fit_sasrec(
    split: Split,
    *,
    d_model: int = 64,
    n_blocks: int = 2,
    n_heads: int = 2,
    max_len: int = 50,
    dropout: float = 0.2,
    lr: float = 1e-3,
    n_negatives: int = 0,
    seed: int = 0,
    batch_size: int = 128,
    max_epochs: int = 200,
    patience: int = 10,
    warmup_steps: int = 0,
    cosine: bool = False,
    progress: Callable[[dict[str, Any]], None] | None = None,
    verbose: bool = False,
) -> tuple[SASRec, FitOutcome]:
    """Trains SASRec with Adam on next-item windows; keeps the best validation epoch.

    Args:
      split: leave-last-out split; d_model .. dropout: model size; lr: Adam learning rate;
      n_negatives: 0 = full softmax, else sampled softmax with that many shared negatives;
      seed: fixes init, dropout, negatives and batch order; batch_size: windows per step;
      max_epochs, patience: early stopping on validation NDCG@10.
      warmup_steps, cosine: linear warmup to lr, then (cosine=True) a cosine decay to lr / 100
        over max_epochs (the attention variants' schedule); else a constant lr.
    Returns:
      (the best-validation model in eval mode, FitOutcome with the per-epoch history).
    """
    inputs, targets = training_windows(split, max_len)
    model = SASRec(split.n_items, d_model=d_model, n_blocks=n_blocks, n_heads=n_heads,
                   max_len=max_len, dropout=dropout, rngs=nnx.Rngs(seed))  # fmt: skip
    total = -(-len(inputs) // batch_size) * max_epochs
    schedule = (optax.warmup_cosine_decay_schedule(0.0, lr, min(warmup_steps, total - 1), total,
                                                   lr * 0.01)
                if cosine else optax.linear_schedule(0.0, lr, warmup_steps) if warmup_steps
                else lr)  # fmt: skip
    optimizer = nnx.Optimizer(model, optax.adam(schedule), wrt=nnx.Param)
    base, counter = jax.random.key(seed), [0]

    def train_epoch(epoch: int) -> float:
        rng, losses = np.random.default_rng([seed, epoch]), []
        order = rng.permutation(len(inputs))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            pad = ((0, batch_size - len(idx)), (0, 0))
            neg = (rng.integers(1, split.n_items + 1, size=n_negatives, dtype=np.int32)
                   if n_negatives else None)  # fmt: skip
            key = jax.random.fold_in(base, counter[0])
            counter[0] += 1
            health = train_step(model, optimizer, np.pad(inputs[idx], pad),
                                np.pad(targets[idx], pad), neg, key)  # fmt: skip
            losses.append(health["loss"])
        return float(np.mean(jax.device_get(losses)))

    snapshot = lambda: jax.tree.map(np.array, nnx.state(model, nnx.Param))  # noqa: E731
    outcome = early_stopping(train_epoch, lambda: make_scorer(model), snapshot, split,
                             max_len=max_len, max_epochs=max_epochs, patience=patience,
                             label="sasrec", progress=progress, verbose=verbose)  # fmt: skip
    nnx.update(model, jax.tree.map(jnp.asarray, outcome.best))
    return model, outcome
