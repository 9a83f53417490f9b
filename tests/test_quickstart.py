"""recexplain.quickstart: fast models first, refined ones replace them, restarts reuse both."""

from __future__ import annotations

import pytest

from recexplain import cli, config, quickstart
from recexplain.config import DataConfig, ModelConfig, TrainConfig
from recexplain.runs import load_run
from recexplain.workbench import first_start_line, first_start_status

SYNTHETIC = DataConfig(dataset="synthetic")
TINY_MODEL = ModelConfig(d_model=16, n_blocks=1, n_heads=1, d_attn=8, max_len=12)


@pytest.fixture
def tiny_presets(monkeypatch):
    """The default preset shrunk to seconds on the synthetic data: 3 epochs, paused after 1."""
    full = TrainConfig(batch_size=64, n_negatives=16, max_epochs=3, patience=3, bootstrap=20)
    monkeypatch.setitem(config.PRESETS, "default", (TINY_MODEL, full))
    monkeypatch.setattr(quickstart, "FAST_EPOCHS", 1)


def _train_events(events):
    return [(e["variant"], e["phase"]) for e in events if e.get("stage") == "training"]


def test_fast_models_come_first_then_refined_ones_replace_them(tiny_presets, tmp_path, capsys):
    events: list[dict] = []
    fast_seen: list[list[str]] = []

    def progress(event):  # when the first refinement starts, every variant has its fast run
        events.append(event)
        if event.get("phase") == "default" and event.get("stage") == "training" and not fast_seen:
            fast_seen.append(sorted(p.name for p in tmp_path.iterdir() if not p.name[0] == "."))

    runs = quickstart.default_runs(tmp_path, data_cfg=SYNTHETIC, progress=progress, verbose=False)
    ids = quickstart.default_run_ids(SYNTHETIC)
    assert fast_seen == [sorted(ids)]
    variants = list(config.ATTENTION_VARIANTS)
    assert _train_events(events) == [(v, "fast") for v in variants] + [
        (v, "default") for v in variants
    ]
    assert [r.run_id for r in runs] == ids
    assert all(not quickstart.is_fast(r) and len(r.history) == 3 for r in runs)
    # the refinement resumed the paused training: epochs 2 and 3, not a new start
    assert [e["epoch"] for e in events if "epoch" in e and e["variant"] == "hard"] == [1, 2, 3]
    assert not list(tmp_path.glob(".partial-*"))  # checkpoints removed once the run is final

    again: list[dict] = []  # a restart trains nothing
    quickstart.default_runs(tmp_path, data_cfg=SYNTHETIC, progress=again.append, verbose=False)
    assert _train_events(again) == []
    assert [e["stage"] for e in again if "variant" in e].count("reused") == 6

    assert cli.main(["--runs-dir", str(tmp_path), "quickstart", "--dataset", "synthetic"]) == 0
    out = capsys.readouterr().out  # the command line reuses them too, and says so per phase
    assert "[1/2] fast models ready" in out and "[2/2] preset 'default' ready" in out
    assert out.count("NDCG@10") == 6


def test_a_cancelled_refinement_keeps_the_fast_run_and_resumes(tiny_presets, tmp_path):
    events: list[dict] = []
    refining = lambda: any(e.get("phase") == "default" and "epoch" in e for e in events)  # noqa: E731
    # epoch 2 (the first of the refinement) ends, then the cancel lands in epoch 3
    runs = quickstart.default_runs(tmp_path, data_cfg=SYNTHETIC, progress=events.append,
                                   should_stop=refining, verbose=False)  # fmt: skip
    assert len(runs) == 3 and all(quickstart.is_fast(r) for r in runs)  # fast runs kept
    first = quickstart.default_run_ids(SYNTHETIC)[0]
    assert (tmp_path / f".partial-{first}").is_dir()  # the refinement's checkpoint, to resume
    resumed: list[dict] = []
    runs = quickstart.default_runs(tmp_path, data_cfg=SYNTHETIC, progress=resumed.append,
                                   verbose=False)  # fmt: skip
    assert not any(quickstart.is_fast(r) for r in runs)
    first_epochs = [e["epoch"] for e in resumed if "epoch" in e and e["variant"] == "additive"]
    assert first_epochs == [3]  # epochs 1-2 of the additive training came from the checkpoint
    assert len(load_run(first, tmp_path).history) == 3


def test_a_single_phase_preset_trains_once():
    assert quickstart.phases("default") == ["fast", "default"]
    assert quickstart.phases("tiny") == ["tiny"]


def test_first_start_status_names_each_variant_and_phase():
    events = [
        {"stage": "loading data"},
        {"stage": "done", "variant": "additive", "phase": "fast"},
        {"stage": "reused", "variant": "multiplicative", "phase": "fast"},
        {"stage": "done", "variant": "hard", "phase": "fast"},
        {"stage": "done", "variant": "additive", "phase": "default"},
        {"stage": "training", "variant": "multiplicative", "phase": "default"},
        {"epoch": 12, "max_epochs": 30, "valid_ndcg@10": 0.1041, "loss": 5.7,
         "variant": "multiplicative", "phase": "default"},
    ]  # fmt: skip
    assert first_start_status(events) == {
        "additive": "ready",
        "multiplicative": "refining: epoch 12/30, valid NDCG@10 0.104",
        "hard": "fast model ready",
    }
    assert first_start_line(events[:1]) == (
        "additive: waiting · multiplicative: waiting · hard: waiting"
    )
    one = [{"stage": "training", "variant": "hard", "phase": "tiny"}]
    assert first_start_status(one)["hard"] == "training: first epoch (includes compiling)"
