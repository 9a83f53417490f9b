"""Synthetic interaction logs of any size (e.g. ML-25M-shaped) for scale tests and benchmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

ML25M_SHAPE = {"n_users": 162_541, "n_items": 59_047, "n_interactions": 25_000_095}
ML1M_SHAPE = {"n_users": 6_040, "n_items": 3_416, "n_interactions": 999_611}


def synthetic_log(
    n_users: int, n_items: int, n_interactions: int, *, seed: int = 0, min_per_user: int = 5
) -> pd.DataFrame:
    """A MovieLens-like log: heavy-tailed user activity and item popularity, rising times.

    Item popularity follows a Zipf-like law (p ~ 1 / (rank + 10)^0.9); user activity is
    log-normal with at least `min_per_user` interactions. Built with vectorised numpy only.

    Args:
      n_users, n_items, n_interactions: shape of the log (n_interactions is matched exactly).
      seed: fixes everything.
    Returns:
      DataFrame user_id int32 (1..), item_id int32 (1..), rating float32 (0.5..5), timestamp
      int64, grouped by user in time order.
    """
    if n_interactions < n_users * min_per_user:
        raise ValueError(f"need >= {min_per_user} interactions per user ({n_users} users)")
    rng = np.random.default_rng(seed)
    weights = rng.lognormal(0.0, 1.0, n_users)
    extra = n_interactions - n_users * min_per_user
    counts = min_per_user + np.floor(weights / weights.sum() * extra).astype(np.int64)
    counts[: n_interactions - counts.sum()] += 1  # hit the total exactly
    user = np.repeat(np.arange(1, n_users + 1, dtype=np.int32), counts)
    pop = 1.0 / (np.arange(n_items) + 10.0) ** 0.9
    item_of_rank = rng.permutation(np.arange(1, n_items + 1, dtype=np.int32))
    ranks = np.searchsorted(np.cumsum(pop) / pop.sum(), rng.random(n_interactions))
    item = item_of_rank[np.minimum(ranks, n_items - 1)]
    start = np.repeat(rng.integers(789_652_009, 1_500_000_000, n_users), counts)
    gaps = rng.integers(1, 20_000, n_interactions).astype(np.int64)
    cum = np.cumsum(gaps)
    first = np.cumsum(counts) - counts  # index of each user's first interaction
    timestamp = start + cum - np.repeat(cum[first] - gaps[first], counts)  # strictly rising
    rating = (rng.integers(1, 11, n_interactions) / 2.0).astype(np.float32)
    return pd.DataFrame({"user_id": user, "item_id": item, "rating": rating,
                         "timestamp": timestamp})  # fmt: skip


def write_movielens_csv(log: pd.DataFrame, folder: str | Path) -> Path:
    """Writes `log` in the ML-20M/25M layout (ratings.csv + movies.csv) and returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(
        log.rename(columns={"user_id": "userId", "item_id": "movieId"})[
            ["userId", "movieId", "rating", "timestamp"]
        ],
        preserve_index=False,
    )
    pacsv.write_csv(table, folder / "ratings.csv")
    ids = np.unique(log["item_id"].to_numpy())
    movies = pd.DataFrame({"movieId": ids, "title": [f"Movie {i} (2000)" for i in ids],
                           "genres": "Drama"})  # fmt: skip
    movies.to_csv(folder / "movies.csv", index=False)
    return folder
