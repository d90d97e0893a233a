"""Anatomical joint limits and phenotype names of the body model, as data, with pure checks.

Joint rotations convention (the body model's ``local-ref`` pose parameters): each posed joint gets
a rotation ``[rx, ry, rz]`` in degrees, extrinsic x-then-y-then-z about axes parallel to the body's
own rest frame: +X to the person's left, +Y backwards (the person faces -Y), +Z up. The rotation
turns the bone's subtree about the joint. For the left side, hip flexion (thigh forward) is
``rx < 0``, knee flexion ``rx > 0``, raising the arm sideways ``ry < 0`` (the rest pose is an
A-pose with the arms about 45 degrees below horizontal; ``ry = +45`` brings the left arm down to
the side). Right-side joints mirror the left: their ``ry`` and ``rz`` limits are negated.

Limits are generous bounds of healthy active range of motion (degrees), not a biomechanical
model: they reject recipes that would fold a body through itself, not every odd pose.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

# Phenotype parameters of the body model, each in [0, 1] (0.5 = the model's average).
PHENOTYPES: tuple[str, ...] = ("gender", "age", "muscle", "weight", "height", "proportions")

Range = tuple[float, float]
Limits3 = tuple[Range, Range, Range]

# Left-side joints (and the midline); right side mirrored by :func:`joint_limits`.
_LEFT_AND_MID: dict[str, Limits3] = {
    "spine03": ((-30.0, 50.0), (-30.0, 30.0), (-40.0, 40.0)),
    "spine01": ((-20.0, 30.0), (-20.0, 20.0), (-30.0, 30.0)),
    "neck01": ((-40.0, 50.0), (-40.0, 40.0), (-70.0, 70.0)),
    "upperleg01.L": ((-125.0, 30.0), (-45.0, 30.0), (-45.0, 45.0)),
    "lowerleg01.L": ((0.0, 150.0), (-5.0, 5.0), (-10.0, 10.0)),
    "foot.L": ((-45.0, 30.0), (-20.0, 20.0), (-20.0, 20.0)),
    "upperarm01.L": ((-180.0, 60.0), (-140.0, 60.0), (-90.0, 90.0)),
    "lowerarm01.L": ((-150.0, 10.0), (-150.0, 150.0), (-150.0, 10.0)),
}


def _mirror(lim: Limits3) -> Limits3:
    (x, (ylo, yhi), (zlo, zhi)) = lim
    return (x, (-yhi, -ylo), (-zhi, -zlo))


JOINT_LIMITS_DEG: dict[str, Limits3] = {
    **_LEFT_AND_MID,
    **{k[:-2] + ".R": _mirror(v) for k, v in _LEFT_AND_MID.items() if k.endswith(".L")},
}


def check_phenotype(values: Mapping[str, float]) -> None:
    """ValueError naming the first unknown phenotype or a value outside [0, 1] or not finite."""
    for name, v in values.items():
        if name not in PHENOTYPES:
            raise ValueError(f"unknown phenotype parameter '{name}'; expected one of {', '.join(PHENOTYPES)}")
        if not (math.isfinite(v) and 0.0 <= v <= 1.0):
            raise ValueError(f"phenotype '{name}' must be in [0, 1], got {v}")


def check_rotation_range(joint: str, lo: tuple[float, ...], hi: tuple[float, ...]) -> None:
    """ValueError unless ``joint`` is limited and ``[lo, hi]`` (degrees, per axis) lies in its limits."""
    if joint not in JOINT_LIMITS_DEG:
        raise ValueError(f"unknown joint '{joint}'; posable joints: {', '.join(JOINT_LIMITS_DEG)}")
    for axis, (a, b), (llo, lhi) in zip(
        "xyz", zip(lo, hi, strict=True), JOINT_LIMITS_DEG[joint], strict=True
    ):
        if not (math.isfinite(a) and math.isfinite(b)):
            raise ValueError(f"{joint} r{axis}: rotation must be finite, got [{a}, {b}]")
        if a < llo or b > lhi:
            raise ValueError(
                f"{joint} r{axis}: range [{a:g}, {b:g}] deg is outside the anatomical limits "
                f"[{llo:g}, {lhi:g}]"
            )
