"""2-D pose statistics of COCO-17 persons, the same definitions for rendered and photographed ones.

Angles are measured in the image plane, in degrees in [0, 180], between labelled keypoints
(visibility 1 or 2: COCO's annotators place occluded joints too), the left and right sides pooled:

* ``elbow_angle``: at the elbow, between the upper arm and the forearm (180 = a straight arm).
* ``knee_angle``: at the knee, between the thigh and the shin (180 = a straight leg).
* ``shoulder_angle``: at the shoulder, between the side of the torso (shoulder to hip) and the
  upper arm (0 = the arm along the body, 180 = raised straight up).
* ``hip_angle``: at the hip, between the side of the torso (hip to shoulder) and the thigh
  (180 = standing straight, about 90 = sitting).
* ``torso_tilt``: between the torso (mid-hip to mid-shoulder) and the image's up direction
  (0 = upright, 90 = lying across the image, 180 = upside down).

``faces_camera``: 1 when, with the person's "up" pointing up, its left shoulder appears to the
right of its right shoulder in the image, i.e. the person shows the camera its front; else 0 (its
back). "Up" is mid-hip -> mid-shoulder, or the image's up without a labelled hip; no value without
both shoulders labelled. Its mean is the share of people facing the camera (photos: most; a yaw
uniform on [0, 360): half);

and ``keypoints_labelled``: the share of the 17 keypoints that are labelled (COCO leaves the joints
of small or cut-off persons unlabelled; a render labels every joint inside the image).

An angle whose three keypoints are not all labelled, or whose two arms have no length, is left
out. Pure functions of the keypoint arrays.
"""

from __future__ import annotations

import math

import numpy as np

from synthloop.bodies.coco import COCO17_KEYPOINTS

POSE_STATS = (
    "elbow_angle",
    "knee_angle",
    "shoulder_angle",
    "hip_angle",
    "torso_tilt",
    "faces_camera",
    "keypoints_labelled",
)

# stat -> (end, vertex, end) keypoint names, one triple per side
_ANGLES: dict[str, tuple[tuple[str, str, str], ...]] = {
    stat: tuple((f"{side}_{a}", f"{side}_{v}", f"{side}_{b}") for side in ("left", "right"))
    for stat, (a, v, b) in {
        "elbow_angle": ("shoulder", "elbow", "wrist"),
        "knee_angle": ("hip", "knee", "ankle"),
        "shoulder_angle": ("hip", "shoulder", "elbow"),
        "hip_angle": ("shoulder", "hip", "knee"),
    }.items()
}
_INDEX = {name: i for i, name in enumerate(COCO17_KEYPOINTS)}
_MIN_ARM = 1e-6  # pixels: a shorter arm has no direction
_IMAGE_UP = np.array([0.0, -1.0])  # y grows downwards


def angle_deg(end_a: np.ndarray, vertex: np.ndarray, end_b: np.ndarray) -> float | None:
    """The angle at ``vertex`` between the directions to ``end_a`` and ``end_b`` (2-D points, any
    unit), in degrees in [0, 180]; None where either arm is shorter than ``_MIN_ARM``."""
    u, w = np.asarray(end_a, float) - vertex, np.asarray(end_b, float) - vertex
    nu, nw = math.hypot(*u), math.hypot(*w)
    if not (nu > _MIN_ARM and nw > _MIN_ARM):  # also refuses NaN
        return None
    cos = float(np.dot(u, w)) / (nu * nw)
    return math.degrees(math.acos(min(1.0, max(-1.0, cos))))


def pose_statistics(keypoints: np.ndarray) -> dict[str, list[float]]:
    """``{stat: values}`` of one person (see the module docstring) from its COCO-17 keypoints,
    shape (17, 3): x, y in pixels and visibility 0/1/2. An angle stat holds 0-2 values (one per
    side), ``torso_tilt`` 0-1 and ``keypoints_labelled`` exactly one."""
    kp = np.asarray(keypoints, dtype=np.float64).reshape(len(COCO17_KEYPOINTS), 3)
    labelled = (kp[:, 2] > 0) & np.isfinite(kp[:, :2]).all(axis=1)
    out: dict[str, list[float]] = {stat: [] for stat in POSE_STATS}
    for stat, triples in _ANGLES.items():
        for names in triples:
            idx = [_INDEX[n] for n in names]
            if labelled[idx].all():
                angle = angle_deg(kp[idx[0], :2], kp[idx[1], :2], kp[idx[2], :2])
                if angle is not None:
                    out[stat].append(angle)
    tilt = _torso_tilt(kp[:, :2], labelled)
    if tilt is not None:
        out["torso_tilt"].append(tilt)
    facing = _faces_camera(kp[:, :2], labelled)
    if facing is not None:
        out["faces_camera"].append(facing)
    out["keypoints_labelled"].append(float(labelled.mean()))
    return out


def _faces_camera(xy: np.ndarray, labelled: np.ndarray) -> float | None:
    """1.0 when the right -> left shoulder direction turns counter-clockwise, as seen on the
    screen, from the person's up direction (:func:`_torso_up`, else the image's up), i.e. the
    person faces the camera; 0.0 when it turns the other way; None without both shoulders."""
    left, right = _INDEX["left_shoulder"], _INDEX["right_shoulder"]
    if not (labelled[left] and labelled[right]):
        return None
    across = xy[left] - xy[right]
    up = _torso_up(xy, labelled)
    if up is None:
        up = _IMAGE_UP
    cross = float(up[0] * across[1] - up[1] * across[0])  # y grows downwards
    if cross == 0.0 or not math.isfinite(cross):
        return None
    return 1.0 if cross > 0 else 0.0


def _torso_tilt(xy: np.ndarray, labelled: np.ndarray) -> float | None:
    """Degrees between the torso's up direction (:func:`_torso_up`) and the image's; None without
    a labelled shoulder and hip."""
    up = _torso_up(xy, labelled)
    return None if up is None else angle_deg(_IMAGE_UP, np.zeros(2), up)


def _torso_up(xy: np.ndarray, labelled: np.ndarray) -> np.ndarray | None:
    """Mid-hip -> mid-shoulder (the means of the labelled ones), pixels; None without a labelled
    shoulder and hip."""
    s = [i for i in (_INDEX["left_shoulder"], _INDEX["right_shoulder"]) if labelled[i]]
    h = [i for i in (_INDEX["left_hip"], _INDEX["right_hip"]) if labelled[i]]
    if not s or not h:
        return None
    return xy[s].mean(axis=0) - xy[h].mean(axis=0)
