"""Open a workspace dataset for browsing: its categories, cached frame index, frames and pictures.

A synthloop folder is read record by record (a frame's record is its whole truth); COCO files and
KITTI folders go through :func:`synthloop.importers.load_any` and stay in memory. Each dataset
version (synthloop: record count + records folder mtime; others: file size + mtime) gets its own
cache folder ``ROOT/.synthloop-ui-cache/datasets/<key>/`` holding ``index.npz`` and the
thumbnails, so a changed dataset never shows stale pictures.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from synthloop.atomic import atomic_save_image, atomic_write_bytes
from synthloop.dataset.folder import (
    category_from_dict,
    frame_from_record,
    is_synthloop_dataset,
    load_depth,
    read_manifest,
)
from synthloop.dataset.stats import dataset_stats
from synthloop.dataset.types import Category, Dataset, Frame
from synthloop.errors import DatasetError
from synthloop.importers import load_any
from synthloop.ui.index import FrameIndex, IndexBuilder, flatten_params
from synthloop.ui.paint import paint_depth, paint_frame, thumbnail
from synthloop.ui.workspace import cache_root

LAYERS = ("overlay", "depth", "image")
MAX_OPEN = 8


def _signature(path: Path) -> str:
    if is_synthloop_dataset(path):
        rec = path / "records"
        st = rec.stat() if rec.is_dir() else None
        n = sum(1 for _ in os.scandir(rec)) if st else 0
        sig = f"synthloop:{n}:{st.st_mtime_ns if st else 0}"
    else:
        st = path.stat()
        sig = f"{path.suffix}:{st.st_size}:{st.st_mtime_ns}"
    return hashlib.sha1(sig.encode()).hexdigest()[:12]


@dataclass
class DatasetView:
    """One dataset version opened for the UI. ``rel``: its path relative to ROOT."""

    rel: str
    path: Path
    kind: str
    categories: list[Category]
    index: FrameIndex
    cache: Path
    root: Path
    dataset: Dataset | None = None  # real (imported) datasets only

    def cats(self) -> dict[int, Category]:
        return {c.id: c for c in self.categories}

    def record(self, i: int) -> dict[str, Any]:
        """Frame ``i``'s record: the synthloop JSON as written, or an imported frame as a dict."""
        fid = str(self.index.frame_ids[i])
        if self.kind == "synthloop":
            p = self.path / "records" / f"{fid}.json"
            try:
                return json.loads(p.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise DatasetError(f"cannot read frame record ({e})", path=str(p)) from None
        f = self.frame(i)
        return {
            "frame_id": f.frame_id,
            "image": str(f.image_path.relative_to(self.path.parent))
            if f.image_path.is_relative_to(self.path.parent)
            else f.image_path.name,
            "width": f.width,
            "height": f.height,
            "source": f.source,
            "objects": [
                {k: v for k, v in asdict(o).items() if k != "mask" and v not in (None, {}, ())}
                for o in f.objects
            ],
        }

    def frame(self, i: int) -> Frame:
        if self.dataset is not None:
            return self.dataset.frames[i]
        fid = str(self.index.frame_ids[i])
        try:
            return frame_from_record(self.record(i), self.path)
        except (KeyError, TypeError, ValueError) as e:
            raise DatasetError(f"malformed frame record ({type(e).__name__}: {e})", where=fid) from None

    def picture(self, i: int, layer: str, full: bool) -> Path:
        """Path of the cached picture of frame ``i`` (``layer`` in :data:`LAYERS`; thumbnail or
        full size), rendered on first use."""
        kind = "full" if full else "thumb"
        out = self.cache / kind / layer / f"{i}.{'png' if full else 'jpg'}"
        if out.exists():
            return out
        frame = self.frame(i)
        for p in (frame.image_path, frame.depth_path):
            if p is not None and not p.resolve().is_relative_to(self.root):
                raise DatasetError("frame file lies outside the workspace", path=str(p), where=frame.frame_id)
        if layer == "overlay":
            img = paint_frame(frame, self.cats())
        elif layer == "depth":
            img = paint_depth(load_depth(frame))
        else:
            with Image.open(frame.image_path) as im:
                img = im.convert("RGB")
        if full:
            atomic_save_image(out, img)
        else:
            atomic_save_image(out, thumbnail(img), quality=90, subsampling=0)
        return out

    def stats(self) -> dict[str, Any]:
        """:func:`synthloop.dataset.stats.dataset_stats`, cached beside the index."""
        p = self.cache / "stats.json"
        if p.exists():
            return json.loads(p.read_text())
        ds = self.dataset
        if ds is None:
            frames = [self.frame(i) for i in range(len(self.index))]
            ds = Dataset(self.categories, frames, name=self.path.name, root=self.path)
        st = dataset_stats(ds)
        atomic_write_bytes(p, json.dumps(st).encode())  # not canonical JSON: bin order matters
        return st


def _build_synthloop_index(path: Path) -> FrameIndex:
    b = IndexBuilder()
    for p in sorted((path / "records").glob("*.json")):
        try:
            rec = json.loads(p.read_text())
            objs = [
                (o["category_id"], o["area"], o.get("occlusion"), o.get("truncation"))
                for o in rec.get("objects", [])
            ]
            b.add(str(rec.get("frame_id", p.stem)), rec["width"], rec["height"], objs, flatten_params(rec))
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise DatasetError(f"malformed frame record ({type(e).__name__}: {e})", path=str(p)) from None
    return b.build()


def _build_dataset_index(ds: Dataset) -> FrameIndex:
    b = IndexBuilder()
    for f in ds.frames:
        objs = [(o.category_id, o.area, o.occlusion, o.truncation) for o in f.objects]
        b.add(f.frame_id, f.width, f.height, objs, flatten_params({"scene_params": f.scene_params}))
    return b.build()


class DatasetStore:
    """Opened datasets by (path, version), at most :data:`MAX_OPEN` in memory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._open: OrderedDict[tuple[str, str], DatasetView] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, str], threading.Lock] = {}

    def open(self, path: Path) -> DatasetView:
        """The view of the dataset at ``path`` (inside ROOT; checked by the caller)."""
        rel = path.relative_to(self.root).as_posix()
        sig = _signature(path)
        key = (rel, sig)
        with self._lock:
            if key in self._open:
                self._open.move_to_end(key)
                return self._open[key]
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:  # the thumbnails of a page arrive together: one of them loads, the rest wait
            with self._lock:
                if key in self._open:
                    return self._open[key]
            view = self._load(path, rel, sig)
            with self._lock:
                self._open[key] = view
                self._loading.pop(key, None)
                while len(self._open) > MAX_OPEN:
                    self._open.popitem(last=False)
        return view

    def _load(self, path: Path, rel: str, sig: str) -> DatasetView:
        cache = cache_root(self.root) / "datasets" / (hashlib.sha1(rel.encode()).hexdigest()[:12] + "-" + sig)
        idx_path = cache / "index.npz"
        if is_synthloop_dataset(path):
            man = read_manifest(path)
            cats = [category_from_dict(c) for c in man.get("categories", [])]
            if idx_path.exists():
                index = FrameIndex.load(idx_path)
            else:
                index = _build_synthloop_index(path)
                index.save(idx_path)
            return DatasetView(rel, path, "synthloop", cats, index, cache, self.root)
        ds = load_any(path)
        index = FrameIndex.load(idx_path) if idx_path.exists() else _build_dataset_index(ds)
        if not idx_path.exists():
            index.save(idx_path)
        kind = "kitti" if path.is_dir() else "coco"
        return DatasetView(rel, path, kind, list(ds.categories), index, cache, self.root, dataset=ds)
