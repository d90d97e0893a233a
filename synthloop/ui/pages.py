"""The workspace's pages other than datasets: home and sections, runs and their comparison,
farm jobs, models, experiments, actions, and workspace files (downloads, sandboxed reports).
"""

from __future__ import annotations

import json
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)

from synthloop.errors import SynthloopError
from synthloop.ui.actions import KINDS as ACTION_KINDS
from synthloop.ui.actions import describe
from synthloop.ui.models import describe_model
from synthloop.ui.runs import eval_reports, job_snapshot
from synthloop.ui.security import safe_path
from synthloop.ui.state import ui_of
from synthloop.ui.uploads import read_form
from synthloop.ui.workspace import discover, find_specs

SANDBOX_CSP = "sandbox; default-src 'none'; img-src data: 'self'; style-src 'unsafe-inline'"


async def home(request: Request) -> Response:
    ui = ui_of(request)
    ws = await run_in_threadpool(discover, ui.root)
    return ui.page("home.html", request, ws=ws, actions=[describe(a) for a in ui.actions.list()[:5]])


async def section(request: Request) -> Response:
    ui = ui_of(request)
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


async def run_page(request: Request) -> Response:
    ui = ui_of(request)
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
    ui = ui_of(request)
    runs = [safe_path(ui.root, p).relative_to(ui.root).as_posix() for p in request.query_params.getlist("p")]
    ws = await run_in_threadpool(discover, ui.root)
    return ui.page("compare.html", request, runs=runs, all_runs=ws.of("run"))


async def job_page(request: Request) -> Response:
    ui = ui_of(request)
    path = safe_path(ui.root, request.query_params.get("p"))
    try:
        snap = await run_in_threadpool(job_snapshot, path)
    except SynthloopError as e:
        return ui.page("error.html", request, status=422, title=path.name, message=str(e))
    return ui.page("job.html", request, rel=path.relative_to(ui.root).as_posix(), snap=snap)


async def model_page(request: Request) -> Response:
    ui = ui_of(request)
    path = safe_path(ui.root, request.query_params.get("p"))
    if not path.is_file():
        raise HTTPException(404, "not a model file")
    info = await run_in_threadpool(describe_model, ui.root, path)
    info["ap"] = _model_ap(ui.root, path)
    return ui.page("model.html", request, rel=path.relative_to(ui.root).as_posix(), info=info)


async def experiment_page(request: Request) -> Response:
    ui = ui_of(request)
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
    ui = ui_of(request)
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
    ui = ui_of(request)
    form = await read_form(request)
    a = await run_in_threadpool(ui.actions.start, form.get("kind", ""), form)
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse(describe(a))
    return RedirectResponse(f"/action?id={a.id}", status_code=303)


async def action_cancel(request: Request) -> Response:
    ui = ui_of(request)
    a = ui.actions.cancel(request.query_params.get("id", ""))
    return JSONResponse(describe(a))


async def action_page(request: Request) -> Response:
    ui = ui_of(request)
    a = ui.actions.get(request.query_params.get("id", ""))
    if a is None:
        raise HTTPException(404, "no such action")
    return ui.page("action.html", request, a=describe(a))


async def file_route(request: Request) -> Response:
    """A workspace file: ``dl=1`` downloads it; HTML is served sandboxed (no scripts reach the app)."""
    ui = ui_of(request)
    path = safe_path(ui.root, request.query_params.get("p"))
    if not path.is_file():
        raise HTTPException(404, "not a file")
    headers = {"Content-Security-Policy": SANDBOX_CSP}
    if request.query_params.get("dl") == "1":
        return FileResponse(path, filename=path.name, headers=headers)
    return FileResponse(path, headers=headers)


# ---------------------------------------------------------------- live feeds (server-sent events)


async def workspace_json(request: Request) -> Response:
    ui = ui_of(request)
    ws = await run_in_threadpool(discover, ui.root)
    return JSONResponse([i.__dict__ for i in ws.items])
