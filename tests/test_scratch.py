"""Temporary files live in a scratch folder its process holds a lock on: a folder whose process was
killed (SIGKILL, nothing at exit) is removed by the next process that asks for its own."""

import subprocess
import sys
import tempfile
from pathlib import Path

from conftest import ROOT


def test_the_scratch_folder_of_a_killed_process_is_removed_by_the_next(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    code = (
        "import os, time\nfrom vqa_interp.util.scratch import scratch_dir\n"
        "folder = scratch_dir(); (folder / 'result.pickle').write_bytes(b'x')\n"
        "print(folder, flush=True)\ntime.sleep(600)\n"
    )
    victim = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={"TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    folder = Path(victim.stdout.readline().strip())
    assert folder.parent == tmp_path and (folder / "result.pickle").exists()
    from vqa_interp.util.scratch import remove_stale

    assert remove_stale(tmp_path) == []  # alive: kept
    victim.kill()
    victim.wait(timeout=30)
    assert remove_stale(tmp_path) == [folder] and not folder.exists()
