"""The Starlette application: routes, page handlers and the live (server-sent events) feeds.

Pages take workspace paths as the ``p`` query parameter (relative to ROOT, checked by
:func:`synthloop.ui.security.safe_path`). Live feeds are bounded: each stream ends after
``max_s`` seconds (default :data:`STREAM_S`) or when the browser goes away; EventSource
reconnects on its own and continues from the offset it was given.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape
from PIL import Image, UnidentifiedImageError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from synthloop.errors import SynthloopError
from synthloop.ui.actions import KINDS as ACTION_KINDS
from synthloop.ui.actions import ActionRunner, describe
from synthloop.ui.datasets import LAYERS, DatasetStore, DatasetView
from synthloop.ui.index import FrameFilter, filter_frames
from synthloop.ui.inputs import parse_float, parse_int
from synthloop.ui.models import Detectors, describe_model
from synthloop.ui.paint import class_colour, paint_detections
from synthloop.ui.runs import curve_points, eval_reports, job_snapshot, read_metrics
from synthloop.ui.security import TokenMiddleware, safe_path
from synthloop.ui.workspace import discover, find_specs

PAGE_SIZE = 48
STREAM_S = 600.0
MAX_UPLOAD = 8 << 20  # bytes
MAX_UPLOAD_PIXELS = 40_000_000
SANDBOX_CSP = "sandbox; default-src 'none'; img-src data: 'self'; style-src 'unsafe-inline'"
STATIC = Path(__file__).resolve().parent / "static"


class UI:
    """Everything a request handler needs: ROOT, the template environment and the stores."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = Environment(
            loader=PackageLoader("synthloop.ui", "templates"), autoescape=select_autoescape(["html"])
        )
        self.env.globals["colour"] = lambda cid: "#{:02x}{:02x}{:02x}".format(*class_colour(int(cid)))
        self.datasets = DatasetStore(root)
        self.detectors = Detectors()
        self.actions = ActionRunner(root)

    def page(self, name: str, request: Request, status: int = 200, **ctx: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(request=request, root=self.root, **ctx)
        return HTMLResponse(html, status_code=status)


def _ui(request: Request) -> UI:
    return request.app.state.ui


def _float(request: Request, name: str) -> float | None:
    return parse_float(name, request.query_params.get(name))


def _int_param(request: Request, name: str, default: int, lo: int = 0, hi: int = 10**9) -> int:
    return parse_int(name, request.query_params.get(name), default, lo, hi)


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
        side=(_float(request, "side_min"), _float(request, "side_max")),
        occlusion=(_float(request, "occ_min"), _float(request, "occ_max")),
        truncation=(_float(request, "trunc_min"), _float(request, "trunc_max")),
        params=tuple(params),
    )


# ---------------------------------------------------------------- pages
async def home(request: Request) -> Response:
    ui = _ui(request)
    ws = await run_in_threadpool(discover, ui.root)
    return ui.page("home.html", request, ws=ws, actions=[describe(a) for a in ui.actions.list()[:5]])


async def section(request: Request) -> Response:
    ui = _ui(request)
    name = request.path_params["name"]
    kinds = {
        "datasets": ("dataset", "coco", "kitti"),
        "runs": ("run",),
        "jobs": ("job",),
        "models": ("model",),
        "experiments": ("mix", "active"),
        "evals": ("eval",),
    }.get(name)
    if kinds is None:
        raise HTTPException(404, f"no page {name!r}")
    ws = await run_in_threadpool(discover, ui.root)
    items = ws.of(*kinds)
    if name == "models":
        for it in items:
            if it.error is None:
                it.info.update(await run_in_threadpool(describe_model, ui.root, ui.root / it.path))
                it.info["ap"] = _model_ap(ui.root, ui.root / it.path)
    return ui.page("section.html", request, section=name, items=items)


def _model_ap(root: Path, p: Path) -> float | None:
    """COCO box AP of the run a checkpoint belongs to (its first evaluation report), if any."""
    if p.parent.name != "checkpoints":
        return None
    reps = [r for r in eval_reports(p.parent.parent, root) if r.get("ap") is not None]
    return reps[0]["ap"] if reps else None


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
    ui = _ui(request)
    path = safe_path(ui.root, request.query_params.get("p"))
    flt = parse_filter(request)
    page = _int_param(request, "page", 0)
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
    ui = _ui(request)
    path = safe_path(ui.root, request.query_params.get("p"))
    view = await _open_dataset(ui, path)
    i = _int_param(request, "i", 0, 0, max(0, len(view.index) - 1))
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
    ui = _ui(request)
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
    ui = _ui(request)
    path = safe_path(ui.root, request.query_params.get("p"))
    layer = request.query_params.get("layer", "overlay")
    if layer not in LAYERS:
        raise HTTPException(400, f"layer: one of {', '.join(LAYERS)}")
    view = await _open_dataset(ui, path)
    i = _int_param(request, "i", 0, 0, max(0, len(view.index) - 1))
    full = request.query_params.get("full") == "1"
    try:
        out = await run_in_threadpool(view.picture, i, layer, full)
    except (SynthloopError, OSError) as e:
        raise HTTPException(422, f"frame {i}: {e}") from None
    return FileResponse(out, headers={"Cache-Control": "max-age=3600"})


async def run_page(request: Request) -> Response:
    ui = _ui(request)
    path = safe_path(ui.root, request.query_params.get("p"), must_exist=False)  # may be starting
    spec, err = None, None
    sp = path / "spec.json"
    if sp.exists():
        try:
            spec = json.dumps(json.loads(sp.read_text()), indent=1)
        except (OSError, json.JSONDecodeError) as e:
            err = f"spec.json: {e}"
    ck = path / "checkpoints"
    checkpoints = []
    for c in sorted(ck.glob("*.pt")) if ck.is_dir() else []:
        checkpoints.append(
            {"path": c.relative_to(ui.root).as_posix(), "name": c.name, "bytes": c.stat().st_size}
        )
    reports = await run_in_threadpool(eval_reports, path, ui.root)
    rel = path.relative_to(ui.root).as_posix()
    return ui.page(
        "run.html", request, rel=rel, spec=spec, error=err, checkpoints=checkpoints, reports=reports
    )


async def compare_page(request: Request) -> Response:
    ui = _ui(request)
    runs = [safe_path(ui.root, p).relative_to(ui.root).as_posix() for p in request.query_params.getlist("p")]
    ws = await run_in_threadpool(discover, ui.root)
    return ui.page("compare.html", request, runs=runs, all_runs=ws.of("run"))


async def job_page(request: Request) -> Response:
    ui = _ui(request)
    path = safe_path(ui.root, request.query_params.get("p"))
    try:
        snap = await run_in_threadpool(job_snapshot, path)
    except SynthloopError as e:
        return ui.page("error.html", request, status=422, title=path.name, message=str(e))
    return ui.page("job.html", request, rel=path.relative_to(ui.root).as_posix(), snap=snap)


async def model_page(request: Request) -> Response:
    ui = _ui(request)
    path = safe_path(ui.root, request.query_params.get("p"))
    if not path.is_file():
        raise HTTPException(404, "not a model file")
    info = await run_in_threadpool(describe_model, ui.root, path)
    info["ap"] = _model_ap(ui.root, path)
    return ui.page("model.html", request, rel=path.relative_to(ui.root).as_posix(), info=info)


async def experiment_page(request: Request) -> Response:
    ui = _ui(request)
    path = safe_path(ui.root, request.query_params.get("p"))
    report = path / "report.html"
    summary = None
    for name in ("results.json", "report.json", "loop.json", "experiment.json"):
        if (path / name).is_file():
            try:
                summary = (name, json.dumps(json.loads((path / name).read_text()), indent=1)[:20000])
            except (OSError, json.JSONDecodeError) as e:
                summary = (name, f"cannot read: {e}")
            break
    rel = path.relative_to(ui.root).as_posix()
    overlays = [
        q.relative_to(ui.root).as_posix()
        for sub in ("overlays", "worst")
        for q in sorted((path / sub).glob("*.png"))[:24]
    ]
    return ui.page(
        "experiment.html",
        request,
        rel=rel,
        overlays=overlays,
        report=report.relative_to(ui.root).as_posix() if report.is_file() else None,
        summary=summary,
    )


async def actions_page(request: Request) -> Response:
    ui = _ui(request)
    ws = await run_in_threadpool(discover, ui.root)
    specs = await run_in_threadpool(find_specs, ui.root)
    return ui.page(
        "actions.html",
        request,
        actions=[describe(a) for a in ui.actions.list()],
        kinds=ACTION_KINDS,
        ws=ws,
        specs=specs,
    )


async def action_start(request: Request) -> Response:
    ui = _ui(request)
    form = await _small_form(request)
    a = await run_in_threadpool(ui.actions.start, form.get("kind", ""), form)
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse(describe(a))
    return RedirectResponse(f"/action?id={a.id}", status_code=303)


async def action_cancel(request: Request) -> Response:
    ui = _ui(request)
    a = ui.actions.cancel(request.query_params.get("id", ""))
    return JSONResponse(describe(a))


async def action_page(request: Request) -> Response:
    ui = _ui(request)
    a = ui.actions.get(request.query_params.get("id", ""))
    if a is None:
        raise HTTPException(404, "no such action")
    return ui.page("action.html", request, a=describe(a))


async def _small_form(request: Request, limit: int = 65536) -> dict[str, str]:
    """A urlencoded form body (at most ``limit`` bytes) as a dict of first values."""
    from urllib.parse import parse_qs

    body = await _read_body(request, limit)
    try:
        parsed = parse_qs(body.decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        raise HTTPException(400, "form is not UTF-8") from None
    return {k: v[0] for k, v in parsed.items()}


async def _read_body(request: Request, limit: int) -> bytes:
    n = request.headers.get("content-length")
    if n and n.isdigit() and int(n) > limit:
        raise HTTPException(413, f"body larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode_upload(data: bytes) -> np.ndarray:
    """Bytes of an uploaded image -> (H, W, 3) uint8 RGB, or HTTPException 415."""
    if not data:
        raise HTTPException(400, "empty upload")
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > MAX_UPLOAD_PIXELS:
                raise HTTPException(413, f"image larger than {MAX_UPLOAD_PIXELS} pixels")
            im.verify()
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise HTTPException(415, "the upload is not an image PIL can read") from None


async def try_model(request: Request) -> Response:
    """POST the raw bytes of an image: the model's detections and the image with them drawn."""
    ui = _ui(request)
    path = safe_path(ui.root, request.query_params.get("p"))
    score = _float(request, "score")
    score = 0.3 if score is None else min(max(score, 0.0), 1.0)
    rgb = _decode_upload(await _read_body(request, MAX_UPLOAD))
    try:
        dets, names = await run_in_threadpool(ui.detectors.detect, path, rgb, score)
    except SynthloopError as e:
        raise HTTPException(422, str(e)) from None
    img = paint_detections(rgb, dets, names)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return JSONResponse(
        {
            "detections": [
                {
                    "box": [round(float(v), 2) for v in b],
                    "score": round(float(s), 4),
                    "class": names.get(int(lab), str(lab)),
                }
                for b, s, lab in zip(dets.boxes, dets.scores, dets.labels, strict=True)
            ],
            "image": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(),
        }
    )


async def file_route(request: Request) -> Response:
    """A workspace file: ``dl=1`` downloads it; HTML is served sandboxed (no scripts reach the app)."""
    ui = _ui(request)
    path = safe_path(ui.root, request.query_params.get("p"))
    if not path.is_file():
        raise HTTPException(404, "not a file")
    headers = {"Content-Security-Policy": SANDBOX_CSP}
    if request.query_params.get("dl") == "1":
        return FileResponse(path, filename=path.name, headers=headers)
    return FileResponse(path, headers=headers)


# ---------------------------------------------------------------- live feeds (server-sent events)
def _sse(obj: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return (head + "data: " + json.dumps(obj, allow_nan=False) + "\n\n").encode()


def _stream_s(request: Request) -> float:
    v = _float(request, "max_s")
    return STREAM_S if v is None else min(max(v, 0.0), STREAM_S)


async def _feed(
    request: Request, step: Callable[[], Awaitable[tuple[bytes | None, bool]]], every_s: float
) -> Response:
    """An event stream calling ``step() -> (event bytes or None, finished)`` every ``every_s``
    seconds until it finishes, ``max_s`` passes or the browser goes away."""
    until = time.monotonic() + _stream_s(request)

    async def gen() -> AsyncIterator[bytes]:
        while True:
            event, finished = await step()
            if event:
                yield event
            if finished or time.monotonic() >= until or await request.is_disconnected():
                return
            await asyncio.sleep(every_s)

    return StreamingResponse(gen(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def metrics_feed(request: Request) -> Response:
    """Events ``{"offset", "points": {series: [[step, value], ...]}}`` with the new points of a
    run's metrics.jsonl, polled every 0.5 s; ``offset`` continues a previous stream."""
    ui = _ui(request)
    run = safe_path(ui.root, request.query_params.get("p"), must_exist=False)
    state = {"offset": _int_param(request, "offset", 0), "first": True}

    async def step() -> tuple[bytes | None, bool]:
        recs, state["offset"] = await run_in_threadpool(read_metrics, run / "metrics.jsonl", state["offset"])
        send = bool(recs) or state["first"]
        state["first"] = False
        return (_sse({"offset": state["offset"], "points": curve_points(recs)}) if send else None), False

    return await _feed(request, step, 0.5)


async def job_feed(request: Request) -> Response:
    """Events with :func:`synthloop.ui.runs.job_snapshot` of a farm job, every second it changes."""
    ui = _ui(request)
    job = safe_path(ui.root, request.query_params.get("p"))
    last: dict[str, str | None] = {"key": None}

    async def step() -> tuple[bytes | None, bool]:
        try:
            snap = await run_in_threadpool(job_snapshot, job)
        except SynthloopError as e:
            return _sse({"error": str(e)}), True
        key = json.dumps({k: v for k, v in snap.items() if k != "updated"}, sort_keys=True)
        if key == last["key"]:
            return None, False
        last["key"] = key
        return _sse(snap), False

    return await _feed(request, step, 1.0)


async def action_feed(request: Request) -> Response:
    """Events ``{"text", "offset", "state"}``: an action's new log text; ends when it has finished
    and its log is read."""
    ui = _ui(request)
    aid = request.query_params.get("id", "")
    log = ui.actions.log_path(aid)
    if ui.actions.get(aid) is None:
        raise HTTPException(404, "no such action")
    pos = {"offset": _int_param(request, "offset", 0)}

    async def step() -> tuple[bytes | None, bool]:
        a = ui.actions.get(aid)
        with open(log, "rb") as fh:
            fh.seek(pos["offset"])
            data = fh.read(1 << 20)
        pos["offset"] += len(data)
        state = a.state if a else "unknown"
        if not data and state == "running":
            return None, False
        event = _sse({"text": data.decode(errors="replace"), "offset": pos["offset"], "state": state})
        return event, state != "running" and not data

    return await _feed(request, step, 0.5)


async def workspace_json(request: Request) -> Response:
    ui = _ui(request)
    ws = await run_in_threadpool(discover, ui.root)
    return JSONResponse([i.__dict__ for i in ws.items])


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/api/") or "text/html" not in request.headers.get("accept", ""):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
    return _ui(request).page(
        "error.html", request, status=exc.status_code, title=str(exc.status_code), message=exc.detail
    )


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    app.state.ui.actions.shutdown()  # children still running end with the server


def create_app(root: str | Path, token: str | None = None) -> Starlette:
    """The web app over workspace ``root``; with ``token``, every request must carry it."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise SynthloopError("workspace is not a folder", path=str(root))
    middleware = [Middleware(TokenMiddleware, token=token)] if token else []
    routes = [
        Route("/", home),
        Route("/section/{name}", section),
        Route("/dataset", dataset_page),
        Route("/frame", frame_page),
        Route("/stats", stats_page),
        Route("/pic", picture),
        Route("/run", run_page),
        Route("/compare", compare_page),
        Route("/job", job_page),
        Route("/model", model_page),
        Route("/experiment", experiment_page),
        Route("/actions", actions_page),
        Route("/action", action_page),
        Route("/file", file_route),
        Route("/api/workspace", workspace_json),
        Route("/api/metrics", metrics_feed),
        Route("/api/job", job_feed),
        Route("/api/action-log", action_feed),
        Route("/api/actions", action_start, methods=["POST"]),
        Route("/api/actions/cancel", action_cancel, methods=["POST"]),
        Route("/api/try", try_model, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    ui = UI(root)
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: http_error},
        lifespan=_lifespan,
    )
    app.state.ui = ui
    return app
