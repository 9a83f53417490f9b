"""The `recexplain` command line, in-process (fast) and once as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from recexplain.cli import main


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_then_evaluate_compare_recommend_explain(tmp_path, capsys, tiny_run):
    runs = str(tmp_path)
    code, out, _ = _run(capsys, "--runs-dir", runs, "train", "--dataset", "synthetic",
                        "--preset", "tiny", "--attention", "hard", "--max-epochs", "1",
                        "--run-id", "cli-hard")  # fmt: skip
    assert code == 0 and "saved run cli-hard" in out and "test ndcg@10" in out
    code, out, _ = _run(capsys, "--runs-dir", runs, "evaluate", "cli-hard", "--json")
    summary = json.loads(out)
    assert code == 0 and 0 <= summary["ndcg@10"]["mean"] <= 1
    code, out, _ = _run(capsys, "--runs-dir", runs, "compare", "cli-hard", str(tiny_run.path))
    assert code == 0 and "paired sign-flip test" in out and "cli-hard (hard)" in out
    user = str(tiny_run.user_ids[0])
    code, out, _ = _run(capsys, "--runs-dir", runs, "recommend", "cli-hard", "--user", user,
                        "-k", "5", "--json")  # fmt: skip
    recs = json.loads(out)["recommendations"]
    assert code == 0 and len(recs) == 5 and recs[0]["rank"] == 1
    item = str(recs[0]["item_id"])
    code, out, _ = _run(capsys, "--runs-dir", runs, "explain", "cli-hard", "--user", user,
                        "--item", item, "--json")  # fmt: skip
    attr = json.loads(out)
    assert code == 0 and attr["rank"] == 0 and attr["variant"] == "hard"
    assert sum(1 for h in attr["history"] if h["weight"] > 0) <= 1  # hard: one selected key
    code, out, _ = _run(capsys, "--runs-dir", runs, "runs")
    assert code == 0 and "cli-hard" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate", "../outside"], "invalid run id"),
        (["evaluate", "missing"], "no run at"),
        (["data", "info", "--dataset", "nope"], "nope"),
        (["data", "info", "--dataset", "file", "--path", "/no/such.csv"], "file not found"),
    ],
)
def test_bad_input_gives_one_line_errors_and_exit_2(tmp_path, capsys, argv, message):
    code, out, err = _run(capsys, "--runs-dir", str(tmp_path), *argv)
    assert code == 2 and message in err and "Traceback" not in err


def test_unknown_user_and_item(tiny_run, capsys):
    runs = str(tiny_run.path.parent)
    code, _, err = _run(capsys, "--runs-dir", runs, "recommend", tiny_run.run_id, "--user", "zz")
    assert code == 2 and "unknown user 'zz'" in err
    code, _, err = _run(capsys, "--runs-dir", runs, "explain", tiny_run.run_id, "--user",
                        str(tiny_run.user_ids[0]), "--item", "999999")  # fmt: skip
    assert code == 2 and "unknown item '999999'" in err


def test_console_script_entry_point():
    proc = subprocess.run([sys.executable, "-m", "recexplain.cli", "--help"], capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 0 and "recommend" in proc.stdout and "explain" in proc.stdout
