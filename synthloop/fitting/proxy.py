"""Cheap proxy renders for a recipe fit, with one Blender process kept across trials.

A proxy recipe is the trial's recipe at a low resolution (default 160x120) and few Cycles samples
(default 4, no denoising): geometry, materials and lights are unchanged, so the gap measured at the
working width of the proxy (:mod:`synthloop.gap.images`) follows the full renders'. Frames go
through :func:`~synthloop.generators.generate.generate_frames` into one dataset folder per trial,
which makes a killed trial resumable frame by frame.
"""

from __future__ import annotations

from pathlib import Path

from synthloop.dataset.folder import load_dataset
from synthloop.dataset.types import Dataset
from synthloop.errors import SynthloopError
from synthloop.generators.generate import RendererFactory, default_renderer_factory, generate_frames
from synthloop.generators.renderer import RenderedFrame, Renderer
from synthloop.progress import JobProgress
from synthloop.scenes.recipe import Recipe
from synthloop.scenes.spec import SceneSpec

PROXY_SIZE = (160, 120)
PROXY_SAMPLES = 4


def proxy_recipe(recipe: Recipe, size: tuple[int, int] = PROXY_SIZE, samples: int = PROXY_SAMPLES) -> Recipe:
    """``recipe`` at ``size`` (width, height) pixels with ``samples`` Cycles samples, no denoising."""
    render = recipe.render.model_copy(update={"samples": int(samples), "denoise": False})
    return recipe.model_copy(update={"resolution": (int(size[0]), int(size[1])), "render": render})


class _Kept:
    """A renderer whose ``close`` is deferred to :meth:`ProxyRenderer.close` (the worker stays up
    between trials); a failed worker restarts itself on the next frame."""

    def __init__(self, inner: Renderer):
        self.inner = inner

    def render(self, spec: SceneSpec) -> RenderedFrame:
        return self.inner.render(spec)

    def close(self) -> None:
        pass


class ProxyRenderer:
    """``render(recipe, seed, frames, out) -> Dataset`` of frames 0..frames-1 (resumed if present)."""

    def __init__(self, factory: RendererFactory | None = None, threads: int = 1, device: str = "cpu"):
        self._factory = factory or default_renderer_factory(threads, device)
        self._renderer: Renderer | None = None

    def _get(self) -> Renderer:
        if self._renderer is None:
            self._renderer = self._factory()
        return _Kept(self._renderer)

    def render(self, recipe: Recipe, seed: int, frames: int, out: str | Path) -> Dataset:
        """Render (or resume) the frames; SynthloopError if fewer than 2 could be rendered."""
        silent = JobProgress(frames, "proxy")  # never entered: no bar, no JSON lines
        res = generate_frames(
            recipe, seed, range(frames), out, renderer_factory=self._get, progress=silent, quiet=True
        )
        ds = load_dataset(out)
        if len(ds.frames) < 2:
            raise SynthloopError(
                f"only {len(ds.frames)} proxy frame(s) rendered ({len(res.failed)} failed)", path=str(out)
            )
        return ds

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
