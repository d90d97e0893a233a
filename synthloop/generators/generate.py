"""The generation loop: (recipe, seed, frame indices) -> dataset folder, resumable.

Per frame: ``sample_scene`` -> ``Renderer.render`` -> ``annotate_frame`` (pure numpy) ->
``DatasetWriter.write_frame`` (files first, record last, atomically). Frames whose record exists
are skipped, so a killed job re-run with the same arguments continues where it stopped and
produces the same records as an uninterrupted run.

A frame whose render fails (:class:`~synthloop.errors.RenderError`) is retried once with a fresh
Blender process; if it fails again the error is written to ``failures/<stem>.json`` and the job
goes on (the frame is reported, never silently dropped; a later run retries it).
"""

from __future__ import annotations

import platform
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthloop import __version__
from synthloop.atomic import atomic_write_bytes, atomic_write_json, remove_stale_temps
from synthloop.dataset.folder import MANIFEST, DatasetWriter, frame_stem, object_to_record, read_manifest
from synthloop.dataset.types import Category
from synthloop.errors import DatasetError, RenderError, SynthloopError
from synthloop.generators.renderer import RenderedFrame, Renderer
from synthloop.generators.sensor import apply_sensor
from synthloop.geometry.annotate import FrameAnnotation, annotate_frame
from synthloop.progress import JobProgress
from synthloop.scenes.recipe import Recipe, recipe_hash, recipe_to_yaml
from synthloop.scenes.sampler import category_specs, sample_scene
from synthloop.scenes.spec import SceneSpec

MAX_FRAMES = 10_000_000  # frames per generate call (indices are streamed; the cap bounds its result lists)

RendererFactory = Callable[[], Renderer]
FrameClaim = Callable[[int], AbstractContextManager[Any] | None]


def categories_of(spec_or_recipe: SceneSpec | Recipe) -> list[Category]:
    """The dataset categories of a SceneSpec, or of a recipe (same ids: 1.. in recipe order)."""
    specs = (
        spec_or_recipe.categories if isinstance(spec_or_recipe, SceneSpec) else category_specs(spec_or_recipe)
    )
    return [
        Category(
            id=c.id, name=c.name, supercategory=c.supercategory, keypoints=c.keypoints, skeleton=c.skeleton
        )
        for c in specs
    ]


def _r(x: float) -> float:
    return float(round(float(x), 10))


def build_record(spec: SceneSpec, ann: FrameAnnotation, rendered: RenderedFrame) -> dict[str, Any]:
    """The frame record (JSON-able, deterministic: no timings, no timestamps)."""
    return {
        "source": "synthetic",
        "frame_index": spec.frame_index,
        "seed": spec.seed,
        "recipe_name": spec.recipe_name,
        "recipe_hash": spec.recipe_hash,
        "scene_hash": spec.content_hash(),
        "width": spec.render.width,
        "height": spec.render.height,
        "camera": {
            "K": [[_r(v) for v in row] for row in ann.camera.K],
            "world_to_cam": [[_r(v) for v in row] for row in ann.camera.world_to_cam],
            "focal_length_mm": spec.camera.focal_length_mm,
            "sensor_width_mm": spec.camera.sensor_width_mm,
            "axes": "opencv",
        },
        "objects": [object_to_record(o) for o in ann.objects],
        "distractors": ann.distractors,
        "scene_params": dict(spec.params),
        "scene": spec.to_json_dict(),
        "versions": {
            "synthloop": __version__,
            "blender": rendered.blender_version,
            "python": platform.python_version(),
        },
    }


@dataclass
class GenerateResult:
    out: Path
    rendered: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    timings: list[dict[str, float]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.failed


def default_renderer_factory(
    threads: int = 0, device: str = "cpu", restart_every: int | None = 200
) -> RendererFactory:
    """Factory of Blender workers with ``threads`` Cycles threads on ``device`` (``cpu``,
    ``cuda``, ``optix``, ``auto``), restarted every ``restart_every`` frames."""

    def make() -> Renderer:
        from synthloop.generators.blender_renderer import BlenderRenderer

        return BlenderRenderer(threads=threads, device=device, restart_every=restart_every)

    return make


def render_one(renderer: Renderer, spec: SceneSpec) -> tuple[RenderedFrame, FrameAnnotation]:
    """Render ``spec``, pass the image through its sensor (``spec.sensor``: noise, JPEG) and
    annotate it from the exact id and depth passes."""
    rendered = renderer.render(spec)
    if spec.sensor is not None:
        t0 = time.perf_counter()
        rendered.rgb = apply_sensor(rendered.rgb, spec.sensor)
        rendered.timings["sensor"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ann = annotate_frame(spec, rendered.instance_ids, rendered.depth)
    rendered.timings["annotate"] = time.perf_counter() - t0
    return rendered, ann


def generate_frames(
    recipe: Recipe,
    seed: int,
    frame_indices: Sequence[int] | Iterable[int],
    out: str | Path,
    *,
    renderer_factory: RendererFactory | None = None,
    quiet: bool = False,
    description: str = "render",
    retries: int = 1,
    progress: JobProgress | None = None,
    claim: FrameClaim | None = None,
    poll_seconds: float = 0.5,
) -> GenerateResult:
    """Render the given frame indices of ``recipe`` with ``seed`` into the dataset folder ``out``.

    Resumable: frames already complete are skipped. ``claim(i)`` (optional) returns a context
    manager that holds frame i exclusively, or None when another process holds it: such frames
    are retried after the others until they are complete (rendered by the holder) or free (the
    holder died). Returns what was rendered, skipped, failed.
    """
    out = Path(out)
    # a range is streamed (never materialized: a job of 10**7 frames costs no frame list); other
    # iterables are read once into a list
    indices: range | list[int] = frame_indices if isinstance(frame_indices, range) else list(frame_indices)
    writer = _open_writer(recipe, seed, out)
    done = writer.completed_stems()
    own_progress = progress is None
    prog = progress or JobProgress(
        len(indices), description, quiet=quiet, completed=_count_done(indices, done)
    )
    session = _Session(
        recipe, seed, out, writer, renderer_factory or default_renderer_factory(), retries, prog
    )
    try:
        if own_progress:
            prog.__enter__()
        pending: Iterable[int] = indices
        first_pass = True
        while pending:
            deferred = [i for i in pending if _visit(i, first_pass and frame_stem(i) in done, session, claim)]
            if deferred:
                time.sleep(poll_seconds)
            pending, first_pass = deferred, False
    finally:
        session.close()
        if own_progress:
            prog.__exit__(None, None, None)
    return session.result


class _Session:
    """One :func:`generate_frames` call's state: its writer, progress and result, and the Blender
    worker it reuses from frame to frame (None until the first render, and after a failure)."""

    def __init__(
        self,
        recipe: Recipe,
        seed: int,
        out: Path,
        writer: DatasetWriter,
        factory: RendererFactory,
        retries: int,
        prog: JobProgress,
    ) -> None:
        self.recipe, self.seed, self.out, self.writer = recipe, seed, out, writer
        self.factory, self.retries, self.prog = factory, retries, prog
        self.result = GenerateResult(out=out)
        self.renderer: Renderer | None = None

    def skip(self, i: int) -> None:
        """Frame i was completed by another worker while this call ran."""
        self.result.skipped.append(i)
        self.prog.advance(frame=i, skipped=True)

    def render(self, i: int) -> None:
        """Render and write frame i, keeping the worker for the next frame."""
        self.renderer = _render_and_write(
            i,
            self.recipe,
            self.seed,
            self.out,
            self.writer,
            self.renderer,
            self.factory,
            self.retries,
            self.prog,
            self.result,
        )

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.close()


def _visit(i: int, done_before: bool, session: _Session, claim: FrameClaim | None) -> bool:
    """Frame i in one pass over the pending frames: skipped when complete (``done_before``: before
    this call, already counted by the progress bar), rendered when it can be claimed. True when
    another process holds it, so it is tried again after the others."""
    if done_before:
        session.result.skipped.append(i)
        return False
    stem = frame_stem(i)
    if session.writer.is_complete(stem):  # finished meanwhile by another worker
        session.skip(i)
        return False
    lock = claim(i) if claim is not None else nullcontext()
    if lock is None:
        return True
    with lock:
        if session.writer.is_complete(stem):
            session.skip(i)
        else:
            session.render(i)
    return False


def _open_writer(recipe: Recipe, seed: int, out: Path) -> DatasetWriter:
    """The dataset writer of ``out`` for (``recipe``, ``seed``), with the recipe stored beside the
    frames; refuses a folder of another job, and leaves no empty folder behind if it fails."""
    rhash = recipe_hash(recipe)
    check_job_identity(out, rhash, seed)
    created = not out.exists()
    try:
        writer = DatasetWriter(
            out,
            categories_of(recipe),
            info={
                "recipe_name": recipe.name,
                "recipe_hash": rhash,
                "seed": seed,
                "generator": f"synthloop {__version__}",
            },
        )
        recipe_file = out / "recipe.yaml"
        if not recipe_file.exists():
            atomic_write_bytes(recipe_file, recipe_to_yaml(recipe).encode())
    except BaseException:  # a full disk or read-only folder: leave no empty dataset behind
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    remove_stale_temps(out)
    return writer


def _count_done(indices: range | list[int], done: set[str]) -> int:
    """How many of ``indices`` have their stem in ``done``: O(len(done)) for a range of step 1
    (stems are parsed back to frame indices), one pass over ``indices`` otherwise."""
    if isinstance(indices, range) and indices.step == 1:
        return sum(1 for s in done if s.isdigit() and int(s) in indices and frame_stem(int(s)) == s)
    return sum(1 for i in indices if frame_stem(i) in done)


def _render_and_write(
    i: int,
    recipe: Recipe,
    seed: int,
    out: Path,
    writer: DatasetWriter,
    renderer: Renderer | None,
    factory: RendererFactory,
    retries: int,
    prog: JobProgress,
    result: GenerateResult,
) -> Renderer | None:
    """Render frame i (retrying a failed render with a fresh renderer) and write it.

    Returns the renderer to reuse for the next frame (None after a failure closed it)."""
    stem = frame_stem(i)
    spec = sample_scene(recipe, seed, i)
    t0 = time.perf_counter()
    last_error = ""
    for attempt in range(retries + 1):
        try:
            if renderer is None:
                renderer = factory()
            rendered, ann = render_one(renderer, spec)
            break
        except RenderError as e:
            last_error = str(e)
            prog.log("render_error", frame=i, attempt=attempt, error=last_error[-500:])
            if renderer is not None:
                renderer.close()
            renderer = None
    else:
        result.failed[i] = last_error
        atomic_write_json(
            out / "failures" / f"{stem}.json",
            {"frame_index": i, "error": last_error, "attempts": retries + 1},
        )
        prog.advance(frame=i, failed=True)
        return renderer
    writer.write_frame(
        stem,
        rgb=rendered.rgb,
        instance_ids=rendered.instance_ids,
        depth=rendered.depth,
        record=build_record(spec, ann, rendered),
        image_format=spec.render.image_format,
        jpeg_quality=spec.render.jpeg_quality,
    )
    (out / "failures" / f"{stem}.json").unlink(missing_ok=True)
    timings = dict(rendered.timings)
    timings["frame_total"] = time.perf_counter() - t0
    result.timings.append(timings)
    result.rendered.append(i)
    prog.advance(frame=i, objects=len(ann.objects), render_s=round(timings.get("render", 0.0), 3))
    return renderer


def check_job_identity(out: Path, rhash: str, seed: int) -> None:
    """Refuse to add frames to a folder written for another recipe (hash: it covers resolution
    and render settings) or seed: mixing two jobs in one folder gives a dataset of neither."""
    if not (out / MANIFEST).exists():
        return
    info = read_manifest(out).get("info") or {}
    for key, want in (("recipe_hash", rhash), ("seed", seed)):
        have = info.get(key)
        if have is not None and have != want:
            raise DatasetError(
                f"the folder holds frames of {key} {str(have)[:12]}, not {str(want)[:12]}; "
                "use a new output folder",
                path=str(out / MANIFEST),
                where=f"info.{key}",
            )


def generate_dataset(
    recipe: Recipe,
    seed: int,
    frames: int,
    out: str | Path,
    *,
    start: int = 0,
    renderer_factory: RendererFactory | None = None,
    quiet: bool = False,
) -> GenerateResult:
    """Render frames ``start .. start+frames-1``; marks the folder complete when nothing failed.
    At most :data:`MAX_FRAMES` frames per call."""
    if not 1 <= frames <= MAX_FRAMES or start < 0:
        raise SynthloopError(f"frames must be in 1..{MAX_FRAMES} and start >= 0", where="--frames")
    result = generate_frames(
        recipe, seed, range(start, start + frames), out, renderer_factory=renderer_factory, quiet=quiet
    )
    if result.complete:
        mark_complete(out, frames=frames, start=start)
    return result


def mark_complete(out: str | Path, **fields: Any) -> None:
    """Record in ``dataset.json`` that the planned frames are all written."""
    import json

    manifest = Path(out) / "dataset.json"
    data = json.loads(manifest.read_text())
    data.setdefault("info", {}).update({"complete": True, **fields})
    atomic_write_json(manifest, data)
