"""COCO exporter and importer: exactness, round trips, real data, bad input."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import REAL, synthetic_dataset
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from synthloop.dataset.folder import load_instance_map
from synthloop.errors import DatasetError
from synthloop.exporters.coco import dataset_to_coco, write_coco
from synthloop.geometry.masks import mask_to_rle, rle_to_mask
from synthloop.importers.coco import load_coco

COCO128 = REAL / "coco128" / "instances.json"
FRUITS = REAL / "fruits-nuts"


def _coco(path: Path) -> COCO:
    c = COCO()
    c.dataset = json.loads(path.read_text())
    c.createIndex()
    return c


def test_export_is_exact_coco(tmp_path):
    ds = synthetic_dataset(tmp_path)
    path = write_coco(ds, tmp_path / "coco")
    c = _coco(path)
    data = json.loads(path.read_text())
    assert [im["id"] for im in data["images"]] == [1, 2]
    assert [a["id"] for a in data["annotations"]] == list(range(1, len(data["annotations"]) + 1))
    cats = {c_["id"]: c_ for c_ in data["categories"]}
    assert (
        sorted(cats) == [1, 3] and cats[1]["keypoints"] == ["stem", "tip"] and cats[1]["skeleton"] == [[1, 2]]
    )
    assert data["info"]["version"] == __import__("synthloop").__version__
    # the fully hidden object (frame 0, instance 4) is left out: 4 visible objects remain
    assert len(data["annotations"]) == 4 and all(a["area"] > 0 for a in data["annotations"])
    for img, frame in zip(data["images"], ds.frames, strict=True):
        assert (path.parent / "images" / img["file_name"]).is_file()
        inst = load_instance_map(frame)
        visible = [o for o in frame.objects if o.area > 0]
        anns = c.loadAnns(c.getAnnIds(imgIds=[img["id"]]))
        assert len(anns) == len(visible)
        for ann, obj in zip(anns, visible, strict=True):
            m = c.annToMask(ann).astype(bool)
            assert np.array_equal(m, inst == obj.instance_id)  # decoded RLE == instance-map pixels
            assert isinstance(ann["segmentation"]["counts"], str)
            assert ann["area"] == m.sum()
            x, y, w, h = mask_utils.toBbox(mask_utils.encode(np.asfortranarray(m.astype(np.uint8))))
            assert ann["bbox"] == [x, y, w, h]
            assert ann["iscrowd"] == int(obj.iscrowd)
    kp_ann = data["annotations"][0]
    assert kp_ann["keypoints"] == [7.5, 11.5, 2, 20.0, 28.0, 1] and kp_ann["num_keypoints"] == 2
    ext = kp_ann["synthloop"]
    assert ext["occlusion"] == 0.0 and ext["attributes"] == {"scale": 1.25} and "occlusion" not in kp_ann
    assert cats[1]["keypoint_sigmas"] == [0.05, 0.05] and data["info"]["synthloop_coco_layout"] == 2
    kp_ann2 = data["annotations"][2]  # frame 1 fig: first keypoint not labeled -> 0,0,0
    assert kp_ann2["keypoints"][:3] == [0, 0, 0] and kp_ann2["num_keypoints"] == 1
    assert data["annotations"][3]["iscrowd"] == 1


def test_mask_from_instance_map_when_object_has_none(tmp_path):
    ds = synthetic_dataset(tmp_path)
    for f in ds.frames:
        for o in f.objects:
            o.mask = None
    data = dataset_to_coco(ds)
    inst = load_instance_map(ds.frames[0])
    assert np.array_equal(rle_to_mask(data["annotations"][1]["segmentation"]), inst == 2)
    assert len(data["annotations"]) == 4  # hidden object (empty map region) still left out


def test_synthloop_coco_roundtrip_is_identical(tmp_path):
    ds = synthetic_dataset(tmp_path)
    path = write_coco(ds, tmp_path / "coco")
    ds2 = load_coco(path)
    assert [f.frame_id for f in ds2.frames] == [f.frame_id for f in ds.frames]
    first = json.loads(path.read_text())
    again = dataset_to_coco(ds2)
    assert again["annotations"] == first["annotations"]
    assert again["categories"] == first["categories"]
    assert again["images"] == first["images"]
    o = ds2.frames[0].objects[0]
    assert o.box3d == ds.frames[0].objects[0].box3d and o.keypoints == ds.frames[0].objects[0].keypoints


def test_polygon_uncompressed_and_compressed_rle_import(tmp_path):
    m = np.zeros((20, 30), bool)
    m[4:10, 6:16] = True
    poly = [[6, 4, 16, 4, 16, 10, 6, 10]]
    fortran = m.ravel(order="F")
    runs, cur, n = [], False, 0
    for v in fortran:
        if v != cur:
            runs.append(n)
            cur, n = v, 0
        n += 1
    runs.append(n)
    data = {
        "images": [{"id": 5, "file_name": "a.png", "width": 30, "height": 20}],
        "categories": [{"id": 7, "name": "x"}, {"id": 2, "name": "y"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 5,
                "category_id": 7,
                "bbox": [6, 4, 10, 6],
                "area": 60,
                "segmentation": poly,
            },
            {
                "id": 2,
                "image_id": 5,
                "category_id": 7,
                "bbox": [6, 4, 10, 6],
                "area": 60,
                "iscrowd": 1,
                "segmentation": {"size": [20, 30], "counts": runs},
            },
            {
                "id": 3,
                "image_id": 5,
                "category_id": 2,
                "bbox": [6, 4, 10, 6],
                "area": 60,
                "segmentation": mask_to_rle(m),
            },
        ],
    }
    (tmp_path / "c.json").write_text(json.dumps(data))
    ds = load_coco(tmp_path / "c.json")
    assert [c.id for c in ds.categories] == [2, 7]  # gaps and order kept as ids
    objs = ds.frames[0].objects
    ref = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(poly, 20, 30))).astype(bool)
    assert np.array_equal(rle_to_mask(objs[0].mask), ref)  # same raster as pycocotools' annToMask
    assert np.array_equal(rle_to_mask(objs[1].mask), m) and objs[1].iscrowd
    assert np.array_equal(rle_to_mask(objs[2].mask), m) and not objs[2].iscrowd
    assert objs[0].bbox == (6.0, 4.0, 16.0, 10.0) and objs[0].area == 60.0
    assert ds.frames[0].frame_id == "5"


def test_missing_image_size_read_from_header(tmp_path):
    Image.new("RGB", (31, 17)).save(tmp_path / "im.jpg")
    data = {"images": [{"id": 1, "file_name": "im.jpg"}], "categories": [{"id": 1, "name": "a"}]}
    (tmp_path / "c.json").write_text(json.dumps(data))
    f = load_coco(tmp_path / "c.json").frames[0]
    assert (f.width, f.height) == (31, 17) and f.image_path == (tmp_path / "im.jpg").resolve()


@pytest.mark.skipif(not COCO128.exists(), reason="coco128 not present at ../shared/data/real/coco128")
def test_coco128_import_export_matches_pycocotools(tmp_path):
    ds = load_coco(COCO128)
    assert len(ds.frames) == 128 and len(ds.categories) == 80 and ds.info["skipped"] == []
    assert sum(o.iscrowd for f in ds.frames for o in f.objects) == 10
    out = write_coco(ds, tmp_path / "out", copy_images=False)
    a, b = COCO(str(COCO128)), COCO(str(out))
    assert {c["id"]: c["name"] for c in a.dataset["categories"]} == {
        c["id"]: c["name"] for c in b.dataset["categories"]
    }
    b_by_name = {Path(im["file_name"]).name: im for im in b.dataset["images"]}
    n = 0
    for im in a.dataset["images"]:
        im2 = b_by_name[im["file_name"]]
        assert (im2["width"], im2["height"]) == (im["width"], im["height"])
        anns_a = a.loadAnns(a.getAnnIds(imgIds=[im["id"]]))
        anns_b = b.loadAnns(b.getAnnIds(imgIds=[im2["id"]]))
        assert len(anns_a) == len(anns_b)
        for x, y in zip(anns_a, anns_b, strict=True):
            assert np.allclose(x["bbox"], y["bbox"], atol=1e-6)
            assert x["area"] == y["area"] and x["category_id"] == y["category_id"]
            assert x["iscrowd"] == y["iscrowd"]
            assert np.array_equal(a.annToMask(x), b.annToMask(y))
            n += 1
    assert n == 939


@pytest.mark.skipif(not FRUITS.exists(), reason="fruits-nuts not present at ../shared/data/real/fruits-nuts")
def test_fruits_nuts_load():
    tr, va = load_coco(FRUITS / "train.json"), load_coco(FRUITS / "val.json")
    assert (len(tr.frames), sum(len(f.objects) for f in tr.frames)) == (8, 73)
    assert (len(va.frames), sum(len(f.objects) for f in va.frames)) == (6, 55)
    assert [c.name for c in tr.categories] == ["date", "fig", "hazelnut"]
    f = tr.frames[0]
    assert f.image_path.is_file() and (f.width, f.height) == (800, 600)
    assert all(o.mask is not None and rle_to_mask(o.mask).shape == (600, 800) for o in f.objects)


# ---------------------------------------------------------------- bad input
def _valid(tmp_path: Path) -> dict:
    Image.new("RGB", (30, 20)).save(tmp_path / "a.png")
    Image.new("RGB", (30, 20)).save(tmp_path / "b.png")
    ann = {"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "area": 12, "segmentation": []}
    return {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 30, "height": 20},
            {"id": 2, "file_name": "b.png", "width": 30, "height": 20},
        ],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [{**ann, "id": 41}, {**ann, "id": 42}, {**ann, "id": 43, "image_id": 2}],
    }


def _break(case: str, data: dict, tmp_path: Path) -> tuple[str, ...]:
    """Mutate ``data`` for ``case``; return substrings the error must contain."""
    a = data["annotations"][1]
    if case == "missing_key":
        del a["category_id"]
        return ("annotations[1] (id 42).category_id", "missing")
    if case == "bbox_length":
        a["bbox"] = [1, 2, 3]
        return ("annotations[1] (id 42).bbox", "4 numbers")
    if case == "bbox_not_numbers":
        a["bbox"] = [1, "x", 3, 4]
        return ("annotations[1] (id 42).bbox",)
    if case == "missing_image":
        a["image_id"] = 99
        return ("annotations[1] (id 42).image_id", "99")
    if case == "missing_category":
        a["category_id"] = 5
        return ("annotations[1] (id 42).category_id", "5")
    if case == "bad_segmentation":
        a["segmentation"] = {"size": [20, 30], "counts": [1, 2]}
        return ("annotations[1] (id 42).segmentation",)
    if case == "truncated_image":
        Image.new("RGB", (30, 20), (200, 10, 10)).save(tmp_path / "b.jpg", quality=95)
        raw = (tmp_path / "b.jpg").read_bytes()
        (tmp_path / "b.jpg").write_bytes(raw[: len(raw) // 2])
        data["images"][1]["file_name"] = "b.jpg"
        return ("images[1] (id 2).file_name", "truncated")
    if case == "missing_image_file":
        del data["images"][1]["width"]
        data["images"][1]["file_name"] = "nope.png"
        return ("images[1] (id 2).file_name", "not found")
    raise AssertionError(case)


CASES = [
    "missing_key",
    "bbox_length",
    "bbox_not_numbers",
    "missing_image",
    "missing_category",
    "bad_segmentation",
    "truncated_image",
    "missing_image_file",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_one_error_and_skip(tmp_path, case):
    data = _valid(tmp_path)
    expect = _break(case, data, tmp_path)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    verify = case == "truncated_image"
    with pytest.raises(DatasetError) as ei:
        load_coco(path, verify_images=verify)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(str(path))
    for s in expect:
        assert s in msg, (s, msg)
    ds = load_coco(path, skip_invalid=True, verify_images=verify)
    skipped = ds.info["skipped"]
    assert skipped and expect[0].split(".")[0] in skipped[0]["record"]
    if expect[0].startswith("images"):  # a skipped image takes its annotation with it
        assert len(ds.frames) == 1 and sum(len(f.objects) for f in ds.frames) == 2
    else:
        assert len(ds.frames) == 2 and sum(len(f.objects) for f in ds.frames) == 2


def test_malformed_json_and_missing_top_key(tmp_path):
    p = tmp_path / "x.json"
    p.write_text('{"images": [1, 2,\n  oops]}')
    with pytest.raises(DatasetError, match=r"x\.json: invalid JSON .* line 2"):
        load_coco(p)
    p.write_text(json.dumps({"categories": []}))
    with pytest.raises(DatasetError, match=r"x\.json: images: missing key"):
        load_coco(p)


def test_failed_export_leaves_no_output(tmp_path):
    ds = synthetic_dataset(tmp_path)
    ds.frames[1].image_path = tmp_path / "gone.png"
    with pytest.raises(DatasetError, match="gone.png"):
        write_coco(ds, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    # a failure in the middle of writing (bad category id -> bad JSON value) also leaves nothing behind
    ds = synthetic_dataset(tmp_path, "s2")
    ds.frames[1].objects[0].attributes = {"bad": float("nan")}
    with pytest.raises(ValueError):
        write_coco(ds, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_export_into_existing_folder_replaces_json_last(tmp_path):
    ds = synthetic_dataset(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    write_coco(ds, out)
    assert (out / "keep.txt").read_text() == "mine" and (out / "annotations.json").is_file()
    ds2 = copy.deepcopy(ds)
    ds2.frames = ds2.frames[:1]
    write_coco(ds2, out)
    assert len(json.loads((out / "annotations.json").read_text())["images"]) == 1
