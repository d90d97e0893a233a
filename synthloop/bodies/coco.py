"""The COCO-17 person keypoints: names, skeleton (1-based pairs) and the left/right flip map."""

from __future__ import annotations

COCO17_KEYPOINTS: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)

# COCO's person skeleton (person_keypoints_*.json), 1-based indices into COCO17_KEYPOINTS.
COCO17_SKELETON: tuple[tuple[int, int], ...] = (
    (16, 14),
    (14, 12),
    (17, 15),
    (15, 13),
    (12, 13),
    (6, 12),
    (7, 13),
    (6, 7),
    (6, 8),
    (7, 9),
    (8, 10),
    (9, 11),
    (2, 3),
    (1, 2),
    (1, 3),
    (2, 4),
    (3, 5),
    (4, 6),
    (5, 7),
)

KEYPOINT_SETS: tuple[str, ...] = ("coco17",)


def flip_index(names: tuple[str, ...] | list[str]) -> list[int]:
    """For each keypoint, the index of its mirror image under a left/right flip of the image.

    ``left_*`` pairs with ``right_*`` (and back); names without a side map to themselves. For
    COCO-17 this is ``[0, 2, 1, 4, 3, 6, 5, ...]``. A side name whose partner is missing maps to
    itself."""
    pos = {n: i for i, n in enumerate(names)}
    out = []
    for i, n in enumerate(names):
        if n.startswith("left_"):
            out.append(pos.get("right_" + n[5:], i))
        elif n.startswith("right_"):
            out.append(pos.get("left_" + n[6:], i))
        else:
            out.append(i)
    return out
