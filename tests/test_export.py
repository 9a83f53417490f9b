"""Exports: escaped offline HTML report, valid PNG/SVG bytes, JSON round trip."""

from __future__ import annotations

import base64
import json
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from recexplain import export
from recexplain.explain import Attribution

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
FINGERPRINT = "f" * 64
ITEMS = pd.DataFrame(
    {
        "item_id": ["10", "20", "30", "40"],
        "title": [SCRIPT, IMG, 'Tom & Jerry "quoted"', "Plain"],
        "genres": [IMG, "", "", ""],
    },
    index=pd.Index([1, 2, 3, 4], name="item"),
)


def fake_run(variant: str) -> SimpleNamespace:
    cell = {"mean": 0.1234, "ci_low": 0.1, "ci_high": 0.15}
    return SimpleNamespace(
        run_id=f"data-{variant}",
        label=variant,
        items=ITEMS,
        fingerprint=FINGERPRINT,
        metrics={"test": {"ndcg@10": cell}},
        manifest={"code_version": "0.1.0+abc1234", "created": "2026-01-01"},
    )


@pytest.fixture(scope="module")
def report() -> export.Report:
    runs = [fake_run("additive"), fake_run("hard")]
    attrs = {
        "additive": Attribution(
            np.array([1, 2, 3]),
            np.array([0.5, 0.3, 0.1], np.float32),
            "attention",
            "additive",
            item=4,
            score=1.5,
            rank=0,
            context=0.1,
        ),
        "hard": Attribution(
            np.array([1, 2, 3]),
            np.array([0.0, 1.0, 0.0], np.float32),
            "attention",
            "hard",
            item=4,
            score=0.7,
            rank=2,
            context=0.0,
        ),
    }
    return export.build_report(
        runs,
        attrs,
        user=f"u{SCRIPT}",
        dataset="toy",
        held_out=f"{IMG} (rank 3)",
        permalink="http://127.0.0.1:8501/Explain?user=1&item=40",
    )


@pytest.fixture(scope="module")
def page(report) -> str:
    return export.report_html(report)


def test_html_escapes_every_piece_of_data_text(page):
    assert SCRIPT not in page and IMG not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "Tom &amp; Jerry &quot;quoted&quot;" in page
    assert not re.search(r"<script", page, re.IGNORECASE)  # no script at all
    assert "onerror=" not in page.replace("onerror=alert(1)&gt;", "")
    assert "default-src 'none'" in page  # and the CSP forbids scripts and the network


def test_html_has_fingerprint_versions_metrics_and_caveat(page):
    assert FINGERPRINT in page and "0.1.0+abc1234" in page and "data-additive" in page
    assert "ndcg@10 0.1234 [0.1000, 0.1500]" in page
    assert export.CAVEAT in page and "evidence, not proof" in page
    assert 'href="http://127.0.0.1:8501/Explain?user=1&amp;item=40"' in page


def test_html_embeds_charts_as_svg_images_without_network(page):
    images = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', page)
    assert len(images) == 2
    for data in images:
        svg = base64.b64decode(data).decode()
        assert svg.lstrip().startswith("<svg") and "</svg>" in svg
        assert "<script" not in svg.lower()  # titles are SVG text, escaped by vl-convert
    urls = re.findall(r"https?://[^\s\"'<>&]+", page)  # only the permalink: nothing to fetch
    assert urls and all(u.startswith("http://127.0.0.1:8501/Explain") for u in urls)


def test_permalinks_that_are_not_http_are_dropped(report):
    report2 = export.Report(**{**vars(report), "permalink": "javascript:alert(1)"})
    assert "javascript:" not in export.report_html(report2, charts=[])


def test_png_and_svg_bytes_are_valid(report):
    charts = export.report_charts(report)
    png = export.chart_png(charts[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    svg = export.chart_svg(charts[0])
    assert svg.lstrip().startswith("<svg") and "&lt;script&gt;" in svg


def test_json_round_trips_with_raw_text(report):
    data = json.loads(export.report_json(report))
    assert data["fingerprint"] == FINGERPRINT and data["caveat"] == export.CAVEAT
    assert [v["label"] for v in data["variants"]] == ["additive", "hard"]
    assert data["attributions"][0]["title"] == SCRIPT  # JSON is data, not HTML
    assert data["variants"][0]["sentence"].startswith("Recommended because you rated")


def test_faithfulness_line_and_permalinks():
    data = {
        "methods": {"attention": {"rank_drop_at_3": 12.5, "ratio_at_3": 3.0, "aopc": 0.2}},
        "best_method": "occlusion",
        "n_users": 100,
    }
    line = export.faithfulness_line(data, "attention")
    assert "100 users" in line and "12.5 places" in line and "3.0x" in line and "occlusion" in line
    assert export.faithfulness_line(data, "rollout") is None
    assert export.faithfulness_line({"methods": [1]}, "attention") is None
    assert export.faithfulness_line(None, "attention") is None
    url = export.permalink_url("http://h:1/Share?user=2", "Explain", {"user": "a&b", "item": "5"})
    assert url == "http://h:1/Explain?user=a%26b&item=5"
    assert export.permalink_url(None, "Explain", {"user": "1"}) == "/Explain?user=1"


# -- issue 15: a title that vl-convert cannot take must not take the server down ---------------
# Before the fix each of these aborted the Python process (vl-convert panics: exit status 134).
HOSTILE = ["nul\x00byte", "esc\x1b[2J", "vt\x0bx", "bad\ufffe", "\uffff",
           "c1\x85\x9b", "Setext\n=====", "bell\x07"]  # fmt: skip


def _xml_invalid(text: str) -> list[str]:
    return re.findall(r"[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]", text)


def hostile_report(titles: list[str], user: str = "u\x00\x1b") -> export.Report:
    items = pd.DataFrame(
        {
            "item_id": [f"id{i}\x00" for i in range(len(titles))],
            "title": titles,
            "genres": ["g\x1f"] * len(titles),
        },
        index=pd.Index(range(1, len(titles) + 1), name="item"),
    )
    run = SimpleNamespace(**{**vars(fake_run("additive")), "items": items})
    n = len(titles) - 1
    attr = Attribution(np.arange(1, n + 1), np.full(n, 1 / max(n, 1), np.float32), "attention",
                       "additive", item=n + 1, score=1.0, rank=0, context=0.0)  # fmt: skip
    return export.build_report([run], {"additive": attr}, user=user, dataset="d\x0b",
                               held_out="h\x00")  # fmt: skip


def test_control_characters_in_titles_cannot_crash_an_export():
    report = hostile_report(HOSTILE + ["last"])
    charts = export.report_charts(report)
    svgs = [export.chart_svg(c) for c in charts]
    assert export.chart_png(charts[1])[:8] == b"\x89PNG\r\n\x1a\n"
    page = export.report_html(report)
    for text in [*svgs, page]:
        assert not _xml_invalid(text)
    assert "nulbyte" in svgs[0] and "esc[2J" in page  # cleaned, not dropped
    json.loads(export.report_json(report))


def test_every_string_a_chart_sends_to_vl_convert_is_cleaned():
    import altair as alt

    frame = pd.DataFrame({"t\x00": ["a\x00b", "c\ufffe"], "w": [1, 2]})
    chart = alt.Chart(frame, title="x\x1b").mark_bar().encode(x="w:Q", y=alt.Y("t\x00:N"))
    assert "<svg" in export.chart_svg(chart) and export.chart_png(chart)[:4] == b"\x89PNG"
