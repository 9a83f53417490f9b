"""Peak memory of each baseline's fit and validation ranking on synthetic catalogs of 10k-60k items.

    python benchmarks/baseline_memory.py [--items 10000,25000,60000]
        [--models pop,itemknn,ease,markov,multistep,bpr] [--ease-budget-gb G] [--code DIR]
        [--out baseline_memory.md]

Data: `synthetic.synthetic_log` shaped like the held-out set of issue 15 (31k users, 23.7k items,
287k interactions: 1.31 users per item, 9.26 interactions per user, at least 3 each): Zipf-like
item popularity (p ~ 1 / (rank + 10)^0.9), log-normal user activity, items drawn independently
(so nearly every consecutive pair is a new transition: the worst case for the transition
tables), seed 0; split leave-last-out like every data set.

Each (catalog, model) runs in its own subprocess (a fresh interpreter, so the peaks do not mix),
which builds the split, reads its RSS (VmRSS), fits one knob setting, reads its peak RSS
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`), ranks every user's validation target (full
ranking, as tuning does per setting) and reads the peak again. Knobs are the most memory-hungry
of the default grid (item-kNN k = 400; multi-step 20 steps). --code runs the children on another
copy of the package (e.g. an older commit unpacked with `git archive`) to compare. Writes
benchmarks/results/<out>.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from common import write_table

KNOBS = {"pop": {}, "itemknn": {"k": 400, "shrink": 0.0}, "ease": {"lam": 100.0},
         "markov": {}, "multistep": {"steps": 20, "decay": 0.9, "normalize": False},
         "bpr": {"dim": 64, "lr": 1e-3, "reg": 1e-4, "max_epochs": 1, "patience": 1}}  # fmt: skip
MIB = 2**20
CHECKOUT = Path(__file__).resolve().parents[1]


def synthetic_split(n_items: int, seed: int = 0):
    """Leave-last-out split of a synthetic log with n_items items (see the module docstring)."""
    from types import SimpleNamespace

    import numpy as np
    import pandas as pd

    from recexplain.split import leave_last_out
    from recexplain.synthetic import synthetic_log

    n_users = round(1.31 * n_items)
    log = synthetic_log(n_users, n_items, round(9.26 * n_users), seed=seed, min_per_user=3)
    frame = pd.DataFrame({"user": log["user_id"].to_numpy() - 1, "item": log["item_id"]})
    return leave_last_out(SimpleNamespace(interactions=frame, user_ids=np.arange(n_users),
                                          n_items=n_items))  # fmt: skip


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(n_items: int, name: str, ease_budget_gb: float | None, code: str | None) -> dict:
    """Fit + validation ranking of one baseline in this process; returns the measurements."""
    import recexplain
    from recexplain import baselines
    from recexplain.early_stopping import validation_ndcg

    where = Path(recexplain.__file__).parent.parent
    assert where.samefile(code or CHECKOUT), f"measuring {where}, not {code or CHECKOUT}"

    split = synthetic_split(n_items)
    knobs = dict(KNOBS[name])
    if name == "ease" and ease_budget_gb is not None:
        knobs["max_bytes"] = int(ease_budget_gb * 2**30)
    out = {"users": split.n_users, "interactions": int(len(split.train_items) + 2 * len(
        split.eval_users)), "rss_before": _rss_mib()}  # fmt: skip
    start = time.perf_counter()
    try:
        model, _ = baselines._fit(name, split, knobs, 0, None, False)
    except ValueError as err:  # CatalogTooLarge: EASE's refusal, with the memory it needs
        return {**out, "refused": str(err)}
    out.update(fit_s=time.perf_counter() - start, peak_fit=_peak_mib())
    params = model.params() if hasattr(model, "params") else {}
    out["model_mib"] = sum(getattr(v, "nbytes", 0) for v in params.values()) / MIB
    start = time.perf_counter()
    ndcg = validation_ndcg(baselines._scorer(name, model), split, baselines.INPUT_LEN)
    out.update(rank_s=time.perf_counter() - start, peak_rank=_peak_mib(), valid_ndcg=ndcg)
    return out


def _run_child(args, n_items: int, name: str) -> dict:
    cmd = [sys.executable, __file__, "--child", f"{n_items}:{name}"]
    if args.ease_budget_gb is not None:
        cmd += ["--ease-budget-gb", str(args.ease_budget_gb)]
    env = dict(os.environ)
    if args.code:  # first on the path (the child's own folder, benchmarks/, holds no package)
        cmd += ["--code", args.code]
        env["PYTHONPATH"] = os.pathsep.join([args.code, env.get("PYTHONPATH", "")])
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"failed": f"exit {done.returncode}: {tail}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _row(n_items: int, name: str, r: dict) -> dict:
    def mib(key: str) -> str:
        return f"{r[key]:,.0f}" if key in r else "-"

    note = r.get("refused") or r.get("failed") or f"valid NDCG@10 {r['valid_ndcg']:.4f}"
    return {"items": f"{n_items:,}", "users": f"{r.get('users', 0):,}",
            "interactions": f"{r.get('interactions', 0):,}", "model": name,
            "knobs": KNOBS[name] or "-", "RSS before fit MiB": mib("rss_before"),
            "peak RSS fit MiB": mib("peak_fit"), "peak RSS fit + ranking MiB": mib("peak_rank"),
            "model MiB": f"{r['model_mib']:.1f}" if "model_mib" in r else "-",
            "fit s": f"{r['fit_s']:.1f}" if "fit_s" in r else "-",
            "ranking s": f"{r['rank_s']:.1f}" if "rank_s" in r else "-", "note": note}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", default="10000,25000,60000")
    parser.add_argument("--models", default=",".join(KNOBS))
    parser.add_argument("--ease-budget-gb", type=float, default=None,
                        help="EASE's memory budget (default: half of physical memory)")  # fmt: skip
    parser.add_argument("--code", default=None, help="package folder to measure instead")
    parser.add_argument("--out", default="baseline_memory.md")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        n_items, name = args.child.split(":")
        print(json.dumps(child(int(n_items), name, args.ease_budget_gb, args.code)))
        return
    rows = []
    for n_items in (int(n) for n in args.items.split(",")):
        for name in (m for m in args.models.split(",") if m):
            rows.append(_row(n_items, name, _run_child(args, n_items, name)))
            print(" | ".join(str(v) for v in rows[-1].values()), flush=True)
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    write_table(args.out, "Baseline memory on synthetic catalogs (peak RSS per fit)", rows, [
        f"{os.cpu_count()} CPUs, {ram:.1f} GiB physical memory; each row is a fresh subprocess "
        "(RSS before fit: interpreter, JAX and the data; peaks: ru_maxrss)",
        "data: synthetic.synthetic_log, 1.31 users per item, 9.26 interactions per user "
        "(>= 3), Zipf-like popularity, independent draws, seed 0; leave-last-out",
        "ranking: full-ranking validation NDCG@10 of every user (what tuning does per setting)",
        f"EASE budget: {args.ease_budget_gb or ram / 2:.1f} GiB (--ease-budget-gb; the default is "
        f"half of physical memory, {ram / 2:.1f} GiB here)",
        f"code: {args.code or 'this checkout'}; command: python benchmarks/baseline_memory.py "
        + " ".join(sys.argv[1:]),
    ])  # fmt: skip


if __name__ == "__main__":
    main()
