"""Hardening: fuzzed input, exploding numerics, path traversal and a scan for unsafe calls.

Fuzzing (hypothesis): every generated case either loads or fails with a recexplain error whose
message names the problem; nothing else escapes and nothing is written to runs/. Case counts
(together >= 1,000 per run of this file): data files 300 + 150, uploads 150, URL parameters
250 (the app's parameter handling without a browser) + 18 (AppTest pages), CLI arguments 200.
"""

from __future__ import annotations

import ast
import io
import math
import re
import shutil
import string
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from recexplain import cli, export, jobs
from recexplain.config import ColumnMap, DataConfig, ModelConfig, TrainConfig
from recexplain.data import load_dataset
from recexplain.runs import RunError, check_run_id, load_run
from recexplain.sources import DataError

ROOT = Path(__file__).resolve().parents[1]


def fuzz(cases: int) -> settings:
    """`cases` generated inputs, the same ones on every run (a failure reproduces)."""
    return settings(
        max_examples=cases,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


# -- data files -----------------------------------------------------------------------------------
CELL = st.one_of(
    st.integers(-3, 40).map(str),
    st.sampled_from(["", " ", "NaN", "null", "1e309", "-0", "0x1F", "2024-01-01", "1.5", "abc"]),
    st.text(alphabet=string.printable + "éü\u202e\x00", max_size=6),
)
HEADERS = st.lists(
    st.sampled_from(["user", "item", "ts", "rating", "extra", "user ", "", "item"]),
    min_size=0,
    max_size=5,
)


@st.composite
def csv_files(draw) -> bytes:
    """Mostly-valid interaction files with the mistakes people make: missing or duplicated
    columns, ragged rows, text in number columns, empty cells, odd encodings and separators."""
    clean = draw(st.booleans())  # half the files are valid but for their size and order
    header = ["user", "item", "ts", "rating"] if clean else draw(HEADERS)
    sep = "," if clean else draw(st.sampled_from([",", "\t", ";"]))
    rows = [] if clean else draw(st.lists(st.lists(CELL, min_size=0, max_size=6), max_size=12))
    good = draw(st.lists(st.tuples(st.integers(1, 6), st.integers(1, 9), st.integers(0, 10**6)),
                         max_size=30))  # fmt: skip
    lines = [sep.join(header)] + [sep.join(r) for r in rows]
    lines += [f"{u}{sep}{i}{sep}{t}{sep}4" for u, i, t in good]
    draw(st.randoms()).shuffle(lines[1:])  # a shuffled view; the header stays first
    text = "\n".join(lines) + draw(st.sampled_from(["", "\n", "\r\n", "\n\n"]))
    return text.encode(draw(st.sampled_from(["utf-8", "utf-8", "latin-1"])), errors="replace")


MAPPING = ColumnMap(user="user", item="item", timestamp="ts", rating="rating")


def _load_or_clear_error(path: Path, cache: Path, **extra) -> None:
    cfg = DataConfig(dataset="file", path=str(path), columns=MAPPING, cache_dir=str(cache),
                     **extra)  # fmt: skip
    try:
        ds = load_dataset(cfg)
    except DataError as err:
        message = str(err)
        event("clear error: " + re.sub(r"[^a-z ]", "", message.split(": ", 1)[-1])[:40])
        assert path.name in message or "column" in message or "interactions" in message, message
        assert "Traceback" not in message
        return
    event("loaded")  # the canonical table is consistent
    df = ds.interactions
    assert len(df) > 0 and df["user"].min() >= 0 and df["item"].min() >= 1
    assert len(ds.fingerprint) == 64


@fuzz(300)
@given(data=csv_files(), threshold=st.sampled_from([None, None, 3.0]))
def test_fuzz_csv_interaction_files(data, threshold, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-csv")
    path = folder / "ratings.csv"
    path.write_bytes(data)
    _load_or_clear_error(path, folder / "cache", implicit_threshold=threshold)


@st.composite
def parquet_files(draw) -> bytes:
    n = draw(st.integers(0, 25))
    kinds = {
        "int": st.integers(-(2**40), 2**40),
        "small": st.integers(0, 8),
        "float": st.floats(allow_nan=True, allow_infinity=True),
        "text": st.text(max_size=5),
        "none": st.none(),
    }
    columns = {}
    for name in draw(st.lists(st.sampled_from(["user", "item", "ts", "rating", "x"]),
                              unique=True, max_size=5)):  # fmt: skip
        kind = draw(st.sampled_from(list(kinds)))
        values = draw(st.lists(kinds[kind], min_size=n, max_size=n))
        columns[name] = pd.Series(values, dtype="object" if kind in ("text", "none") else None)
    buf = io.BytesIO()
    pd.DataFrame(columns).to_parquet(buf)
    raw = buf.getvalue()
    if draw(st.booleans()) and len(raw) > 8:  # a damaged file
        cut = draw(st.integers(4, len(raw) - 1))
        raw = raw[:cut] + draw(st.binary(max_size=8))
    return raw


@fuzz(150)
@given(data=parquet_files())
def test_fuzz_parquet_interaction_files(data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-pq")
    path = folder / "ratings.parquet"
    path.write_bytes(data)
    _load_or_clear_error(path, folder / "cache")


UPLOAD_NAMES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "../../etc/passwd.csv",
            "..\\..\\x.csv",
            "/abs/path.parquet",
            "a/b/c.tsv",
            "ok.csv",
            "x.CSV",
            "evil.csv.exe",
            ".csv",
            "<img src=x onerror=alert(1)>.csv",
            "con.csv",
            "a\x00b.csv",
        ]
    ),  # fmt: skip
)


@fuzz(150)
@given(name=UPLOAD_NAMES, data=st.one_of(csv_files(), st.binary(max_size=200)))
def test_fuzz_uploads_stay_in_their_folder(name, data, tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.mktemp("fuzz-up")
    monkeypatch.setenv("RECEXPLAIN_CACHE", str(cache))
    try:
        path = jobs.save_upload(name, data, limit_mb=1)
    except DataError as err:
        assert re.search(r"unsupported file type|empty|limit", str(err)), str(err)
        assert not (cache / "uploads").exists() or not any((cache / "uploads").rglob("*.*"))
        return
    uploads = (cache / "uploads").resolve()
    assert path.resolve().parent.parent == uploads  # <cache>/uploads/<sha>/<name>
    assert re.fullmatch(r"[A-Za-z0-9._-]+", path.name) and path.read_bytes() == data
    try:
        names, head = jobs.file_columns(path)
    except DataError as err:
        assert path.name in str(err)
    else:
        assert isinstance(names, list) and isinstance(head, pd.DataFrame)


def test_an_oversized_upload_is_refused_before_it_is_stored(tmp_path, monkeypatch):
    monkeypatch.setenv("RECEXPLAIN_CACHE", str(tmp_path))
    with pytest.raises(DataError, match="over the 1 MB limit"):
        jobs.save_upload("big.csv", b"u,i,t\n" + b"1,2,3\n" * 200_000, limit_mb=1)
    assert not (tmp_path / "uploads").exists()


# -- URL parameters -------------------------------------------------------------------------------
PARAM_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "../../etc/passwd",
            "..",
            "/",
            "%2e%2e%2f",
            "a/../../b",
            "C:\\x",
            "~root",
            "<script>alert(1)</script>",
            "'\"><img src=x onerror=alert(1)>",
            "\x00",
            "1e9999",
            "-1",
            "0",
            "synthetic-additive",
            " synthetic-hard",
        ]
    ),  # fmt: skip
)


@fuzz(250)
@given(run=PARAM_TEXT, dataset=PARAM_TEXT, user=PARAM_TEXT, item=PARAM_TEXT)
def test_fuzz_url_parameters_never_leave_their_folders(
    run, dataset, user, item, app_runs, tmp_path_factory
):
    """What the pages do with ?run=, ?dataset=, ?user=, ?item=: run ids are checked before
    any path is built, data set names are checked against the known sources, and
    permalinks encode every value."""
    cache = tmp_path_factory.getbasetemp() / "fuzz-url-cache"
    for part in run.split(","):
        try:
            check_run_id(part)
        except RunError as err:
            assert "invalid run id" in str(err)
            continue
        try:  # a valid id can only name a folder directly inside runs/
            load_run(app_runs / part)
        except (RunError, FileNotFoundError) as err:
            assert part in str(err)
    if dataset not in KNOWN_DATASETS:  # unknown names fail before any path is built
        with pytest.raises(DataError, match="unknown data set"):
            load_dataset(DataConfig(dataset=dataset, cache_dir=str(cache)))
        leftovers = [p for p in cache.rglob("*") if p.is_file()]
        assert not leftovers, leftovers
    params = {"run": run, "dataset": dataset, "user": user, "item": item}
    link = export.permalink_url("http://127.0.0.1:8501/", "explain", params)
    assert link.startswith("http://127.0.0.1:8501/explain")
    assert not re.search(r"[<>\"' \x00]", link), link  # every value is percent-encoded
    assert "/.." not in link.split("?")[0]


def test_url_run_ids_are_checked_before_any_path_is_built(app_runs, tmp_path, monkeypatch):
    """A run folder outside runs/ (even one that loads) is never reached through an id."""
    from recexplain import dashboard

    outside = tmp_path / "elsewhere"
    shutil.copytree(app_runs / "synthetic-planted-additive", outside)
    monkeypatch.chdir(tmp_path)  # "elsewhere" is now a valid relative path to a real run
    for bad in ["../elsewhere", str(outside), "..", "/etc", "a/b", "x\\..\\y", "", ".hidden",
                "a" * 101]:  # fmt: skip
        with pytest.raises(RunError, match="invalid run id"):
            check_run_id(bad)
        with pytest.raises(RunError, match="invalid run id"):
            dashboard.get_run(bad, app_runs)
    with pytest.raises(RunError, match="no run"):  # a plain name is looked up in runs/ only
        dashboard.get_run("elsewhere", app_runs)
    assert dashboard.get_run("synthetic-planted-additive", app_runs).run_id.endswith("additive")


KNOWN_DATASETS = {"ml-100k", "ml-1m", "ml-20m", "ml-25m", "ml-latest-small", "netflix", "file",
                  "synthetic", "synthetic-planted"}  # fmt: skip
URL_CASES = [
    {"user": "../../etc/passwd", "item": "<script>alert(1)</script>"},
    {"run": "../../etc", "user": "1"},
    {"run": "synthetic-additive,../x", "item": "1e9999"},
    {"dataset": "../../../root", "user": "\x00"},
    {"method": "__import__('os')", "item": "-1"},
    {"view": "<img src=x onerror=alert(1)>", "user": "9" * 40},
]


@pytest.mark.parametrize("page", ["pages/3_Explain.py", "pages/5_Share.py", "pages/2_Compare.py"])
def test_hostile_links_are_messages_on_every_page(page, app_env):
    """6 AppTest runs per page: hostile ?run=, ?user=, ?item=, ?dataset=, ?method=, ?view=
    values give a message on the page, never an exception, and nothing new appears in runs/."""
    from streamlit.testing.v1 import AppTest

    before = sorted(p.name for p in app_env.iterdir())
    for params in URL_CASES:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
        for key, value in params.items():
            at.query_params[key] = value
        at.run()
        at.switch_page(page).run()
        assert not at.exception, (params, [e.value for e in at.exception])
        if not page.endswith("Compare.py"):  # Compare takes no link parameters
            assert at.error or at.warning, params  # a value the page uses is bad: it says so
        shown = " ".join(str(getattr(e, "value", "")) for e in at.markdown)
        assert "<script>" not in shown and "onerror=" not in shown.replace("onerror\\=", "")
    assert sorted(p.name for p in app_env.iterdir()) == before


# -- CLI arguments --------------------------------------------------------------------------------
ARG = st.one_of(
    PARAM_TEXT,
    st.sampled_from(
        [
            "--user",
            "--item",
            "-k",
            "--json",
            "--users",
            "--runs-dir",
            "--dataset",
            "--offline",
            "--seed",
            "--method",
            "0",
            "1",
            "-5",
            "nan",
            "inf",
            "tiny-additive",
            "synthetic",
        ]
    ),  # fmt: skip
)
COMMANDS = ["evaluate", "compare", "recommend", "explain", "data", "faithfulness", "train"]


@st.composite
def cli_args(draw) -> tuple[str, list[str]]:
    """Half free-form argument lists, half well-formed commands with fuzzed values."""
    command = draw(st.sampled_from(COMMANDS))
    if draw(st.booleans()):
        return command, draw(st.lists(ARG, max_size=6))
    run = draw(st.one_of(st.just("tiny-additive"), PARAM_TEXT))
    value = st.one_of(st.integers(-5, 400).map(str), PARAM_TEXT)
    args = {
        "evaluate": [run],
        "compare": [run, draw(st.one_of(st.just("tiny-additive"), PARAM_TEXT))],
        "recommend": [run, "--user", draw(value), "-k", draw(value)],
        "explain": [
            run,
            "--user",
            draw(value),
            "--item",
            draw(value),
            "--method",
            draw(st.sampled_from(["attention", "occlusion", "rollout", "x"])),
        ],
        "data": ["--dataset", draw(PARAM_TEXT)],
        "faithfulness": [run, "--users", draw(value)],
        "train": ["--attention", draw(st.sampled_from(["hard", "soft"])), "--max-len", draw(value)],
    }[command]
    return command, [a for a in args if a]


@fuzz(200)
@given(case=cli_args())
def test_fuzz_cli_arguments(case, tiny_run, tmp_path_factory, capsys):
    """Bad arguments end with exit status 2 and a one-line message; nothing is written."""
    command, args = case
    runs_dir = tiny_run.path.parent
    before = sorted(p.name for p in runs_dir.iterdir())
    argv = [command, *args]
    if command == "train":  # only the argument checks: a valid train command is not run here
        argv += ["--run-id", "../escape", "--preset", "tiny", "--dataset", "no-such-set"]
    if command == "data":
        argv = ["data", "info", *args, "--offline"]
    argv = ["--runs-dir", str(runs_dir), *argv]  # a global option: before the command
    try:
        status = cli.main(argv)
    except SystemExit as exit_:  # argparse: usage error
        assert exit_.code in (0, 2)
        status = exit_.code
    err = capsys.readouterr().err
    event(f"{command}: exit {status}" + (" (argparse)" if "usage:" in err else ""))
    assert status in (0, 2), (argv, status, err)
    if status == 2:
        assert "Traceback" not in err and err.strip(), argv
    assert sorted(p.name for p in runs_dir.iterdir()) == before


# -- numerics -------------------------------------------------------------------------------------
def test_an_exploding_learning_rate_stops_with_a_message_and_keeps_a_loadable_run(
    planted, tmp_path
):
    from recexplain.training import train

    model_cfg = ModelConfig(attention="multiplicative", d_model=16, n_blocks=1, n_heads=1,
                            d_attn=8, max_len=12)  # fmt: skip
    cfg = TrainConfig(batch_size=64, n_negatives=16, max_epochs=6, eval_batch=128, bootstrap=20,
                      learning_rate=1e30, warmup_steps=1, clip_norm=1e30, min_epochs=1)  # fmt: skip
    run = train(DataConfig(dataset="synthetic"), model_cfg, cfg, runs_dir=tmp_path,
                run_id="explode", dataset=planted[0], verbose=False)  # fmt: skip
    reason = run.metrics["stop_reason"]
    assert "non-finite" in reason and "epoch" in reason, reason
    again = load_run(tmp_path / "explode")  # the last good parameters, all finite
    leaves = [np.asarray(x) for x in jax_leaves(again.model)]
    assert leaves and all(np.isfinite(x).all() for x in leaves)
    assert math.isfinite(again.metrics["test"]["ndcg@10"]["mean"])
    assert not [p for p in tmp_path.iterdir() if p.name != "explode"]  # no temp folders left


def jax_leaves(model) -> list:
    import jax
    from flax import nnx

    return jax.tree.leaves(nnx.state(model, nnx.Param))


# -- security scan --------------------------------------------------------------------------------
BANNED_CALLS = {"eval", "exec", "compile", "__import__"}
BANNED_MODULES = {"pickle", "cPickle", "dill", "shelve", "marshal", "cloudpickle", "joblib"}
BANNED_ATTRS = {"read_pickle", "to_pickle", "load_pickle"}


def _sources() -> list[Path]:
    files = [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]
    files += sorted((ROOT / "recexplain").rglob("*.py"))
    return files


def test_no_pickle_eval_or_exec_anywhere_in_the_code():
    problems = []
    for path in _sources():
        tree = ast.parse(path.read_text(), filename=str(path))
        where = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                hit = [n for n in names if n.split(".")[0] in BANNED_MODULES]
                if hit:
                    problems.append(f"{where}:{node.lineno} imports {hit}")
            elif isinstance(node, ast.Call):
                fn = node.func
                if isinstance(fn, ast.Name) and fn.id in BANNED_CALLS:
                    problems.append(f"{where}:{node.lineno} calls {fn.id}()")
                if isinstance(fn, ast.Attribute) and fn.attr in BANNED_ATTRS:
                    problems.append(f"{where}:{node.lineno} calls .{fn.attr}()")
                for kw in node.keywords:  # np.load(..., allow_pickle=True), yaml unsafe loaders
                    if kw.arg == "allow_pickle" and not (
                        isinstance(kw.value, ast.Constant) and kw.value.value is False
                    ):
                        problems.append(f"{where}:{node.lineno} allow_pickle")
                    if kw.arg == "shell" and not (
                        isinstance(kw.value, ast.Constant) and kw.value.value is False
                    ):
                        problems.append(f"{where}:{node.lineno} subprocess shell=")
                if (
                    isinstance(fn, ast.Attribute)
                    and fn.attr == "load"
                    and getattr(fn.value, "id", "") in ("np", "numpy")
                    and not any(k.arg == "allow_pickle" for k in node.keywords)
                ):
                    problems.append(f"{where}:{node.lineno} np.load without allow_pickle=False")
    assert not problems, problems


def test_the_scan_finds_what_it_looks_for(tmp_path, monkeypatch):
    """The scanner itself can fail: a planted file with each banned call is reported."""
    bad = tmp_path / "recexplain"
    bad.mkdir()
    (bad / "evil.py").write_text(
        "import pickle\nimport numpy as np\neval('1')\nexec('x=1')\nnp.load('f')\n"
        "import pandas as pd\npd.read_pickle('f')\n"
    )
    (tmp_path / "app.py").write_text("")
    (tmp_path / "pages").mkdir()
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    with pytest.raises(AssertionError) as caught:
        test_no_pickle_eval_or_exec_anywhere_in_the_code()
    text = str(caught.value)
    for what in ("imports ['pickle']", "calls eval()", "calls exec()", "np.load", "read_pickle"):
        assert what in text, what


def test_the_app_binds_to_localhost_with_xsrf_protection_and_bounded_uploads():
    import tomllib

    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["address"] == "127.0.0.1"
    assert cfg["server"]["enableXsrfProtection"] is True
    assert cfg["server"]["maxUploadSize"] == jobs.UPLOAD_LIMIT_MB
    assert cfg["client"]["showErrorDetails"] in ("type", "none", False)
    assert math.isfinite(jobs.UPLOAD_LIMIT_MB) and jobs.UPLOAD_LIMIT_MB <= 200


def test_security_doc_exists_and_names_the_boundaries():
    text = (ROOT / "docs" / "SECURITY.md").read_text()
    for needle in ("upload", "pickle", "127.0.0.1", "XSRF", "escape", "path", "runs/"):
        assert needle.lower() in text.lower(), needle
