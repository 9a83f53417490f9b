"""Text from data renders as plain text in the real Streamlit frontend (issue 15, item 6).

A title such as `www.example.com` became a live link, "Setext\\n=====" a heading and
`:material/warning:` an icon, although `dashboard.md` escaped the markdown punctuation: Streamlit
turns autolinks, emoji and icon short codes into elements after markdown's own escaping. This
renders hostile titles through `dashboard.md` in every markdown element the pages use and checks
the DOM in Chromium (skipped without Chromium, like tests/test_browser.py).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("RECEXPLAIN_CHROMIUM", "/usr/bin/chromium")
HOSTILE = ["www.example.com", "see http://evil.example/x", "mail a@b.example", "Setext\n=====",
           ":material/warning: warn", ":smile: smile", ":red[red]", "# head", "<b>bold</b>",
           "[link](http://x.example)", "$x^2$", "**bold**", "1. list", "> quote",
           "| a | b |"]  # fmt: skip
# a link, heading, icon, colour, bold, list, quote, table or maths: none may appear
SELECTORS = ("a[href^=http]", "a[href^=mailto]", "h1", "h2", "[role=img]",
             ".stMarkdownColoredText", "b", "strong:not(:text-is('label'))", "ol", "blockquote",
             "table", ".katex")  # fmt: skip
APP = f"""
import streamlit as st
from recexplain.dashboard import md
for i, text in enumerate({HOSTILE!r}):
    st.markdown(f"CASE{{i}}: **label**: " + md(text))
    st.caption(md(text))
    st.error(md(f"Could not load: {{text}}"))
st.subheader("Why " + md({HOSTILE[0]!r}) + "?")
st.markdown("ALL-DONE")
"""


def _chromium():
    problem = None if Path(CHROMIUM).exists() else f"Chromium not found at {CHROMIUM}"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as err:
        problem = problem or f"playwright is not installed ({err})"
    if problem:
        if os.environ.get("RECEXPLAIN_REQUIRE_BROWSER") == "1":
            pytest.fail(problem)
        pytest.skip(problem)
    return sync_playwright


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_titles_render_as_plain_text_in_markdown_elements(tmp_path):
    sync_playwright = _chromium()
    (tmp_path / "hostile.py").write_text(APP)
    port = _free_port()
    with open(tmp_path / "log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(tmp_path / "hostile.py"),
             "--server.port", str(port)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            for _ in range(240):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
                    break
                except OSError:
                    time.sleep(0.25)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM,
                                            args=["--headless", "--no-sandbox"])  # fmt: skip
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_selector("text=ALL-DONE", timeout=120_000)
                main = page.locator("[data-testid=stMain]")
                shown = [main.locator(sel).count() for sel in SELECTORS]
                text = main.inner_text()
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    assert shown == [0] * len(shown), shown  # no link, heading, icon, colour, list, quote...
    for needle in ("www.example.com", ":material/warning: warn", ":smile:", "Setext =====",
                   "<b>bold</b>", "a@b.example"):  # fmt: skip
        assert needle in text.replace("\u2060", ""), needle
