"""Explanation exports: a self-contained offline HTML report, PNG/SVG charts and JSON."""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import altair as alt
import numpy as np
import pandas as pd
import vl_convert as vlc

from recexplain import viz
from recexplain.explain import Attribution, sentence
from recexplain.sources import clean_text

CAVEAT = (
    "Attention weights are evidence, not proof, of cause: they show which history items the "
    "model weighed for this score, not why the person chose the item."
)
REPORT_METRICS = ("ndcg@10", "hr@10", "mrr@10")
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


@dataclass
class VariantPart:
    """One model's side of the report."""

    label: str
    run_id: str
    code_version: str
    created: str
    rank: int | None  # 0-based among unseen items
    score: float
    context: float  # weight on the sequence-context key
    sentence: str
    metrics: dict[str, dict[str, float]]  # name -> mean, ci_low, ci_high (test)


@dataclass
class Report:
    """Everything an explanation export shows; built once, rendered to HTML or JSON."""

    dataset: str
    fingerprint: str
    user: str
    item_id: str
    item_title: str
    method: str
    parts: list[VariantPart]
    frame: pd.DataFrame  # viz.attribution_frame of the attributions
    held_out: str | None = None  # "Title (rank r)" of the user's held-out test item
    permalink: str | None = None
    notes: list[str] = field(default_factory=list)


def build_report(
    runs: list[Any],
    attrs: dict[str, Attribution],
    *,
    user: str,
    dataset: str,
    held_out: str | None = None,
    permalink: str | None = None,
) -> Report:
    """Collects run metadata, metrics with CIs, sentences and the attribution table.

    Args:
      runs: the runs explained, in the same order as attrs (label -> Attribution).
      user: original user id (or a description such as "new user").
    """
    items = runs[0].items
    first = next(iter(attrs.values()))
    parts = []
    for run, (label, attr) in zip(runs, attrs.items(), strict=True):
        test = run.metrics.get("test", {})
        parts.append(VariantPart(
            label, run.run_id, str(run.manifest.get("code_version", "?")),
            str(run.manifest.get("created", "?")), attr.rank, float(attr.score),
            float(attr.context), sentence(attr, items),
            {m: test[m] for m in REPORT_METRICS if isinstance(test.get(m), dict)},
        ))  # fmt: skip
    return Report(
        dataset=dataset,
        fingerprint=runs[0].fingerprint,
        user=str(user),
        item_id=str(items.at[first.item, "item_id"]),
        item_title=str(items.at[first.item, "title"]),
        method=first.method,
        parts=parts,
        frame=viz.attribution_frame(attrs, items),
        held_out=held_out,
        permalink=permalink,
    )


def faithfulness_line(data: dict[str, Any] | None, method: str) -> str | None:
    """One line on how faithful `method` was in the run's faithfulness check (None: unknown)."""
    methods = data.get("methods") if isinstance(data, dict) else None
    m = methods.get(method) if isinstance(methods, dict) else None
    if not isinstance(m, dict):
        return None
    ratio, drop, aopc = m.get("ratio_at_3"), m.get("rank_drop_at_3"), m.get("aopc")
    parts = [f"Faithfulness of {method} ({data.get('n_users', '?')} users):"]
    if isinstance(drop, int | float):
        parts.append(f"deleting its top-3 items moves the item {drop:.1f} places down on average")
    if isinstance(ratio, int | float):
        parts.append(f"· the score drops {ratio:.1f}x as much as when deleting 3 random items")
    if isinstance(aopc, int | float):
        parts.append(f"· AOPC {aopc:.3f}")
    if data.get("best_method"):
        parts.append(f"· most faithful method: {data['best_method']}")
    return " ".join(parts)


def permalink_url(app_url: str | None, page_name: str, params: dict[str, str]) -> str:
    """`<app>/<page>?<params>` from the URL of any page of the app (relative without one)."""
    base = app_url.split("?")[0].rsplit("/", 1)[0] if app_url and app_url.startswith("http") else ""
    return f"{base}/{page_name}?{urlencode(params)}"


def report_charts(report: Report) -> list[alt.TopLevelMixin]:
    """The report's charts, with fixed sizes (no container width outside a browser page)."""
    n = report.frame["position"].nunique() if len(report.frame) else 1
    heatmap = viz.weights_heatmap(report.frame).properties(width=max(320, 22 * n))
    return [viz.history_weights(report.frame), heatmap]


# Characters XML 1.0 does not allow. vl-convert (1.9) panics on any of them in a chart's text
# and the panic aborts the whole process (the server, for every user): every string of a spec
# (data values, field names, titles) loses them before it is rendered.
_XML_INVALID = re.compile(r"[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_safe(obj: Any) -> Any:
    """A Vega-Lite spec with every string (keys included) stripped of XML-invalid characters."""
    if isinstance(obj, str):
        return _XML_INVALID.sub("", obj)
    if isinstance(obj, dict):
        return {_xml_safe(k): _xml_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_xml_safe(v) for v in obj]
    return obj


def _spec(chart: alt.TopLevelMixin) -> dict[str, Any]:
    return _xml_safe(chart.to_dict())


def chart_svg(chart: alt.TopLevelMixin) -> str:
    """SVG text of a chart, rendered offline by vl-convert."""
    return vlc.vegalite_to_svg(_spec(chart))


def chart_png(chart: alt.TopLevelMixin, scale: float = 2.0) -> bytes:
    """PNG bytes of a chart, rendered offline by vl-convert."""
    return vlc.vegalite_to_png(_spec(chart), scale=scale)


def report_json(report: Report) -> str:
    """The report as JSON (attribution table included, text unescaped: JSON is not HTML)."""
    frame = report.frame.drop(columns=["label"], errors="ignore")
    data = {
        "dataset": report.dataset,
        "fingerprint": report.fingerprint,
        "user": report.user,
        "item_id": report.item_id,
        "item_title": report.item_title,
        "method": report.method,
        "held_out": report.held_out,
        "permalink": report.permalink,
        "caveat": CAVEAT,
        "variants": [vars(p) for p in report.parts],
        "attributions": frame.to_dict(orient="records"),
    }
    data = json.loads(json.dumps(data, default=_json_default))  # plain types only
    return json.dumps(_xml_safe(data), indent=2, ensure_ascii=False)  # no lone surrogates


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def _e(text: Any) -> str:
    return html.escape(clean_text(text), quote=True)


def _img(svg: str, alt_text: str) -> str:
    """An SVG as a data: image (scripts inside an <img> never run; the CSP forbids them too)."""
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return f'<img class="chart" alt="{_e(alt_text)}" src="data:image/svg+xml;base64,{data}">'


def _metrics_cell(m: dict[str, dict[str, float]]) -> str:
    return "<br>".join(
        f"{_e(name)} {v.get('mean', float('nan')):.4f} "
        f"[{v.get('ci_low', float('nan')):.4f}, {v.get('ci_high', float('nan')):.4f}]"
        for name, v in m.items()
    )


def _parts_table(report: Report) -> str:
    head = ("<tr><th>variant</th><th>run</th><th>model version</th><th>rank</th><th>score</th>"
            "<th>context weight</th><th>test metrics (95% CI)</th></tr>")  # fmt: skip
    rows = [
        f"<tr><td>{_e(p.label)}</td><td>{_e(p.run_id)}<br><small>{_e(p.created)}</small></td>"
        f"<td>{_e(p.code_version)}</td><td>{'' if p.rank is None else p.rank + 1}</td>"
        f"<td>{p.score:.4f}</td><td>{p.context:.1%}</td><td>{_metrics_cell(p.metrics)}</td></tr>"
        for p in report.parts
    ]
    return f"<table>{head}{''.join(rows)}</table>"


def _weights_table(report: Report) -> str:
    wide = report.frame.pivot_table(
        index=["position", "title"], columns="variant", values="weight", sort=True
    ).reset_index()
    variants = [c for c in wide.columns if c not in ("position", "title")]
    head = "".join(f"<th>{_e(v)}</th>" for v in variants)
    rows = [
        f"<tr><td>{int(r['position']) + 1}</td><td>{_e(r['title'])}</td>"
        + "".join(f"<td>{r[v]:.3f}</td>" for v in variants)
        + "</tr>"
        for _, r in wide.iterrows()
    ]
    head = f"<tr><th>#</th><th>history item (oldest first)</th>{head}</tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _permalink(url: str | None) -> str:
    if not url or not url.startswith(("http://", "https://")):
        return ""
    return f'<p>Open this view in recexplain: <a href="{_e(url)}">{_e(url)}</a></p>'


_STYLE = """body{font-family:Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ddd;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f4f4f4}.caveat{background:#fff6e0;
border-left:4px solid #f0a000;padding:.6em 1em}.chart{max-width:100%;display:block;margin:1em 0}
code{background:#f4f4f4;padding:1px 4px}"""


def report_html(report: Report, charts: list[str] | None = None) -> str:
    """A self-contained HTML page: no scripts, no network; charts embedded as SVG images.

    Every piece of text from data (titles, ids, names) is HTML-escaped.

    Args:
      charts: SVG texts (default: rendered from `report_charts`).
    """
    svgs = charts if charts is not None else [chart_svg(c) for c in report_charts(report)]
    sentences = "".join(f"<li><b>{_e(p.label)}</b>: {_e(p.sentence)}</li>" for p in report.parts)
    held = f"<p>Held-out item: {_e(report.held_out)}</p>" if report.held_out else ""
    images = "".join(
        _img(s, t) for s, t in zip(svgs, ["weights per variant", "heatmap"], strict=False)
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<title>Why {_e(report.item_title)}? · recexplain</title><style>{_STYLE}</style></head>
<body>
<h1>Why was <q>{_e(report.item_title)}</q> recommended to user {_e(report.user)}?</h1>
<p>Data set <b>{_e(report.dataset)}</b> · fingerprint <code>{_e(report.fingerprint)}</code>
 · item id {_e(report.item_id)} · attribution method <b>{_e(report.method)}</b></p>
{held}<p class="caveat"><b>Caveat.</b> {_e(CAVEAT)}</p>
<h2>In one sentence</h2><ul>{sentences}</ul>
<h2>Models</h2>{_parts_table(report)}
<h2>Weights on the history</h2>{images}
{_weights_table(report)}
{_permalink(report.permalink)}
<p><small>{"".join(_e(n) + " " for n in report.notes)}Made with recexplain.</small></p>
</body></html>
"""
