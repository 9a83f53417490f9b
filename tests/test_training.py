"""Training: smoke, no recompiles, determinism, NaN guard, cancel, and the planted cause."""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np
import pytest

from recexplain import training
from recexplain.config import ModelConfig, TrainConfig
from recexplain.evaluation import metrics_from_ranks, rank_all
from recexplain.feed import NegativeSampler
from recexplain.models.recommender import make_scorer
from recexplain.split import eval_inputs

TINY = ModelConfig(d_model=16, n_blocks=1, n_heads=1, d_attn=8, max_len=12)
FAST = TrainConfig(batch_size=64, n_negatives=16, max_epochs=3, patience=5, eval_batch=128,
                   warmup_steps=5, bootstrap=50)  # fmt: skip


def test_one_epoch_smoke(planted_split):
    result = training.fit(planted_split, TINY, dataclasses.replace(FAST, max_epochs=1),
                          verbose=False)  # fmt: skip
    assert len(result.history) == 1
    record = result.history[0]
    assert math.isfinite(record["loss"]) and 0 <= record["valid_ndcg@10"] <= 1
    assert result.best_epoch == 1 and result.stop_reason == "reached max_epochs"
    assert result.model.deterministic  # returned in eval mode


def test_nothing_recompiles_after_the_first_epoch(planted_split):
    result = training.fit(planted_split, TINY, FAST, verbose=False)
    compiles = [r["compiles"] for r in result.history]
    assert compiles[0] > 0  # the first epoch compiles the step and the validation scorer
    assert compiles[1:] == [0] * (len(compiles) - 1)


def test_same_seed_same_run_other_seed_other_run(planted_split):
    cfg = dataclasses.replace(FAST, max_epochs=2)
    a = training.fit(planted_split, TINY, cfg, verbose=False)
    b = training.fit(planted_split, TINY, cfg, verbose=False)
    c = training.fit(planted_split, TINY, dataclasses.replace(cfg, seed=1), verbose=False)
    key = ("loss", "valid_ndcg@10")
    assert [[r[k] for k in key] for r in a.history] == [[r[k] for k in key] for r in b.history]
    assert [r["loss"] for r in a.history] != [r["loss"] for r in c.history]


def test_non_finite_loss_stops_with_a_clear_message_and_keeps_the_best(planted_split, monkeypatch):
    real_make_step = training._make_step
    epochs_done = []

    def poisoned(model, optimizer):
        step = real_make_step(model, optimizer)

        def run(batch, key):
            out = step(batch, key)
            return {**out, "loss": jnp.nan} if epochs_done else out  # NaN from epoch 2 on

        return run

    monkeypatch.setattr(training, "_make_step", poisoned)
    result = training.fit(planted_split, TINY, dataclasses.replace(FAST, max_epochs=5),
                          progress=epochs_done.append, verbose=False)  # fmt: skip
    assert result.stop_reason.startswith("stopped: non-finite loss (nan) at epoch 2")
    assert "kept the best checkpoint (epoch 1)" in result.stop_reason
    assert result.best_epoch == 1
    scores = make_scorer(result.model)(None, np.ones((2, TINY.max_len), np.int32))
    assert np.isfinite(np.asarray(scores)).all()


def test_should_stop_cancels_between_steps(planted_split):
    result = training.fit(planted_split, TINY, FAST, should_stop=lambda: True, verbose=False)
    assert result.stop_reason == "cancelled at epoch 1, step 1"
    assert result.history == []


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["additive", "multiplicative", "hard"])
def test_planted_cause_is_learned_and_attended(kind, planted, planted_split):
    """HR@10 >= 0.9 on the planted test targets, and the readout's largest history weight
    (the hard variant: its selection) lands on the planted cause for >= 90% of users."""
    ds, truth = planted
    split = planted_split
    model_cfg = ModelConfig(attention=kind, d_model=64, n_blocks=1, n_heads=1, d_attn=32,
                            max_len=20, dropout=0.3, hard_k=1)  # fmt: skip
    cfg = TrainConfig(batch_size=64, n_negatives=64, max_epochs=30, patience=8,
                      learning_rate=5e-3, warmup_steps=20, eval_batch=128)  # fmt: skip
    result = training.fit(split, model_cfg, cfg, verbose=False)
    ranking = rank_all(make_scorer(result.model), split, "test", 20, batch=128)
    hr = metrics_from_ranks(ranking.n_greater, ranking.n_tied, (10,))["hr@10"].mean()
    users, x, y = eval_inputs(split, "test", 20)
    _, aux = result.model(jnp.asarray(x), jnp.asarray(y)[:, None])
    weights = np.asarray(aux["readout"][:, 0, :])
    cause = truth.groupby("user").tail(1).set_index("user").loc[users, "cause_item"].to_numpy()
    found = (x[np.arange(len(x)), weights.argmax(1)] == cause).mean()
    assert hr >= 0.9, f"{kind}: HR@10 {hr:.3f}"
    assert found >= 0.9, f"{kind}: cause has the top weight for {found:.1%} of users"


def test_negative_sampler_uniform_and_mixed(planted_split):
    uniform = NegativeSampler(planted_split, dataclasses.replace(FAST, negatives="uniform"))
    rng = np.random.default_rng(0)
    draws = np.concatenate([uniform(rng) for _ in range(200)])
    assert draws.min() >= 1 and draws.max() <= planted_split.n_items
    assert np.ptp(uniform.log_q[1:]) == 0.0  # constant correction: a no-op in the softmax
    mixed = NegativeSampler(planted_split, dataclasses.replace(FAST, negatives="mixed"))
    draws = np.concatenate([mixed(rng) for _ in range(2000)])
    pop = planted_split.item_popularity()
    q = np.exp(mixed.log_q[1:])
    np.testing.assert_allclose(q.sum(), 1.0, rtol=1e-6)
    assert q[np.argmax(pop[1:])] > q[np.argmin(pop[1:])]
    freq = np.bincount(draws, minlength=len(pop))[1:] / len(draws)
    assert np.abs(freq - q).max() < 0.01  # samples follow the stated distribution
