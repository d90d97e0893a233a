"""Find what a workspace folder holds: datasets, farm jobs, training runs, experiments, models.

:func:`discover` walks ROOT (no symlinks followed, at most :data:`MAX_DEPTH` levels, hidden
folders and the UI cache skipped) and classifies each folder by the files synthloop writes:

==================  ===========================================================
kind                recognised by
==================  ===========================================================
``dataset``         ``dataset.json`` (synthloop folder); not descended into
``kitti``           ``image_2/`` + ``label_2/`` (or under ``training/``)
``coco``            a ``*.json`` file whose head holds ``"images"`` and ``"annotations"``
``job``             ``job.yaml`` (farm job); not descended into
``run``             ``metrics.jsonl`` or ``checkpoints/`` (training run; its checkpoints are models)
``eval``            ``report.json`` of schema ``synthloop.evaluation/1``
``mix``             ``experiment.json`` (mixing experiment)
``active``          ``loop.yaml`` or ``loop.json`` (active-learning loop)
``model``           ``*.onnx`` files and ``*.pt`` checkpoints
==================  ===========================================================

Each :class:`Item` carries its path relative to ROOT and, when a cheap read of its main file
failed, an ``error`` line shown on its card (the page still renders).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CACHE_DIR = ".synthloop-ui-cache"
MAX_DEPTH = 6
MAX_DIRS = 20000
HEAD_BYTES = 65536
KINDS = ("dataset", "kitti", "coco", "job", "run", "eval", "mix", "active", "model")
DATA_SUBDIRS = {
    "checkpoints",
    "images",
    "instances",
    "depth",
    "records",
    "tensorboard",
    "failures",
    "image_2",
    "label_2",
}
NOT_COCO = {"spec.json", "report.json", "experiment.json", "loop.json", "dataset.json", "versions.json"}


@dataclass
class Item:
    """One thing found in the workspace. ``path``: POSIX, relative to ROOT; ``info``: cheap facts."""

    kind: str
    path: str
    name: str
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Workspace:
    root: Path
    items: list[Item]

    def of(self, *kinds: str) -> list[Item]:
        return [i for i in self.items if i.kind in kinds]


def cache_root(root: Path) -> Path:
    """The UI's on-disk cache beside the workspace content (``ROOT/.synthloop-ui-cache``)."""
    return root / CACHE_DIR


def _read_json(p: Path) -> Any:
    try:
        return json.loads(p.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{p.name}: cannot read ({e.__class__.__name__}: {e})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{p.name}: invalid JSON ({e.msg} at line {e.lineno})") from None


def _looks_like_coco(p: Path) -> bool:
    if p.name in NOT_COCO or p.name.startswith("."):
        return False
    try:
        with open(p, "rb") as fh:
            head = fh.read(HEAD_BYTES)
    except OSError:
        return False
    return b'"images"' in head and b'"annotations"' in head


def _inside(root: Path, p: Path) -> bool:
    try:
        return p.resolve().is_relative_to(root)
    except OSError:
        return False


def _dataset_item(root: Path, d: Path, rel: str) -> Item:
    item = Item("dataset", rel, d.name)
    try:
        man = _read_json(d / "dataset.json")
        if not isinstance(man, dict):
            raise ValueError("dataset.json: not a JSON object")
        item.info["classes"] = [c.get("name", "?") for c in man.get("categories", []) if isinstance(c, dict)]
        rec = d / "records"
        item.info["frames"] = sum(1 for _ in os.scandir(rec)) if rec.is_dir() else 0
    except (ValueError, OSError) as e:
        item.error = str(e)
    return item


def _run_item(d: Path, rel: str) -> Item:
    item = Item("run", rel, d.name)
    try:
        ck = d / "checkpoints"
        item.info["checkpoints"] = sorted(p.name for p in ck.glob("*.pt")) if ck.is_dir() else []
        m = d / "metrics.jsonl"
        item.info["metrics_bytes"] = m.stat().st_size if m.exists() else 0
        if (d / "spec.json").exists():
            spec = _read_json(d / "spec.json")
            model = (spec.get("spec", spec) if isinstance(spec, dict) else {}).get("model", {})
            item.info["family"] = model.get("family") if isinstance(model, dict) else None
    except (ValueError, OSError, AttributeError) as e:
        item.error = str(e)
    return item


def _classify_dir(root: Path, d: Path, rel: str, names: set[str], items: list[Item]) -> bool:
    """Append the items folder ``d`` is; return whether to descend into it."""
    if "dataset.json" in names:
        items.append(_dataset_item(root, d, rel))
        return False
    if "job.yaml" in names:
        item = Item("job", rel, d.name)
        try:
            import yaml

            plan = yaml.safe_load((d / "job.yaml").read_text())
            if not isinstance(plan, dict):
                raise ValueError("job.yaml: not a mapping")
            item.info = {"frames": plan.get("frames"), "shards": len(plan.get("shards") or [])}
        except (OSError, ValueError, yaml.YAMLError) as e:
            item.error = f"job.yaml: {str(e).splitlines()[0]}"
        items.append(item)
        return False
    if ("image_2" in names and "label_2" in names) or (
        "training" in names and (d / "training" / "label_2").is_dir()
    ):
        items.append(Item("kitti", rel, d.name))
        return False
    if "metrics.jsonl" in names or ("checkpoints" in names and (d / "checkpoints").is_dir()):
        items.append(_run_item(d, rel))
        for name in items[-1].info.get("checkpoints", []):
            _classify_file(root, d / "checkpoints" / name, items)
        return True  # eval folders and exports may sit inside a run
    if "report.json" in names:
        try:
            rep = _read_json(d / "report.json")
            if isinstance(rep, dict) and rep.get("schema") == "synthloop.evaluation/1":
                items.append(Item("eval", rel, d.name, {"summary": rep.get("summary", {})}))
        except ValueError as e:
            items.append(Item("eval", rel, d.name, error=str(e)))
    if "experiment.json" in names:
        items.append(Item("mix", rel, d.name, {"report": "report.html" in names}))
    if "loop.yaml" in names or "loop.json" in names:
        items.append(Item("active", rel, d.name, {"report": "report.html" in names}))
    return True


def discover(root: Path) -> Workspace:
    """Walk ``root`` (resolved) and classify what it holds (see module docstring)."""
    items: list[Item] = []
    stack: list[tuple[Path, int]] = [(root, 0)]
    seen = 0
    while stack and seen < MAX_DIRS:
        d, depth = stack.pop()
        seen += 1
        try:
            entries = list(os.scandir(d))
        except OSError as err:
            items.append(Item("dataset", _rel(root, d), d.name, error=f"cannot list folder ({err.strerror})"))
            continue
        names = {e.name for e in entries}
        rel = _rel(root, d)
        if d != root and not _classify_dir(root, d, rel, names, items):
            continue
        for e in sorted(entries, key=lambda e: e.name, reverse=True):
            if e.name.startswith(".") or e.name == CACHE_DIR:
                continue
            p = Path(e.path)
            if e.is_symlink() and not _inside(root, p):
                continue
            if e.is_dir(follow_symlinks=False):
                if depth + 1 <= MAX_DEPTH and e.name not in DATA_SUBDIRS:
                    stack.append((p, depth + 1))
            elif e.is_file():
                _classify_file(root, p, items)
    items.sort(key=lambda i: (KINDS.index(i.kind), i.path))
    return Workspace(root, items)


def _rel(root: Path, p: Path) -> str:
    r = p.relative_to(root).as_posix()
    return "" if r == "." else r


def _classify_file(root: Path, p: Path, items: list[Item]) -> None:
    suffix = p.suffix.lower()
    rel = _rel(root, p)
    if suffix in (".onnx", ".pt", ".pth"):
        try:
            size = p.stat().st_size
        except OSError as e:
            items.append(Item("model", rel, p.name, error=f"cannot stat ({e.strerror})"))
            return
        items.append(Item("model", rel, p.name, {"bytes": size, "format": suffix[1:]}))
    elif suffix == ".json" and _looks_like_coco(p):
        items.append(Item("coco", rel, p.name))


def find_specs(root: Path, limit: int = 500) -> list[str]:
    """YAML files under ``root`` (relative POSIX paths, sorted), skipping hidden folders, the UI
    cache and the data folders of datasets; at most ``limit``, at most :data:`MAX_DEPTH` deep."""
    out = []
    for d, dirs, files in os.walk(root):
        depth = len(Path(d).relative_to(root).parts)
        dirs[:] = [x for x in dirs if not x.startswith(".") and x not in DATA_SUBDIRS and depth < MAX_DEPTH]
        out += [_rel(root, Path(d) / f) for f in files if f.endswith((".yaml", ".yml"))]
        if len(out) >= limit:
            break
    return sorted(out)[:limit]
