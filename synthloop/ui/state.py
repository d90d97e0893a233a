"""What every request handler shares: the workspace, the templates and the stores (:class:`UI`),
and the numbers in a request's query string.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
)

from synthloop.ui.actions import ActionRunner
from synthloop.ui.datasets import DatasetStore
from synthloop.ui.inputs import parse_float, parse_int
from synthloop.ui.models import Detectors
from synthloop.ui.paint import class_colour


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


def ui_of(request: Request) -> UI:
    """The :class:`UI` of the app serving ``request``."""
    return request.app.state.ui


def query_float(request: Request, name: str) -> float | None:
    return parse_float(name, request.query_params.get(name))


def query_int(request: Request, name: str, default: int, lo: int = 0, hi: int = 10**9) -> int:
    return parse_int(name, request.query_params.get(name), default, lo, hi)
