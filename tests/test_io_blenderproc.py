"""BlenderProc fixtures (COCO writer folder, per-frame .hdf5) written the way BlenderProc writes them."""

from __future__ import annotations

import json
from itertools import groupby

import h5py
import numpy as np
import pytest
from PIL import Image

from synthloop.dataset.folder import load_depth, load_instance_map
from synthloop.errors import DatasetError
from synthloop.exporters.coco import dataset_to_coco
from synthloop.geometry.masks import rle_to_mask
from synthloop.importers import detect_format, load_any
from synthloop.importers.blenderproc import load_blenderproc_coco, load_blenderproc_hdf5

H, W = 24, 32


def _instance_map() -> np.ndarray:
    inst = np.zeros((H, W), np.int32)
    inst[0:6, 0:8] = 3  # touches pixel (0, 0): BlenderProc's RLE then starts with a 0 count
    inst[10:20, 12:30] = 5
    inst[2:4, 20:22] = 9  # category 0 in the attribute map: background-like, not an object
    return inst


def _bproc_rle(binary: np.ndarray) -> dict:
    """Uncompressed RLE as BlenderProc's writer makes it: column-major runs, leading 0 if first is set."""
    counts = []
    for i, (value, run) in enumerate(groupby(binary.ravel(order="F"))):
        if i == 0 and value == 1:
            counts.append(0)
        counts.append(len(list(run)))
    return {"counts": counts, "size": list(binary.shape)}


ATTRS = [
    {"idx": 3, "category_id": 1, "name": "bowl.001"},
    {"idx": 5, "category_id": 4, "name": "cup"},
    {"idx": 9, "category_id": 0, "name": "floor"},
]


def _write_bproc_coco(root) -> None:
    d = root / "coco_data"
    (d / "images").mkdir(parents=True)
    inst = _instance_map()
    anns, images = [], []
    for image_id in range(2):  # BlenderProc numbers images from 0
        fname = f"images/{image_id:06d}.jpg"
        Image.new("RGB", (W, H), (90, 90, 90)).save(d / fname)
        images.append({"id": image_id, "file_name": fname, "width": W, "height": H, "license": 1})
        for a in ATTRS:
            if a["category_id"] == 0:
                continue
            m = (inst == a["idx"]).astype(np.uint8)
            rows, cols = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
            ann = {
                "id": len(anns) + 1,
                "image_id": image_id,
                "category_id": a["category_id"],
                "iscrowd": 0,
                "area": int(m.sum()),
                "bbox": [
                    int(cols[0]),
                    int(rows[0]),
                    int(cols[-1] - cols[0] + 1),
                    int(rows[-1] - rows[0] + 1),
                ],
                "segmentation": _bproc_rle(m),
                "width": W,
                "height": H,
            }
            ann.update(a)  # custom props, as BlenderProc does
            anns.append(ann)
    cats = [
        {"id": 1, "supercategory": "coco_annotations", "name": "bowl"},
        {"id": 4, "supercategory": "x", "name": 4},
    ]
    data = {"info": {}, "licenses": [], "categories": cats, "images": images, "annotations": anns}
    (d / "coco_annotations.json").write_text(json.dumps(data))


def test_blenderproc_coco_folder_loads(tmp_path):
    _write_bproc_coco(tmp_path)
    assert detect_format(tmp_path) == "blenderproc-coco"
    ds = load_any(tmp_path)
    assert ds.info["source_format"] == "blenderproc-coco" and ds.info["skipped"] == []
    assert [f.frame_id for f in ds.frames] == ["0", "1"]
    assert [(c.id, c.name) for c in ds.categories] == [(1, "bowl"), (4, "4")]
    inst = _instance_map()
    o1, o2 = ds.frames[0].objects
    assert not o1.iscrowd and np.array_equal(rle_to_mask(o1.mask), inst == 3)
    assert np.array_equal(rle_to_mask(o2.mask), inst == 5)
    assert o1.bbox == (0.0, 0.0, 8.0, 6.0) and o1.area == 48.0
    assert o1.attributes["idx"] == 3 and o1.attributes["name"] == "bowl.001"
    coco = dataset_to_coco(ds)
    assert len(coco["annotations"]) == 4 and all(
        isinstance(a["segmentation"]["counts"], str) for a in coco["annotations"]
    )
    assert ds.frames[0].image_path.is_file()


def _write_hdf5(path, colors, depth, inst, attrs) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset("colors", data=colors, compression="gzip")
        f.create_dataset("depth", data=depth, compression="gzip")
        f.create_dataset("instance_segmaps", data=inst, compression="gzip")
        raw = np.bytes_(json.dumps(attrs))
        f.create_dataset("instance_attribute_maps", data=raw, dtype=raw.dtype)


def test_blenderproc_hdf5_frames_load(tmp_path):
    src = tmp_path / "out"
    src.mkdir()
    rng = np.random.default_rng(0)
    inst = _instance_map()
    depth = np.where(inst > 0, 1.5, 1e10).astype(np.float32)  # background: huge value
    for i in (0, 2, 10):
        colors = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
        colors[0, 0] = (i, i, i)
        _write_hdf5(src / f"{i}.hdf5", colors, depth, inst, ATTRS)
    assert detect_format(src) == "blenderproc-hdf5"
    ds = load_blenderproc_hdf5(src, tmp_path / "conv", category_names={1: "bowl"})
    assert [f.frame_id for f in ds.frames] == ["000000", "000002", "000010"]  # numeric order
    assert [(c.id, c.name) for c in ds.categories] == [(1, "bowl"), (4, "class_4")]
    f = ds.frames[1]
    assert np.asarray(Image.open(f.image_path))[0, 0].tolist() == [2, 2, 2]
    assert np.array_equal(load_instance_map(f), inst)
    d = load_depth(f)
    assert np.all(np.isinf(d[inst == 0])) and np.allclose(d[inst > 0], 1.5)
    objs = f.objects
    assert [o.instance_id for o in objs] == [3, 5]  # idx 9 has category 0: not an object
    assert np.array_equal(rle_to_mask(objs[1].mask), inst == 5)
    assert objs[1].bbox == (12.0, 10.0, 30.0, 20.0) and objs[1].area == 180.0
    assert objs[0].attributes == {"name": "bowl.001"}


def test_blenderproc_hdf5_missing_key(tmp_path):
    with h5py.File(tmp_path / "0.hdf5", "w") as f:
        f.create_dataset("colors", data=np.zeros((H, W, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"0\.hdf5: instance_segmaps: missing"):
        load_blenderproc_hdf5(tmp_path, tmp_path / "conv")
    assert not (tmp_path / "conv").exists()


def test_blenderproc_coco_json_missing(tmp_path):
    with pytest.raises(DatasetError, match="coco_annotations.json"):
        load_blenderproc_coco(tmp_path)
