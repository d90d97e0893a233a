"""Which Cycles devices render: a pure function over the devices Cycles reports (no ``bpy``).

``render.device`` / ``--device``:

* ``cpu``: the CPU, always.
* ``cuda`` / ``optix``: every GPU of that backend, and not the CPU (hybrid rendering slows a
  GPU down). No such GPU is a :class:`DeviceError` (the CLI prints one line, exit 2).
* ``auto``: OptiX GPUs if any, else CUDA GPUs, else the CPU with a warning.

The worker (:mod:`synthloop.generators.blender_scene`) lists the devices from Cycles'
preferences (``bpy.context.preferences.addons["cycles"].preferences``), calls
:func:`select_devices` and enables what it returns. ``CUDA_VISIBLE_DEVICES`` limits what Cycles
sees, which is how ``farm run --gpus N`` gives each worker its own GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from synthloop.errors import SynthloopError
from synthloop.scenes.render_config import RENDER_DEVICES

GPU_BACKENDS: dict[str, str] = {"cuda": "CUDA", "optix": "OPTIX"}
AUTO_ORDER: tuple[str, ...] = ("optix", "cuda")


class DeviceError(SynthloopError):
    """The requested render device is not available (a user error: exit 2)."""


@dataclass(frozen=True)
class CyclesDevice:
    """One entry of Cycles' device list: ``type`` (``CPU``, ``CUDA``, ``OPTIX``, ``HIP``, ...),
    display ``name`` and Cycles' ``id`` string."""

    type: str
    name: str
    id: str


@dataclass(frozen=True)
class DeviceChoice:
    """What to enable: ``scene_device`` (``CPU``/``GPU`` for ``scene.cycles.device``),
    ``compute_device_type`` (``NONE``, ``CUDA``, ``OPTIX`` for the Cycles preferences), the
    ``enabled`` device ids, a ``warning`` (or None) and a short ``label`` for logs."""

    scene_device: str
    compute_device_type: str
    enabled: tuple[str, ...]
    warning: str | None = None
    label: str = "CPU"


def check_device(name: str, where: str = "--device") -> str:
    """``name`` if it is a known device name, else a :class:`DeviceError` naming ``where``."""
    if name not in RENDER_DEVICES:
        raise DeviceError(f"unknown device {name!r}; expected {', '.join(RENDER_DEVICES)}", where=where)
    return name


def _gpus(devices: Sequence[CyclesDevice], backend: str) -> list[CyclesDevice]:
    return [d for d in devices if d.type == GPU_BACKENDS[backend]]


def _describe(devices: Sequence[CyclesDevice]) -> str:
    return ", ".join(f"{d.type} {d.name}" for d in devices) or "none"


def select_devices(requested: str, devices: Sequence[CyclesDevice]) -> DeviceChoice:
    """The devices to render on for ``requested`` (``cpu``, ``cuda``, ``optix``, ``auto``).

    Raises :class:`DeviceError` for an unknown name or an explicit GPU backend without a GPU."""
    cpu = [d.id for d in devices if d.type == "CPU"]
    cpu_choice = DeviceChoice("CPU", "NONE", tuple(cpu))
    if requested == "cpu":
        return cpu_choice
    if requested in GPU_BACKENDS:
        gpus = _gpus(devices, requested)
        if not gpus:
            raise DeviceError(
                f"no {GPU_BACKENDS[requested]} GPU found (Cycles sees: {_describe(devices)}); "
                "use --device cpu or auto",
                where="render.device",
            )
        return _gpu_choice(requested, gpus)
    if requested == "auto":
        for backend in AUTO_ORDER:
            gpus = _gpus(devices, backend)
            if gpus:
                return _gpu_choice(backend, gpus)
        return DeviceChoice(
            "CPU",
            "NONE",
            tuple(cpu),
            warning=f"render.device auto: no CUDA/OptiX GPU found (Cycles sees: {_describe(devices)}); "
            "rendering on the CPU",
        )
    raise DeviceError(
        f"unknown device {requested!r}; expected cpu, cuda, optix or auto", where="render.device"
    )


def _gpu_choice(backend: str, gpus: Sequence[CyclesDevice]) -> DeviceChoice:
    names = ", ".join(d.name for d in gpus)
    return DeviceChoice("GPU", GPU_BACKENDS[backend], tuple(d.id for d in gpus), label=f"{backend}: {names}")
