"""The Starlette application: :func:`create_app` maps the routes to the handlers of
:mod:`~synthloop.ui.pages`, :mod:`~synthloop.ui.dataset_pages`, :mod:`~synthloop.ui.feeds` and
:mod:`~synthloop.ui.uploads`; errors become a page (or JSON for the API).

Pages take workspace paths as the ``p`` query parameter (relative to ROOT, checked by
:func:`synthloop.ui.security.safe_path`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from synthloop.errors import SynthloopError
from synthloop.ui.dataset_pages import dataset_page, frame_page, picture, stats_page
from synthloop.ui.feeds import action_feed, job_feed, metrics_feed
from synthloop.ui.pages import (
    action_cancel,
    action_page,
    action_start,
    actions_page,
    compare_page,
    experiment_page,
    file_route,
    home,
    job_page,
    model_page,
    run_page,
    section,
    workspace_json,
)
from synthloop.ui.security import SameOriginMiddleware, TokenMiddleware
from synthloop.ui.state import UI, ui_of
from synthloop.ui.uploads import try_model

STATIC = Path(__file__).resolve().parent / "static"


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith("/api/") or "text/html" not in request.headers.get("accept", ""):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
    return ui_of(request).page(
        "error.html", request, status=exc.status_code, title=str(exc.status_code), message=exc.detail
    )


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    app.state.ui.actions.shutdown()  # children still running end with the server


def create_app(
    root: str | Path, token: str | None = None, allowed_hosts: list[str] | None = None
) -> Starlette:
    """The web app over workspace ``root``; with ``token``, every request must carry it; with
    ``allowed_hosts``, requests naming another ``Host`` are refused (400)."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise SynthloopError("workspace is not a folder", path=str(root))
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)] if allowed_hosts else []
    middleware.append(Middleware(SameOriginMiddleware))
    if token:
        middleware.append(Middleware(TokenMiddleware, token=token))
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
