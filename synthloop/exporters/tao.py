"""A dataset as NVIDIA TAO DetectNet_v2 takes it: KITTI labels of images resized to one size that
is a multiple of 16, plus the ``dataset_convert`` spec (protobuf text format).

Layout of ``DST`` (published whole, atomically)::

    kitti/images/<stem>.png   every image resized to width x height (bilinear)
    kitti/labels/<stem>.txt   KITTI lines (synthloop.exporters.kitti), boxes scaled to the new size
    dataset_convert.txt       kitti_config (`tao detectnet_v2 dataset_convert -d ... -o DST/tfrecords/kitti`)
    + any extra text files handed in (the training spec, written by synthloop.training.tao_spec)

Paths inside the specs are absolute paths of ``DST`` as given (mount it at the same path in the
TAO container, or edit them). Masks and instance maps are not carried over (KITTI has none).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from PIL import Image

from synthloop.atomic import atomic_save_image, atomic_write_bytes
from synthloop.dataset.staging import require_files, staged_dir
from synthloop.dataset.types import CameraModel, Dataset, Frame, ObjectAnnotation
from synthloop.errors import DatasetError, SynthloopError
from synthloop.exporters.kitti import frame_label_text, frame_stems
from synthloop.prototext import dumps

STRIDE = 16
KITTI_DIR, IMAGES, LABELS = "kitti", "images", "labels"
CONVERT_SPEC = "dataset_convert.txt"


def round_to_stride(n: float, stride: int = STRIDE) -> int:
    """The multiple of ``stride`` nearest to ``n`` (at least ``stride``)."""
    return max(stride, int(round(n / stride)) * stride)


def _scale_obj(o: ObjectAnnotation, sx: float, sy: float) -> ObjectAnnotation:
    def box(b):
        return None if b is None else (b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy)

    kps = None if o.keypoints is None else tuple((u * sx, v * sy, vis) for u, v, vis in o.keypoints)
    return dataclasses.replace(
        o, bbox=box(o.bbox), bbox_amodal=box(o.bbox_amodal), area=o.area * sx * sy, mask=None, keypoints=kps
    )


def resized_frame(frame: Frame, image_path: Path, width: int, height: int) -> Frame:
    """``frame`` with its image at ``image_path`` resized to (width, height): boxes, keypoints, area
    and intrinsics scaled; mask, instance map and depth dropped."""
    sx, sy = width / frame.width, height / frame.height
    cam = frame.camera
    if cam is not None:
        k = [list(map(float, row)) for row in cam.K]
        k[0] = [k[0][0] * sx, k[0][1] * sx, k[0][2] * sx]
        k[1] = [k[1][0] * sy, k[1][1] * sy, k[1][2] * sy]
        cam = CameraModel(K=k, world_to_cam=cam.world_to_cam)
    return dataclasses.replace(
        frame,
        image_path=image_path,
        width=width,
        height=height,
        objects=[_scale_obj(o, sx, sy) for o in frame.objects],
        camera=cam,
        instance_map_path=None,
        depth_path=None,
    )


def convert_spec(dst: Path, val_split: int = 10, num_shards: int = 10) -> str:
    """The ``dataset_convert`` spec (KITTI, random partition, ``val_split`` percent validation)."""
    root = str(dst / KITTI_DIR)
    kitti = {
        "root_directory_path": [root],
        "image_dir_name": [IMAGES],
        "label_dir_name": [LABELS],
        "image_extension": [".png"],
        "partition_mode": ["random"],
        "num_partitions": [2],
        "val_split": [val_split],
        "num_shards": [num_shards],
    }
    return dumps({"kitti_config": [kitti], "image_directory_path": [root]})


def write_tao_dataset(
    ds: Dataset, dst: str | Path, width: int, height: int, extra_files: dict[str, str] | None = None
) -> Path:
    """Write ``ds`` for TAO (module docstring) at ``width`` x ``height`` (multiples of 16)."""
    if width % STRIDE or height % STRIDE or width <= 0 or height <= 0:
        raise SynthloopError(f"TAO needs a size that is a multiple of {STRIDE}, got {width}x{height}")
    if not ds.frames:
        raise DatasetError("the dataset has no frames", path=str(ds.root or ""))
    dst = Path(dst).absolute()
    cats = ds.category_by_id()
    require_files(ds.frames)
    with staged_dir(dst) as tmp:
        for frame, stem in zip(ds.frames, frame_stems(ds), strict=True):
            try:
                with Image.open(frame.image_path) as im:
                    small = im.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
            except OSError as e:
                raise DatasetError(f"cannot read image ({e})", path=str(frame.image_path)) from None
            out = tmp / KITTI_DIR / IMAGES / f"{stem}.png"
            atomic_save_image(out, small)
            scaled = resized_frame(frame, dst / KITTI_DIR / IMAGES / out.name, width, height)
            label = frame_label_text(scaled, cats)
            atomic_write_bytes(tmp / KITTI_DIR / LABELS / f"{stem}.txt", label.encode())
        atomic_write_bytes(tmp / CONVERT_SPEC, convert_spec(dst).encode())
        for name, text in (extra_files or {}).items():
            atomic_write_bytes(tmp / name, text.encode())
    return dst
