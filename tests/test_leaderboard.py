"""Leaderboard: the table agrees with evaluation.compare, seeds average, every model is listed."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from recexplain import leaderboard
from recexplain.baselines import BASELINES
from recexplain.cli import main
from recexplain.config import ATTENTION_VARIANTS, DataConfig
from recexplain.evaluation import Ranking, compare
from recexplain.item_baselines import CatalogTooLarge


def _ranking(n_greater: list[int], targets: list[int] | None = None) -> Ranking:
    n = len(n_greater)
    return Ranking(np.arange(n), np.array(targets or [1] * n, np.int32), np.array(n_greater),
                   np.zeros(n, np.int64), np.zeros((n, 20), np.int32))  # fmt: skip


def test_one_seed_table_matches_evaluation_compare():
    rng = np.random.default_rng(0)
    rankings = {name: _ranking(list(rng.integers(0, 30, 200))) for name in ("a", "b", "c")}
    ours = leaderboard.table({k: [v] for k, v in rankings.items()}).set_index("model")
    theirs = compare(rankings).set_index("run")
    assert ours.attrs["reference"] == theirs.attrs["reference"]
    for m in leaderboard.METRICS:
        for suffix in ("", "_ci_low", "_ci_high", "_p"):
            pd.testing.assert_series_equal(ours[m + suffix], theirs.loc[ours.index, m + suffix],
                                           check_names=False)  # fmt: skip
        assert (ours[f"{m}_std"] == 0).all() and (ours["seeds"] == 1).all()


def test_seeds_average_per_user_and_report_the_std_of_seed_means():
    good, bad = _ranking([0, 0, 0, 0]), _ranking([9, 9, 9, 9])  # NDCG@10 1.0 and log2/log(11)
    df = leaderboard.table({"x": [good, bad], "y": [bad]}).set_index("model")
    low = 1 / np.log2(11)
    assert df.loc["x", "seeds"] == 2 and df.loc["x", "ndcg@10"] == pytest.approx((1 + low) / 2)
    assert df.loc["x", "ndcg@10_std"] == pytest.approx(np.std([1, low], ddof=1))
    assert df.attrs["reference"] == "x" and np.isnan(df.loc["x", "ndcg@10_p"])
    assert df.loc["y", "ndcg@10_p"] < 0.2  # 4 users: the smallest sign-flip p is 2/16


def test_verdict_says_whether_the_best_attention_variant_beats_every_baseline():
    good, bad = _ranking([0] * 12), _ranking([15] * 12)
    kinds = {"additive": "attention", "hard": "attention", "ease": "baseline", "pop": "baseline"}
    df = leaderboard.table({"additive": [good], "hard": [bad], "ease": [bad], "pop": [bad]})
    df["kind"] = df["model"].map(kinds)
    assert leaderboard.verdict(df).startswith("additive (best attention variant) beats every")
    df = leaderboard.table({"additive": [bad], "hard": [bad], "ease": [good], "pop": [bad]})
    df["kind"] = df["model"].map(kinds)
    text = leaderboard.verdict(df)
    assert "does not beat every baseline: ease leads by" in text and "p = 0.0" in text
    assert "no sequential baseline; best non-sequential baseline: ease (ndcg@10 1.0000" in text


def test_verdict_names_the_best_sequential_and_non_sequential_baseline():
    good, bad = _ranking([0] * 12), _ranking([15] * 12)
    models = {"multiplicative": good, "markov": _ranking([3] * 12), "multistep": bad,
              "sasrec": bad, "ease": _ranking([5] * 12), "pop": bad}  # fmt: skip
    df = leaderboard.table({name: [r] for name, r in models.items()})
    df["kind"] = ["attention" if m == "multiplicative" else "baseline" for m in df["model"]]
    best = leaderboard.best_baselines(df)
    assert best["sequential"]["model"] == "markov" and best["non-sequential"]["model"] == "ease"
    text = leaderboard.verdict(df)
    assert text.startswith("multiplicative (best attention variant) beats every baseline")
    # rank 3 (0-based): 1 / log2(5); rank 5: 1 / log2(7)
    assert "; best sequential baseline: markov (ndcg@10 0.4307 [0.4307, 0.4307]); " in text
    assert text.endswith("best non-sequential baseline: ease (ndcg@10 0.3562 [0.3562, 0.3562])")
    assert set(leaderboard.BASELINE_GROUPS["sequential"]) == {"sasrec", "markov", "multistep"}
    assert set(sum(leaderboard.BASELINE_GROUPS.values(), ())) == set(BASELINES)


def test_baselines_line_reads_compare_tables_labelled_by_run_id():
    good, mid, worse = _ranking([0] * 6), _ranking([1] * 6), _ranking([5] * 6)
    table = compare({"run-a": good, "run-b": worse, "additive": mid})
    types = {"run-a": "pop", "run-b": "multistep", "additive": "attention"}
    line = leaderboard.baselines_line(table, label="run", model_types=types)
    assert line.startswith("best sequential baseline: run-b (ndcg@10 0.3562")
    assert "best non-sequential baseline: run-a (ndcg@10 1.0000" in line
    assert leaderboard.baselines_line(table.iloc[2:], label="run", model_types=types) == (
        "no sequential baseline; no non-sequential baseline"
    )


def test_a_baseline_too_large_for_memory_is_skipped_not_fatal(planted, tmp_path, monkeypatch):
    def refuse(name, *args, **kwargs):
        raise CatalogTooLarge(f"{name} on 60,000 items needs about 40.2 GiB")

    monkeypatch.setattr(leaderboard, "train_baseline", refuse)
    events: list[dict] = []
    runs = leaderboard.baseline_runs(
        DataConfig(dataset="synthetic"), planted[0], tmp_path, models=("ease",),
        preset_name="tiny", progress=events.append,
    )  # fmt: skip
    assert runs == {}
    assert events[-1] == {"stage": "skipped", "model": "ease",
                          "reason": "ease on 60,000 items needs about 40.2 GiB"}  # fmt: skip


def test_models_ranked_on_other_users_are_refused():
    with pytest.raises(ValueError, match="different users or targets"):
        leaderboard.table({"a": [_ranking([1, 2])], "b": [_ranking([1, 2], [1, 2])]})


@pytest.fixture(scope="module")
def board(baseline_runs, tmp_path_factory):
    """A leaderboard on the synthetic data: tiny attention runs trained, baselines reused."""
    runs_dir = tmp_path_factory.mktemp("board")
    for run in baseline_runs.values():
        shutil.copytree(run.path, runs_dir / run.path.name)
    events: list[dict] = []
    df = leaderboard.build(DataConfig(dataset="synthetic"), runs_dir, 1, events.append,
                           preset_name="tiny")  # fmt: skip
    return runs_dir, df, events


def test_leaderboard_lists_every_model_with_cis_and_writes_csv_and_markdown(board):
    runs_dir, df, events = board
    assert set(df["model"]) == set(ATTENTION_VARIANTS) | set(BASELINES)
    assert list(df.columns) == leaderboard.COLUMNS
    assert (
        (df["ndcg@10_ci_low"] <= df["ndcg@10"]) & (df["ndcg@10"] <= df["ndcg@10_ci_high"])
    ).all()
    assert df["ndcg@10"].is_monotonic_decreasing and df["ndcg@10_p"].isna().sum() == 1
    reused = {e["model"] for e in events if e.get("stage") == "reused" and "model" in e}
    assert reused == set(BASELINES)  # baselines came from the saved runs, not refitted
    md, csv = leaderboard.write(df, runs_dir)
    assert md.name == "leaderboard-synthetic-planted.md" and csv.suffix == ".csv"
    again = leaderboard.read("synthetic-planted", runs_dir)
    assert list(again.columns) == leaderboard.COLUMNS and len(again) == len(df)
    text = md.read_text()
    assert all(f"| {m} |" in text for m in df["model"]) and "Verdict:" in text
    assert text.count("[") >= 3 * len(df)  # a CI per metric per model


def test_cli_leaderboard_reuses_every_run(board, capsys):
    runs_dir, df, _ = board
    code = main(["--runs-dir", str(runs_dir), "leaderboard", "--dataset", "synthetic",
                 "--preset", "tiny"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "# Leaderboard: synthetic-planted" in out
    assert "stage=training" not in out and "stage=reused model=ease" in out
    assert f"**{df.attrs['reference']}**" in out


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="seeds must be >= 1"):
        leaderboard.build(DataConfig(dataset="synthetic"), "unused", 0)
    with pytest.raises(ValueError, match="unknown baseline"):
        leaderboard.build(DataConfig(dataset="synthetic"), "unused", 1, models=("knn",))
