"""``synthloop spec from-tao``: a TAO DetectNet_v2 training spec as a synthloop experiment spec.

Mount: ``app.add_typer(synthloop.commands.spec.app, name="spec")``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from synthloop.cli_common import cli_errors
from synthloop.errors import SynthloopError

app = typer.Typer(help="Convert experiment specs from other tools.", no_args_is_help=True)


@app.command("from-tao")
@cli_errors
def from_tao_cmd(
    tao_spec: Path = typer.Argument(..., help="TAO DetectNet_v2 training spec (protobuf text format)"),
    out: Path = typer.Option(..., "--out", "-o", help="synthloop experiment spec YAML to write"),
    dataset: list[str] = typer.Option(
        [],
        "--dataset",
        "-d",
        help="synthloop dataset folder or COCO .json to train on (repeat; default: the spec's "
        "data_sources image_directory_path; TAO's TFRecords are not read)",
    ),
) -> None:
    """Map every TAO field with a synthloop counterpart; list the others on stderr.

    Example: synthloop spec from-tao detectnet_v2_train.txt --out train.yaml -d out/tabletop
    """
    import yaml

    from synthloop.atomic import atomic_write_bytes
    from synthloop.training.tao_import import tao_to_spec

    try:
        text = tao_spec.read_text()
    except OSError as e:
        raise SynthloopError(f"cannot read ({e.strerror})", path=str(tao_spec)) from None
    imp = tao_to_spec(text, str(tao_spec), dataset or None)
    imp.spec()  # validate before writing
    atomic_write_bytes(out, yaml.safe_dump(imp.data, sort_keys=False).encode())
    print(f"wrote {out} (classes: {', '.join(imp.classes)})")
    if imp.unmapped:
        print(f"{len(imp.unmapped)} TAO field(s) without a synthloop counterpart:", file=sys.stderr)
        for line in imp.unmapped:
            print(f"  {line}", file=sys.stderr)
