"""synthloop: procedural 3D scenes -> Blender renders -> exact annotations -> models -> back.

The main entry points are importable from the package itself (see :mod:`synthloop.api`)::

    import synthloop
    ds = synthloop.load_dataset("data/val.json")
    dets = synthloop.predict("runs/a", ds)
    report = synthloop.evaluate(ds, dets)

They are resolved lazily by a module ``__getattr__`` (PEP 562): ``import synthloop`` stays light
(no torch, no bpy) and the CLI starts fast; the first use of ``synthloop.train`` etc. imports
:mod:`synthloop.api` and what it needs. This is the one deliberate lazy import of the package
façade, not a way around the layering (``synthloop.api`` imports the layers below it normally).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = ("evaluate", "generate", "load_dataset", "load_spec", "predict", "train")
__all__ = ["__version__"]  # the entry points resolve on first use; their reference is synthloop.api


def __getattr__(name: str) -> Any:
    if name in _API:
        from synthloop import api

        return getattr(api, name)
    raise AttributeError(f"module 'synthloop' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
