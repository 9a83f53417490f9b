"""`recexplain` command line: parse arguments, build a config, call one library function."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import re
import sys
from collections.abc import Sequence
from typing import Any

from recexplain import config as C

EXIT_USAGE = 2
# attribution methods of `explain` (recexplain.attributions.METHODS; kept here so --help is fast)
EXPLAIN_METHODS = ("attention", "rollout", "grad_x_input", "integrated_gradients", "occlusion")


def _data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--dataset",
        default="ml-100k",
        help="ml-100k | ml-1m | ml-20m | ml-25m | ml-latest-small | netflix | file",
    )
    g.add_argument("--path", help="folder (netflix) or CSV/TSV/Parquet file (file)")
    g.add_argument("--items-path", help="item metadata file for --dataset file")
    g.add_argument("--user-col", default="user_id")
    g.add_argument("--item-col", default="item_id")
    g.add_argument("--time-col", default="timestamp")
    g.add_argument("--rating-col", default=None)
    g.add_argument("--title-col", default="title")
    g.add_argument("--genres-col", default=None)
    g.add_argument(
        "--implicit-threshold", type=float, default=None, help="keep only ratings >= this value"
    )
    g.add_argument("--k-core", type=_int_arg, default=0,
                   help="keep users/items with >= k interactions")  # fmt: skip
    g.add_argument(
        "--drop-duplicates",
        action="store_true",
        help="drop repeated (user, item, timestamp) rows instead of failing",
    )
    g.add_argument("--offline", action="store_true", help="skip GroupLens; use the offline copy")
    g.add_argument("--cache-dir", default=None)  # fmt: skip


def _data_cfg(a: argparse.Namespace) -> C.DataConfig:
    columns = C.ColumnMap(
        user=a.user_col,
        item=a.item_col,
        timestamp=a.time_col,
        rating=a.rating_col,
        item_title=a.title_col,
        item_genres=a.genres_col,
    )
    return C.DataConfig(dataset=a.dataset, path=a.path, items_path=a.items_path, columns=columns,
                        implicit_threshold=a.implicit_threshold, k_core=a.k_core,
                        on_duplicate="drop" if a.drop_duplicates else "error",
                        offline=a.offline, cache_dir=a.cache_dir)  # fmt: skip


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--attention", choices=C.ATTENTION_VARIANTS, default="multiplicative")
    p.add_argument("--preset", choices=sorted(C.PRESETS), default="default")
    p.add_argument("--run-id", default=None, help="folder name under --runs-dir")
    p.add_argument("--overwrite", action="store_true", help="replace a run with the same id")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue a killed training of --run-id from its last epoch checkpoint",
    )
    g = p.add_argument_group("several processes or machines (jax.distributed; see README)")
    g.add_argument("--coordinator", default=None, help="host:port of process 0, e.g. 10.0.0.1:1234")
    g.add_argument("--num-processes", type=_int_arg, default=1, help="processes in the job")
    g.add_argument("--process-id", type=_int_arg, default=0,
                   help="this process, 0..num-processes-1")  # fmt: skip
    g.add_argument("--join-timeout", type=_int_arg, default=300,
                   help="seconds to wait for the other processes (default 300)")  # fmt: skip
    for f in dataclasses.fields(C.ModelConfig) + dataclasses.fields(C.TrainConfig):
        if f.name == "attention":
            continue
        flag = "--" + f.name.replace("_", "-")
        p.add_argument(flag, dest=f.name, default=None, help=f"override {f.name}")


INT_RANGE = (-(2**31), 2**31 - 1)  # integer flags: seeds and sizes (a bigger seed overflowed)


def _int_arg(text: str) -> int:
    """argparse type: an integer within INT_RANGE."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if not INT_RANGE[0] <= value <= INT_RANGE[1]:
        raise argparse.ArgumentTypeError(f"{value} is out of range {INT_RANGE[0]}..{INT_RANGE[1]}")
    return value


def _override(cfg: Any, a: argparse.Namespace) -> Any:
    changes = {}
    for f in dataclasses.fields(cfg):
        raw = getattr(a, f.name, None)
        if raw is None or f.name == "attention":
            continue
        current = getattr(cfg, f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(current, bool):
            changes[f.name] = raw.lower() in ("1", "true", "yes", "on")
            continue
        kind = int if current is None else type(current)
        try:
            changes[f.name] = _int_arg(raw) if kind is int else kind(raw)
        except (ValueError, argparse.ArgumentTypeError) as err:
            raise ValueError(f"{flag} {raw}: not a valid {kind.__name__} ({err})") from None
    return dataclasses.replace(cfg, **changes)


def _join(a: argparse.Namespace) -> None:
    """jax.distributed.initialize for --coordinator (before anything touches a device)."""
    if a.coordinator is None:
        if a.num_processes != 1 or a.process_id != 0:
            raise ValueError("--num-processes and --process-id need --coordinator host:port")
        return
    from recexplain import distributed

    distributed.initialize(a.coordinator, a.num_processes, a.process_id,
                           timeout_s=a.join_timeout)  # fmt: skip
    print(f"joined {a.coordinator}: {distributed.describe()}", flush=True)


def cmd_train(a: argparse.Namespace) -> int:
    _join(a)
    from recexplain.training import train

    model_cfg, train_cfg = C.preset(a.preset, a.attention)
    model_cfg, train_cfg = _override(model_cfg, a), _override(train_cfg, a)
    if a.resume and not a.run_id:
        raise ValueError("--resume needs the --run-id of the interrupted training")
    run = train(_data_cfg(a), model_cfg, train_cfg, runs_dir=a.runs_dir, run_id=a.run_id,
                overwrite=a.overwrite, resume=a.resume)  # fmt: skip
    if run is None:
        print(f"process {a.process_id}: training finished; process 0 saves the run")
        return 0
    test = run.metrics["test"]
    print(f"saved run {run.run_id} -> {run.path}")
    print(f"stopped: {run.metrics['stop_reason']} (best epoch {run.metrics['best_epoch']}, "
          f"{run.metrics['train_seconds']:.0f} s)")  # fmt: skip
    for m in ("ndcg@10", "hr@10", "mrr@10"):
        v = test[m]
        print(f"test {m:8s} {v['mean']:.4f}  [{v['ci_low']:.4f}, {v['ci_high']:.4f}]")
    return 0


def cmd_data(a: argparse.Namespace) -> int:
    from recexplain.data import dataset_info, fetch, load_dataset

    if a.action == "fetch":
        if a.dataset in ("netflix", "file", "synthetic"):
            raise ValueError(f"'data fetch' downloads named MovieLens sets, not {a.dataset!r}")
        print(fetch(a.dataset, cache_dir=a.cache_dir, offline=a.offline, progress=print))
        return 0
    info = dataset_info(load_dataset(_data_cfg(a), progress=None if a.json else print))
    if a.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        for key, value in info.items():
            print(f"{key:>16}: {value}")
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    from recexplain.evaluation import rank_all, summarize
    from recexplain.runs import load_run, load_split

    run = load_run(a.run, a.runs_dir)
    _, split = load_split(run)
    ranking = rank_all(run.scorer(), split, a.which, run.max_len)
    summary = summarize(ranking, split.item_popularity(), split.n_items, seed=0)
    if a.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"run {run.run_id} ({run.label}), {a.which}, {len(ranking.users)} users, full ranking")
    for name, v in summary.items():
        ci = f"  [{v['ci_low']:.4f}, {v['ci_high']:.4f}]" if "ci_low" in v else ""
        print(f"{name:>15} {v['mean']:.4f}{ci}")
    return 0


def cmd_compare(a: argparse.Namespace) -> int:
    from recexplain.evaluation import compare
    from recexplain.runs import RunError, load_run

    runs = [load_run(r, a.runs_dir) for r in a.runs]
    if len({r.fingerprint for r in runs}) > 1:
        raise RunError("runs were trained on different data (fingerprints differ)")
    metrics = tuple(a.metrics.split(","))
    labels = [f"{r.run_id} ({r.label})" for r in runs]
    table = compare(dict(zip(labels, (r.ranking("test") for r in runs), strict=True)),
                    metrics=metrics)  # fmt: skip
    if a.json:
        print(table.to_json(orient="records", indent=2))
        return 0
    print(f"test set, paired sign-flip test against: {table.attrs['reference']}")
    for m in metrics:
        table[m] = [
            f"{v:.4f} [{lo:.4f}, {hi:.4f}]"
            for v, lo, hi in zip(table[m], table[f"{m}_ci_low"], table[f"{m}_ci_high"], strict=True)
        ]
        table[f"p({m})"] = table[f"{m}_p"].map(lambda p: "-" if p != p else f"{p:.4f}")
    print(table[["run", *metrics, *[f"p({m})" for m in metrics]]].to_string(index=False))
    return 0  # fmt: skip


def _user_history(run, user: str):
    from recexplain.runs import load_split

    ds, split = load_split(run)
    u = run.user_index(user)
    return ds, split, u, split.history(u, "test")


def cmd_recommend(a: argparse.Namespace) -> int:
    from recexplain.explain import recommend
    from recexplain.runs import load_run

    run = load_run(a.run, a.runs_dir)
    _, split, u, history = _user_history(run, a.user)
    recs = recommend(run, history, a.k)
    titles = run.items["title"]
    recs["because"] = [", ".join(f"{titles[i]} ({w:.0%})" for i, w in best)
                       for best in recs["top_history"]]  # fmt: skip
    if a.json:
        out = recs.drop(columns=["weights"]).to_dict(orient="records")
        print(json.dumps({"user": a.user, "recommendations": out}, indent=2, default=str))
        return 0
    held_out = split.test[u]
    print(f"user {a.user}: {len(history)} items seen; held-out test item: {titles[held_out]}")
    print(recs[["rank", "item_id", "title", "score", "because"]].to_string(index=False))
    return 0


def cmd_explain(a: argparse.Namespace) -> int:
    from recexplain.explain import explain, sentence, to_json
    from recexplain.runs import load_run

    run = load_run(a.run, a.runs_dir)
    _, _, _, history = _user_history(run, a.user)
    attr = explain(run, history, run.item_index(a.item), a.method)
    if a.json:
        print(json.dumps({"user": a.user, **to_json(attr, run.items)}, indent=2, default=str))
        return 0
    title = run.items["title"][attr.item]
    print(f"{title}: score {attr.score:.4f}, rank {attr.rank + 1} among unseen items "
          f"({attr.variant}, {attr.method})")  # fmt: skip
    print(sentence(attr, run.items))
    df = attr.frame(run.items)[["position", "title", "weight"]]
    print(df.to_string(index=False))
    return 0


def cmd_faithfulness(a: argparse.Namespace) -> int:
    from recexplain.faithfulness import faithfulness_report, report_table, write_report
    from recexplain.runs import load_run

    run = load_run(a.run, a.runs_dir)
    report = faithfulness_report(run, users=a.users, seed=a.seed)
    json_path, md_path = write_report(run, report)
    print(json_path.read_text() if a.json else report_table(report))
    if not a.json:
        print(f"wrote {json_path} and {md_path}")
    return 0


def cmd_quickstart(a: argparse.Namespace) -> int:
    import time

    from recexplain.quickstart import FAST, default_runs, phases

    start = time.perf_counter()
    stages = phases(a.preset)[:1] if a.fast_only else phases(a.preset)
    for n, stage in enumerate(stages, 1):
        runs = default_runs(a.runs_dir, data_cfg=_data_cfg(a), preset_name=stage)
        what = "fast models" if stage == FAST else f"preset {stage!r}"
        print(f"[{n}/{len(stages)}] {what} ready after {time.perf_counter() - start:.0f} s")
        _print_comparison(runs)
    return 0


def _print_comparison(runs: list) -> None:
    from recexplain.evaluation import compare

    if not runs:
        print("no run finished")
        return
    table = compare({r.label: r.ranking("test") for r in runs}, metrics=("ndcg@10", "hr@10"))
    print(f"{runs[0].metrics['protocol']}; test users: {len(runs[0].ranking().users)}")
    for d in table.to_dict(orient="records"):
        p = "reference" if d["ndcg@10_p"] != d["ndcg@10_p"] else f"p={d['ndcg@10_p']:.3f}"
        print(f"{d['run']:>15}  NDCG@10 {d['ndcg@10']:.4f} [{d['ndcg@10_ci_low']:.4f}, "
              f"{d['ndcg@10_ci_high']:.4f}]  HR@10 {d['hr@10']:.4f}  ({p})")  # fmt: skip


def cmd_runs(a: argparse.Namespace) -> int:
    from recexplain.runs import list_runs

    df = list_runs(a.runs_dir)
    print(df.to_string(index=False) if len(df) else f"no runs in {a.runs_dir}")
    return 0


def _models(text: str | None) -> tuple[str, ...]:
    """--models: a comma list, or every registered baseline when not given."""
    from recexplain.baselines import BASELINES

    return BASELINES if not text else tuple(m for m in text.split(",") if m)


def cmd_leaderboard(a: argparse.Namespace) -> int:
    from recexplain import leaderboard

    def say(event: dict) -> None:
        if "stage" in event and not a.json:
            keys = ("stage", "model", "variant", "seed", "setting", "of", "valid_ndcg@10")
            print(" ".join(f"{k}={event[k]}" for k in keys if k in event), flush=True)

    df = leaderboard.build(_data_cfg(a), a.runs_dir, a.seeds, say, preset_name=a.preset,
                           models=_models(a.models),
                           retrain=a.retrain)  # fmt: skip
    md, csv = leaderboard.write(df, a.runs_dir)
    print(df.to_json(orient="records", indent=2) if a.json else md.read_text())
    if not a.json:
        print(f"wrote {md} and {csv}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recexplain", description=__doc__)
    p.add_argument("--runs-dir", default="runs", help="where runs are saved (default: runs)")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("data", help="download or describe a data set")
    d.add_argument("action", choices=["fetch", "info"])
    d.add_argument("--json", action="store_true")
    _data_args(d)
    t = sub.add_parser("train", help="train one attention variant and save a run")
    _data_args(t)
    _train_args(t)
    e = sub.add_parser("evaluate", help="re-rank a run's test (or valid) users from its checkpoint")
    e.add_argument("run")
    e.add_argument("--which", choices=["test", "valid"], default="test")
    e.add_argument("--json", action="store_true")
    c = sub.add_parser("compare", help="metrics with CIs and paired-test p-values")
    c.add_argument("runs", nargs="+")
    c.add_argument("--metrics", default="ndcg@10,hr@10,mrr@10")
    c.add_argument("--json", action="store_true")
    r = sub.add_parser("recommend", help="top-k for a user with the history items behind each")
    r.add_argument("run")
    r.add_argument("--user", required=True, help="original user id")
    r.add_argument("-k", type=_int_arg, default=10)
    r.add_argument("--json", action="store_true")
    x = sub.add_parser("explain", help="weight of each history item for (user, item)")
    x.add_argument("run")
    x.add_argument("--user", required=True, help="original user id")
    x.add_argument("--item", required=True, help="original item id")
    x.add_argument("--method", default="attention", choices=EXPLAIN_METHODS)
    x.add_argument("--json", action="store_true")
    f = sub.add_parser("faithfulness", help="score every attribution method of a run")
    f.add_argument("run")
    f.add_argument("--users", type=_int_arg, default=200, help="test users sampled (default 200)")
    f.add_argument("--seed", type=_int_arg, default=0)
    f.add_argument("--json", action="store_true", help="print the JSON report, not the table")
    sub.add_parser("runs", help="list saved runs")
    q = sub.add_parser(
        "quickstart",
        help="train (or reuse) the three variants and compare them: with the default preset, "
        "fast models first (about a minute each on 2 CPU cores for ML-100K), then the "
        "full-quality ones (a few minutes each), which replace them",
    )
    q.add_argument("--preset", choices=sorted(C.PRESETS), default="default")
    q.add_argument("--fast-only", action="store_true",
                   help="stop after the fast models (with --preset default)")  # fmt: skip
    _data_args(q)
    lb = sub.add_parser("leaderboard", help="train or reuse every model; table with CIs, p-values")
    lb.add_argument("--seeds", type=_int_arg, default=1, help="seeds per trained model (default 1)")
    lb.add_argument("--preset", choices=sorted(C.PRESETS), default="default")
    lb.add_argument("--models", default=None,
                    help="baselines to include, comma-separated (default: all of them: pop, "
                         "itemknn, ease, bpr, sasrec, markov, multistep)")  # fmt: skip
    lb.add_argument("--retrain", action="store_true", help="refit baselines even if saved")
    lb.add_argument("--json", action="store_true")
    _data_args(lb)
    return p


COMMANDS = {"data": cmd_data, "train": cmd_train, "evaluate": cmd_evaluate,
            "compare": cmd_compare, "recommend": cmd_recommend, "explain": cmd_explain,
            "runs": cmd_runs, "quickstart": cmd_quickstart}  # fmt: skip
COMMANDS["faithfulness"] = cmd_faithfulness
COMMANDS["leaderboard"] = cmd_leaderboard


_TERMINAL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # all control characters but \t, \n


def printable(text: str) -> str:
    """Text with control characters written out as \\xNN: a title holding an escape sequence
    must not clear, retitle or recolour the terminal."""
    return _TERMINAL.sub(lambda m: f"\\x{ord(m[0]):02x}", text)


class _Printable(io.TextIOBase):
    """A text stream that passes everything written through `printable`."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(printable(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 on bad input, with a one-line message)."""
    args = build_parser().parse_args(argv)
    try:
        with contextlib.redirect_stdout(_Printable(sys.stdout)):
            return COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError) as err:  # DataError, RunError are ValueErrors
        print(printable(f"recexplain {args.command}: error: {err}"), file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
