"""A folder of unlabeled photos as a :class:`~synthloop.dataset.types.Dataset` (no objects).

Images are the files directly in the folder with a known suffix, sorted by name; each frame's id is
the file stem and its size is read from the image header. Errors are one line with the path
(:class:`~synthloop.errors.DatasetError`): a missing or unreadable folder, a folder without images,
an image that cannot be opened.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from synthloop.dataset.folder import is_synthloop_dataset, load_dataset
from synthloop.dataset.types import Dataset, Frame
from synthloop.errors import DatasetError
from synthloop.importers.coco import load_coco

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def load_image_folder(folder: str | Path) -> Dataset:
    """Every image directly in ``folder`` as a frame without objects (``source="real"``)."""
    root = Path(folder).absolute()
    try:
        entries = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    except OSError as err:
        raise DatasetError(f"cannot read image folder: {err.strerror or err}", path=str(root)) from None
    if not entries:
        raise DatasetError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in the folder", path=str(root))
    frames = []
    for p in entries:
        try:
            with Image.open(p) as im:
                w, h = im.size
        except OSError as err:
            raise DatasetError(f"cannot read image: {err}", path=str(p)) from None
        frames.append(Frame(frame_id=p.stem, image_path=p, width=w, height=h, source="real"))
    return Dataset(categories=[], frames=frames, name=root.name, root=root)


def load_labeled_or_folder(path: str | Path) -> tuple[Dataset, bool]:
    """(dataset, labeled): a COCO json (labeled), a synthloop dataset folder (labeled) or a folder
    of images (unlabeled). One-line DatasetError for anything else."""
    p = Path(path)
    if not p.exists():
        raise DatasetError("no such file or folder", path=str(p))
    if p.is_file() and p.suffix.lower() == ".json":
        return load_coco(p), True
    if p.is_dir() and is_synthloop_dataset(p):
        return load_dataset(p), True
    if p.is_dir():
        return load_image_folder(p), False
    raise DatasetError("not a COCO json, a synthloop dataset folder or a folder of images", path=str(p))
