"""2-D pose statistics of COCO-17 persons (synthloop.gap.pose) and their place in the gap's stats."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthloop.bodies.coco import COCO17_KEYPOINTS
from synthloop.dataset.types import Category, Dataset, Frame, ObjectAnnotation
from synthloop.gap.pose import POSE_STATS, angle_deg, pose_statistics
from synthloop.gap.stats import (
    measure_dataset,
    normalised_differences,
    statistic_samples,
    summarize_measurements,
)

# a person standing upright, arms hanging along the body, in pixels (y grows downwards)
STANDING = {
    "nose": (50, 10), "left_eye": (52, 8), "right_eye": (48, 8), "left_ear": (54, 10),
    "right_ear": (46, 10), "left_shoulder": (60, 20), "right_shoulder": (40, 20),
    "left_elbow": (60, 35), "right_elbow": (40, 35), "left_wrist": (60, 50), "right_wrist": (40, 50),
    "left_hip": (56, 50), "right_hip": (44, 50), "left_knee": (56, 70), "right_knee": (44, 70),
    "left_ankle": (56, 90), "right_ankle": (44, 90),
}  # fmt: skip


def _keypoints(points: dict[str, tuple[float, float]], hidden: tuple[str, ...] = ()) -> np.ndarray:
    """(17, 3) COCO-17 keypoints; ``hidden`` ones unlabelled (0, 0, 0)."""
    return np.array([(0, 0, 0) if n in hidden else (*points[n], 2) for n in COCO17_KEYPOINTS], float)


def _rotated(points: dict[str, tuple[float, float]], degrees: float) -> dict[str, tuple[float, float]]:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return {
        n: (100 + c * (x - 50) - s * (y - 50), 100 + s * (x - 50) + c * (y - 50))
        for n, (x, y) in points.items()
    }


def test_angle_is_measured_at_the_vertex_and_undefined_without_an_arm():
    o = np.zeros(2)
    assert angle_deg((1, 0), o, (0, 5)) == pytest.approx(90.0)
    assert angle_deg((1, 0), o, (-3, 0)) == pytest.approx(180.0)
    assert angle_deg((2, 2), o, (1, 1)) == pytest.approx(0.0, abs=1e-4)
    assert angle_deg((0, 0), o, (1, 0)) is None
    assert angle_deg((np.nan, 0), o, (1, 0)) is None


def test_a_standing_person_has_straight_limbs_arms_down_and_an_upright_torso():
    got = pose_statistics(_keypoints(STANDING))
    assert set(got) == set(POSE_STATS)
    assert got["elbow_angle"] == pytest.approx([180.0, 180.0])
    assert got["knee_angle"] == pytest.approx([180.0, 180.0])
    assert got["hip_angle"] == pytest.approx([180 - math.degrees(math.atan2(4, 30))] * 2)
    assert got["shoulder_angle"] == pytest.approx([math.degrees(math.atan2(4, 30))] * 2)
    assert got["torso_tilt"] == pytest.approx([0.0], abs=1e-9)
    assert got["keypoints_labelled"] == [1.0]


def test_joint_angles_do_not_depend_on_the_camera_roll_but_the_tilt_does():
    upright = pose_statistics(_keypoints(STANDING))
    for degrees in (90.0, 180.0, -30.0):
        rolled = pose_statistics(_keypoints(_rotated(STANDING, degrees)))
        for stat in ("elbow_angle", "knee_angle", "shoulder_angle", "hip_angle"):
            assert rolled[stat] == pytest.approx(upright[stat])
        assert rolled["torso_tilt"] == pytest.approx([abs(degrees)])


def test_a_raised_bent_arm_and_a_sitting_leg():
    p = dict(STANDING)
    p["left_elbow"], p["left_wrist"] = (60, 5), (75, 5)  # upper arm straight up, forearm sideways
    p["left_knee"], p["left_ankle"] = (76, 50), (76, 70)  # thigh forward, shin down: sitting
    got = pose_statistics(_keypoints(p))
    assert sorted(got["elbow_angle"]) == pytest.approx([90.0, 180.0])
    assert max(got["shoulder_angle"]) == pytest.approx(180 - math.degrees(math.atan2(4, 30)))
    assert sorted(got["hip_angle"])[0] == pytest.approx(90 - math.degrees(math.atan2(4, 30)))
    assert sorted(got["knee_angle"]) == pytest.approx([90.0, 180.0])


def test_unlabelled_keypoints_drop_their_angles_and_count_as_unlabelled():
    got = pose_statistics(_keypoints(STANDING, hidden=("left_wrist", "right_hip", "right_shoulder")))
    assert got["elbow_angle"] == []  # the left wrist and the right shoulder are unlabelled
    assert got["knee_angle"] == pytest.approx([180.0])  # the left knee: its hip, knee and ankle are
    assert len(got["shoulder_angle"]) == 1 and len(got["hip_angle"]) == 1
    assert got["torso_tilt"] == pytest.approx([math.degrees(math.atan2(4, 30))])  # left side only
    assert got["keypoints_labelled"] == pytest.approx([14 / 17])
    nothing = pose_statistics(_keypoints(STANDING, hidden=COCO17_KEYPOINTS))
    assert nothing == {**{s: [] for s in POSE_STATS}, "keypoints_labelled": [0.0]}


def test_a_person_faces_the_camera_when_its_left_shoulder_is_on_its_own_left_as_seen():
    assert pose_statistics(_keypoints(STANDING))["faces_camera"] == [1.0]
    seen_from_behind = {n: (100 - x, y) for n, (x, y) in STANDING.items()}  # left side on the image left
    assert pose_statistics(_keypoints(seen_from_behind))["faces_camera"] == [0.0]
    for degrees in (90.0, 180.0, -150.0):  # "up" follows the torso, so a roll changes nothing
        assert pose_statistics(_keypoints(_rotated(STANDING, degrees)))["faces_camera"] == [1.0]
        assert pose_statistics(_keypoints(_rotated(seen_from_behind, degrees)))["faces_camera"] == [0.0]
    no_hips = _keypoints(seen_from_behind, hidden=("left_hip", "right_hip"))
    assert pose_statistics(no_hips)["faces_camera"] == [0.0]  # the image's up then
    assert pose_statistics(_keypoints(STANDING, hidden=("right_shoulder",)))["faces_camera"] == []


def _person_frame(tmp: Path, name: str, people: list[np.ndarray]) -> Frame:
    path = tmp / f"{name}.png"
    Image.fromarray(np.full((120, 200, 3), 200, dtype=np.uint8)).save(path)
    objs = [
        ObjectAnnotation(1, (30.0, 5.0, 70.0, 95.0), 3600.0, keypoints=tuple(map(tuple, kp))) for kp in people
    ]
    objs.append(ObjectAnnotation(2, (100.0, 10.0, 120.0, 30.0), 400.0))
    return Frame(frame_id=name, image_path=path, width=200, height=120, objects=objs)


def test_gap_statistics_hold_the_pose_of_coco17_classes_only(tmp_path):
    cats = [Category(1, "person", keypoints=COCO17_KEYPOINTS), Category(2, "box")]
    upright = Dataset(categories=cats, frames=[_person_frame(tmp_path, "a", [_keypoints(STANDING)] * 2)])
    lying = Dataset(
        categories=cats, frames=[_person_frame(tmp_path, "b", [_keypoints(_rotated(STANDING, 90))])]
    )
    m, other = measure_dataset(upright, colour=False), measure_dataset(lying, colour=False)
    samples = statistic_samples(m)
    assert samples["person/torso_tilt"] == pytest.approx([0.0, 0.0], abs=1e-9)
    assert not any(k.startswith("box/") and k.split("/")[1] in POSE_STATS for k in samples)
    summary = summarize_measurements(m)["classes"]
    assert summary["box"]["pose"] is None and summary["person"]["pose"]["elbow_angle"]["n"] == 4
    diffs = normalised_differences(m, other)
    assert diffs["person/torso_tilt"] > 10 and diffs["person/elbow_angle"] == pytest.approx(0.0)
    # the same keypoints under another vocabulary are not read as COCO-17
    renamed = Dataset(
        categories=[Category(1, "person", keypoints=tuple(f"k{i}" for i in range(17))), cats[1]],
        frames=upright.frames,
    )
    assert summarize_measurements(measure_dataset(renamed, colour=False))["classes"]["person"]["pose"] is None
