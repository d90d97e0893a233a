"""Typer sub-apps, one module per area; :mod:`synthloop.cli` mounts them."""
