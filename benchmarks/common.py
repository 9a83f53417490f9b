"""Shared benchmark helpers: timing, medians, Markdown tables written to results/."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of one call (the result is waited for if it is a JAX array)."""
    start = time.perf_counter()
    out = fn()
    block = getattr(out, "block_until_ready", None)
    if block is not None:
        block()
    return time.perf_counter() - start


def median_of(fn: Callable[[], object], repeats: int = 5) -> tuple[float, list[float]]:
    """Median and all timings of `repeats` calls."""
    times = [timed(fn) for _ in range(repeats)]
    return statistics.median(times), times


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[idx]


def machine() -> str:
    import jax

    device = f"{jax.devices()[0].platform} x{jax.device_count()}"
    return f"{platform.processor() or platform.machine()} | jax {jax.__version__} on {device}"


def write_table(name: str, title: str, rows: list[dict], notes: list[str]) -> Path:
    """Prints a Markdown table and writes it (with notes and machine info) to results/<name>."""
    columns = list(rows[0]) if rows else []
    date = time.strftime("%Y-%m-%d %H:%M")
    lines = [f"# {title}", "", f"Machine: {machine()}", f"Date: {date}", ""]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row[c]) for c in columns) + " |")
    lines += [""] + [f"- {n}" for n in notes]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(text)
    return path


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)
