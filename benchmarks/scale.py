"""Big catalogs: load + split time and peak memory, and chunked full-ranking evaluation.

    python benchmarks/scale.py --shape ml25m [--eval-users 2048]   # 160k users, 59k items, 25M
    python benchmarks/scale.py --shape ml1m                        # 6,040 users x 3,416 items

Each stage runs in its own process so its peak RSS (ru_maxrss) is its own:
  generate  a synthetic log of that shape, written in the ML-20M/25M layout (ratings.csv)
  load      the ML-20M/25M reader (pyarrow) -> canonical table -> leave-last-out split
  eval      an untrained default model ranks the test items of `--eval-users` users (all users
            for ml1m) over the whole catalog, in user batches and item chunks
Writes benchmarks/results/scale-<shape>.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE.parent / ".cache" / "scale"


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux: KiB


def stage_generate(shape: str, folder: Path) -> dict:
    from recexplain.synthetic import ML1M_SHAPE, ML25M_SHAPE, synthetic_log, write_movielens_csv

    start = time.perf_counter()
    dims = ML25M_SHAPE if shape == "ml25m" else ML1M_SHAPE
    write_movielens_csv(synthetic_log(**dims, seed=0), folder)
    return {"seconds": time.perf_counter() - start, "peak_gb": _peak_gb(), **dims}


def stage_load(shape: str, folder: Path) -> dict:
    from recexplain.config import DataConfig
    from recexplain.data import canonicalise
    from recexplain.sources import read_movielens_folder
    from recexplain.split import leave_last_out

    start = time.perf_counter()
    raw = read_movielens_folder(folder)
    read_s = time.perf_counter() - start
    ds = canonicalise(raw, DataConfig(), f"{shape}-synthetic", source=str(folder))
    split = leave_last_out(ds)
    seconds = time.perf_counter() - start
    np.savez(folder / "split.npz", train_items=split.train_items,
             train_offsets=split.train_offsets, valid=split.valid, test=split.test,
             n_items=split.n_items)  # fmt: skip
    return {
        "seconds": seconds,
        "read_s": read_s,
        "peak_gb": _peak_gb(),
        "interactions": ds.n_interactions,
        "users": ds.n_users,
        "items": ds.n_items,
    }


def stage_eval(shape: str, folder: Path, variant: str, n_users: int, repeats: int) -> dict:
    from flax import nnx

    from recexplain.config import ModelConfig
    from recexplain.evaluation import rank_all
    from recexplain.models.recommender import AttentionRecommender, make_scorer
    from recexplain.split import Split

    with np.load(folder / "split.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    split = Split(len(arrays["valid"]), int(arrays["n_items"]), arrays["train_items"],
                  arrays["train_offsets"], arrays["valid"], arrays["test"])  # fmt: skip
    users = split.eval_users
    users = users if n_users <= 0 else np.random.default_rng(0).choice(users, n_users, False)
    model = AttentionRecommender(ModelConfig(attention=variant), split.n_items, rngs=nnx.Rngs(0))
    model.eval()
    scorer = make_scorer(model)
    rank_all(scorer, split, "test", 50, users=users[:256])  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        ranking = rank_all(scorer, split, "test", 50, users=users)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {"variant": variant, "users": len(ranking.users), "seconds": seconds,
            "min_s": min(times), "max_s": max(times), "repeats": repeats,
            "s_per_1k_users": seconds / len(ranking.users) * 1000,
            "all_users_s_estimate": seconds / len(ranking.users) * len(split.eval_users),
            "peak_gb": _peak_gb(), "items": split.n_items}  # fmt: skip


def _child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--stage", *args], capture_output=True,
                          text=True, check=False)  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"stage {args} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", choices=["ml25m", "ml1m"], default="ml25m")
    parser.add_argument("--eval-users", type=int, default=2048, help="0 = all (ml1m default)")
    parser.add_argument("--variants", default="multiplicative,additive,hard")
    parser.add_argument("--repeats", type=int, default=0,
                        help="timed full-ranking passes per variant, median reported "
                        "(default: 5 for ml1m, 1 for ml25m)")  # fmt: skip
    parser.add_argument("--stage", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        name, shape, folder, *rest = args.stage
        fn = {"generate": stage_generate, "load": stage_load, "eval": stage_eval}[name]
        extra = (rest[0], int(rest[1]), int(rest[2])) if name == "eval" else ()
        print(json.dumps(fn(shape, Path(folder), *extra)))
        return
    _report(args)


def _report(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(HERE))
    from common import write_table

    folder = CACHE / f"{args.shape}-synthetic"
    rows = []
    if not (folder / "ratings.csv").exists():
        gen = _child("generate", args.shape, str(folder))
        rows.append({"stage": "generate CSV", "seconds": gen["seconds"], "peak RSS GB":
                     gen["peak_gb"], "detail": f"{gen['n_interactions']:,} rows"})  # fmt: skip
    load = _child("load", args.shape, str(folder))
    detail = (f"read {load['read_s']:.1f} s; {load['users']:,} users, {load['items']:,} items, "
              f"{load['interactions']:,} interactions")  # fmt: skip
    rows.append({"stage": "load + split", "seconds": load["seconds"],
                 "peak RSS GB": load["peak_gb"], "detail": detail})  # fmt: skip
    n_users = args.eval_users if args.shape == "ml25m" else 0
    repeats = args.repeats or (1 if args.shape == "ml25m" else 5)
    for variant in args.variants.split(","):
        ev = _child("eval", args.shape, str(folder), variant, str(n_users), str(repeats))
        rows.append({"stage": f"full-ranking eval ({variant})", "seconds": ev["seconds"],
                     "peak RSS GB": ev["peak_gb"],
                     "detail": f"{ev['users']:,} users x {ev['items']:,} items; "
                     f"median of {repeats} (min {ev['min_s']:.2f}, max {ev['max_s']:.2f} s); "
                     f"{ev['s_per_1k_users']:.2f} s per 1k users; all users ~"
                     f"{ev['all_users_s_estimate']:.0f} s"})  # fmt: skip
    write_table(f"scale-{args.shape}.md", f"Scale: {args.shape}-shaped synthetic data (CPU)",
                rows, ["each stage in its own process; peak RSS = ru_maxrss of that process",
                       "eval: untrained default model (d=64, 2 blocks, L=50), user batch 256, "
                       "item chunks bounded to 2^24 readout entries",
                       f"command: python benchmarks/scale.py --shape {args.shape}"])  # fmt: skip


if __name__ == "__main__":
    main()
