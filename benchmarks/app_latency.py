"""Dashboard latency in a real browser: page switch and Explain's first paint, warm.

Starts the app (streamlit run app.py) on 127.0.0.1 and a free port, drives Debian's Chromium
with playwright, warms every page once, then measures (median of --repeats):

- page switch: click a sidebar link until the new page's last element and charts are drawn;
- Explain first paint: open /Explain?user=... in a fresh tab until its charts are drawn, for a
  user seen before (cached) and for a new user each time (compiled model, uncached compute).

Writes a Markdown table to benchmarks/results/app_latency.md (or --out). Targets: page switch
< 1 s warm, Explain first paint < 2 s warm.

    python benchmarks/app_latency.py --runs-dir runs --dataset ml-100k
    python benchmarks/app_latency.py --tiny   # trains three tiny synthetic runs first
    python benchmarks/app_latency.py --train default-1epoch --dataset ml-100k --append
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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
PAGES = {  # sidebar label -> (charts drawn, text of the page's last element)
    "Overview": (1, "Leaderboard metric"),
    "Compare": (4, "Faithfulness of the explanations"),
    "Explain": (2, "New user: pick a few items"),
    "Attention playground": (1, "Keras project code"),
    "Train": (0, "Advanced hyperparameters"),
    "Share": (0, "HTML report"),
}
TIMEOUT_MS = 600_000


def wait_page(page, title: str) -> None:
    """Until the page's title, last element and every chart are drawn and the script is idle."""
    charts, marker = PAGES[title]
    page.wait_for_selector(f"h1:has-text('{title}')", timeout=TIMEOUT_MS)
    page.get_by_text(marker).first.wait_for(timeout=TIMEOUT_MS)
    if charts:
        page.wait_for_function(
            "n => document.querySelectorAll('.vega-embed canvas, .vega-embed svg.marks').length"
            " >= n",
            arg=charts,
            timeout=TIMEOUT_MS,
        )
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=TIMEOUT_MS
    )


def timed(action, page, title: str) -> float:
    start = time.perf_counter()
    action()
    wait_page(page, title)
    return time.perf_counter() - start


def start_server(runs_dir: Path, dataset: str, log) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RECEXPLAIN_RUNS_DIR": str(runs_dir), "RECEXPLAIN_DATASET": dataset}
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
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2):
                return proc, base
        except OSError:
            time.sleep(0.5)
    proc.kill()
    proc.wait(timeout=60)
    raise RuntimeError(f"the app did not start; see {log.name}")


def measure(base: str, users: list[str], repeats: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    out: dict[str, list[float]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for title in PAGES:  # warm: compile, fill caches, load the frontend bundle
            path = "/" if title == "Overview" else "/" + title.replace(" ", "_")
            page.goto(base + path)
            wait_page(page, title)
        cycle = ["Overview", "Compare", "Explain", "Attention playground", "Train", "Share"]
        for _ in range(repeats):
            for title in cycle:
                link = page.locator(f"[data-testid=stSidebar] a:has-text('{title}')")
                out.setdefault(f"page switch -> {title}", []).append(
                    timed(link.first.click, page, title)
                )
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        for i in range(repeats):
            url = f"{base}/Explain?user={users[0]}"
            out.setdefault("Explain first paint (same user)", []).append(
                timed(lambda u=url: tab.goto(u), tab, "Explain")
            )
            url = f"{base}/Explain?user={users[1 + i % (len(users) - 1)]}"
            out.setdefault("Explain first paint (new user)", []).append(
                timed(lambda u=url: tab.goto(u), tab, "Explain")
            )
        browser.close()
    return out


def table(results: dict[str, list[float]], args: argparse.Namespace, notes: str) -> str:
    rows = [
        "| measure | median (s) | min (s) | max (s) | n | target | ok |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, values in results.items():
        target = 1.0 if name.startswith("page switch") else 2.0
        med = statistics.median(values)
        rows.append(
            f"| {name} | {med:.3f} | {min(values):.3f} | {max(values):.3f} | "
            f"{len(values)} | < {target:.0f} s | {'yes' if med < target else 'NO'} |"
        )
    switches = [v for k, vs in results.items() if k.startswith("page switch") for v in vs]
    rows.append(
        f"| page switch, all pages | {statistics.median(switches):.3f} | "
        f"{min(switches):.3f} | {max(switches):.3f} | {len(switches)} | < 1 s | "
        f"{'yes' if statistics.median(switches) < 1 else 'NO'} |"
    )
    head = (
        f"# App latency ({args.dataset}, runs in `{args.runs_dir}`)\n\n"
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · {platform.processor() or ''} "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end · Chromium "
        "headless · warm (every page visited once first)."
        f" {notes}\n\n"
    )
    return head + "\n".join(rows) + "\n"


def train_runs(folder: Path, kind: str, dataset: str) -> None:
    """Three runs named as default_runs names them: "tiny" (synthetic data, d=16, L=12, one
    epoch) or "default-1epoch" (the default model, d=64, 2 blocks, L=50, trained one epoch: the
    same shapes, so the same latency, as converged default runs)."""
    sys.path.insert(0, str(ROOT))
    import dataclasses

    from recexplain.config import ATTENTION_VARIANTS, DataConfig, ModelConfig, TrainConfig, preset
    from recexplain.data import load_dataset
    from recexplain.training import train

    cfg = DataConfig(dataset="synthetic" if kind == "tiny" else dataset)
    ds = load_dataset(cfg)
    for variant in ATTENTION_VARIANTS:
        if kind == "tiny":
            model = ModelConfig(
                attention=variant, d_model=16, n_blocks=1, n_heads=1, d_attn=8, max_len=12
            )
            fit = TrainConfig(batch_size=64, n_negatives=16, max_epochs=1, bootstrap=50)
        else:
            model, fit = preset("default", variant)
            fit = dataclasses.replace(fit, max_epochs=1)
        train(
            cfg,
            model,
            fit,
            runs_dir=folder,
            run_id=f"{ds.name}-{variant}",
            dataset=ds,
            verbose=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs-dir", default=os.environ.get("RECEXPLAIN_RUNS_DIR", "runs"))
    ap.add_argument("--dataset", default=os.environ.get("RECEXPLAIN_DATASET", "ml-100k"))
    ap.add_argument("--tiny", action="store_true", help="= --train tiny")
    ap.add_argument(
        "--train",
        choices=["tiny", "default-1epoch"],
        default=None,
        help="train three runs into a temporary folder first and measure on them",
    )
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--users", default="1,2,3,4,5,6,7,8,9,10", help="original user ids to open")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "app_latency.md"))
    ap.add_argument("--append", action="store_true", help="append to --out instead of replacing")
    args = ap.parse_args()
    args.train = "tiny" if args.tiny else args.train
    if args.train:
        args.runs_dir = tempfile.mkdtemp(prefix="recexplain-runs-")
        args.dataset = "synthetic" if args.train == "tiny" else args.dataset
        train_runs(Path(args.runs_dir), args.train, args.dataset)
    log_path = Path(tempfile.mkdtemp(prefix="recexplain-bench-")) / "streamlit.log"
    with open(log_path, "w") as log:
        proc, base = start_server(Path(args.runs_dir).resolve(), args.dataset, log)
        try:
            results = measure(base, args.users.split(","), args.repeats)
        finally:
            proc.terminate()
            proc.wait(timeout=60)  # the port is free only once the server has exited
    notes = {
        "tiny": "Tiny synthetic runs (d=16, L=12, 1 epoch).",
        "default-1epoch": "Default model (d=64, 2 blocks, L=50) trained 1 epoch: the shapes and"
        " so the latency of converged default runs, not their accuracy.",
    }.get(args.train, "Runs as found.")
    text = table(results, args, notes)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a" if args.append else "w") as f:
        f.write(("\n" if args.append else "") + text)
    print(text)


if __name__ == "__main__":
    main()
