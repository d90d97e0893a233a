"""Who may ask and what they may read: the bind/token rule and paths confined to ROOT.

* The server binds loopback by default; any other address needs a token, and then every request
  must carry it (``Authorization: Bearer T``, a ``synthloop_token`` cookie, or ``?token=T`` once,
  which sets the cookie).
* A request that changes something (POST) from a browser must come from the app's own pages: its
  ``Origin`` (or ``Referer``) must name the host it was sent to, or it is refused with 403 (another
  web site cannot start actions on a loopback server); on loopback the ``Host`` must be a loopback
  name too (:data:`LOOPBACK_HOSTS`, against DNS rebinding).
* Every path a request names is relative to ROOT; absolute paths, ``..`` escapes and symlinks
  that resolve outside ROOT are refused with 403.
"""

from __future__ import annotations

import hmac
import ipaddress
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from synthloop.errors import SynthloopError

COOKIE = "synthloop_token"
LOOPBACK_NAMES = ("localhost",)
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]  # Host header values a loopback server accepts


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is a loopback address."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve a non-loopback address without a token (SynthloopError, exit 2)."""
    if not is_loopback(host) and not token:
        raise SynthloopError(
            f"binding {host} exposes the workspace to the network; pass --token SECRET "
            "(every request must then carry it)",
            where="--host",
        )


def safe_path(root: Path, rel: str | None, must_exist: bool = True) -> Path:
    """``root / rel`` resolved, or HTTPException 403 when it leaves ``root``.

    ``root`` must be resolved. Empty ``rel`` is ROOT itself. Absolute paths, ``..`` escapes and
    symlinks that point outside ROOT are refused; a missing path inside ROOT is 404 unless
    ``must_exist`` is False (a run folder an action is about to create)."""
    rel = rel or ""
    if "\x00" in rel or Path(rel).is_absolute() or rel.startswith(("~", "\\")):
        raise HTTPException(403, f"path {rel!r} is not relative to the workspace")
    p = (root / rel).resolve()
    if not p.is_relative_to(root):
        raise HTTPException(403, f"path {rel!r} leaves the workspace")
    if must_exist and not p.exists():
        raise HTTPException(404, f"no such file or folder: {rel}")
    return p


def rel_path(root: Path, p: Path) -> str:
    """POSIX path of ``p`` relative to ``root`` ("" for ROOT itself)."""
    r = p.relative_to(root).as_posix()
    return "" if r == "." else r


class TokenMiddleware:
    """ASGI middleware: every HTTP request must carry ``token`` (header, cookie or query)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    def _given(self, scope: Scope) -> tuple[str | None, bool]:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        auth = headers.get("authorization", "")
        if auth.startswith("Bearer "):
            return auth[7:], False
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if query.get("token"):
            return query["token"][0], True
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # noqa: BLE001 - a malformed cookie header is just no token
            return None, False
        return (cookie[COOKIE].value if COOKIE in cookie else None), False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given, from_query = self._given(scope)
        if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
            body = b"401: this workspace needs its token (?token=..., or Authorization: Bearer ...)\n"
            await send_refusal(send, 401, body)
            return
        if not from_query:
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                cookie = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"set-cookie", cookie.encode())],
                }
            await send(message)

        await self.app(scope, receive, send_with_cookie)


async def send_refusal(send: Send, status: int, body: bytes) -> None:
    """Answer an ASGI request with ``status`` and the plain-text ``body`` (the app is not called)."""
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"text/plain; charset=utf-8")],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body})


class SameOriginMiddleware:
    """ASGI middleware: a POST whose ``Origin`` (or, without one, ``Referer``) names another host
    than its ``Host`` header is refused with 403. Requests without either (command-line clients)
    pass: browsers always send one with a cross-site POST."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            source = headers.get("origin") or headers.get("referer")
            if source and urlsplit(source).netloc != headers.get("host", ""):
                await send_refusal(send, 403, b"403: cross-site request refused\n")
                return
        await self.app(scope, receive, send)
