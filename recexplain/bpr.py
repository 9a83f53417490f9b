"""BPR-MF: matrix factorisation trained with the pairwise BPR loss and a jit-compiled optax step.

    s(u, i) = p_u . q_i
    loss    = mean over (u, i, j) of  -log sigmoid(s(u, i) - s(u, j))
                                      + reg * (|p_u|^2 + |q_i|^2 + |q_j|^2)

over every training pair (u, i) once per epoch, with one negative j per pair drawn uniformly from
the items u has not interacted with in training. Early stopping on validation NDCG@10.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from recexplain.early_stopping import FitOutcome, early_stopping
from recexplain.item_baselines import _Restorable
from recexplain.split import Split


@dataclass(frozen=True)
class MatrixFactorization(_Restorable):
    """User and item factors; a user's score for every item is one dot product."""

    user: np.ndarray  # float32 [U, d]
    item: np.ndarray  # float32 [N + 1, d]; row 0 is the (never trained) padding id

    def scorer(self):
        """(users [B], inputs [B, L]) -> scores [B, N + 1]; inputs are not used (no fold-in)."""

        def score(users, inputs):
            if users is None:
                raise ValueError("BPR-MF scores known users only (pass their internal ids)")
            return self.user[np.asarray(users, np.int64)] @ self.item.T

        return score


def loss_fn(
    params: dict[str, jax.Array],
    users: jax.Array,
    pos: jax.Array,
    neg: jax.Array,
    weight: jax.Array,
    reg: jax.Array,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """BPR loss with L2 on the factors in the batch.

    Args:
      params: {"user": [U, d], "item": [N + 1, d]}; users, pos, neg: [B] int32;
      weight: [B] float32 (0 for padding rows); reg: scalar L2 weight.
    Returns:
      (weighted mean loss, {"bpr": the weighted mean BPR term alone}).
    """
    p, qi, qj = params["user"][users], params["item"][pos], params["item"][neg]  # [B, d]
    diff = (p * (qi - qj)).sum(-1)  # [B]
    bpr = optax.sigmoid_binary_cross_entropy(diff, jnp.ones_like(diff))  # -log sigmoid(diff)
    l2 = (p * p).sum(-1) + (qi * qi).sum(-1) + (qj * qj).sum(-1)
    n = jnp.maximum(weight.sum(), 1.0)
    return ((bpr + reg * l2) * weight).sum() / n, {"bpr": (bpr * weight).sum() / n}


def make_train_step(tx: optax.GradientTransformation) -> Callable:
    """A jitted (params, opt_state, batch) -> (params, opt_state, health) step for optimizer tx."""

    @jax.jit
    def train_step(params, opt_state, users, pos, neg, weight, reg):
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, aux), grads = grad_fn(params, users, pos, neg, weight, reg)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, {"loss": loss, "grad_norm": optax.tree.norm(grads), **aux}

    return train_step


def sample_negatives(
    rng: np.random.Generator, users: np.ndarray, seen: np.ndarray, n_items: int, rounds: int = 10
) -> np.ndarray:
    """One uniform negative per user from the items the user has not seen in training.

    Args:
      users: [B] int64; seen: sorted int64 keys user * (N + 1) + item of the training pairs.
    Returns:
      int32 [B] items in 1..N (a user who has seen every item gets a random item).
    """
    stride = n_items + 1
    is_seen = lambda keys: seen[np.minimum(np.searchsorted(seen, keys), len(seen) - 1)] == keys  # noqa: E731
    neg = rng.integers(1, stride, size=len(users))
    for _ in range(rounds):  # redraw collisions; almost always done after a few rounds
        hit = np.flatnonzero(is_seen(users * stride + neg))
        if len(hit) == 0:
            return neg.astype(np.int32)
        neg[hit] = rng.integers(1, stride, size=len(hit))
    for i in np.flatnonzero(is_seen(users * stride + neg)):  # heavy users: draw from the rest
        lo, hi = np.searchsorted(seen, [users[i] * stride, (users[i] + 1) * stride])
        unseen = np.setdiff1d(np.arange(1, stride), seen[lo:hi] - users[i] * stride)
        neg[i] = rng.choice(unseen) if len(unseen) else neg[i]
    return neg.astype(np.int32)


def _pairs(split: Split) -> tuple[np.ndarray, np.ndarray]:
    users = np.repeat(np.arange(split.n_users, dtype=np.int64), np.diff(split.train_offsets))
    return users, split.train_items.astype(np.int64)


def fit_bpr(
    split: Split,
    *,
    dim: int = 64,
    lr: float = 1e-3,
    reg: float = 1e-4,
    seed: int = 0,
    batch_size: int = 1024,
    max_epochs: int = 200,
    patience: int = 20,
    init_std: float = 0.1,
    progress: Callable[[dict[str, Any]], None] | None = None,
    verbose: bool = False,
) -> tuple[MatrixFactorization, FitOutcome]:
    """Trains BPR-MF on the training pairs with Adam; keeps the best validation epoch.

    Args:
      split: leave-last-out split; dim, lr, reg: factor size, Adam learning rate, L2 weight.
      seed: fixes initialisation, negatives and batch order; batch_size: pairs per step.
      max_epochs, patience: early stopping on validation NDCG@10 (patience 20: at lr 1e-3 the
        validation curve can sit on a plateau for 10+ epochs before it climbs again, and an epoch
        costs under a second); init_std: N(0, std) init.
    Returns:
      (the best-validation model, FitOutcome with the per-epoch history).
    """
    users, items = _pairs(split)
    seen = np.sort(users * (split.n_items + 1) + items)
    ku, ki = jax.random.split(jax.random.key(seed))
    params = {"user": jax.random.normal(ku, (split.n_users, dim)) * init_std,
              "item": jax.random.normal(ki, (split.n_items + 1, dim)) * init_std}  # fmt: skip
    tx = optax.adam(lr)
    state = {"params": params, "opt": tx.init(params)}
    step, rng = make_train_step(tx), np.random.default_rng(seed)

    def train_epoch(epoch: int) -> float:
        order = rng.permutation(len(users))
        neg = sample_negatives(rng, users[order], seen, split.n_items)
        losses = []
        for start in range(0, len(order), batch_size):
            idx, pad = order[start : start + batch_size], max(0, start + batch_size - len(order))
            cols = (users[idx], items[idx], neg[start : start + batch_size])
            batch = [np.pad(a.astype(np.int32), (0, pad)) for a in cols]
            batch.append(np.pad(np.ones(len(idx), np.float32), (0, pad)))
            state["params"], state["opt"], health = step(
                state["params"], state["opt"], *batch, np.float32(reg)
            )
            losses.append(health["loss"])
        return float(np.mean(jax.device_get(losses)))

    def current() -> MatrixFactorization:
        return MatrixFactorization(*(np.asarray(state["params"][k]) for k in ("user", "item")))

    outcome = early_stopping(train_epoch, lambda: current().scorer(), current, split, max_len=1,
                             max_epochs=max_epochs, patience=patience, label="bpr",
                             progress=progress, verbose=verbose)  # fmt: skip
    return outcome.best, outcome
