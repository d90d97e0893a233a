"""COCO exports other tools read: one namespaced ``synthloop`` key per annotation (FiftyOne's COCO
importer with default arguments), ``bbox_amodal`` as x, y, w, h, and readers of layout 1."""

from __future__ import annotations

import json

import pytest
from helpers import synthetic_dataset

from synthloop.exporters.coco import COCO_LAYOUT, FIFTYONE_RESERVED, NAMESPACE, dataset_to_coco, write_coco
from synthloop.importers.coco import coco_to_dataset, load_coco

COCO_ANN_KEYS = {"id", "image_id", "category_id", "bbox", "area", "iscrowd", "segmentation", "keypoints"}
COCO_ANN_KEYS |= {"num_keypoints"}


def test_extras_live_under_one_key_with_no_reserved_name(tmp_path):
    ds = synthetic_dataset(tmp_path)
    data = dataset_to_coco(ds)
    assert data["info"]["synthloop_coco_layout"] == COCO_LAYOUT == 2
    assert NAMESPACE not in FIFTYONE_RESERVED
    for ann in data["annotations"]:
        extra_keys = set(ann) - COCO_ANN_KEYS
        assert extra_keys <= {NAMESPACE}, extra_keys
        assert not (extra_keys & FIFTYONE_RESERVED)
    ext = data["annotations"][0][NAMESPACE]
    assert {"instance_id", "occlusion", "truncation"} <= set(ext)


def test_bbox_amodal_is_xywh_and_round_trips(tmp_path):
    ds = synthetic_dataset(tmp_path)
    obj = ds.frames[0].objects[0]
    obj.bbox_amodal = (-4.0, 2.5, 30.0, 22.5)  # past the image's left border
    data = dataset_to_coco(ds)
    assert data["annotations"][0][NAMESPACE]["bbox_amodal"] == [-4.0, 2.5, 34.0, 20.0]
    path = write_coco(ds, tmp_path / "coco")
    back = load_coco(path).frames[0].objects[0]
    assert back.bbox_amodal == obj.bbox_amodal and back.instance_id == obj.instance_id
    assert back.occlusion == obj.occlusion and back.attributes == obj.attributes


def test_layout_1_files_still_read(tmp_path):
    """Files written before the namespace: extras at the top level, bbox_amodal as x1, y1, x2, y2."""
    ds = synthetic_dataset(tmp_path)
    ds.frames[0].objects[0].bbox_amodal = (-4.0, 2.5, 30.0, 22.5)
    new = dataset_to_coco(ds)
    old = json.loads(json.dumps(new))
    for ann in old["annotations"]:
        ext = ann.pop(NAMESPACE, {})
        if "bbox_amodal" in ext:
            x, y, w, h = ext["bbox_amodal"]
            ext["bbox_amodal"] = [x, y, x + w, y + h]
        ann.update(ext)
    old["info"].pop("synthloop_coco_layout")
    root = ds.frames[0].image_path.parent
    a = coco_to_dataset(new, tmp_path / "new.json", root)
    b = coco_to_dataset(old, tmp_path / "old.json", root)
    assert b.frames[0].objects[0].bbox_amodal == (-4.0, 2.5, 30.0, 22.5)
    for fa, fb in zip(a.frames, b.frames, strict=True):
        for oa, ob in zip(fa.objects, fb.objects, strict=True):
            assert (oa.bbox_amodal, oa.instance_id, oa.occlusion, oa.box3d, oa.attributes) == (
                ob.bbox_amodal,
                ob.instance_id,
                ob.occlusion,
                ob.box3d,
                ob.attributes,
            )


def test_fiftyone_coco_importer_default_arguments(tmp_path):
    fouc = pytest.importorskip("fiftyone.utils.coco")
    import fiftyone.core.labels as fol

    live = {n for n in dir(fol.Detection) if isinstance(getattr(fol.Detection, n, None), property)}
    assert live | set(fol.Detection._fields) <= FIFTYONE_RESERVED | {"_cls"}
    ds = synthetic_dataset(tmp_path)
    path = write_coco(ds, tmp_path / "coco")
    importer = fouc.COCODetectionDatasetImporter(data_path=str(path.parent / "images"), labels_path=str(path))
    importer.setup()
    samples = list(importer)
    assert len(samples) == len(ds.frames)
    dets = [d for _, _, label in samples for d in (label["detections"].detections if label else [])]
    assert len(dets) == 4 and all(isinstance(d[NAMESPACE], dict) for d in dets)
