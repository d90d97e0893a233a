"""The Python API: ``import synthloop`` is light and gives the entry points; the API reference
builds with pdoc (so docstrings and signatures cannot rot unnoticed)."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

import synthloop
from synthloop import api

API_MODULES = [
    "synthloop",
    "synthloop.api",
    "synthloop.dataset.types",
    "synthloop.training.spec",
    "synthloop.evaluation.detections",
    "synthloop.evaluation.report",
]


def test_import_synthloop_is_light_and_lazy():
    code = (
        "import sys, synthloop; heavy = ('torch', 'bpy', 'cv2', 'synthloop.api');"
        "print([m for m in heavy if m in sys.modules]); f = synthloop.train; print(f.__module__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["[]", "synthloop.api"]


def test_entry_points_are_the_api_functions():
    for name in ("load_dataset", "generate", "train", "evaluate", "predict", "load_spec"):
        assert getattr(synthloop, name) is getattr(api, name)
        assert name in dir(synthloop) and getattr(api, name).__doc__
    with pytest.raises(AttributeError):
        synthloop.not_an_entry_point  # noqa: B018


def test_api_round_trip_on_a_toy_dataset(tmp_path):
    from synthloop.evaluation.detections import FrameDetections
    from synthloop.exporters.coco import write_coco
    from synthloop.training.toydata import make_toy_dataset

    toy = make_toy_dataset(tmp_path / "toy", num_frames=2, width=64, height=48, seed=2)
    path = write_coco(toy, tmp_path / "coco")
    ds = synthloop.load_dataset(path)
    perfect = [
        FrameDetections(
            f.frame_id,
            [o.bbox for o in f.objects],
            [0.9] * len(f.objects),
            [o.category_id for o in f.objects],
        )
        for f in ds.frames
    ]
    report = synthloop.evaluate(ds, perfect, iou_types=("bbox",))
    assert report.coco["bbox"]["stats"]["AP"] == pytest.approx(1.0)
    spec = synthloop.load_spec({"datasets": [{"kind": "synthetic", "paths": [str(tmp_path)]}], "epochs": 1})
    assert spec.epochs == 1 and synthloop.load_spec(spec) is spec


def test_api_reference_builds_with_pdoc(tmp_path):
    pdoc = pytest.importorskip("pdoc")
    pdoc.render.configure(docformat="restructuredtext")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a name pdoc cannot resolve fails the build
        pdoc.pdoc(*API_MODULES, output_directory=tmp_path)
    page = (tmp_path / "synthloop" / "api.html").read_text()
    for name in ("load_dataset", "generate", "train", "predict", "evaluate"):
        assert f'id="{name}"' in page, name
    assert (tmp_path / "synthloop" / "training" / "spec.html").is_file()
