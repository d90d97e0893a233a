"""``synthloop export ...``: write a dataset (synthloop folder, COCO json, KITTI or BlenderProc
folder; auto-detected) as COCO, KITTI, depth PNGs or semantic PNGs.

Mount: ``app.add_typer(synthloop.commands.export.app, name="export")``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from synthloop.cli_common import cli_errors
from synthloop.dataset.types import Dataset
from synthloop.errors import SynthloopError

app = typer.Typer(help="Export a dataset to COCO / KITTI / depth / semantic maps.", no_args_is_help=True)


def load_source(src: Path, skip_invalid: bool = False, verify: bool = False) -> Dataset:
    """Load SRC with :func:`synthloop.importers.load_any` (``verify``: decode every image);
    report skipped records on stderr."""
    from synthloop.importers import load_any

    ds = load_any(src, skip_invalid=skip_invalid, verify_images=verify)
    skipped = ds.info.get("skipped") or []
    if skipped:
        print(f"skipped {len(skipped)} invalid record(s):", file=sys.stderr)
        for s in skipped:
            field = f".{s['field']}" if s.get("field") else ""
            print(f"  {s['record']}{field}: {s['reason']}", file=sys.stderr)
    return ds


SRC = typer.Argument(..., help="synthloop folder, COCO .json, KITTI folder or BlenderProc output")
DST = typer.Argument(..., help="output folder (written to a temp sibling, renamed when complete)")
SKIP = typer.Option(
    False, "--skip-invalid", help="skip invalid records (listed on stderr) instead of failing"
)
VERIFY = typer.Option(
    True, "--verify/--no-verify", help="decode every image first (finds truncated or garbage files)"
)


@app.command("coco")
@cli_errors
def coco_cmd(
    src: Path = SRC,
    dst: Path = DST,
    skip_invalid: bool = SKIP,
    no_copy_images: bool = typer.Option(False, "--no-copy-images", help="reference images where they are"),
    file_name: str = typer.Option("annotations.json", help="name of the JSON inside DST"),
    verify: bool = VERIFY,
) -> None:
    """COCO instances JSON (RLE masks) + images/.

    Example: synthloop export coco out/tabletop coco/ --no-copy-images
    """
    from synthloop.exporters.coco import write_coco

    ds = load_source(src, skip_invalid, verify)
    path = write_coco(ds, dst, copy_images=not no_copy_images, file_name=file_name)
    print(f"wrote {path} ({len(ds.frames)} images)")


@app.command("kitti")
@cli_errors
def kitti_cmd(
    src: Path = SRC,
    dst: Path = DST,
    layout: str = typer.Option("kitti", help="kitti (image_2/label_2/calib) or flat (images/labels, TAO)"),
    skip_invalid: bool = SKIP,
    keep_case: bool = typer.Option(False, "--keep-case", help="do not lower-case class names"),
    verify: bool = VERIFY,
) -> None:
    """KITTI object labels (15 fields) + images (+ calib).

    Example: synthloop export kitti out/tabletop kitti/ --layout flat
    """
    from synthloop.exporters.kitti import write_kitti

    ds = load_source(src, skip_invalid, verify)
    out = write_kitti(ds, dst, layout=layout, lowercase=not keep_case)
    print(f"wrote {out} ({len(ds.frames)} frames, layout {layout})")


@app.command("tao")
@cli_errors
def tao_cmd(
    src: Path = SRC,
    dst: Path = DST,
    spec: Path | None = typer.Option(
        None, "--spec", help="synthloop experiment spec YAML whose settings the TAO training spec carries"
    ),
    width: int | None = typer.Option(
        None, "--width", min=16, help="image width (rounded to a multiple of 16)"
    ),
    height: int | None = typer.Option(
        None, "--height", min=16, help="image height (rounded to a multiple of 16)"
    ),
    skip_invalid: bool = SKIP,
) -> None:
    """NVIDIA TAO DetectNet_v2 inputs: resized KITTI, dataset_convert spec, training spec.

    Example: synthloop export tao out/tabletop tao/ --spec train.yaml
    """
    from synthloop.training.spec import load_spec
    from synthloop.training.tao_spec import TRAIN_SPEC, export_tao

    if (width is None) != (height is None):
        raise SynthloopError("give both --width and --height, or neither")
    exp = load_spec(spec) if spec is not None else None
    ds = load_source(src, skip_invalid)
    size = (width, height) if width is not None and height is not None else None
    res = export_tao(ds, dst, exp, size, source=str(Path(src).absolute()))
    for note in res.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {res.dst} ({len(ds.frames)} frames at {res.width}x{res.height})")
    print(f"  tao detectnet_v2 dataset_convert -d {res.dst}/dataset_convert.txt -o {res.dst}/tfrecords/kitti")
    print(f"  tao detectnet_v2 train -e {res.dst}/{TRAIN_SPEC} -r RESULTS -k KEY")


def _write_maps(kind: str, src: Path, dst: Path) -> None:
    """``kind`` ``depth`` or ``semantic``: write SRC's per-frame maps to DST and say how many."""
    from synthloop.exporters.maps import write_depth_pngs, write_semantic_pngs

    write = write_depth_pngs if kind == "depth" else write_semantic_pngs
    paths = write(load_source(src), dst)
    print(f"wrote {len(paths)} {kind} maps to {dst}")


@app.command("depth")
@cli_errors
def depth_cmd(src: Path = SRC, dst: Path = DST) -> None:
    """Depth as 16-bit PNG (mm, 0 = no hit) + float32 .npy (m).

    Example: synthloop export depth out/tabletop depth/
    """
    _write_maps("depth", src, dst)


@app.command("semantic")
@cli_errors
def semantic_cmd(src: Path = SRC, dst: Path = DST) -> None:
    """Class-id PNGs (0 = background) + colour PNGs + colormap.txt/json.

    Example: synthloop export semantic out/tabletop semantic/
    """
    _write_maps("semantic", src, dst)
