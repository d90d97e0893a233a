"""``synthloop geometry ...``: inspect meshes and preview scenes without Blender.

Mount: ``app.add_typer(synthloop.commands.geometry.app, name="geometry")``.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from synthloop.cli_common import user_errors
from synthloop.errors import SynthloopError

app = typer.Typer(help="Meshes and Blender-free scene previews.", no_args_is_help=True)


def _parse_params(items: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SynthloopError(f"expected KEY=VALUE, got {item!r}", where="--set")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


@app.command("mesh")
def mesh_cmd(
    kind: str = typer.Argument(..., help="shape kind: ellipsoid, wrinkled_ellipsoid, teardrop, box, ..."),
    dims: tuple[float, float, float] = typer.Option(..., "--dims", help="extents x y z in metres"),
    set_: list[str] = typer.Option([], "--set", help="ShapeSpec field, e.g. --set wrinkle_amplitude=0.1"),
    out: Path = typer.Option(..., "--out", "-o", help="output .obj file"),
) -> None:
    """Build a ShapeSpec's mesh and write it as OBJ (prints counts and checks).

    Example: synthloop geometry mesh box --dims 0.1 0.05 0.02 --out box.obj
    """
    from pydantic import ValidationError

    from synthloop.atomic import atomic_write_bytes
    from synthloop.geometry.meshes import build_mesh, mesh_to_obj, signed_volume
    from synthloop.scenes.spec import ShapeSpec

    with user_errors():
        try:
            shape = ShapeSpec(kind=kind, dimensions=dims, **_parse_params(set_))
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            raise SynthloopError(err["msg"], where=f"shape.{field}") from None
        mesh = build_mesh(shape)
        atomic_write_bytes(out, mesh_to_obj(mesh).encode())
        print(
            f"{out}: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces, "
            f"watertight={mesh.closed}, volume={signed_volume(mesh.vertices, mesh.faces):.6g} m^3"
        )


def _load_spec(path: Path):
    from pydantic import ValidationError

    from synthloop.scenes.spec import SceneSpec

    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SynthloopError("file not found", path=str(path)) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise SynthloopError(f"not a JSON file: {exc}", path=str(path)) from None
    if isinstance(data, dict) and isinstance(data.get("scene"), dict):
        data = data["scene"]  # a synthloop frame record
    try:
        return SceneSpec.from_json_dict(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise SynthloopError(err["msg"], path=str(path), where=".".join(str(p) for p in err["loc"])) from None


@app.command("preview")
def preview_cmd(
    scene: Path | None = typer.Argument(None, help="SceneSpec JSON, or a frame record (records/NNNNNN.json)"),
    recipe: str | None = typer.Option(None, "--recipe", "-r", help="instead of SCENE: bundled name or YAML"),
    seed: int = typer.Option(0, "--seed", "-s", help="with --recipe: the job seed"),
    frame: int = typer.Option(0, "--frame", "-f", help="with --recipe: the frame index"),
    out: Path = typer.Option(..., "--out", "-o", help="output PNG"),
) -> None:
    """Z-buffer preview of a scene with its annotations (boxes, keypoints); no Blender needed.

    Example: synthloop geometry preview --recipe tabletop --seed 0 --frame 3 --out preview.png
    """
    from PIL import Image

    from synthloop.atomic import atomic_save_image
    from synthloop.geometry.preview import preview_frame

    with user_errors():
        if (scene is None) == (recipe is None):
            raise SynthloopError("give either a SCENE file or --recipe", where="preview")
        if recipe is not None:
            from synthloop.scenes.recipe import load_recipe
            from synthloop.scenes.sampler import sample_scene

            spec = sample_scene(load_recipe(recipe), seed, frame)
        else:
            spec = _load_spec(scene)
        img, ann = preview_frame(spec)
        atomic_save_image(out, Image.fromarray(img))
        for o in ann.objects:
            box = [round(v, 1) for v in o.bbox]
            print(
                f"instance {o.instance_id} category {o.category_id}: area {int(o.area)} bbox {box} "
                f"occlusion {o.occlusion:.3f} truncation {o.truncation:.3f}"
            )
        print(f"wrote {out} ({len(ann.objects)} labeled objects, {len(ann.distractors)} distractors)")
