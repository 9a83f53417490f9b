"""Shared test setup: strict JAX numerics, tiny configs, the synthetic and real data sets."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(scope="session")
def ml100k_cache(tmp_path_factory) -> Path:
    """Cache folder for tests that load the real ML-100K through the offline (PyPI wheel) path.

    RECEXPLAIN_TEST_CACHE reuses one folder across test sessions (the Makefile sets it);
    otherwise a fresh temporary folder, so the download path itself is exercised.
    """
    shared = os.environ.get("RECEXPLAIN_TEST_CACHE")
    if shared:
        Path(shared).mkdir(parents=True, exist_ok=True)
        return Path(shared)
    return tmp_path_factory.mktemp("recexplain-cache")


@pytest.fixture(scope="session")
def planted():
    """The default planted-cause data set (DataConfig(dataset="synthetic")) and its truth."""
    from recexplain.data import synthetic_planted

    return synthetic_planted()


@pytest.fixture(scope="session")
def planted_split(planted):
    from recexplain.split import leave_last_out

    return leave_last_out(planted[0])


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, planted):
    """A saved run of a tiny model trained for two epochs on the synthetic data set."""
    from recexplain.config import DataConfig, ModelConfig, TrainConfig
    from recexplain.training import train

    runs_dir = tmp_path_factory.mktemp("runs")
    model_cfg = ModelConfig(attention="additive", d_model=16, n_blocks=1, n_heads=1, d_attn=8,
                            max_len=12)  # fmt: skip
    train_cfg = TrainConfig(batch_size=64, n_negatives=16, max_epochs=2, eval_batch=128,
                            bootstrap=50)  # fmt: skip
    return train(DataConfig(dataset="synthetic"), model_cfg, train_cfg, runs_dir=runs_dir,
                 run_id="tiny-additive", dataset=planted[0], verbose=False)  # fmt: skip
