"""Job plans: a big render job split into deterministic shards of frame indices.

``JOB/job.yaml`` holds the plan (pydantic, YAML); ``JOB/recipe.yaml`` is a copy of the recipe
whose hash the plan records, so the job renders the same frames wherever and whenever it runs.
Shard ``i`` covers frame indices ``[start, stop)`` and renders into ``JOB/shards/NNNN/`` (a
synthloop dataset folder). Frame ``k`` is a pure function of (recipe, seed, k): which shard or
worker renders it never matters.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from synthloop import __version__
from synthloop.atomic import atomic_write_bytes
from synthloop.errors import SynthloopError
from synthloop.generators.devices import check_device
from synthloop.scenes.recipe import Recipe, load_recipe, recipe_hash, recipe_to_yaml
from synthloop.scenes.render_config import RenderDevice
from synthloop.userfiles import load_yaml_file
from synthloop.validation import invalid

JOB_SCHEMA = "synthloop.job/1"
PLAN_FILE = "job.yaml"
RECIPE_FILE = "recipe.yaml"
WORKER_ERROR_FILE = "worker_error.json"  # in a shard folder: why its last worker process failed


class FarmError(SynthloopError):
    """A job folder or plan that cannot be used."""


class Shard(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    index: int
    start: int
    stop: int

    @property
    def frames(self) -> range:
        return range(self.start, self.stop)

    @property
    def name(self) -> str:
        return f"{self.index:04d}"


class JobPlan(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    schema_: str = Field(default=JOB_SCHEMA, alias="schema")
    recipe_name: str
    recipe_hash: str
    seed: int
    frames: int = Field(ge=1)
    start: int = Field(default=0, ge=0)
    shards: list[Shard]
    restart_every: int = Field(default=200, ge=1, description="restart Blender every M frames")
    device: RenderDevice = Field(
        default="cpu", description="render device of the workers (cpu|cuda|optix|auto)"
    )
    synthloop_version: str = __version__

    def shard(self, index: int) -> Shard:
        for s in self.shards:
            if s.index == index:
                return s
        raise FarmError(f"no shard {index} (job has {len(self.shards)} shards: 0..{len(self.shards) - 1})")


def split_frames(start: int, frames: int, shards: int) -> list[Shard]:
    """Contiguous, nearly equal frame ranges: sizes differ by at most one, none empty."""
    if shards < 1:
        raise FarmError("shards must be >= 1", where="--shards")
    shards = min(shards, frames)
    base, extra = divmod(frames, shards)
    out, s = [], start
    for i in range(shards):
        n = base + (1 if i < extra else 0)
        out.append(Shard(index=i, start=s, stop=s + n))
        s += n
    return out


def plan_job(
    recipe: str | Path | Recipe,
    frames: int,
    seed: int,
    shards: int,
    out: str | Path,
    *,
    start: int = 0,
    restart_every: int = 200,
    device: str | None = None,
) -> JobPlan:
    """Write ``out/job.yaml`` + ``out/recipe.yaml``. Re-planning an existing job with the same
    parameters is a no-op; with different ones it is refused (the shards on disk would mix).
    ``device`` (None: the recipe's ``render.device``) is where the workers render; a GPU device
    makes the cluster job files request one GPU per worker."""
    rec = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    plan = JobPlan(
        recipe_name=rec.name,
        recipe_hash=recipe_hash(rec),
        seed=seed,
        frames=frames,
        start=start,
        shards=split_frames(start, frames, shards),
        restart_every=restart_every,
        device=check_device(device or rec.render.device),
    )
    out = Path(out)
    existing = out / PLAN_FILE
    if existing.exists():
        old = load_plan(out)
        same = old.model_dump(exclude={"synthloop_version"}) == plan.model_dump(exclude={"synthloop_version"})
        if not same:
            raise FarmError("a different job is already planned here; use a new folder", path=str(existing))
        return old
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / RECIPE_FILE, recipe_to_yaml(rec).encode())
    text = yaml.safe_dump(plan.model_dump(by_alias=True), sort_keys=False)
    atomic_write_bytes(existing, text.encode())
    return plan


def load_plan(job: str | Path) -> JobPlan:
    path = Path(job) / PLAN_FILE
    if not path.exists():
        raise FarmError(
            "not a job folder (no job.yaml); create one with `synthloop farm plan`", path=str(job)
        )
    data = load_yaml_file(path, FarmError)
    try:
        return JobPlan.model_validate(data)
    except ValidationError as e:
        raise invalid(FarmError, e, str(path)) from None


def load_job_recipe(job: str | Path, plan: JobPlan) -> Recipe:
    """The job's recipe copy, checked against the plan's hash."""
    path = Path(job) / RECIPE_FILE
    rec = load_recipe(path)
    h = recipe_hash(rec)
    if h != plan.recipe_hash:
        raise FarmError(
            f"recipe hash {h[:12]} differs from the plan's {plan.recipe_hash[:12]}", path=str(path)
        )
    return rec


def shard_dir(job: str | Path, shard: Shard) -> Path:
    return Path(job) / "shards" / shard.name
