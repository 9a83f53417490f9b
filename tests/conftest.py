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


# -- the dashboard's tests (test_pages, test_browser, test_export) ------------------------------
APP_DATASET = "synthetic"  # RECEXPLAIN_DATASET for the app under test


@pytest.fixture(scope="session")
def app_runs(tmp_path_factory, planted) -> Path:
    """A runs folder with one tiny run per attention variant on the synthetic data set, named as
    `default_runs` names them (<data set>-<variant>), so the app reuses them instead of training."""
    from recexplain.config import ATTENTION_VARIANTS, DataConfig, ModelConfig, TrainConfig
    from recexplain.training import train

    runs_dir = tmp_path_factory.mktemp("app-runs")
    ds = planted[0]
    train_cfg = TrainConfig(batch_size=64, n_negatives=16, max_epochs=1, eval_batch=128,
                            bootstrap=50)  # fmt: skip
    for variant in ATTENTION_VARIANTS:
        model_cfg = ModelConfig(attention=variant, d_model=16, n_blocks=1, n_heads=1, d_attn=8,
                                max_len=12)  # fmt: skip
        train(DataConfig(dataset=APP_DATASET), model_cfg, train_cfg, runs_dir=runs_dir,
              run_id=f"{ds.name}-{variant}", dataset=ds, verbose=False)  # fmt: skip
    return runs_dir


@pytest.fixture
def app_env(app_runs, monkeypatch) -> Path:
    """Points the app at the tiny runs and the synthetic data set."""
    monkeypatch.setenv("RECEXPLAIN_RUNS_DIR", str(app_runs))
    monkeypatch.setenv("RECEXPLAIN_DATASET", APP_DATASET)
    return app_runs


@pytest.fixture(scope="session")
def baseline_runs(tmp_path_factory, planted):
    """Every baseline tuned on its tiny grid and saved as a run (synthetic data, seed 0)."""
    from recexplain.baselines import BASELINES, train_baseline
    from recexplain.config import DataConfig

    runs_dir = tmp_path_factory.mktemp("baseline-runs")
    return {name: train_baseline(name, DataConfig(dataset="synthetic"), preset="tiny",
                                 runs_dir=runs_dir, dataset=planted[0])
            for name in BASELINES}  # fmt: skip
