"""End to end on the real MovieLens-100K (offline wheel source): data -> train -> run -> CLI."""

from __future__ import annotations

import json

import pytest

from recexplain.cli import main
from recexplain.config import DataConfig, preset
from recexplain.data import ML100K_FINGERPRINT
from recexplain.training import train


@pytest.mark.slow
def test_ml100k_tiny_model_end_to_end(ml100k_cache, tmp_path, capsys):
    data_cfg = DataConfig(dataset="ml-100k", cache_dir=str(ml100k_cache))
    model_cfg, train_cfg = preset("tiny", "multiplicative")
    run = train(data_cfg, model_cfg, train_cfg, runs_dir=tmp_path, run_id="ml100k-tiny",
                verbose=False)  # fmt: skip
    assert run.fingerprint == ML100K_FINGERPRINT
    assert run.metrics["test"]["n_users"]["mean"] == 943
    assert run.items.loc[1, "title"] == "Toy Story (1995)"
    ndcg = run.metrics["test"]["ndcg@10"]["mean"]
    assert 0.0 <= ndcg <= 1.0
    code = main(["--runs-dir", str(tmp_path), "recommend", "ml100k-tiny", "--user", "196",
                 "-k", "3", "--json"])  # fmt: skip
    recs = json.loads(capsys.readouterr().out)["recommendations"]
    assert code == 0 and len(recs) == 3 and all(r["title"] for r in recs)
