"""OS faults: a full disk (a fake that raises ENOSPC from every fsync) and a read-only folder (a
fake that refuses new files and folders below it; tests run as root, where chmod would not bite)
for ``generate``, ``export``, ``dataset merge`` and ``farm merge``. Each must end in exit 1 with
one line naming the path and the errno, no traceback, and no output (or the old one unchanged).
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.test_hostile_inputs import _coco_dict, _fake_done_job, _write_images, assert_clean_error, invoke

torch.set_num_threads(1)


def _snapshot(folder: Path) -> dict[str, bytes]:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def full_disk(monkeypatch):
    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)
    return "ENOSPC"


@pytest.fixture
def read_only(monkeypatch, tmp_path):
    """Everything below ``tmp_path / "ro"`` refuses new files and folders (EROFS)."""
    ro = tmp_path / "ro"
    ro.mkdir()

    def guard(dir_or_path):
        p = Path(dir_or_path).absolute()
        if p == ro or ro in p.parents:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(p))

    real_mkstemp, real_mkdtemp, real_mkdir = tempfile.mkstemp, tempfile.mkdtemp, Path.mkdir

    def mkstemp(*a, dir=None, **kw):
        guard(dir or ".")
        return real_mkstemp(*a, dir=dir, **kw)

    def mkdtemp(*a, dir=None, **kw):
        guard(dir or ".")
        return real_mkdtemp(*a, dir=dir, **kw)

    def mkdir(self, *a, **kw):
        if not self.exists():
            guard(self)
        return real_mkdir(self, *a, **kw)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    monkeypatch.setattr(Path, "mkdir", mkdir)
    return ro


@pytest.fixture
def coco_src(tmp_path: Path) -> Path:
    d = tmp_path / "src"
    _write_images(d)
    (d / "annotations.json").write_text(json.dumps(_coco_dict()))
    return d / "annotations.json"


def _cases(tmp_path: Path, coco_src: Path, out: Path) -> dict[str, list]:
    return {
        "export coco": ["export", "coco", coco_src, out],
        "export kitti": ["export", "kitti", coco_src, out],
        "dataset merge": ["dataset", "merge", coco_src, coco_src, "--out", out],
        "generate": ["generate", "-r", "shapes", "-n", "1", "-o", out],
    }


@pytest.mark.parametrize("fault", ["full_disk", "read_only"])
@pytest.mark.parametrize("cmd", ["export coco", "export kitti", "dataset merge", "generate"])
def test_fault_gives_one_line_exit_1_and_no_output(tmp_path, coco_src, request, fault, cmd):
    request.getfixturevalue(fault)
    parent = tmp_path / "ro" if fault == "read_only" else tmp_path
    out = parent / "out"
    r = invoke(*_cases(tmp_path, coco_src, out)[cmd])
    code = errno.ENOSPC if fault == "full_disk" else errno.EROFS
    assert_clean_error(r, (1,), (str(parent), errno.errorcode[code]))
    assert not out.exists() or _snapshot(out) == {}, _snapshot(out).keys()
    assert not [p for p in parent.iterdir() if p.name.startswith(".tmp")]


@pytest.mark.parametrize("cmd", ["export coco", "export kitti"])
def test_full_disk_leaves_an_existing_output_unchanged(tmp_path, coco_src, monkeypatch, cmd):
    out = tmp_path / "out"
    args = _cases(tmp_path, coco_src, out)[cmd]
    assert invoke(*args).exit_code == 0
    # a second source with other pixels, so a half-published export would differ
    for p in coco_src.parent.glob("*.png"):
        Image.fromarray(np.full((12, 16, 3), 7, np.uint8)).save(p)
    before = _snapshot(out)
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space")))
    assert_clean_error(invoke(*args), (1,), ("ENOSPC",))
    assert _snapshot(out) == before


def test_publish_failure_midway_restores_the_old_folder(tmp_path, monkeypatch):
    """``export kitti`` into an existing folder: a move that fails half-way is undone."""
    from synthloop.exporters import staging

    out = tmp_path / "out"
    (out / "labels").mkdir(parents=True)
    for i in range(4):
        (out / "labels" / f"{i}.txt").write_text(f"old {i}")
    (out / "marker.json").write_text("old marker")
    before = _snapshot(out)
    real = os.replace
    calls = {"n": 0}

    def flaky(a, b):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError(errno.EIO, "I/O error", str(b))
        return real(a, b)

    with pytest.raises(OSError), staging.staged_dir(out, markers=["marker.json"]) as tmp:
        (tmp / "labels").mkdir()
        for i in range(4):
            (tmp / "labels" / f"{i}.txt").write_text(f"new {i}")
        (tmp / "marker.json").write_text("new marker")
        monkeypatch.setattr(staging.os, "replace", flaky)
    monkeypatch.setattr(staging.os, "replace", real)
    assert _snapshot(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize("fault", ["full_disk", "read_only"])
def test_farm_merge_fault_leaves_no_output_and_can_be_rerun(tmp_path, request, monkeypatch, fault):
    job = _fake_done_job(tmp_path)
    parent = tmp_path / "ro" if fault == "read_only" else tmp_path
    if fault == "read_only":
        request.getfixturevalue("read_only")
    out = parent / "merged"
    with monkeypatch.context() as m:
        if fault == "full_disk":
            m.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space")))
        r = invoke("farm", "merge", job, "-o", out)
        assert_clean_error(r, (1,), (str(parent),))
        assert not out.exists()
        assert not [p for p in parent.iterdir() if p.name.startswith(".tmp")]
    if fault == "full_disk":  # a re-run after the disk has room succeeds, COCO included
        r = invoke("farm", "merge", job, "-o", out)
        assert r.exit_code == 0, r.stderr
        assert json.loads((out / "dataset.json").read_text())["info"]["complete"] is True
        assert (out / "coco" / "annotations.json").is_file()


def test_farm_merge_writes_coco_before_publishing(tmp_path, monkeypatch):
    """A failure while writing COCO must not leave a merged folder marked complete."""
    from synthloop.farm import merge as farm_merge

    job = _fake_done_job(tmp_path)

    def boom(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))

    monkeypatch.setattr(farm_merge, "write_coco", boom)
    out = tmp_path / "merged"
    assert_clean_error(invoke("farm", "merge", job, "-o", out), (1,), ("ENOSPC",))
    assert not out.exists()
