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
