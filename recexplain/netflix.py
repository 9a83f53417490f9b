"""Netflix Prize files (`combined_data_*.txt`, `movie_titles.csv`) from a local folder."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from recexplain.sources import (
    _ML_NAMES,
    DataError,
    Progress,
    RawTable,
    _items,
)


def read_netflix_folder(folder: Path, progress: Progress | None = None) -> RawTable:
    """Reads Netflix Prize `combined_data_*.txt` (+ `movie_titles.csv`) from a folder, vectorised.

    Args:
      folder: holds combined_data_1.txt ... (blocks of "MovieID:" then "CustomerID,Rating,Date").
      progress: called with short status strings.
    Returns:
      A RawTable; rows are numbered across the files in name order ("data row").
    """
    say = progress or (lambda _msg: None)
    if not folder.is_dir():
        raise DataError("Netflix Prize folder not found", file=str(folder))
    files = sorted(
        folder.glob("combined_data_*.txt"),
        key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)],
    )
    if not files:
        raise DataError("no combined_data_*.txt files in the folder", file=str(folder))
    parts = []
    for path in files:
        say(f"reading {path.name}")
        parts.append(_read_netflix_file(path))
    inter = pd.DataFrame({key: np.concatenate([p[key] for p in parts]) for key in _ML_NAMES})[
        ["user_id", "item_id", "timestamp", "rating"]
    ]
    raw = RawTable(inter, _items([], [], []), str(folder), first_line=None)
    titles = folder / "movie_titles.csv"
    if titles.exists():
        raw.items = _read_netflix_titles(titles)
    else:
        raw.notes.append("no movie_titles.csv: titles are the movie ids")
    return raw


def _read_netflix_file(path: Path) -> dict[str, np.ndarray]:
    data = path.read_bytes()
    movies, bodies = _netflix_blocks(data, path)
    newlines = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
    starts, ends = np.array([b[0] for b in bodies]), np.array([b[1] for b in bodies])
    counts = np.where(
        ends > starts,
        np.searchsorted(newlines, ends) - np.searchsorted(newlines, starts) + 1,
        0,
    )
    view = memoryview(data)
    joined = b"\n".join(view[s:e] for s, e in bodies if e > s) + b"\n"
    del view, newlines
    options = pacsv.ConvertOptions(
        column_types={"user_id": pa.int32(), "rating": pa.float32(), "date": pa.timestamp("s")}
    )
    try:
        table = pacsv.read_csv(
            io.BytesIO(joined),
            read_options=pacsv.ReadOptions(column_names=["user_id", "rating", "date"],
                                           block_size=1 << 24),
            parse_options=pacsv.ParseOptions(quote_char=False),
            convert_options=options,
        )  # fmt: skip
    except pa.ArrowInvalid:
        _netflix_bad_line(data, path)
    if table.num_rows != counts.sum():
        _netflix_bad_line(data, path)
    return {
        "user_id": table.column("user_id").to_numpy(),
        "item_id": np.repeat(np.asarray(movies, np.int32), counts),
        "rating": table.column("rating").to_numpy(),
        "timestamp": table.column("date").cast(pa.int64()).to_numpy(),
    }


def _netflix_blocks(data: bytes, path: Path) -> tuple[list[int], list[tuple[int, int]]]:
    """Movie ids and (start, end) byte ranges of their rating lines; data lines hold no ':'."""
    movies, heads = [], []  # heads: (line start, line end) of each "MovieID:" line
    pos = 0
    while (colon := data.find(b":", pos)) != -1:
        start = data.rfind(b"\n", 0, colon) + 1
        end = data.find(b"\n", colon)
        end = len(data) if end == -1 else end
        token, rest = data[start:colon].strip(), data[colon + 1 : end].strip()
        if not token.isdigit() or rest:
            line = data[start:end].decode("latin-1").strip()
            raise DataError(f"expected a 'MovieID:' line, found {line!r}", file=str(path),
                            row=data.count(b"\n", 0, start) + 1)  # fmt: skip
        movies.append(int(token))
        heads.append((start, end))
        pos = end
    first = heads[0][0] if heads else len(data)
    if data[:first].strip():
        raise DataError("ratings before the first 'MovieID:' line", file=str(path), row=1)
    bounds = [heads[i][1] + 1 for i in range(len(heads))]
    nexts = [h[0] for h in heads[1:]] + [len(data)]
    bodies = []
    for start, stop in zip(bounds, nexts, strict=True):
        while stop > start and data[stop - 1 : stop] in (b"\n", b"\r", b" ", b"\t"):
            stop -= 1  # trailing blank lines of a block
        bodies.append((min(start, stop), stop))
    return movies, bodies


def _netflix_bad_line(data: bytes, path: Path):
    """Names the first line that is neither 'MovieID:' nor 'CustomerID,Rating,YYYY-MM-DD'."""
    good = re.compile(rb"\d+:|\d+,\d+(\.\d+)?,(\d{4})-(\d{2})-(\d{2})")
    for number, line in enumerate(io.BytesIO(data), 1):
        text = line.strip()
        match = good.fullmatch(text)
        if match and match.group(2):
            try:
                pd.Timestamp(f"{match[2].decode()}-{match[3].decode()}-{match[4].decode()}")
            except ValueError:
                match = None
        if match is None:
            found = text.decode("latin-1")
            raise DataError(f"expected 'CustomerID,Rating,YYYY-MM-DD', found {found!r}",
                            file=str(path), row=number)  # fmt: skip
    raise DataError("cannot parse the ratings", file=str(path))


def _read_netflix_titles(path: Path) -> pd.DataFrame:
    """movie_titles.csv: 'MovieID,YearOfRelease,Title' (latin-1; commas in titles; NULL years)."""
    ids, titles, years = [], [], []
    for number, line in enumerate(path.read_text(encoding="latin-1").splitlines(), 1):
        parts = line.split(",", 2)
        if not line.strip() or (number == 1 and not parts[0].strip().isdigit()):
            continue  # blank line, or a header
        if len(parts) != 3 or not parts[0].strip().isdigit():
            raise DataError("expected 'MovieID,YearOfRelease,Title'", file=str(path), row=number)
        year = int(parts[1]) if parts[1].strip().isdigit() else None
        ids.append(int(parts[0]))
        titles.append(parts[2].strip() + (f" ({year})" if year else ""))
        years.append(year)
    return _items(np.asarray(ids, np.int64), titles, [""] * len(ids), years)
