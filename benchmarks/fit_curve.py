"""One training with preset overrides: the per-epoch validation curve and the best epoch's test.

    python benchmarks/fit_curve.py hard learning_rate=0.01 soft_epochs=12 [dataset=ml-100k]

Keys are ModelConfig / TrainConfig fields (values parsed by the field's default type); prints one
line per epoch, then a JSON line: best epoch, best validation NDCG@10, epochs run, seconds
(fit's clock), seconds to validation NDCG@10 >= 0.067 and the best epoch's test NDCG@10 (for
the record: choose settings on validation). benchmarks/results/presets.md lists the runs
behind the default preset.
"""

from __future__ import annotations

import dataclasses
import json
import sys

from recexplain.config import DataConfig, ModelConfig, TrainConfig, preset
from recexplain.data import load_dataset
from recexplain.evaluation import metrics_from_ranks, rank_all
from recexplain.models.recommender import make_scorer
from recexplain.split import leave_last_out
from recexplain.training import fit


def _overrides(cls: type, cfg: object, pairs: dict[str, str]) -> dict:
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in pairs:
            current, text = getattr(cfg, f.name), pairs[f.name]
            if isinstance(current, bool):
                out[f.name] = text in ("1", "true", "True")
            elif current is None:
                out[f.name] = int(text)
            else:
                out[f.name] = type(current)(text)
    return out


def main() -> None:
    variant, pairs = sys.argv[1], dict(a.split("=", 1) for a in sys.argv[2:])
    split = leave_last_out(load_dataset(DataConfig(dataset=pairs.pop("dataset", "ml-100k"))))
    model_cfg, cfg = preset("default", variant)
    model_cfg = dataclasses.replace(model_cfg, **_overrides(ModelConfig, model_cfg, pairs))
    cfg = dataclasses.replace(cfg, **_overrides(TrainConfig, cfg, pairs))

    def show(r: dict) -> None:
        valid = r.get("valid_ndcg@10", float("nan"))
        print(f"epoch {r['epoch']:3d} loss {r['loss']:.4f} valid {valid:.4f} {r['seconds']:.1f} s",
              flush=True)  # fmt: skip

    result = fit(split, model_cfg, cfg, verbose=False, progress=show)
    ranking = rank_all(make_scorer(result.model), split, "test", model_cfg.max_len)
    test = metrics_from_ranks(ranking.n_greater, ranking.n_tied, (10,))["ndcg@10"].mean()
    reached = [r["seconds"] for r in result.history if r.get("valid_ndcg@10", 0) >= 0.067]
    print(json.dumps({"variant": variant, "over": pairs, "best_epoch": result.best_epoch,
                      "best_valid": result.best_valid_ndcg, "epochs": len(result.history),
                      "seconds": result.seconds, "s_to_0.067": reached[0] if reached else None,
                      "test_ndcg10": float(test), "loss": result.loss,
                      "stop_reason": result.stop_reason}))  # fmt: skip


if __name__ == "__main__":
    main()
