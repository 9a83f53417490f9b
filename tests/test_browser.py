"""The real app in Debian's Chromium (playwright): every page, deep links, the offline report.

Skipped when Chromium or playwright is missing, unless RECEXPLAIN_REQUIRE_BROWSER=1 (CI), where
that is a failure. Screenshots go to test-artifacts/screenshots/ (git-ignored).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = os.environ.get("RECEXPLAIN_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PAGES = [  # (path, page title, charts it draws, text that shows the page has finished)
    ("/", "Overview", 1, "Leaderboard metric"),
    ("/Train", "Train", 0, "Advanced hyperparameters"),
    ("/Compare", "Compare", 4, "Faithfulness of the explanations"),
    ("/Explain", "Explain", 2, "New user: pick a few items"),
    ("/Attention_playground", "Attention playground", 1, "Keras project code"),
    ("/Share", "Share", 0, "HTML report"),
]
WAIT_MS = 180_000  # the first visit of a page compiles the models on a busy CPU


def _require_browser():
    """playwright's sync API, or skip (fail when RECEXPLAIN_REQUIRE_BROWSER=1)."""
    problem = None if Path(CHROMIUM).exists() else f"Chromium not found at {CHROMIUM}"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as err:
        problem = problem or f"playwright is not installed ({err})"
    if problem:
        hint = "install it with `apt-get install -y chromium` (see DEVELOPERS.md)"
        if os.environ.get("RECEXPLAIN_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{problem}; RECEXPLAIN_REQUIRE_BROWSER=1: {hint}")
        pytest.skip(f"{problem}; {hint}")
    return sync_playwright


@pytest.fixture(scope="session", autouse=True)
def _browser_available():
    """Skips (or fails) before the session's tiny runs are trained for nothing."""
    _require_browser()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(app_runs, tmp_path_factory):
    """The app as a subprocess on 127.0.0.1 and a free port, on the tiny runs."""
    _require_browser()
    port = _free_port()
    env = {**os.environ, "RECEXPLAIN_RUNS_DIR": str(app_runs), "RECEXPLAIN_DATASET": "synthetic"}
    log_path = tmp_path_factory.mktemp("server") / "streamlit.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                "app.py",
                "--server.address",
                "127.0.0.1",
                "--server.port",
                str(port),
                "--server.headless",
                "true",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(base, proc, log_path)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)  # the port is only free once the process has exited
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)


def _wait_healthy(base: str, proc: subprocess.Popen, log_path: Path) -> None:
    deadline = time.time() + 90
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"streamlit did not start:\n{log_path.read_text()}")


@pytest.fixture(scope="module")
def browser():
    sync_playwright = _require_browser()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    yield context.new_page()
    context.close()


def wait_rendered(page, title: str, charts: int, marker: str | None = None) -> None:
    """Waits for the title, the page's last element, every Vega chart drawn, the script done."""
    page.wait_for_selector(f"h1:has-text('{title}')", timeout=WAIT_MS)
    marker = marker or next(m for _, t, _, m in PAGES if t == title)
    page.get_by_text(marker).first.wait_for(timeout=WAIT_MS)
    if charts:
        page.wait_for_function(
            "n => document.querySelectorAll('.vega-embed canvas, .vega-embed svg.marks').length"
            " >= n",
            arg=charts,
            timeout=WAIT_MS,
        )
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=WAIT_MS
    )


def check_page(page, title: str, charts: int) -> None:
    assert page.title() == f"{title} · recexplain"
    width = page.locator("[data-testid=stMainBlockContainer]").bounding_box()["width"]
    assert width > 900, f"{title}: not the wide layout ({width}px)"
    assert page.locator("[data-testid=stException]").count() == 0
    assert page.locator("[data-testid=stAlertContentError]").count() == 0
    embeds = page.locator(".vega-embed")
    assert embeds.count() == charts
    for i in range(charts):
        embed = embeds.nth(i)
        assert embed.locator("canvas, svg").count() > 0
        assert "error" not in embed.inner_text().lower()


def screenshot(page, name: str) -> Path:
    """A full-height screenshot (Streamlit scrolls inside its main block, not the document)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = page.evaluate("() => document.querySelector('[data-testid=stMain]').scrollHeight")
    page.set_viewport_size({"width": 1400, "height": min(max(height, 1000) + 40, 8000)})
    page.wait_for_timeout(500)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1400, "height": 1000})
    return path


def test_every_page_renders_its_charts(server, page):
    for path, title, charts, marker in PAGES:
        page.goto(server + path)
        wait_rendered(page, title, charts, marker)
        check_page(page, title, charts)
        assert screenshot(page, title.lower().replace(" ", "_")).stat().st_size > 10_000


def test_sidebar_switches_pages(server, page):
    page.goto(server + "/Compare")
    wait_rendered(page, "Compare", 4)
    page.locator("[data-testid=stSidebar] a:has-text('Attention playground')").click()
    wait_rendered(page, "Attention playground", 1)
    assert page.url.endswith("/Attention_playground")
    check_page(page, "Attention playground", 1)


def expected_sentence(app_runs, user: str, item: str) -> str:
    """What the library says for (user, item) with the additive run."""
    from recexplain.explain import explain, sentence
    from recexplain.runs import load_run, load_split

    run = load_run("synthetic-planted-additive", app_runs)
    _, split = load_split(run)
    history = split.history(run.user_index(user), "test")
    return sentence(explain(run, history, run.item_index(item)), run.items)


def test_deep_link_reopens_the_same_explanation(server, page, app_runs):
    page.goto(server + "/Explain?user=3&item=5")
    wait_rendered(page, "Explain", 2)
    check_page(page, "Explain", 2)
    assert "user=3" in page.url and "item=5" in page.url
    text = page.locator("[data-testid=stMain]").inner_text()
    assert f"additive: {expected_sentence(app_runs, '3', '5')}" in text
    assert "Why cause" in text or "Why effect" in text or "Why filler" in text
    screenshot(page, "explain_permalink")


def test_exported_report_renders_offline(server, browser, page, app_runs, tmp_path):
    page.goto(server + "/Share?user=3&item=5")
    wait_rendered(page, "Share", 0)
    check_page(page, "Share", 0)
    link = page.locator("[data-testid=stCode]").inner_text()
    assert "/Explain?" in link and "user=3" in link and "item=5" in link
    with page.expect_download(timeout=WAIT_MS) as download:
        page.get_by_role("button", name="HTML report").click()
    report = tmp_path / "report.html"
    download.value.save_as(report)
    offline = browser.new_context(offline=True, viewport={"width": 1200, "height": 1000})
    fetched: list[str] = []

    def block(route):
        fetched.append(route.request.url)
        route.abort()

    offline.route("http*://**", block)
    doc = offline.new_page()
    doc.goto(report.as_uri())
    doc.wait_for_function(
        "() => [...document.images].length == 2 && [...document.images].every("
        "i => i.complete && i.naturalWidth > 0)",
        timeout=30_000,
    )
    text = doc.inner_text("body")
    assert "evidence, not proof" in text and "fingerprint" in text
    assert expected_sentence(app_runs, "3", "5") in text
    assert fetched == [], f"the report tried to load {fetched}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    doc.screenshot(path=str(SHOTS / "report_offline.png"), full_page=True)
    offline.close()


SESSIONS = 20
SENTENCE = r"additive: (?:Recommended because|No history item)[^\n]*"
WATCH = """(() => { const re = new RegExp(%s); new MutationObserver((_, obs) => {
  const hit = document.body && document.body.innerText.match(re);
  if (hit) { window.__answer = hit[0]; window.__doneAt = performance.now(); obs.disconnect(); }
}).observe(document, {childList: true, subtree: true, characterData: true}); })();"""


def test_twenty_simultaneous_explain_sessions_get_the_single_session_answers(
    server, browser, app_runs
):
    """Explain for 20 users, first one session at a time, then 20 sessions at once: every
    concurrent session shows exactly its single-session explanation sentence, without errors.
    The time from navigation to that sentence (measured in the page) goes to
    test-artifacts/concurrency.json with its p95."""
    import json
    import re

    from recexplain.runs import load_run, load_split

    run = load_run("synthetic-planted-additive", app_runs)
    _, split = load_split(run)
    users = [str(run.user_ids[u]) for u in split.eval_users[:SESSIONS]]
    alone, single = {}, browser.new_page()
    for user in users:
        single.goto(f"{server}/Explain?user={user}")
        wait_rendered(single, "Explain", 2)
        check_page(single, "Explain", 2)
        alone[user] = re.search(SENTENCE, single.locator("[data-testid=stMain]").inner_text())[0]
    single.close()
    contexts, pages = [], []
    for _ in users:
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        ctx.add_init_script(WATCH % json.dumps(SENTENCE))
        contexts.append(ctx)
        pages.append(ctx.new_page())
    try:
        for page, user in zip(pages, users, strict=True):
            page.goto(f"{server}/Explain?user={user}", wait_until="commit")
        latencies = []
        for page, user in zip(pages, users, strict=True):
            page.wait_for_function("() => window.__doneAt !== undefined", timeout=2 * WAIT_MS)
            latencies.append(page.evaluate("() => window.__doneAt") / 1000)
            wait_rendered(page, "Explain", 2)
            check_page(page, "Explain", 2)
            assert page.evaluate("() => window.__answer") == alone[user], user
            assert f"user={user}" in page.url
    finally:
        for ctx in contexts:
            ctx.close()
    lat = np.sort(np.asarray(latencies))
    summary = {
        "sessions": SESSIONS,
        "p50_s": float(np.percentile(lat, 50)),
        "p95_s": float(np.percentile(lat, 95)),
        "max_s": float(lat[-1]),
        "latencies_s": [round(float(x), 3) for x in latencies],
    }
    out = ROOT / "test-artifacts" / "concurrency.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    print(f"\n{SESSIONS} concurrent Explain sessions: p50 {summary['p50_s']:.2f} s, "
          f"p95 {summary['p95_s']:.2f} s, max {summary['max_s']:.2f} s")  # fmt: skip
