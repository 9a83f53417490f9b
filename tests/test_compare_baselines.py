"""The Compare page names the best sequential and the best non-sequential baseline it shows."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]


def _compare_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.run()
    at.switch_page("pages/2_Compare.py").run()
    return at


def _text(at: AppTest) -> str:
    """Markdown as read: escapes and dashboard.md's invisible word joiners (U+2060) removed."""
    text = " ".join(m.value for m in at.markdown).replace("\u2060", "")
    return re.sub(r"\\(.)", r"\1", text)


def test_compare_names_the_best_sequential_and_non_sequential_baseline(
    app_env, baseline_runs, tmp_path, monkeypatch
):
    runs_dir = tmp_path / "runs"
    shutil.copytree(app_env, runs_dir)
    for name in ("markov", "multistep", "pop"):  # trained on the same synthetic data
        shutil.copytree(baseline_runs[name].path, runs_dir / baseline_runs[name].run_id)
    monkeypatch.setenv("RECEXPLAIN_RUNS_DIR", str(runs_dir))
    at = _compare_page()
    assert "no sequential baseline; no non-sequential baseline" in _text(at)
    chosen_names = ("markov", "multistep", "pop")
    chosen = [baseline_runs[name].run_id for name in chosen_names]
    at.multiselect(key="compare_runs").select(chosen[0]).select(chosen[1]).select(chosen[2]).run()
    assert not at.exception and not at.error
    test_ndcg = {n: baseline_runs[n].metrics["test"]["ndcg@10"]["mean"] for n in chosen_names}
    best = max(("markov", "multistep"), key=test_ndcg.get)
    text = _text(at)
    assert f"best sequential baseline: {best} (ndcg@10 " in text
    assert "best non-sequential baseline: pop (ndcg@10 " in text
