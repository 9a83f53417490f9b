"""Faithfulness scores: perturbed histories, curves, rank correlations, the report and its files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from scipy import stats

from recexplain import faithfulness as F
from recexplain.attributions import METHODS, Explainer
from recexplain.cli import EXPLAIN_METHODS, main
from recexplain.data import synthetic_planted
from recexplain.runs import RunError, load_run, load_split

SMALL = {"users": 12, "k_max": 4, "n_random": 10}


@pytest.fixture(scope="module")
def report(tiny_run, planted):
    return F.faithfulness_report(tiny_run, planted[0], seed=0, **SMALL)


@pytest.fixture()
def run_copy(tiny_run, tmp_path):
    """A private copy of the tiny run (the tests write report files into it)."""
    return load_run(shutil.copytree(tiny_run.path, tmp_path / tiny_run.run_id))


def test_rank_correlations_match_scipy_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = rng.integers(0, 4, 12).astype(float), rng.normal(size=12)
        y[:3] = y[3]  # ties on both sides
        assert F.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
        assert F.kendall(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    np.testing.assert_array_equal(F.rankdata([3.0, 1.0, 3.0, 2.0]), [3.5, 1.0, 3.5, 2.0])
    assert np.isnan(F.spearman(np.ones(5), np.arange(5.0)))


def test_orders_and_perturbed_windows_by_hand():
    rng = np.random.default_rng(0)
    valid = np.array([False, True, True, True])
    order = F.attribution_order(np.array([9.0, 0.2, 0.7, 0.2]), valid, rng)
    assert order[0] == 2 and set(order[1:]) == {1, 3}  # padding never deleted
    history = np.array([10, 11, 12, 13, 14])  # window of 3: [12, 13, 14]
    dels = F.deletion_windows(history, np.array([[2, 0]]), 3)
    np.testing.assert_array_equal(dels[0], [[11, 12, 13], [10, 11, 13]])  # older items move in
    ins = F.insertion_windows(np.array([0, 12, 13, 14]), np.array([[3, 1]]))
    np.testing.assert_array_equal(ins[0], [[0, 0, 0, 14], [0, 0, 12, 14]])  # time order kept


def test_random_deletion_is_reproducible_for_a_seed(tiny_run, planted):
    _, split = load_split(tiny_run, planted[0])
    ex = Explainer.of(tiny_run.model)
    history = split.history(int(split.eval_users[3]), "test")
    item = ex.top_item(history)
    weights = ex.attribute(history, item, ("attention",))["weights"]

    def curves(seed):
        return F.user_curves(ex, history, item, weights, 4, 10, np.random.default_rng(seed))

    a, b, c = curves(7), curves(7), curves(8)
    for key in ("del_score", "del_rank", "ins_score"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.allclose(a["del_score"][-1, 1:], c["del_score"][-1, 1:])
    np.testing.assert_array_equal(a["del_score"][0], c["del_score"][0])  # methods: no randomness


def test_report_has_the_dashboard_shape(report):
    assert set(report["methods"]) == set(METHODS) and report["n_users"] == SMALL["users"]
    for r in report["methods"].values():
        d = r["deletion"]
        assert d["k"] == list(range(SMALL["k_max"] + 1)) and d["score_drop"][0] == 0.0
        for key in ("random_score_drop", "rank", "random_rank"):
            assert len(d[key]) == len(d["k"])
        assert set(r["insertion"]) == {"k", "score", "random_score"}
        for key in ("aopc", "rank_drop_at_3", "ratio_at_3"):
            lo, hi = r["ci"][key]
            assert np.isfinite(r[key]) and lo <= hi
    assert report["best_method"] in METHODS and len(report["fingerprint"]) == 64
    rho = report["agreement"]["spearman"]
    assert rho["occlusion"]["occlusion"] == pytest.approx(1.0)
    assert rho["attention"]["rollout"] == rho["rollout"]["attention"]
    assert set(report["agreement"]["kendall"]) == set(METHODS)
    assert report["methods"]["integrated_gradients"]["completeness_error_median"] < 0.01


def test_occlusion_is_the_best_single_deletion(report):
    # Deleting the top occlusion item is, per user, the largest possible single-item drop.
    drops = {m: r["deletion"]["score_drop"][1] for m, r in report["methods"].items()}
    assert all(drops["occlusion"] >= d - 1e-6 for d in drops.values())
    assert report["methods"]["attention"]["deletion"]["random_score_drop"] == pytest.approx(
        report["methods"]["occlusion"]["deletion"]["random_score_drop"]
    )  # one set of random orders per user, shared by all methods


def test_report_refuses_other_data(tiny_run):
    other = synthetic_planted(seed=1)[0]
    with pytest.raises(RunError, match="fingerprint"):
        F.faithfulness_report(tiny_run, other, users=2)


def test_write_report_is_atomic_and_keeps_the_manifest_valid(run_copy, report):
    report = {**report, "run_id": run_copy.run_id}
    json_path, md_path = F.write_report(run_copy, report)
    text = json_path.read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert "| occlusion" in md_path.read_text()
    assert not [p for p in run_copy.path.iterdir() if p.name.endswith(".tmp")]
    load_run(run_copy.path)  # the manifest still verifies
    assert F.read_report(run_copy)["best_method"] == report["best_method"]
    with pytest.raises(RunError, match="not run"):
        F.write_report(run_copy, {**report, "run_id": "someone-else"})


def test_planted_recovery_reports_fractions(tiny_run, planted):
    out = F.planted_recovery(tiny_run, planted[0], planted[1], users=15, methods=METHODS)
    assert out["n_users"] == 15 and set(out["methods"]) == set(METHODS)
    for r in out["methods"].values():
        assert 0 <= r["top1"] <= r["top3"] <= 1
    assert 0 <= out["selected"] <= 1
    with pytest.raises(RunError, match="fingerprint"):
        F.planted_recovery(tiny_run, synthetic_planted(seed=1)[0], planted[1], users=2)


def test_cli_faithfulness_and_explain_methods(run_copy, capsys):
    assert EXPLAIN_METHODS == METHODS
    runs = str(run_copy.path.parent)
    code = main(["--runs-dir", runs, "faithfulness", run_copy.run_id, "--users", "6"])
    out = capsys.readouterr().out
    assert code == 0 and "| integrated_gradients" in out and "wrote" in out
    assert (run_copy.path / F.REPORT_JSON).is_file()
    user, item = str(run_copy.user_ids[0]), str(run_copy.items["item_id"].iloc[0])
    code = main(["--runs-dir", runs, "explain", run_copy.run_id, "--user", user, "--item", item,
                 "--method", "integrated_gradients", "--json"])  # fmt: skip
    attr = json.loads(capsys.readouterr().out)
    assert code == 0 and attr["method"] == "integrated_gradients"
    assert attr["extra"]["completeness_error"] < 0.01


def test_ratio_handles_random_deletion_that_does_not_lower_the_score():
    from recexplain.faithfulness import ratio

    assert float(ratio(0.6, 0.2)) == pytest.approx(3.0)
    assert float(ratio(0.6, -0.02)) == float("inf")  # random deletion raises the score
    assert np.isnan(ratio(-0.1, 0.0))  # neither lowers it: undefined
    np.testing.assert_allclose(ratio(np.array([1.0, 1.0]), np.array([0.5, 0.0])), [2.0, np.inf])
