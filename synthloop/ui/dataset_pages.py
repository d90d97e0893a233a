"""Dataset pages: the filtered grid, a frame with its record, stats and gap report, and the
cached pictures (thumbnails and full-size overlays / depth maps).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    Response,
)

from synthloop.errors import SynthloopError
from synthloop.ui.datasets import LAYERS, DatasetView
from synthloop.ui.index import FrameFilter, filter_frames
from synthloop.ui.inputs import parse_float
from synthloop.ui.security import safe_path
from synthloop.ui.state import UI, query_float, query_int, ui_of

PAGE_SIZE = 48


def parse_filter(request: Request) -> FrameFilter:
    """A :class:`FrameFilter` from the grid's query: ``cls`` (repeated ids), ``side_min``/``side_max``
    (sqrt(area), px), ``occ_min``/``occ_max``, ``trunc_min``/``trunc_max`` and repeated
    ``param``/``pmin``/``pmax`` triples (an empty ``param`` is skipped)."""
    q = request.query_params
    try:
        classes = tuple(int(c) for c in q.getlist("cls") if c != "")
    except ValueError:
        raise HTTPException(400, "cls: class ids must be integers") from None
    params = []
    names, lows, highs = q.getlist("param"), q.getlist("pmin"), q.getlist("pmax")
    for k, name in enumerate(names):
        if not name:
            continue
        lo, hi = (
            parse_float(label, vals[k] if k < len(vals) else None)
            for vals, label in ((lows, "pmin"), (highs, "pmax"))
        )
        params.append((name, lo, hi))
    return FrameFilter(
        classes=classes,
        side=(query_float(request, "side_min"), query_float(request, "side_max")),
        occlusion=(query_float(request, "occ_min"), query_float(request, "occ_max")),
        truncation=(query_float(request, "trunc_min"), query_float(request, "trunc_max")),
        params=tuple(params),
    )


# ---------------------------------------------------------------- pages


async def _open_dataset(ui: UI, path: Path) -> DatasetView:
    """The opened dataset at ``path``; a folder that is not one, or a broken one, is a 422 whose
    message names the file and the problem."""
    try:
        return await run_in_threadpool(ui.datasets.open, path)
    except SynthloopError as e:
        raise HTTPException(422, str(e)) from None
    except OSError as e:
        raise HTTPException(422, f"{e.filename or path}: cannot read ({e.strerror})") from None


async def dataset_page(request: Request) -> Response:
    ui = ui_of(request)
    path = safe_path(ui.root, request.query_params.get("p"))
    flt = parse_filter(request)
    page = query_int(request, "page", 0)
    layer = request.query_params.get("layer", "overlay")
    if layer not in LAYERS:
        raise HTTPException(400, f"layer: one of {', '.join(LAYERS)}")
    t0 = time.perf_counter()
    view = await _open_dataset(ui, path)
    hits = filter_frames(view.index, flt)
    shown = hits[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
    query = [(k, v) for k, v in request.query_params.multi_items() if k not in ("page",)]
    return ui.page(
        "dataset.html",
        request,
        view=view,
        flt=flt,
        hits=len(hits),
        shown=[(int(i), str(view.index.frame_ids[i])) for i in shown],
        page=page,
        pages=max(1, math.ceil(len(hits) / PAGE_SIZE)),
        layer=layer,
        query=query,
        ranges=view.index.param_ranges(),
        server_ms=round((time.perf_counter() - t0) * 1000, 1),
    )


async def frame_page(request: Request) -> Response:
    ui = ui_of(request)
    path = safe_path(ui.root, request.query_params.get("p"))
    view = await _open_dataset(ui, path)
    i = query_int(request, "i", 0, 0, max(0, len(view.index) - 1))
    try:
        rec = await run_in_threadpool(view.record, i)
    except SynthloopError as e:
        raise HTTPException(422, str(e)) from None
    objects = rec.get("objects", [])
    for o in objects:
        if isinstance(o.get("mask"), dict):
            o["mask"] = {"size": o["mask"].get("size"), "counts": "(RLE)"}
    scene = rec.pop("scene", None)
    return ui.page(
        "frame.html",
        request,
        view=view,
        i=i,
        fid=str(view.index.frame_ids[i]),
        rec=rec,
        objects=objects,
        scene_json=json.dumps(scene, indent=1) if scene else None,
        has_depth=bool(rec.get("depth")),
    )


async def stats_page(request: Request) -> Response:
    ui = ui_of(request)
    path = safe_path(ui.root, request.query_params.get("p"))
    view = await _open_dataset(ui, path)
    try:
        stats = await run_in_threadpool(view.stats)
    except (SynthloopError, OSError) as e:
        raise HTTPException(422, str(e)) from None
    base = path if path.is_dir() else path.parent
    gaps = []
    for g in sorted([*base.glob("gap*.json"), *base.glob("gap*/report.json")]):
        try:
            gaps.append((g.relative_to(ui.root).as_posix(), json.dumps(json.loads(g.read_text()), indent=1)))
        except (OSError, json.JSONDecodeError) as e:
            gaps.append((g.relative_to(ui.root).as_posix(), f"cannot read: {e}"))
    return ui.page("stats.html", request, view=view, stats=stats, gaps=gaps)


async def picture(request: Request) -> Response:
    ui = ui_of(request)
    path = safe_path(ui.root, request.query_params.get("p"))
    layer = request.query_params.get("layer", "overlay")
    if layer not in LAYERS:
        raise HTTPException(400, f"layer: one of {', '.join(LAYERS)}")
    view = await _open_dataset(ui, path)
    i = query_int(request, "i", 0, 0, max(0, len(view.index) - 1))
    full = request.query_params.get("full") == "1"
    try:
        out = await run_in_threadpool(view.picture, i, layer, full)
    except (SynthloopError, OSError) as e:
        raise HTTPException(422, f"frame {i}: {e}") from None
    return FileResponse(out, headers={"Cache-Control": "max-age=3600"})
