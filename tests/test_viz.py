"""Chart builders return charts with the expected typed encodings; frames have the right rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recexplain import viz
from recexplain.explain import Attribution

ITEMS = pd.DataFrame(
    {"item_id": ["a", "b", "c", "d"], "title": ["Alpha", "Beta", "Gamma", "Delta"]},
    index=pd.Index([1, 2, 3, 4], name="item"),
)


def attribution(variant: str, weights: list[float]) -> Attribution:
    return Attribution(
        np.array([1, 2, 3], np.int32),
        np.array(weights, np.float32),
        "attention",
        variant,
        item=4,
        score=0.5,
        rank=0,
        context=0.1,
    )


@pytest.fixture
def attrs() -> dict[str, Attribution]:
    return {
        "additive": attribution("additive", [0.2, 0.3, 0.4]),
        "hard": attribution("hard", [0.0, 1.0, 0.0]),
    }


def metrics(mean: float) -> dict:
    cell = {"mean": mean, "ci_low": mean - 0.01, "ci_high": mean + 0.01}
    return {
        "test": {
            "ndcg@10": cell,
            "hr@10": cell,
            "hr@20": cell,
            "coverage@10": {"mean": 0.3},
            "n_users": {"mean": 5.0},
        },
        "best_epoch": 3,
    }


def field_types(encoding: dict) -> dict[str, str]:
    """{channel: "field:type"} of an encoding block (aggregates as "count()")."""
    out = {}
    for channel, enc in encoding.items():
        if isinstance(enc, dict) and "type" in enc:
            name = enc.get("field") or f"{enc.get('aggregate')}()"
            out[channel] = f"{name}:{enc['type']}"
    return out


def test_attribution_frame_is_long_form_in_time_order(attrs):
    df = viz.attribution_frame(attrs, ITEMS)
    assert list(df["variant"]) == ["additive"] * 3 + ["hard"] * 3
    assert list(df["label"][:3]) == ["1. Alpha", "2. Beta", "3. Gamma"]
    assert df.groupby("variant")["share"].sum().round(6).tolist() == [1.0, 1.0]


def test_metrics_and_history_frames():
    df = viz.metrics_frame({"a": metrics(0.2), "b": metrics(0.1)})
    assert set(df["name"]) == {"ndcg@10", "hr@10", "hr@20"}  # no coverage / n_users rows
    assert df.loc[df["name"] == "hr@20", "k"].tolist() == [20, 20]
    hist = viz.history_frame({"a": [{"epoch": 1, "loss": 2.0, "valid_ndcg@10": 0.1}]})
    assert hist.to_dict("records") == [
        {"run": "a", "epoch": 1, "metric": "loss", "value": 2.0},
        {"run": "a", "epoch": 1, "metric": "valid_ndcg@10", "value": 0.1},
    ]


def test_jaccard_and_wins_frames():
    top = {"x": np.array([[1, 2], [3, 4]]), "y": np.array([[1, 2], [3, 5]])}
    jac = viz.jaccard_frame(top, k=2)
    assert jac["pair"].unique().tolist() == ["x vs y"]
    assert jac["jaccard"].tolist() == pytest.approx([1.0, 1 / 3])
    wins = viz.wins_frame(
        {"x": np.array([1.0, 0.0, 0.5]), "y": np.array([0.0, 1.0, 0.5])},
        history_len=np.array([5, 50, 500]),
    )
    assert wins["users"].sum() == 3
    assert set(wins["winner"]) == {"x", "y", "tie"}


def test_faithfulness_frames_read_defensively():
    for bad in (None, {}, {"methods": 3}, {"methods": {"attention": "x"}}, []):
        summary, curve = viz.faithfulness_frames(bad, "additive")
        assert summary.empty and curve.empty
    data = {
        "methods": {
            "attention": {
                "aopc": 0.3,
                "ratio_at_3": "2.0",
                "deletion": {
                    "k": [0, 1, 2],
                    "score_drop": [0, 0.2, 0.3],
                    "random_score_drop": [0, 0.1],
                },
            }
        }
    }
    summary, curve = viz.faithfulness_frames(data, "additive")
    assert summary.iloc[0]["ratio_at_3"] == 2.0 and np.isnan(summary.iloc[0]["rank_drop_at_3"])
    assert len(curve) == 5 and set(curve["curve"]) == {"top-k", "random"}


def test_leaderboard_encodings():
    spec = viz.leaderboard(viz.metrics_frame({"a": metrics(0.2)}), "ndcg@10").to_dict()
    bars, rules = spec["layer"]
    assert field_types(bars["encoding"]) == {
        "x": "mean:quantitative",
        "y": "run:nominal",
        "color": "run:nominal",
    }
    assert field_types(rules["encoding"])["x"] == "ci_low:quantitative"
    assert rules["encoding"]["x2"]["field"] == "ci_high"
    assert spec["config"]["font"] == viz.FONT  # the shared theme


def test_metric_bars_are_grouped_with_error_bars():
    spec = viz.metric_bars(viz.metrics_frame({"a": metrics(0.2), "b": metrics(0.1)})).to_dict()
    assert spec["facet"]["field"] == "metric"
    bars, rules = spec["spec"]["layer"]
    assert field_types(bars["encoding"]) == {
        "x": "k:ordinal",
        "xOffset": "run:nominal",
        "color": "run:nominal",
        "y": "mean:quantitative",
    }
    assert rules["encoding"]["y2"]["field"] == "ci_high"


def test_training_curves_and_deletion_curves():
    hist = viz.history_frame({"a": [{"epoch": 1, "loss": 2.0, "valid_ndcg@10": 0.1}]})
    spec = viz.training_curves(hist).to_dict()
    assert spec["facet"]["column"]["field"] == "metric"
    enc = field_types(spec["spec"]["layer"][0]["encoding"])
    assert enc["x"] == "epoch:quantitative" and enc["y"] == "value:quantitative"
    curve = pd.DataFrame(
        {
            "variant": ["a"] * 2,
            "method": ["attention"] * 2,
            "k": [0, 1],
            "curve": ["top-k", "random"],
            "score_drop": [0.0, 0.1],
        }
    )
    spec = viz.deletion_curves(curve).to_dict()
    enc = field_types(spec["spec"]["layer"][0]["encoding"])
    assert enc["strokeDash"] == "curve:nominal" and enc["y"] == "score_drop:quantitative"


def test_agreement_charts():
    jac = viz.jaccard_frame({"x": np.array([[1, 2]]), "y": np.array([[1, 3]])}, k=2)
    enc = field_types(viz.jaccard_hist(jac).to_dict()["encoding"])
    assert enc["x"] == "bin:ordinal" and enc["y"] == "count():quantitative"
    wins = viz.wins_frame({"x": np.array([1.0]), "y": np.array([0.0])}, np.array([3]))
    enc = field_types(viz.user_wins(wins).to_dict()["encoding"])
    assert enc == {"x": "users:quantitative", "y": "bucket:nominal", "color": "winner:nominal"}


def test_history_weights_and_heatmap_keep_time_order(attrs):
    df = viz.attribution_frame(attrs, ITEMS)
    spec = viz.history_weights(df).to_dict()
    assert spec["facet"]["column"]["field"] == "variant"
    enc = spec["spec"]["layer"][0]["encoding"]
    assert field_types(enc)["x"] == "weight:quantitative"
    assert enc["y"]["field"] == "label" and enc["y"]["sort"] == ["1. Alpha", "2. Beta", "3. Gamma"]
    heat = viz.weights_heatmap(df).to_dict()
    assert heat["mark"]["type"] == "rect"
    assert field_types(heat["encoding"]) == {
        "x": "label:nominal",
        "y": "variant:nominal",
        "color": "weight:quantitative",
    }
    assert heat["encoding"]["x"]["sort"] == ["1. Alpha", "2. Beta", "3. Gamma"]


def test_playground_weights_and_tables():
    df = pd.DataFrame({"formula": ["a", "a"], "key": ["k1", "k2"], "weight": [0.4, 0.6]})
    enc = field_types(viz.playground_weights(df).to_dict()["spec"]["layer"][0]["encoding"])
    assert enc["x"] == "key:nominal" and enc["y"] == "weight:quantitative"
    recs = pd.DataFrame(
        {
            "rank": [1, 2],
            "title": ["Delta", "Beta"],
            "score": [0.91234, 0.5],
            "top_history": [[(1, 0.41), (2, 0.22)], []],
        }
    )
    table = viz.recommendation_table(recs, ITEMS)
    assert table["because"].tolist() == ["Alpha 41%, Beta 22%", "the sequence as a whole"]
    cmp = pd.DataFrame(
        {
            "run": ["a", "b"],
            "ndcg@10": [0.2, 0.1],
            "ndcg@10_ci_low": [0.1, 0.05],
            "ndcg@10_ci_high": [0.3, 0.15],
            "ndcg@10_p": [np.nan, 0.01],
        }
    )
    shown = viz.compare_table(cmp, ("ndcg@10",))
    assert shown["ndcg@10"][0] == "0.2000 [0.1000, 0.3000]"
    assert shown["p (ndcg@10)"].tolist() == ["reference", "0.0100"]


def test_training_progress_from_events():
    assert viz.training_progress([], 3) == (0.0, "0/3 done · starting")
    events = [
        {"stage": "loading data"},
        {"stage": "reused", "variant": "additive", "run_id": "d-additive"},
        {"stage": "training", "variant": "hard"},
        {
            "epoch": 5,
            "max_epochs": 10,
            "loss": 2.5,
            "best_valid_ndcg@10": 0.1,
            "seconds": 12.0,
            "variant": "hard",
        },
    ]
    frac, text = viz.training_progress(events, 2)
    assert frac == pytest.approx(0.75)
    assert text.startswith("1/2 done · hard: epoch 5/10 · loss 2.5000")
    frac, text = viz.training_progress([*events, {"stage": "done", "variant": "hard"}], 2)
    assert frac == 1.0 and text == "2/2 done · hard done"
    curves = viz.progress_curves(events)
    assert set(curves["run"]) == {"hard"} and len(curves) == 1  # no valid_ndcg@10 yet
