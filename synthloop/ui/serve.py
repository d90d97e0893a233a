"""Serve the app with uvicorn: ``serve(root, host, port, token)`` (what ``synthloop ui`` runs)."""

from __future__ import annotations

from pathlib import Path

from synthloop.ui.app import create_app
from synthloop.ui.security import LOOPBACK_HOSTS, check_bind, is_loopback


def serve(root: str | Path, host: str = "127.0.0.1", port: int = 8765, token: str | None = None) -> None:
    """Block serving ``root`` on ``host:port``. A non-loopback ``host`` needs ``token``
    (SynthloopError otherwise, before anything listens)."""
    import uvicorn

    check_bind(host, token)
    app = create_app(root, token=token, allowed_hosts=LOOPBACK_HOSTS if is_loopback(host) else None)
    shown = f"http://{host}:{port}/" + (f"?token={token}" if token else "")
    print(f"synthloop ui: serving {Path(root).resolve()} at {shown}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3)
