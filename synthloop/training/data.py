"""A torch Dataset over the in-memory :class:`~synthloop.dataset.types.Dataset`, with augmentation.

Output per item, torchvision detection format:

* image: float32 tensor (3, H, W), RGB in [0, 1] (models normalize internally);
* target: ``boxes`` (N, 4) float32 pixel ``x1, y1, x2, y2`` (continuous coords, pixel i covers
  [i, i+1)); ``labels`` (N,) int64 (category ids from 1, or the ``label_map`` values);
  ``masks`` (N, H, W) uint8 0/1; ``keypoints`` (N, K, 3) float32 ``u, v, vis`` (vis 0/1/2,
  0 means u = v = 0) when the frames carry keypoints; ``index`` () int64 frame index.

Masks come from each object's COCO RLE (synthloop.geometry.masks), else from the frame's instance map
(``instance_id``), else the filled box. Crowd objects are left out.

Augmentation (albumentations, seeded per item): resize to the model input, horizontal/vertical
flip, scale/translate (TLT ``zoom_min/max``, ``translate_max_x/y`` in pixels), rotate-90, colour
jitter (hue/saturation/brightness/contrast), and for the sim-to-real gap optional Gaussian blur,
Gaussian noise and JPEG compression. Boxes, masks and keypoints move with the image. A mirror
(an odd number of horizontal/vertical flips) also swaps left/right keypoint labels
(``left_*`` <-> ``right_*`` of the category's keypoint names, :func:`synthloop.bodies.coco.flip_index`):
a mirrored person's left wrist is labeled as the right one.
An item is addressed by ``index`` or ``(index, aug_seed)``: the same pair always gives the same
sample, which is what makes resumed runs exact (the sampler owns the seeds).
"""

from __future__ import annotations

import warnings
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from synthloop.bodies.coco import flip_index
from synthloop.dataset.types import Dataset, Frame, ObjectAnnotation
from synthloop.errors import DatasetError
from synthloop.geometry.masks import polygons_to_rle, rle_to_mask


class AugmentConfig(BaseModel):
    """Augmentation settings (probabilities in [0, 1]; colour factors as in ``ColorJitter``).

    ``output_width``/``output_height``: resize every image to this size first (None = keep).
    ``zoom_min``/``zoom_max``: scale range; ``translate_max_x``/``_y``: max shift in pixels;
    ``hue``: max hue shift as a fraction of the full circle (0..0.5).
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    output_width: int | None = Field(None, gt=0)
    output_height: int | None = Field(None, gt=0)
    hflip_prob: float = Field(0.5, ge=0, le=1)
    vflip_prob: float = Field(0.0, ge=0, le=1)
    rotate90_prob: float = Field(0.0, ge=0, le=1)
    zoom_min: float = Field(1.0, gt=0)
    zoom_max: float = Field(1.0, gt=0)
    translate_max_x: int = Field(0, ge=0)
    translate_max_y: int = Field(0, ge=0)
    affine_prob: float = Field(0.5, ge=0, le=1)
    brightness: float = Field(0.2, ge=0)
    contrast: float = Field(0.2, ge=0)
    saturation: float = Field(0.2, ge=0)
    hue: float = Field(0.05, ge=0, le=0.5)
    color_prob: float = Field(0.8, ge=0, le=1)
    blur_prob: float = Field(0.0, ge=0, le=1)
    blur_sigma_max: float = Field(1.5, gt=0)
    noise_prob: float = Field(0.0, ge=0, le=1)
    noise_std_max: float = Field(0.05, gt=0, le=1)
    jpeg_prob: float = Field(0.0, ge=0, le=1)
    jpeg_quality_min: int = Field(40, ge=1, le=100)


def build_augmentation(cfg: AugmentConfig | None, train: bool = True) -> A.Compose:
    """An albumentations pipeline for images + ``pascal_voc`` boxes + ``xy`` keypoints + masks.

    Boxes carry the label field ``obj_index`` (position in the object list) so surviving boxes can be
    matched to their masks; keypoints carry ``kp_index`` and are never dropped (see :func:`_finish`).
    """
    cfg = cfg or AugmentConfig(enabled=False)
    t: list[Any] = []
    if cfg.output_width and cfg.output_height:
        t.append(A.Resize(cfg.output_height, cfg.output_width, interpolation=cv2.INTER_LINEAR))
    if train and cfg.enabled:
        if cfg.hflip_prob > 0:
            t.append(A.HorizontalFlip(p=cfg.hflip_prob))
        if cfg.vflip_prob > 0:
            t.append(A.VerticalFlip(p=cfg.vflip_prob))
        if cfg.rotate90_prob > 0:
            t.append(A.RandomRotate90(p=cfg.rotate90_prob))
        if cfg.zoom_min != 1.0 or cfg.zoom_max != 1.0 or cfg.translate_max_x or cfg.translate_max_y:
            t.append(
                A.Affine(
                    scale=(min(cfg.zoom_min, cfg.zoom_max), max(cfg.zoom_min, cfg.zoom_max)),
                    translate_px={
                        "x": (-cfg.translate_max_x, cfg.translate_max_x),
                        "y": (-cfg.translate_max_y, cfg.translate_max_y),
                    },
                    p=cfg.affine_prob,
                )
            )
        if cfg.color_prob > 0 and (cfg.brightness or cfg.contrast or cfg.saturation or cfg.hue):
            t.append(
                A.ColorJitter(
                    brightness=(max(0.0, 1 - cfg.brightness), 1 + cfg.brightness),
                    contrast=(max(0.0, 1 - cfg.contrast), 1 + cfg.contrast),
                    saturation=(max(0.0, 1 - cfg.saturation), 1 + cfg.saturation),
                    hue=(-cfg.hue, cfg.hue),
                    p=cfg.color_prob,
                )
            )
        if cfg.blur_prob > 0:
            t.append(A.GaussianBlur(sigma_limit=(0.1, cfg.blur_sigma_max), p=cfg.blur_prob))
        if cfg.noise_prob > 0:
            t.append(A.GaussNoise(std_range=(0.0, cfg.noise_std_max), p=cfg.noise_prob))
        if cfg.jpeg_prob > 0:
            t.append(A.ImageCompression(quality_range=(cfg.jpeg_quality_min, 100), p=cfg.jpeg_prob))
    with warnings.catch_warnings():  # "processor for bboxes but no transform" when nothing moves pixels
        warnings.simplefilter("ignore", UserWarning)
        return _compose(t)


def _compose(t: list[Any]) -> A.Compose:
    return A.Compose(
        t,
        bbox_params=A.BboxParams(
            format="pascal_voc", label_fields=["obj_index"], clip=True, min_width=1.0, min_height=1.0
        ),
        keypoint_params=A.KeypointParams(format="xy", label_fields=["kp_index"], remove_invisible=False),
        seed=0,
        save_applied_params=True,
    )


MIRRORS = ("HorizontalFlip", "VerticalFlip")


def is_mirrored(out: dict[str, Any]) -> bool:
    """Whether the albumentations output ``out`` went through an odd number of flips (a mirror)."""
    return sum(name in MIRRORS for name, _ in out.get("applied_transforms") or ()) % 2 == 1


def load_rgb(frame: Frame) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a frame; size must match the record."""
    try:
        with Image.open(frame.image_path) as im:
            rgb = np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as e:
        raise DatasetError(
            f"cannot read image ({e})", path=str(frame.image_path), where=frame.frame_id
        ) from None
    if rgb.shape[:2] != (frame.height, frame.width):
        raise DatasetError(
            f"image is {rgb.shape[1]}x{rgb.shape[0]}, record says {frame.width}x{frame.height}",
            path=str(frame.image_path),
            where=frame.frame_id,
        )
    return rgb


def object_mask(obj: ObjectAnnotation, frame: Frame, instance_map: np.ndarray | None) -> np.ndarray:
    """(H, W) uint8 0/1 mask: RLE (or polygons) -> instance map -> filled box, first that exists."""
    h, w = frame.height, frame.width
    if obj.mask is not None:
        rle = obj.mask if isinstance(obj.mask, dict) else polygons_to_rle(obj.mask, h, w)
        return rle_to_mask(rle).astype(np.uint8)
    if instance_map is not None and obj.instance_id is not None:
        return (instance_map == obj.instance_id).astype(np.uint8)
    out = np.zeros((h, w), np.uint8)
    x1, y1, x2, y2 = obj.bbox
    out[max(0, int(np.floor(y1))) : int(np.ceil(y2)), max(0, int(np.floor(x1))) : int(np.ceil(x2))] = 1
    return out


class DetectionDataset(torch.utils.data.Dataset):
    """Frames of a :class:`Dataset` as torchvision detection samples (see module docstring).

    ``label_map``: category id -> training label (default: identity). Objects whose category is
    not in ``label_map`` are dropped. ``with_masks``: decode masks (needed for Mask R-CNN).
    """

    def __init__(
        self,
        dataset: Dataset,
        augment: AugmentConfig | None = None,
        train: bool = True,
        label_map: dict[int, int] | None = None,
        with_masks: bool = True,
    ):
        self.dataset = dataset
        self.label_map = label_map if label_map is not None else {c.id: c.id for c in dataset.categories}
        self.with_masks = with_masks
        self.transform = build_augmentation(augment, train=train)
        self.num_keypoints = max((len(c.keypoints) for c in dataset.categories), default=0)
        self.flip_maps = {c.id: flip_index(c.keypoints) for c in dataset.categories if c.keypoints}

    def __len__(self) -> int:
        return len(self.dataset.frames)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        index, aug_seed = (key, index_seed(key)) if isinstance(key, int) else (int(key[0]), int(key[1]))
        frame = self.dataset.frames[index]
        rgb = load_rgb(frame)
        objs = [o for o in frame.objects if not o.iscrowd and o.category_id in self.label_map]
        inst = None
        if self.with_masks and frame.instance_map_path is not None and any(o.mask is None for o in objs):
            from synthloop.dataset.folder import load_instance_map

            inst = load_instance_map(frame)
        masks = [object_mask(o, frame, inst) for o in objs] if self.with_masks else []
        boxes = [_clip_box(o.bbox, frame.width, frame.height) for o in objs]
        keep = [i for i, b in enumerate(boxes) if b[2] - b[0] >= 1.0 and b[3] - b[1] >= 1.0]
        kps: list[tuple[float, float]] = []
        kp_index: list[int] = []
        kp_meta: list[tuple[int, int, int]] = []
        for i, o in enumerate(objs):
            for j, (u, v, vis) in enumerate(o.keypoints or ()):
                if vis > 0:  # albumentations keypoints: pixel-centre coordinates
                    kps.append((u - 0.5, v - 0.5))
                    kp_index.append(len(kp_meta))
                    kp_meta.append((i, j, int(vis)))
        self.transform.set_random_seed(aug_seed)
        out = self.transform(
            image=rgb,
            masks=masks if masks else None,
            bboxes=np.array([boxes[i] for i in keep], np.float32).reshape(-1, 4),
            obj_index=np.array(keep, np.int64),
            keypoints=np.array(kps, np.float32).reshape(-1, 2),
            kp_index=kp_index,
        )
        flips = self.flip_maps if is_mirrored(out) else None
        return _finish(out, objs, kp_meta, self.label_map, self.num_keypoints, self.with_masks, index, flips)


def index_seed(index: int) -> int:
    """Default augmentation seed of an item addressed by a bare index."""
    return int(np.random.SeedSequence([index, 0x5EED]).generate_state(1)[0])


def _clip_box(b: tuple[float, float, float, float], w: int, h: int) -> tuple[float, float, float, float]:
    return (min(max(b[0], 0.0), w), min(max(b[1], 0.0), h), min(max(b[2], 0.0), w), min(max(b[3], 0.0), h))


def _finish(
    out: dict[str, Any],
    objs: list[ObjectAnnotation],
    kp_meta: list[tuple[int, int, int]],
    label_map: dict[int, int],
    num_kp: int,
    with_masks: bool,
    index: int,
    flip_maps: dict[int, list[int]] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    img = out["image"]
    h, w = img.shape[:2]
    kept = [int(i) for i in out["obj_index"]]
    boxes = np.asarray(out["bboxes"], np.float32).reshape(-1, 4)
    target: dict[str, torch.Tensor] = {
        "boxes": torch.from_numpy(boxes.copy()),
        "labels": torch.tensor([label_map[objs[i].category_id] for i in kept], dtype=torch.int64),
        "index": torch.tensor(index, dtype=torch.int64),
    }
    if with_masks:
        ms = out.get("masks") or []
        arr = np.stack([np.asarray(ms[i]) for i in kept]) if kept else np.zeros((0, h, w), np.uint8)
        target["masks"] = torch.from_numpy(arr.astype(np.uint8))
    if num_kp:
        kp = np.zeros((len(objs), num_kp, 3), np.float32)
        for (u, v), code in zip(out["keypoints"], out["kp_index"], strict=True):
            i, j, vis = kp_meta[int(code)]
            u, v = float(u) + 0.5, float(v) + 0.5
            if 0 <= u < w and 0 <= v < h:
                kp[i, j] = (u, v, vis)
        for i, o in enumerate(objs if flip_maps else ()):
            fmap = flip_maps.get(o.category_id) if flip_maps else None
            if fmap:  # mirrored image: the keypoint at slot j now shows the other side's joint
                kp[i, : len(fmap)] = kp[i, fmap]
        target["keypoints"] = torch.from_numpy(kp[kept] if kept else np.zeros((0, num_kp, 3), np.float32))
    image = torch.from_numpy(np.array(img, copy=True)).permute(2, 0, 1).float().div_(255.0)
    return image, target


def collate(batch: list[tuple[torch.Tensor, dict[str, torch.Tensor]]]) -> tuple[list, list]:
    """Lists of images and targets (torchvision detection models take lists)."""
    return [b[0] for b in batch], [b[1] for b in batch]


def category_label_map(dataset: Dataset) -> dict[int, int]:
    """Category id -> contiguous label 1..C in id order (identity for datasets with ids 1..C)."""
    return {c.id: i + 1 for i, c in enumerate(sorted(dataset.categories, key=lambda c: c.id))}
