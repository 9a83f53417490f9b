"""User files: any CSV/TSV/Parquet interactions file (and item file) with a column mapping.

Values are checked column by column; a bad one is a DataError naming the file, line and column.
"""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from recexplain.config import ColumnMap
from recexplain.sources import (
    DataError,
    RawTable,
    _items,
)


def read_interactions_file(
    path: str | os.PathLike,
    columns: ColumnMap = ColumnMap(),  # noqa: B008  (frozen dataclass, safe as a default)
    *,
    items_path: str | os.PathLike | None = None,
    sep: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reads a CSV/TSV/Parquet interactions file (and optional item file) with a column mapping.

    Line numbers in errors count the header as line 1 and assume no blank lines.

    Args:
      path: interactions file; .parquet/.pq read as Parquet, .csv ',', .tsv/.tab tab, else sniffed.
      columns: which columns hold user, item, timestamp, rating, title and genres.
      items_path: optional item metadata file (item id, title, optional genres and `year`).
      sep: field separator, overriding the extension or the sniffer.
    Returns:
      (interactions, items): interactions [n] with user_id, item_id (original ids), timestamp
      (int64 unix seconds), rating (float32, NaN without a rating column), in file order; items
      with item_id, title, genres, year (empty without `items_path`).
    """
    raw = read_file_table(Path(path), columns, items_path=items_path, sep=sep)
    return raw.interactions, raw.items


def read_file_table(
    path: Path, columns: ColumnMap, *, items_path=None, sep: str | None = None
) -> RawTable:
    """`read_interactions_file` returning a RawTable (keeps file name and line numbering)."""
    fields = {"user_id": columns.user, "item_id": columns.item, "timestamp": columns.timestamp}
    if columns.rating:
        fields["rating"] = columns.rating
    table, first_line, label = _read_any(path, list(dict.fromkeys(fields.values())), sep)
    raw = RawTable(pd.DataFrame(), _items([], [], []), str(path), first_line, label, names=fields)
    _require_utf8(table, raw)
    for key in ("user_id", "item_id", "timestamp"):
        _require_no_nulls(table.column(fields[key]), raw, fields[key])
    n = table.num_rows
    raw.interactions = pd.DataFrame(
        {
            "user_id": _ids(table.column(fields["user_id"]), raw, fields["user_id"]),
            "item_id": _ids(table.column(fields["item_id"]), raw, fields["item_id"]),
            "timestamp": _seconds(table.column(fields["timestamp"]), raw, fields["timestamp"]),
            "rating": _rating_values(table.column(fields["rating"]), raw, fields["rating"])
            if "rating" in fields
            else np.full(n, np.nan, np.float32),
        }
    )
    if items_path is not None:
        raw.items = read_items_file(Path(items_path), columns, sep=sep)
    return raw


def read_items_file(path: Path, columns: ColumnMap, *, sep: str | None = None) -> pd.DataFrame:
    """Item metadata: id and title columns from `columns`, optional genres and `year` columns."""
    wanted = [columns.item, columns.item_title] + [g for g in [columns.item_genres] if g]
    table, first_line, label = _read_any(path, wanted, sep, optional=("year",))
    where = RawTable(pd.DataFrame(), pd.DataFrame(), str(path), first_line, label)
    _require_utf8(table, where)
    _require_no_nulls(table.column(columns.item), where, columns.item)
    text = {c: _as_text(table.column(c), where, c).to_pandas().fillna("") for c in wanted[1:]}
    genres = text[columns.item_genres] if columns.item_genres else [""] * table.num_rows
    years = None
    if "year" in table.column_names and "year" not in wanted:
        year = table.column("year")
        if pa.types.is_nested(year.type):
            raise DataError(f"years must be numbers, found type {year.type}", file=str(path),
                            column="year")  # fmt: skip
        years = pd.to_numeric(year.to_pandas(), errors="coerce").round()
    ids = _ids(table.column(columns.item), where, columns.item)
    return _items(ids, text[columns.item_title], genres, years)


def _read_any(
    path: Path, wanted: list[str], sep: str | None, optional: tuple[str, ...] = ()
) -> tuple[pa.Table, int, str]:
    """The wanted (+ present optional) columns of a CSV/TSV/Parquet file, with line numbering."""
    if not path.exists():
        raise DataError("file not found", file=str(path))
    if not path.is_file():
        raise DataError("expected a file, found a folder", file=str(path))
    if path.stat().st_size == 0:
        raise DataError("file is empty (no rows)", file=str(path))
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            names = pq.read_schema(path).names
        except (pa.ArrowException, OSError) as err:
            raise DataError(f"not a readable Parquet file ({err})", file=str(path)) from err
        _require_columns(names, wanted, str(path))
        table = pq.read_table(path, columns=wanted + [c for c in optional if c in names])
        first_line, label = 1, "row"
    else:
        sep = sep or _detect_sep(path)
        names = _csv_header(path, sep)
        _require_columns(names, wanted, str(path))
        table = _read_user_csv(path, sep, wanted + [c for c in optional if c in names])
        first_line, label = 2, "line"
    if table.num_rows == 0:
        raise DataError("no data rows (the file has only a header)", file=str(path))
    return table, first_line, label


def _detect_sep(path: Path) -> str:
    ext = path.suffix.lower()
    if ext == ".csv":
        return ","
    if ext in (".tsv", ".tab"):
        return "\t"
    with open(path, encoding="utf-8", errors="replace") as f:
        sample = f.read(1 << 16)
    try:
        return csv.Sniffer().sniff(sample, delimiters=",\t;|").delimiter
    except csv.Error as err:
        raise DataError(
            "cannot detect the field separator; name the file .csv/.tsv/.parquet or pass sep",
            file=str(path),
        ) from err


def _csv_header(path: Path, sep: str) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        header = next(csv.reader(f, delimiter=sep), None)
    if not header or not any(h.strip() for h in header):
        raise DataError("file is empty (no rows)", file=str(path))
    return header


def _require_columns(names: list[str], wanted: list[str], file: str) -> None:
    missing = [c for c in wanted if c not in names]
    if missing:
        raise DataError(
            f"missing column(s) {missing}; available columns: {list(names)}",
            file=file,
            column=missing[0],
        )


def _read_user_csv(path: Path, sep: str, include: list[str]) -> pa.Table:
    def attempt(types: dict) -> pa.Table:
        conv = pacsv.ConvertOptions(
            include_columns=include, column_types=types, null_values=[""],
            strings_can_be_null=True,
        )  # fmt: skip
        return pacsv.read_csv(
            path, read_options=pacsv.ReadOptions(block_size=1 << 24),
            parse_options=pacsv.ParseOptions(delimiter=sep), convert_options=conv,
        )  # fmt: skip

    try:
        return attempt({})
    except pa.ArrowInvalid as err:
        if "columns, got" in str(err):
            _raise_bad_line(path, sep, err)
        if "conversion error" not in str(err):
            raise DataError(f"cannot read as CSV ({err})", file=str(path)) from err
    try:  # pyarrow guessed a column type from the first block; read the text, check it here
        return attempt({c: pa.string() for c in include})
    except pa.ArrowInvalid as err:
        raise DataError(f"cannot read as CSV ({err})", file=str(path)) from err


def _raise_bad_line(path: Path, sep: str, err: Exception):
    """Finds the first line whose field count differs from the header's (error path only)."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        reader = csv.reader(f, delimiter=sep)
        width = len(next(reader, []))
        for record in reader:
            if record and len(record) != width:
                raise DataError(
                    f"malformed CSV: expected {width} fields as in the header, found {len(record)}",
                    file=str(path),
                    row=reader.line_num,
                ) from err
    raise DataError(f"malformed CSV ({err})", file=str(path)) from err


def _require_no_nulls(arr: pa.ChunkedArray, raw: RawTable, column: str) -> None:
    if arr.null_count:
        first = pc.index(arr.is_null(), True).as_py()
        raise DataError("missing value", column=column, **raw.where(first))


def _require_utf8(table: pa.Table, raw: RawTable) -> None:
    """pyarrow reads a CSV column that is not valid UTF-8 as binary: name its first bad value."""
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
            _as_text(column, raw, name)


def _as_text(arr: pa.ChunkedArray, raw: RawTable, column: str) -> pa.ChunkedArray:
    """A column as strings; binary that is not UTF-8, or nested values, are a DataError."""
    arr = _decoded(arr)
    if _nested(arr.type):
        raise DataError(f"expected numbers or text, found type {arr.type}", file=raw.file,
                        column=column)  # fmt: skip
    try:
        return arr.cast(pa.string())
    except pa.ArrowInvalid:
        pass
    offset = 0
    for chunk in arr.chunks:  # error path only: find the first value that is not UTF-8
        for i, value in enumerate(chunk.to_pylist()):
            try:
                value.decode("utf-8") if isinstance(value, bytes) else None
            except UnicodeDecodeError:
                raise DataError(f"value {value!r} is not UTF-8 text; save the file as UTF-8",
                                column=column, **raw.where(offset + i)) from None  # fmt: skip
        offset += len(chunk)
    raise DataError("the column is not UTF-8 text; save the file as UTF-8", file=raw.file,
                    column=column)  # fmt: skip


def _nested(kind: pa.DataType) -> bool:
    return pa.types.is_nested(kind) or pa.types.is_union(kind) or pa.types.is_map(kind)


def _decoded(arr: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_dictionary(arr.type):
        return arr.cast(arr.type.value_type)
    return arr


def _ids(arr: pa.ChunkedArray, raw: RawTable, column: str):
    """Original ids: int64 when every value is an integer (also from text), else as read.

    NaN, infinite and nested (list, struct) values are a DataError naming the row and column.
    """
    arr = _decoded(arr)
    if _nested(arr.type):
        raise DataError(f"ids must be numbers or text, found type {arr.type}", file=raw.file,
                        column=column)  # fmt: skip
    if pa.types.is_integer(arr.type):
        values = arr.to_numpy()
        if values.dtype == np.uint64 and (values > np.iinfo(np.int64).max).any():
            return arr.cast(pa.string()).to_pandas()  # ids above int64 are kept exact, as text
        return values.astype(np.int64, copy=False)
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        try:  # same ids from CSV and Parquet must give the same table, whatever the storage
            return pc.cast(arr, pa.int64()).to_numpy()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return arr.to_pandas()
    if pa.types.is_floating(arr.type):
        values = arr.to_numpy()
        _fail_at(np.isnan(values), values, raw, column, "missing value (NaN)", quote=False)
        _fail_at(np.isinf(values), values, raw, column, "is not a finite id")
        return arr.to_pandas()  # integral floats become int64 in canonicalisation
    return _as_text(arr, raw, column).to_pandas()


def _seconds(arr: pa.ChunkedArray, raw: RawTable, column: str) -> np.ndarray:
    """Unix seconds (int64) from integers, floats (floored), date/time values or text.

    Numbers must be unix time between 1900 and 2200, in seconds, or (every value of the column
    in the same unit, since 1990) milliseconds, microseconds or nanoseconds: the unit is noted.
    """
    arr, kind = _decoded(arr), _decoded(arr).type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        values = arr.to_numpy()
        return _number_seconds(values, values, raw, column)
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        tz = kind.tz if pa.types.is_timestamp(kind) else None
        seconds = pc.cast(arr, pa.timestamp("s", tz=tz), safe=False).cast(pa.int64()).to_numpy()
        _fail_at(~_in_window(seconds, 1, EARLIEST), seconds, raw, column, _OUTSIDE)
        return seconds
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _parse_time_text(arr.to_pandas(), raw, column)
    raise DataError(
        f"timestamps must be integer unix seconds or date/time strings, found type {kind}",
        file=raw.file,
        column=column,
    )


EARLIEST, LATEST = -2_208_988_800, 7_258_118_400  # 1900-01-01 and 2200-01-01 in unix seconds
SINCE_1990 = 631_152_000  # other units count only when every value is after 1990
UNITS = ((1, "seconds"), (10**3, "milliseconds"), (10**6, "microseconds"), (10**9, "nanoseconds"))
_OUTSIDE = (
    "is not a unix time between 1900 and 2200 in seconds (nor, like every value of the"
    " column, in milliseconds, microseconds or nanoseconds since 1990)"
)


def _in_window(values: np.ndarray, scale: int, earliest: int) -> np.ndarray:
    as_float = values.astype(np.float64)  # uint64 and int64 extremes compare without wrapping
    return (as_float >= earliest * float(scale)) & (as_float < LATEST * float(scale))


def _number_seconds(values: np.ndarray, shown, raw: RawTable, column: str) -> np.ndarray:
    """int64 unix seconds from numbers in the first unit of UNITS that fits every value."""
    if values.dtype.kind == "f":
        _fail_at(~np.isfinite(values), shown, raw, column, "is not a finite timestamp")
    fits = [(scale, unit) for scale, unit in UNITS
            if _in_window(values, scale, EARLIEST if scale == 1 else SINCE_1990).all()]  # fmt: skip
    if not fits:
        _fail_at(~_in_window(values, 1, EARLIEST), shown, raw, column, _OUTSIDE)
    scale, unit = fits[0]
    if scale > 1:
        year = 1970 + int(np.max(values) / 31_556_952)
        raw.notes.append(f"timestamps in column {column!r} read as {unit} (as seconds they would"
                         f" reach the year {year:,})")  # fmt: skip
    if values.dtype.kind == "f":
        return np.floor(values / scale).astype(np.int64)
    return values.astype(np.int64) // scale  # every value fits in int64 by now


_DAY_MONTH = r"^\s*(\d{1,2})[/.\-](\d{1,2})[/.\-]\d{2,4}(?!\d)"  # 03/04/2024, 3.4.24, 03-04-2024


def _parse_time_text(text: pd.Series, raw: RawTable, column: str) -> np.ndarray:
    numbers = pd.to_numeric(text, errors="coerce")
    if pd.notna(numbers.iloc[0]):  # the first value decides: numbers, or dates
        what = "is not a number of seconds (the first timestamp was one)"
        _fail_at(numbers.isna().to_numpy(), text, raw, column, what)
        return _number_seconds(numbers.to_numpy(np.float64), text, raw, column)
    with warnings.catch_warnings():  # "could not infer format": we check every value below
        warnings.simplefilter("ignore", UserWarning)
        when = pd.to_datetime(text, errors="coerce", utc=True)  # one inferred format: fast
        misfits = when.isna().to_numpy()
        if misfits.any():  # several formats in one column: parse the others one by one
            _refuse_ambiguous_dates(text, misfits, raw, column)
            mixed = pd.to_datetime(text[misfits], errors="coerce", utc=True, format="mixed")
            when = when.where(~misfits, mixed.reindex(when.index))
    _fail_at(when.isna().to_numpy(), text, raw, column, "is not a unix timestamp or a date/time")
    seconds = ((when - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)
    _fail_at(~_in_window(seconds, 1, EARLIEST), text, raw, column, _OUTSIDE)
    return seconds


def _refuse_ambiguous_dates(text: pd.Series, misfits: np.ndarray, raw: RawTable, column: str):
    """A column of several date formats holding dd/mm-or-mm/dd dates cannot be read reliably:
    pandas would read each such date month-first where it can, day-first where it cannot."""
    parts = text.str.extract(_DAY_MONTH)
    first, second = pd.to_numeric(parts[0]), pd.to_numeric(parts[1])
    ambiguous = ((first <= 12) & (second <= 12) & (first != second)).fillna(False).to_numpy(bool)
    if ambiguous.any():
        at, other = int(np.argmax(ambiguous)), int(np.argmax(misfits))
        other = int(np.argmax(~misfits)) if other == at else other
        raise DataError(
            f"value {text.iloc[at]!r} can be read day-first or month-first, and the column mixes"
            f" date formats ({raw.where(other)['row_label']} {raw.where(other)['row']}:"
            f" {text.iloc[other]!r}); write every date as YYYY-MM-DD (ISO 8601)",
            column=column,
            **raw.where(at),
        )


def _rating_values(arr: pa.ChunkedArray, raw: RawTable, column: str) -> np.ndarray:
    arr = _decoded(arr)
    if pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type):
        values = arr.to_numpy(zero_copy_only=False).astype(np.float32)
    elif pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        text = arr.to_pandas()
        numbers = pd.to_numeric(text, errors="coerce")
        _fail_at((numbers.isna() & text.notna()).to_numpy(), text, raw, column, "is not a number")
        values = numbers.to_numpy(np.float32)
    else:
        raise DataError(f"ratings must be numbers, found type {arr.type}", file=raw.file,
                        column=column)  # fmt: skip
    if np.isnan(values).any():
        raw.notes.append(f"{int(np.isnan(values).sum()):,} rows have no rating")
    return values


def _fail_at(bad: np.ndarray, values, raw: RawTable, column: str, what: str,
             quote: bool = True) -> None:  # fmt: skip
    if bad.any():
        first = int(np.argmax(bad))
        value = values.iloc[first] if hasattr(values, "iloc") else values[first]
        value = value.item() if isinstance(value, np.generic) else value
        raise DataError(f"value {value!r} {what}" if quote else what,
                        column=column, **raw.where(first))  # fmt: skip
