"""The map cache: content-addressed, atomic."""

import numpy as np
import pytest

from vqa_interp.attribution.cache import MapCache


def test_same_dependencies_same_folder_and_entries_roundtrip(tmp_path):
    a = MapCache(tmp_path, {"method": {"name": "saliency"}, "data": "abc"})
    b = MapCache(tmp_path, {"data": "abc", "method": {"name": "saliency"}})
    c = MapCache(tmp_path, {"data": "abc", "method": {"name": "gbackp"}})
    assert a.folder == b.folder != c.folder
    a.store("1_2", np.arange(4, dtype=np.float32).reshape(2, 2))
    assert b.has("1_2") and not c.has("1_2")
    assert b.load("1_2").tolist() == [[0, 1], [2, 3]]


def test_a_killed_write_leaves_no_entry_and_no_temporary_file(tmp_path, monkeypatch):
    cache = MapCache(tmp_path, {"x": 1})

    def dies(handle, array):
        handle.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", dies)
    with pytest.raises(KeyboardInterrupt):
        cache.store("7_0", np.ones((3, 3)))
    assert not cache.has("7_0")
    assert sorted(p.name for p in cache.folder.iterdir()) == ["key.json"]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_cache_entries_respect_the_umask(tmp_path, umask):
    import os
    import stat

    previous = os.umask(umask)
    try:
        cache = MapCache(tmp_path, {"x": umask})
        cache.store("1_2", np.zeros((2, 2), np.float32))
        mode = stat.S_IMODE(os.stat(cache.path("1_2")).st_mode)
    finally:
        os.umask(previous)
    assert mode == 0o666 & ~umask


def test_a_truncated_entry_is_named_removed_and_computed_again(tmp_path, caplog):
    cache = MapCache(tmp_path, {"x": "truncated"})
    cache.store("1_2", np.arange(64, dtype=np.float32).reshape(8, 8))
    assert cache.has("1_2")
    path = cache.path("1_2")
    path.write_bytes(path.read_bytes()[:-10])  # a write cut short (disk full, copied in part)
    with caplog.at_level("WARNING"):
        assert not cache.has("1_2")
    assert str(path) in caplog.text and not path.exists() and cache.repaired == 1
    path.write_bytes(b"not an array")
    assert not cache.has("1_2")
    cache.store("1_2", np.ones((8, 8), np.float32))
    assert cache.has("1_2") and cache.load("1_2").sum() == 64


def test_an_entry_with_other_floats_or_swapped_with_another_fails_its_digest(tmp_path, caplog):
    """Same size, same header, other numbers: read back silently before the digest."""
    cache = MapCache(tmp_path, {"x": "swapped"})
    a, b = np.arange(64, dtype=np.float32).reshape(8, 8), np.ones((8, 8), np.float32)
    cache.store("1_0", a)
    cache.store("2_0", b)
    first, second = cache.path("1_0"), cache.path("2_0")
    one, two = first.read_bytes(), second.read_bytes()
    first.write_bytes(two)  # the two entries swapped
    second.write_bytes(one)
    with caplog.at_level("WARNING"):
        assert not cache.has("1_0") and not cache.has("2_0")
    assert str(first) in caplog.text and str(second) in caplog.text and cache.repaired == 2
    cache.store("1_0", a)
    raw = bytearray(cache.path("1_0").read_bytes())
    raw[-8:-4] = np.float32(7.0).tobytes()  # one float changed inside the array
    cache.path("1_0").write_bytes(bytes(raw))
    assert not cache.has("1_0")


def test_a_cached_table_cut_short_is_reported_and_computed_again(tmp_path, caplog):
    import pandas as pd

    from vqa_interp.util.disk_cache import DiskCache

    store = DiskCache(tmp_path, "scores", 1)
    frame = pd.DataFrame({"question_id": range(24), "rank_corr": np.linspace(0, 1, 24)})
    store.write_table({"a": 1}, frame)
    pd.testing.assert_frame_equal(store.read_table({"a": 1}), frame)
    path = store.path({"a": 1})
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:13]))  # half its rows: still a valid CSV
    with caplog.at_level("WARNING"):
        assert store.read_table({"a": 1}) is None
    assert str(path) in caplog.text and "fails its content digest" in caplog.text and not path.exists()
