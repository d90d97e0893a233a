"""DetectionDataset: torchvision format, masks/boxes/keypoints moving together, seeded augmentation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from helpers import REAL

from synthloop.dataset.folder import load_dataset
from synthloop.dataset.types import Category, Dataset, Frame, ObjectAnnotation
from synthloop.training.data import AugmentConfig, DetectionDataset, collate
from synthloop.training.toydata import make_toy_dataset, write_toy_folder

NO_AUG = AugmentConfig(enabled=False)


def _mask_box(m: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(m)
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Dataset:
    return make_toy_dataset(tmp_path_factory.mktemp("toy"), num_frames=3, seed=1)


def test_format_without_augmentation_matches_annotations(toy):
    ds = DetectionDataset(toy, NO_AUG, train=False)
    img, t = ds[0]
    f = toy.frames[0]
    assert img.dtype == torch.float32 and img.shape == (3, f.height, f.width)
    assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0
    assert (
        t["boxes"].dtype == torch.float32
        and t["labels"].dtype == torch.int64
        and t["masks"].dtype == torch.uint8
    )
    assert t["masks"].shape == (len(f.objects), f.height, f.width)
    assert np.allclose(t["boxes"].numpy(), [o.bbox for o in f.objects])
    assert t["labels"].tolist() == [o.category_id for o in f.objects]
    for m, o in zip(t["masks"].numpy(), f.objects, strict=True):
        assert m.sum() == o.area


def test_hflip_moves_boxes_and_masks_exactly(toy):
    ds = DetectionDataset(toy, AugmentConfig(hflip_prob=1.0, color_prob=0.0), train=True)
    ref = DetectionDataset(toy, NO_AUG, train=False)
    img, t = ds[(1, 123)]
    img0, t0 = ref[1]
    w = toy.frames[1].width
    assert torch.equal(img, img0.flip(-1))
    b0 = t0["boxes"].numpy()
    assert np.allclose(t["boxes"].numpy(), np.stack([w - b0[:, 2], b0[:, 1], w - b0[:, 0], b0[:, 3]], 1))
    assert torch.equal(t["masks"], t0["masks"].flip(-1))


def test_full_augmentation_keeps_masks_and_boxes_consistent_and_is_seeded(toy):
    cfg = AugmentConfig(
        hflip_prob=0.5,
        vflip_prob=0.5,
        rotate90_prob=0.5,
        zoom_min=0.8,
        zoom_max=1.2,
        translate_max_x=10,
        translate_max_y=10,
        affine_prob=1.0,
        blur_prob=0.5,
        noise_prob=0.5,
        jpeg_prob=0.5,
        output_width=96,
        output_height=96,
    )
    ds = DetectionDataset(toy, cfg)
    seen_change = False
    for seed in range(6):
        img, t = ds[(2, seed)]
        assert img.shape == (3, 96, 96)
        for b, m in zip(t["boxes"].numpy(), t["masks"].numpy(), strict=True):
            if (
                m.sum() > 20
            ):  # box of the transformed mask agrees with the transformed box (interp. tolerance)
                assert np.abs(np.array(_mask_box(m)) - b).max() <= 2.5
        img2, t2 = ds[(2, seed)]
        assert torch.equal(img, img2) and torch.equal(t["boxes"], t2["boxes"])
        seen_change |= not torch.equal(img, ds[(2, seed + 100)][0])
    assert seen_change


def test_masks_from_instance_map_when_no_rle(tmp_path):
    root = write_toy_folder(tmp_path / "folder", num_frames=2, seed=3)
    ds = load_dataset(root)
    no_rle = dataclasses.replace(
        ds,
        frames=[
            dataclasses.replace(f, objects=[dataclasses.replace(o, mask=None) for o in f.objects])
            for f in ds.frames
        ],
    )
    a = DetectionDataset(ds, NO_AUG, train=False)[1][1]["masks"]
    b = DetectionDataset(no_rle, NO_AUG, train=False)[1][1]["masks"]
    assert a.sum() > 0 and torch.equal(a, b)


def test_keypoints_follow_flip_and_vanish_outside(tmp_path):
    from PIL import Image

    path = tmp_path / "kp.png"
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(path)
    obj = ObjectAnnotation(
        category_id=1,
        bbox=(10.0, 5.0, 30.0, 25.0),
        area=400.0,
        keypoints=((12.5, 7.5, 2), (20.0, 20.0, 1), (0.0, 0.0, 0)),
    )
    ds = Dataset([Category(1, "thing", keypoints=("a", "b", "c"))], [Frame("0", path, 60, 40, objects=[obj])])
    _, t = DetectionDataset(ds, AugmentConfig(hflip_prob=1.0, color_prob=0.0), with_masks=False)[(0, 0)]
    kp = t["keypoints"].numpy()[0]
    assert np.allclose(kp[0], [60 - 12.5, 7.5, 2]) and np.allclose(kp[1], [40.0, 20.0, 1])
    assert np.allclose(kp[2], [0, 0, 0])


def test_collate_and_batching(toy):
    ds = DetectionDataset(toy, NO_AUG, train=False)
    images, targets = collate([ds[0], ds[1]])
    assert len(images) == len(targets) == 2 and int(targets[1]["index"]) == 1


@pytest.mark.skipif(
    not (REAL / "fruits-nuts" / "train.json").exists(), reason="fruits-nuts data not available"
)
def test_real_fruits_nuts_through_importer():
    from synthloop.importers.coco import load_coco

    real = load_coco(REAL / "fruits-nuts" / "train.json", REAL / "fruits-nuts" / "images")
    ds = DetectionDataset(
        real, AugmentConfig(enabled=False, output_width=200, output_height=150), train=False
    )
    img, t = ds[0]
    assert img.shape == (3, 150, 200)
    n = len([o for o in real.frames[0].objects if not o.iscrowd])
    assert t["masks"].shape[0] == t["boxes"].shape[0] == n > 0
    for b, m in zip(t["boxes"].numpy(), t["masks"].numpy(), strict=True):
        assert np.abs(np.array(_mask_box(m)) - b).max() <= 2.0  # polygon masks vs COCO boxes, scaled by 1/4
