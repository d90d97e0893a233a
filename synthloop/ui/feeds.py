"""Live feeds (server-sent events): a run's new metrics, a farm job's status, an action's log.

Each stream is bounded: it ends after ``max_s`` seconds (default :data:`STREAM_S`) or when the
browser goes away; EventSource reconnects on its own and continues from the offset it was given.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    Response,
    StreamingResponse,
)

from synthloop.errors import SynthloopError
from synthloop.ui.runs import curve_points, job_snapshot, read_metrics
from synthloop.ui.security import safe_path
from synthloop.ui.state import query_float, query_int, ui_of

STREAM_S = 600.0


def _sse(obj: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return (head + "data: " + json.dumps(obj, allow_nan=False) + "\n\n").encode()


def _stream_s(request: Request) -> float:
    v = query_float(request, "max_s")
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
    ui = ui_of(request)
    run = safe_path(ui.root, request.query_params.get("p"), must_exist=False)
    state = {"offset": query_int(request, "offset", 0), "first": True}

    async def step() -> tuple[bytes | None, bool]:
        recs, state["offset"] = await run_in_threadpool(read_metrics, run / "metrics.jsonl", state["offset"])
        send = bool(recs) or state["first"]
        state["first"] = False
        return (_sse({"offset": state["offset"], "points": curve_points(recs)}) if send else None), False

    return await _feed(request, step, 0.5)


async def job_feed(request: Request) -> Response:
    """Events with :func:`synthloop.ui.runs.job_snapshot` of a farm job, every second it changes."""
    ui = ui_of(request)
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
    ui = ui_of(request)
    aid = request.query_params.get("id", "")
    log = ui.actions.log_path(aid)
    if ui.actions.get(aid) is None:
        raise HTTPException(404, "no such action")
    pos = {"offset": query_int(request, "offset", 0)}

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
