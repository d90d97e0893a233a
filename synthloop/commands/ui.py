"""``synthloop ui [ROOT]``: the web app over a workspace folder."""

from __future__ import annotations

from pathlib import Path

import typer

from synthloop.cli_common import user_errors


def ui_cmd(
    root: Path = typer.Argument(Path("."), help="Workspace folder to serve (datasets, jobs, runs, models)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; non-loopback needs --token."),
    port: int = typer.Option(8765, "--port", min=1, max=65535, help="TCP port to listen on."),
    token: str | None = typer.Option(
        None, "--token", envvar="SYNTHLOOP_UI_TOKEN", help="Every request must carry it (?token= once)."
    ),
) -> None:
    """Browse datasets, watch farm jobs and training live, keep and try models, start actions.

    Example: synthloop ui runs/ --port 8765
    """
    from synthloop.ui.serve import serve

    with user_errors():
        serve(root, host, port, token)
