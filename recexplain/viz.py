"""Pure chart builders (long-form DataFrame in, alt.Chart out) and the frames they draw."""

from __future__ import annotations

from collections.abc import Mapping
from itertools import combinations
from typing import Any

import altair as alt
import numpy as np
import pandas as pd

FONT = "Source Sans Pro, Helvetica, Arial, sans-serif"
PALETTE = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#9d755d"]
WEIGHT_SCHEME = "blues"
BAR = 14  # pixels per bar in horizontal bar charts
# Charts that stretch to the page: fit the width only, so axis labels do not squeeze the height.
FIT_X = alt.AutoSizeParams(type="fit-x", contains="padding")


def theme() -> dict[str, Any]:
    """The one shared look (Altair config): fonts, palette, quiet axes."""
    return {
        "background": "white",
        "font": FONT,
        "range": {"category": PALETTE},
        "axis": {"labelFontSize": 11, "titleFontSize": 12, "gridColor": "#eeeeee"},
        "legend": {"labelFontSize": 11, "titleFontSize": 12, "labelLimit": 260},
        "header": {"labelFontSize": 12, "titleFontSize": 12},
        "title": {"fontSize": 14, "anchor": "start"},
        "view": {"stroke": None},
    }


def _themed(chart: alt.TopLevelMixin) -> alt.TopLevelMixin:
    config = theme()
    return (
        chart.configure(background=config["background"], font=config["font"], range=config["range"])
        .configure_axis(**config["axis"])
        .configure_legend(**config["legend"])
        .configure_header(**config["header"])
        .configure_title(**config["title"])
        .configure_view(**config["view"])
    )


# -- frames ----------------------------------------------------------------------------------
def attribution_frame(attrs: Mapping[str, Any], items: pd.DataFrame) -> pd.DataFrame:
    """Long form of {variant: Attribution}: variant, position, item, title, label, weight, share.

    `label` ("03. Title") is unique per history position and sorts in time order.
    """
    frames = []
    for variant, attr in attrs.items():
        df = attr.frame(items)
        df.insert(0, "variant", variant)
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["variant", "position", "item", "title", "label", "weight"])
    out = pd.concat(frames, ignore_index=True)
    width = len(str(int(out["position"].max()) + 1))
    out["label"] = [
        f"{p + 1:0{width}d}. {t}" for p, t in zip(out["position"], out["title"], strict=True)
    ]
    return out


def metrics_frame(metrics: Mapping[str, Mapping[str, Any]], which: str = "test") -> pd.DataFrame:
    """Long form of {run: metrics.json dict}: run, metric, k, name, mean, ci_low, ci_high."""
    rows = []
    for run, m in metrics.items():
        for name, value in (m.get(which) or {}).items():
            if "@" not in name or not isinstance(value, Mapping) or "ci_low" not in value:
                continue
            metric, k = name.split("@")
            rows.append({"run": run, "metric": metric, "k": int(k), "name": name,
                         "mean": value.get("mean"), "ci_low": value.get("ci_low"),
                         "ci_high": value.get("ci_high")})  # fmt: skip
    return pd.DataFrame(rows, columns=["run", "metric", "k", "name", "mean", "ci_low", "ci_high"])


def history_frame(histories: Mapping[str, list[dict[str, Any]]]) -> pd.DataFrame:
    """Long form of per-epoch records: run, epoch, metric (loss / valid_ndcg@10), value."""
    rows = [
        {"run": run, "epoch": rec["epoch"], "metric": key, "value": rec[key]}
        for run, records in histories.items()
        for rec in records
        for key in ("loss", "valid_ndcg@10")
        if rec.get(key) is not None and "epoch" in rec
    ]
    return pd.DataFrame(rows, columns=["run", "epoch", "metric", "value"])


def jaccard_frame(topk: Mapping[str, np.ndarray], k: int = 10) -> pd.DataFrame:
    """Per-user Jaccard overlap of two runs' top-k lists, for every pair: pair, jaccard."""
    rows = []
    for (a, ta), (b, tb) in combinations(topk.items(), 2):
        for row_a, row_b in zip(ta[:, :k], tb[:, :k], strict=True):
            sa, sb = set(row_a[row_a > 0].tolist()), set(row_b[row_b > 0].tolist())
            union = len(sa | sb)
            rows.append((f"{a} vs {b}", len(sa & sb) / union if union else 1.0))
    return pd.DataFrame(rows, columns=["pair", "jaccard"])


def wins_frame(per_user: Mapping[str, np.ndarray], history_len: np.ndarray) -> pd.DataFrame:
    """Which run serves each user best (highest value; "tie" otherwise), by history length.

    Args:
      per_user: run -> [U] per-user metric values over the same users; history_len: [U].
    Returns:
      bucket, winner, users (count).
    """
    labels = list(per_user)
    values = np.stack([np.asarray(per_user[r], np.float64) for r in labels])  # [R, U]
    best = values.max(0)
    n_best = (values == best).sum(0)
    winner = np.where(n_best > 1, "tie", np.asarray(labels, dtype=object)[values.argmax(0)])
    edges = np.unique(np.quantile(history_len, [0, 1 / 3, 2 / 3, 1]).round())
    bucket = pd.cut(history_len, bins=np.unique(np.r_[edges[:1] - 1, edges]), include_lowest=True)
    names = [f"{int(iv.left) + 1}-{int(iv.right)} items" for iv in bucket.categories]
    bucket = bucket.rename_categories(names)
    df = pd.DataFrame({"bucket": bucket.astype(str), "winner": winner})
    return df.groupby(["bucket", "winner"], sort=False).size().reset_index(name="users")


def training_progress(events: list[dict[str, Any]], parts: int = 1) -> tuple[float, str]:
    """(fraction 0-1, one line of text) from training progress events."""
    finished = sum(e.get("stage") in ("done", "reused") for e in events)
    epochs = [e for e in events if "epoch" in e]
    last = events[-1] if events else {"stage": "starting"}
    frac = finished / max(parts, 1)
    if epochs and last.get("stage") not in ("done", "reused"):
        e = epochs[-1]
        frac += min(e["epoch"] / max(e.get("max_epochs", 1), 1), 1.0) / max(parts, 1)
    if "epoch" in last:
        text = (f"{last.get('variant', 'training')}: epoch {last['epoch']}/{last['max_epochs']}"
                f" · loss {last['loss']:.4f} · best valid NDCG@10 "
                f"{last.get('best_valid_ndcg@10', float('nan')):.4f} · {last['seconds']:.0f} s"
                " (early stopping may end it sooner)")  # fmt: skip
    elif last.get("stage") == "training":
        text = f"{last.get('variant', 'model')}: first epoch (includes compiling the model)"
    else:
        text = " ".join(str(last.get(k, "")) for k in ("variant", "stage", "run_id")).strip()
    return min(frac, 1.0), f"{finished}/{parts} done · {text}"


def progress_curves(events: list[dict[str, Any]]) -> pd.DataFrame:
    """Per-epoch loss / validation NDCG@10 of a job, long form (run = variant)."""
    records: dict[str, list[dict]] = {}
    for e in events:
        if "epoch" in e:
            records.setdefault(str(e.get("variant", "run")), []).append(e)
    return history_frame(records)


def faithfulness_frames(data: Mapping[str, Any] | None, variant: str) -> tuple[pd.DataFrame, ...]:
    """(summary, deletion curve) tables from a faithfulness.json dict; empty when absent."""
    summary_cols = ["variant", "method", "aopc", "rank_drop_at_3", "ratio_at_3"]
    curve_cols = ["variant", "method", "k", "curve", "score_drop"]
    summary, curve = [], []
    methods = _mapping(_mapping(data).get("methods"))
    for method, m in methods.items():
        if not isinstance(m, Mapping):
            continue
        summary.append([variant, method] + [_num(m.get(c)) for c in summary_cols[2:]])
        deletion = _mapping(m.get("deletion"))
        for name, key in (("top-k", "score_drop"), ("random", "random_score_drop")):
            for k, v in zip(_list(deletion.get("k")), _list(deletion.get(key)), strict=False):
                curve.append([variant, method, _num(k), name, _num(v)])
    return pd.DataFrame(summary, columns=summary_cols), pd.DataFrame(curve, columns=curve_cols)


def _mapping(x: Any) -> Mapping[str, Any]:
    return x if isinstance(x, Mapping) else {}


def _list(x: Any) -> list[Any]:
    return list(x) if isinstance(x, list | tuple) else []


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


# -- charts ----------------------------------------------------------------------------------
def leaderboard(df: pd.DataFrame, metric: str = "ndcg@10") -> alt.Chart:
    """Horizontal bars of one metric per run with 95% CI error bars (from metrics_frame)."""
    data = df[df["name"] == metric]
    base = alt.Chart(data).encode(y=alt.Y("run:N", title=None, sort="-x"))
    bars = base.mark_bar().encode(
        x=alt.X("mean:Q", title=metric),
        color=alt.Color("run:N", legend=None),
        tooltip=["run:N", alt.Tooltip("mean:Q", format=".4f"),
                 alt.Tooltip("ci_low:Q", format=".4f"), alt.Tooltip("ci_high:Q", format=".4f")],
    )  # fmt: skip
    rules = base.mark_rule(color="black").encode(x="ci_low:Q", x2="ci_high:Q")
    chart = alt.layer(bars, rules).properties(
        height=BAR * 2 * max(len(data), 1), width="container", autosize=FIT_X
    )
    return _themed(chart.properties(title=f"Test {metric} with 95% bootstrap CI"))


def metric_bars(df: pd.DataFrame) -> alt.FacetChart:
    """Grouped bars per metric and K, one bar per run, 95% CI error bars (from metrics_frame)."""
    base = alt.Chart().encode(
        x=alt.X("k:O", title="K"), xOffset=alt.XOffset("run:N"), color=alt.Color("run:N")
    )
    bars = base.mark_bar().encode(
        y=alt.Y("mean:Q", title="test value"),
        tooltip=["run:N", "name:N", alt.Tooltip("mean:Q", format=".4f"),
                 alt.Tooltip("ci_low:Q", format=".4f"), alt.Tooltip("ci_high:Q", format=".4f")],
    )  # fmt: skip
    rules = base.mark_rule(color="black").encode(y="ci_low:Q", y2="ci_high:Q")
    chart = alt.layer(bars, rules, data=df).properties(width=150, height=170)
    return _themed(chart.facet(facet=alt.Facet("metric:N", title=None), columns=3))


def training_curves(df: pd.DataFrame) -> alt.FacetChart:
    """Loss and validation NDCG@10 per epoch, one line per run (from history_frame)."""
    line = (
        alt.Chart()
        .mark_line(point=True)
        .encode(
            x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1, format="d")),
            y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)),
            color=alt.Color("run:N"),
            tooltip=["run:N", "epoch:Q", "metric:N", alt.Tooltip("value:Q", format=".4f")],
        )
        .properties(width=300, height=200)
    )
    chart = alt.layer(line, data=df).facet(column=alt.Column("metric:N", title=None))
    return _themed(chart.resolve_scale(y="independent"))


def jaccard_hist(df: pd.DataFrame) -> alt.Chart:
    """Histogram of per-user top-10 Jaccard overlap (bins of 0.1), bars grouped by pair of runs."""
    chart = (
        alt.Chart(df)
        .transform_calculate(bin="format(min(floor(datum.jaccard * 10), 9) / 10, '.1f')")
        .mark_bar()
        .encode(
            x=alt.X("bin:O", title="Jaccard of top-10 (bin start)"),
            xOffset=alt.XOffset("pair:N"),
            y=alt.Y("count():Q", title="users"),
            color=alt.Color("pair:N"),
            tooltip=["pair:N", "bin:O", "count():Q"],
        )
        .properties(height=220, width="container", autosize=FIT_X)
    )
    return _themed(chart)


def user_wins(df: pd.DataFrame) -> alt.Chart:
    """Stacked bars: how many users each run serves best, by history length (from wins_frame)."""
    chart = (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=alt.X("users:Q", title="users"),
            y=alt.Y("bucket:N", title="history length", sort=None),
            color=alt.Color("winner:N", title="best run"),
            tooltip=["bucket:N", "winner:N", "users:Q"],
        )
        .properties(height=160, width="container", autosize=FIT_X)
    )
    return _themed(chart)


def history_weights(df: pd.DataFrame) -> alt.FacetChart:
    """Per variant, a bar per history item (time order, oldest on top) with its weight."""
    order = df.sort_values("position")["label"].unique().tolist()
    chart = (
        alt.Chart()
        .mark_bar()
        .encode(
            y=alt.Y("label:N", sort=order, title=None, axis=alt.Axis(labelLimit=240)),
            x=alt.X("weight:Q", title="weight"),
            color=alt.Color("variant:N", legend=None),
            tooltip=[
                "variant:N",
                "title:N",
                "position:Q",
                alt.Tooltip("weight:Q", format=".3f"),
                alt.Tooltip("share:Q", format=".1%"),
            ],
        )  # fmt: skip
        .properties(width=170, height=BAR * max(len(order), 1))
    )
    column = alt.Column("variant:N", title=None, sort=df["variant"].unique().tolist())
    return _themed(alt.layer(chart, data=df).facet(column=column))


def weights_heatmap(df: pd.DataFrame) -> alt.Chart:
    """Variants x history items (time order, left to right), colour = weight."""
    order = df.sort_values("position")["label"].unique().tolist()
    chart = (
        alt.Chart(df)
        .mark_rect()
        .encode(
            x=alt.X(
                "label:N",
                sort=order,
                title="history (oldest -> newest)",
                axis=alt.Axis(labelAngle=-60, labelLimit=160),
            ),
            y=alt.Y("variant:N", title=None, sort=df["variant"].unique().tolist()),
            color=alt.Color("weight:Q", scale=alt.Scale(scheme=WEIGHT_SCHEME)),
            tooltip=["variant:N", "title:N", alt.Tooltip("weight:Q", format=".3f")],
        )  # fmt: skip
        .properties(height=40 * max(df["variant"].nunique(), 1), width="container", autosize=FIT_X)
    )
    return _themed(chart)


def deletion_curves(df: pd.DataFrame) -> alt.FacetChart:
    """Score drop after deleting the top-k attributed vs k random history items."""
    line = (
        alt.Chart()
        .mark_line(point=True)
        .encode(
            x=alt.X("k:Q", title="history items deleted"),
            y=alt.Y("score_drop:Q", title="score drop"),
            color=alt.Color("method:N"),
            strokeDash=alt.StrokeDash("curve:N", title="deleted"),
            tooltip=["method:N", "curve:N", "k:Q", alt.Tooltip("score_drop:Q", format=".4f")],
        )
        .properties(width=220, height=180)
    )
    column = alt.Column("variant:N", title=None, sort=df["variant"].unique().tolist())
    return _themed(alt.layer(line, data=df).facet(column=column))


def playground_weights(df: pd.DataFrame) -> alt.FacetChart:
    """Attention weight per key for each formula (columns: formula, key, weight)."""
    bars = (
        alt.Chart()
        .mark_bar()
        .encode(
            x=alt.X("key:N", title="key"),
            y=alt.Y("weight:Q", title="weight", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("formula:N", legend=None),
            tooltip=["formula:N", "key:N", alt.Tooltip("weight:Q", format=".3f")],
        )
        .properties(width=150, height=150)
    )
    return _themed(alt.layer(bars, data=df).facet(column=alt.Column("formula:N", title=None)))


def recommendation_table(recs: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """Display table of `explain.recommend` output: rank, title, score, because (top weights)."""
    because = [
        ", ".join(f"{items.at[i, 'title']} {w:.0%}" for i, w in best) or "the sequence as a whole"
        for best in recs["top_history"]
    ]
    return pd.DataFrame(
        {"rank": recs["rank"], "title": recs["title"], "score": recs["score"].round(3),
         "because": because}
    )  # fmt: skip


def compare_table(df: pd.DataFrame, metrics: tuple[str, ...]) -> pd.DataFrame:
    """Display form of evaluation.compare: 'mean [low, high]' per metric and paired p-values."""
    out = pd.DataFrame({"run": df["run"]})
    for m in metrics:
        out[m] = [
            f"{v:.4f} [{lo:.4f}, {hi:.4f}]"
            for v, lo, hi in zip(df[m], df[f"{m}_ci_low"], df[f"{m}_ci_high"], strict=True)
        ]
        out[f"p ({m})"] = ["reference" if np.isnan(p) else f"{p:.4f}" for p in df[f"{m}_p"]]
    return out
