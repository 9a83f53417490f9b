"""Every page through streamlit.testing.v1.AppTest, on three tiny runs of the synthetic data."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from recexplain import jobs
from recexplain.config import DataConfig

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    "pages/1_Train.py",
    "pages/2_Compare.py",
    "pages/3_Explain.py",
    "pages/4_Attention_playground.py",
    "pages/5_Share.py",
]
TIMEOUT = 180  # seconds per script run: the first run of a page compiles the models on CPU


def open_page(page: str = "app.py", params: dict | None = None) -> AppTest:
    """Runs the app (app.py is the entry point) and switches to `page` with query params."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    for key, value in (params or {}).items():
        at.query_params[key] = value
    at.run()
    if page != "app.py":
        at.switch_page(page).run()
    return at


def plain(elements) -> str:
    """The text of st.error / st.success / ... elements, markdown escapes removed."""
    return re.sub(r"\\(.)", r"\1", " ".join(e.value for e in elements))


def errors(at: AppTest) -> str:
    return plain(at.error)


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def chart_data(at: AppTest, index: int) -> pd.DataFrame:
    """The data behind the index-th Vega-Lite chart (Streamlit ships it as Arrow)."""
    proto = at.get("vega_lite_chart")[index].proto
    return pa.ipc.open_stream(proto.datasets[0].data.data).read_all().to_pandas()


def heatmap(at: AppTest) -> pd.DataFrame:
    """The Explain page's variants x history heatmap data (the first chart)."""
    df = chart_data(at, 0)
    assert {"variant", "label", "weight"} <= set(df.columns)
    return df.sort_values(["variant", "position"], ignore_index=True)


def selectbox(at: AppTest, label: str):
    return next(s for s in at.selectbox if s.label == label)


def multiselect(at: AppTest, label: str):
    return next(m for m in at.multiselect if m.label == label)


def test_overview_renders_card_runs_and_leaderboard(app_env):
    at = open_page()
    assert_clean(at)
    assert at.title[0].value == "Overview"
    assert [m.label for m in at.metric][:3] == ["Users", "Items", "Interactions"]
    assert len(at.dataframe) == 1 and len(at.get("vega_lite_chart")) == 1
    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    assert spec["layer"][0]["encoding"]["x"]["field"] == "mean"


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_exception(app_env, page):
    at = open_page(page)
    assert_clean(at)
    assert at.title[0].value in page.replace("_", " ")


def test_compare_shows_table_charts_and_p_values(app_env):
    at = open_page("pages/2_Compare.py")
    table = at.dataframe[0].value
    assert list(table["run"]) == ["additive", "multiplicative", "hard"]
    assert (table["p (ndcg@10)"] == "reference").sum() == 1
    assert len(at.get("vega_lite_chart")) == 4  # metrics, curves, Jaccard, wins


def test_explain_choosing_another_user_changes_the_attributions(app_env):
    at = open_page("pages/3_Explain.py", {"user": "3"})
    assert_clean(at)
    assert at.query_params["user"] == ["3"] or at.query_params["user"] == "3"
    first = heatmap(at)
    assert set(first["variant"]) == {"additive", "multiplicative", "hard"}
    selectbox(at, "User (type to search)").select("7").run()
    assert_clean(at)
    second = heatmap(at)
    assert not first[["label", "weight"]].equals(second[["label", "weight"]])


def test_explain_what_if_removal_changes_the_weights(app_env):
    at = open_page("pages/3_Explain.py", {"user": "3"})
    before = heatmap(at)
    newest = int(before["item"].iloc[-1])
    at.toggle(key="whatif_on").set_value(True).run()
    multiselect(at, "Remove from the history").select(newest).run()
    assert_clean(at)
    after = heatmap(at)
    assert newest not in set(after["item"])
    assert not after[["label", "weight"]].equals(before[["label", "weight"]])


def test_explain_thumbs_up_appends_the_item_to_the_history(app_env):
    at = open_page("pages/3_Explain.py", {"user": "3"})
    item = selectbox(at, "Explain item").value
    labels_before = set(heatmap(at)["label"])
    next(b for b in at.button if b.label.startswith("More like this")).click().run()
    assert_clean(at)
    assert at.session_state["thumbs"][3]["up"] == [item]
    assert set(heatmap(at)["label"]) != labels_before


def test_explain_unknown_user_and_item_in_the_link_are_errors_not_exceptions(app_env):
    link = {"user": "no-such-user", "item": "<script>", "method": "tea-leaves", "run": "gone"}
    at = open_page("pages/3_Explain.py", link)
    assert not at.exception
    assert "Unknown user 'no-such-user'" in errors(at) and "Unknown item '<script>'" in errors(at)
    assert "Unknown attribution method 'tea-leaves'" in errors(at)
    assert "non-attention run(s) in the link: gone" in errors(at)
    assert len(at.get("vega_lite_chart")) == 2  # it still shows a valid explanation


def test_explain_permalink_params_pick_the_item(app_env):
    at = open_page("pages/3_Explain.py", {"user": "3", "item": "5"})
    assert_clean(at)
    picker = selectbox(at, "Explain item")
    assert "(id 5)" in picker.format_func(picker.value)


def test_explain_new_user_cold_start(app_env):
    at = open_page("pages/3_Explain.py")
    at.toggle(key="cold_on").set_value(True).run()
    cold = multiselect(at, "Items this person liked (oldest first)")
    cold.select(1).select(2).run()
    assert_clean(at)
    assert len(at.table) == 6  # three top-10 tables for the user, three for the new user


def test_a_deleted_run_folder_is_a_message(app_env, tmp_path, monkeypatch):
    runs_dir = tmp_path / "runs"
    shutil.copytree(app_env, runs_dir)
    shutil.copytree(runs_dir / "synthetic-planted-additive", runs_dir / "extra-additive")
    monkeypatch.setenv("RECEXPLAIN_RUNS_DIR", str(runs_dir))
    at = open_page("pages/3_Explain.py", {"run": "extra-additive"})
    assert_clean(at)
    shutil.rmtree(runs_dir / "extra-additive")
    at.run()
    assert not at.exception
    assert "no longer available" in errors(at) and "extra-additive" in errors(at)


def test_playground_hard_k_changes_the_weights(app_env):
    at = open_page("pages/4_Attention_playground.py")
    assert_clean(at)
    weights = chart_data(at, 0)
    hard = weights[weights["formula"].str.startswith("hard")]["weight"]
    assert sorted(hard) == [0, 0, 0, 1]
    next(n for n in at.number_input if n.label.startswith("hard")).set_value(2).run()
    weights = chart_data(at, 0)
    assert sorted(weights[weights["formula"].str.startswith("hard")]["weight"]) == [0, 0, 0.5, 0.5]
    assert any("sum to 1.10" in c.value for c in at.caption)


def test_share_builds_a_permalink_and_exports(app_env):
    at = open_page("pages/5_Share.py", {"user": "3", "item": "5"})
    assert_clean(at)
    link = at.code[0].value
    assert "/Explain?" in link and "user=3" in link and "item=5" in link and "run=" in link
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["HTML report", "PNG (heatmap)", "SVG (weights)", "JSON"]


def test_train_rejects_a_bad_run_id(app_env):
    at = open_page("pages/1_Train.py")
    next(t for t in at.text_input if t.label == "Run id").input("../escape").run()
    assert not at.exception
    assert "invalid run id" in errors(at)


def test_train_runs_in_the_background_and_the_run_appears(app_env, tmp_path, monkeypatch):
    runs_dir = tmp_path / "runs"
    shutil.copytree(app_env, runs_dir)
    monkeypatch.setenv("RECEXPLAIN_RUNS_DIR", str(runs_dir))
    at = open_page("pages/1_Train.py")
    next(t for t in at.text_input if t.label == "Run id").input("fresh-run").run()
    next(n for n in at.number_input if n.label == "max_epochs").set_value(1).run()
    next(b for b in at.button if b.label == "Train").click().run()
    assert_clean(at)
    job = jobs.get_job(at.session_state["train_job"])
    assert job.wait(TIMEOUT) and job.error is None, job.error
    at.run()
    assert "Saved run fresh-run" in plain(at.success)
    assert (runs_dir / "fresh-run" / "manifest.json").is_file()
    overview = open_page()
    assert "fresh-run" in set(overview.dataframe[0].value["run_id"])


def fake_default_runs(app_runs: Path, gate: threading.Event | None = None, hold: int | None = None):
    """Stands in for quickstart.default_runs (the real one trains for minutes): once `gate` (if
    any) is set, copies the tiny runs in one variant at a time, reusing those already there; with
    `hold`, variant number `hold` waits for a cancel (then is saved, like a cancelled run, and
    the rest are skipped)."""

    def run(target_dir, *, progress, should_stop, **kwargs):
        progress({"stage": "loading data"})
        if gate is not None:
            gate.wait(60)
        out = []
        for n, variant in enumerate(("additive", "multiplicative", "hard")):
            name = f"synthetic-planted-{variant}"
            if (Path(target_dir) / name).exists():
                progress({"stage": "reused", "variant": variant})
                out.append(name)
                continue
            if should_stop():
                break
            progress({"stage": "training", "variant": variant})
            while n == hold and not should_stop():
                time.sleep(0.05)
            progress({"epoch": 1, "max_epochs": 2, "loss": 3.0, "valid_ndcg@10": 0.1,
                      "best_valid_ndcg@10": 0.1, "seconds": 1.0, "variant": variant})  # fmt: skip
            shutil.copytree(app_runs / name, Path(target_dir) / name)
            out.append(name)
            progress({"stage": "done", "variant": variant})
        return out

    return run


def first_start(tmp_path, monkeypatch, app_runs, hold=None) -> tuple[AppTest, jobs.Job]:
    """Opens the app on an empty runs folder (a fake quickstart.default_runs), checks the
    progress bar, then lets the fake go on."""
    gate = threading.Event()
    runs_dir = tmp_path / "fresh"
    monkeypatch.setenv("RECEXPLAIN_RUNS_DIR", str(runs_dir))
    monkeypatch.setenv("RECEXPLAIN_DATASET", "synthetic")
    monkeypatch.setattr(jobs, "default_runs", fake_default_runs(app_runs, gate, hold))
    at = open_page()
    assert not at.exception
    assert "First start" in at.info[0].value
    assert len(at.progress) == 1 and 0 <= at.progress[0].value <= 100
    gate.set()
    key = jobs.default_runs_key(runs_dir, DataConfig(dataset="synthetic"), "default")
    return at, jobs.get_job(key)


def test_first_start_trains_the_default_runs_with_a_progress_bar(app_runs, tmp_path, monkeypatch):
    at, job = first_start(tmp_path, monkeypatch, app_runs)
    assert job.wait(60) and job.error is None
    at.run()
    assert_clean(at)
    assert not at.info and len(at.get("vega_lite_chart")) == 1


def test_first_start_can_be_cancelled_and_resumed(app_runs, tmp_path, monkeypatch):
    at, job = first_start(tmp_path, monkeypatch, app_runs, hold=1)
    deadline = time.time() + 60  # cancel while the second variant trains
    while {"stage": "training", "variant": "multiplicative"} not in job.events:
        assert time.time() < deadline
        time.sleep(0.05)
    at.run()
    cancel = next(b for b in at.button if b.label.startswith("Cancel"))
    cancel.click().run()
    assert job.wait(60) and job.cancelled and len(job.result) == 2
    at.run()
    assert not at.exception
    assert "cancelled: 2 of 3 variants are saved" in plain(at.warning)
    monkeypatch.setattr(jobs, "default_runs", fake_default_runs(app_runs))
    next(b for b in at.button if b.label == "Resume training").click().run()
    resumed = jobs.get_job(job.key)  # a new job: it reuses two variants and trains the third
    assert resumed is not job and resumed.wait(60) and resumed.error is None, resumed.error
    assert [e["stage"] for e in resumed.events if "stage" in e].count("reused") == 2
    at.run()
    assert_clean(at)
    assert not at.info and len(at.get("vega_lite_chart")) == 1


def upload_page(monkeypatch, tmp_path) -> AppTest:
    monkeypatch.setenv("RECEXPLAIN_CACHE", str(tmp_path / "cache"))
    at = open_page("pages/1_Train.py")
    at.radio(key="train_source").set_value("upload a file").run()
    return at


def test_a_bad_upload_is_a_clear_message(app_env, monkeypatch, tmp_path):
    at = upload_page(monkeypatch, tmp_path)
    bad = b"user_id,item_id,timestamp\n1,10,100\n1,11,yesterday-ish\n"
    at.file_uploader(key="up_inter").set_value(("ratings.csv", bad, "text/csv")).run()
    assert not at.exception
    message = errors(at)
    assert "The data did not load" in message and "ratings.csv" in message
    assert "line 3" in message and "timestamp" in message


def test_an_upload_with_a_column_mapping_loads(app_env, monkeypatch, tmp_path):
    at = upload_page(monkeypatch, tmp_path)
    rows = [f"{u},{i},{1000 + 10 * u + i}" for u in range(6) for i in range(1, 6)]
    data = ("who,what,when\n" + "\n".join(rows)).encode()
    items = b"what,name\n1,<script>alert(1)</script>\n2,B\n3,C\n4,D\n5,E\n"
    at.file_uploader(key="up_inter").set_value(("clicks.csv", data, "text/csv"))
    at.file_uploader(key="up_items").set_value(("items.csv", items, "text/csv")).run()
    assert "missing column" in errors(at)  # nothing guessed "what"/"when": all map to "who"
    selectbox(at, "Item column").select("what")
    selectbox(at, "Time column").select("when")
    selectbox(at, "Title column").select("name").run()
    assert_clean(at)
    assert "6 users, 5 items, 30 interactions" in plain(at.success)
    stored = list((tmp_path / "cache" / "uploads").glob("*/clicks.csv"))
    assert len(stored) == 1 and stored[0].read_bytes() == data


def test_explain_other_attribution_methods(app_env):
    from recexplain import explain

    at = open_page("pages/3_Explain.py", {"user": "3"})
    attention = heatmap(at)
    others = [m for m in explain.METHODS if m != "attention"]
    if not others:
        pytest.skip("this library offers only the attention method")
    selectbox(at, "Attribution method").select(others[-1]).run()
    assert_clean(at)
    assert at.query_params["method"] in (others[-1], [others[-1]])
    assert not heatmap(at)["weight"].equals(attention["weight"])


def fake_faithfulness(run_dir: Path) -> None:
    fingerprint = json.loads((run_dir / "data.json").read_text())["fingerprint"]
    k = list(range(11))
    method = {
        "aopc": 0.3,
        "ratio_at_3": 2.5,
        "rank_drop_at_3": 14.0,
        "deletion": {
            "k": k,
            "score_drop": [0.05 * i for i in k],
            "random_score_drop": [0.01 * i for i in k],
        },
    }
    report = {
        "fingerprint": fingerprint,
        "n_users": 50,
        "best_method": "attention",
        "methods": {"attention": method},
        "agreement": {},
    }
    (run_dir / "faithfulness.json").write_text(json.dumps(report))


def test_faithfulness_reports_show_on_compare_and_explain(app_env, tmp_path, monkeypatch):
    runs_dir = tmp_path / "runs"
    shutil.copytree(app_env, runs_dir)
    for variant in ("additive", "hard"):
        fake_faithfulness(runs_dir / f"synthetic-planted-{variant}")
    monkeypatch.setenv("RECEXPLAIN_RUNS_DIR", str(runs_dir))
    at = open_page("pages/2_Compare.py")
    assert_clean(at)
    summary = at.dataframe[1].value
    assert list(summary["variant"]) == ["additive", "hard"] and set(summary["aopc"]) == {0.3}
    assert len(at.get("vega_lite_chart")) == 5  # + the deletion curves
    at = open_page("pages/3_Explain.py", {"user": "3"})
    badges = plain(at.caption)
    assert badges.count("Faithfulness of attention (50 users)") == 2
    assert "14.0 places" in badges


def test_baseline_runs_compare_but_are_not_explained(app_env, planted, tmp_path, monkeypatch):
    baselines = pytest.importorskip("recexplain.baselines")
    from recexplain.config import DataConfig

    runs_dir = tmp_path / "runs"
    shutil.copytree(app_env, runs_dir)
    baselines.train_baseline(
        "pop",
        DataConfig(dataset="synthetic"),
        runs_dir=runs_dir,
        run_id="synthetic-pop",
        dataset=planted[0],
    )
    monkeypatch.setenv("RECEXPLAIN_RUNS_DIR", str(runs_dir))
    at = open_page("pages/2_Compare.py")
    at.multiselect(key="compare_runs").select("synthetic-pop").run()
    assert_clean(at)
    assert list(at.dataframe[0].value["run"]) == ["additive", "multiplicative", "hard", "pop"]
    at = open_page("pages/3_Explain.py", {"run": "synthetic-pop"})
    assert not at.exception
    assert "baselines have no attention to explain" in errors(at)
    assert len(at.get("vega_lite_chart")) == 2  # the default runs instead


def test_pages_show_each_variant_as_soon_as_it_is_ready(app_runs, tmp_path, monkeypatch):
    """The first start saves one variant after another: Compare shows those that exist and
    says what is still training; the Overview's data part never waits."""
    variants = ("additive", "multiplicative", "hard")
    gates = {v: threading.Event() for v in variants}
    runs_dir = tmp_path / "progressive"

    def fake(target_dir, *, progress, should_stop, **kwargs):
        progress({"stage": "loading data"})
        for variant in variants:
            progress({"stage": "training", "variant": variant, "phase": "fast"})
            gates[variant].wait(60)
            name = f"synthetic-planted-{variant}"
            shutil.copytree(app_runs / name, Path(target_dir) / name)
            progress({"stage": "done", "variant": variant, "phase": "fast"})
        return []

    monkeypatch.setenv("RECEXPLAIN_RUNS_DIR", str(runs_dir))
    monkeypatch.setenv("RECEXPLAIN_DATASET", "synthetic")
    monkeypatch.setattr(jobs, "default_runs", fake)
    overview = open_page()
    assert "First start" in overview.info[0].value
    assert any("Data set" in h.value for h in overview.subheader)  # shown before any model
    job = jobs.get_job(jobs.default_runs_key(runs_dir, DataConfig(dataset="synthetic"), "default"))
    at = open_page("pages/2_Compare.py")
    assert not at.exception and not any("Showing" in c.value for c in at.caption)
    gates["additive"].set()
    deadline = time.time() + 60
    while not any(e.get("stage") == "done" for e in job.events):
        assert time.time() < deadline
        time.sleep(0.05)
    at.run()
    assert not at.exception
    assert "Ready: additive" in at.info[0].value
    assert any(c.value == "Showing: additive" for c in at.caption)
    gates["multiplicative"].set()
    gates["hard"].set()
    assert job.wait(60) and job.error is None
    at.run()
    assert_clean(at)
    assert not any("First start" in i.value for i in at.info)
    assert any(c.value == "Showing: additive, multiplicative, hard" for c in at.caption)
