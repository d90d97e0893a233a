"""Person objects in a recipe: the body config (phenotype distributions + pose prior as data) and
its sampler (-> a ``body`` ShapeSpec with posed extents, and COCO-17 keypoints in the object frame).

A class with ``shape: {kind: body, body: {...}}`` is a person. ``body`` fields:

* ``keypoint_set``: only ``coco17`` (the body model's regressor gives COCO-17).
* ``phenotype``: name -> distribution of a value in [0, 1] (names: ``gender``, ``age``,
  ``muscle``, ``weight``, ``height``, ``proportions``; missing = 0.5).
* ``poses``: canonical pose name -> ``{weight, joints: {joint: [rx, ry, rz]}}`` (degrees, the
  convention of :mod:`synthloop.bodies.limits`); one pose is drawn per person by weight.
* ``noise_deg``: joint -> [hx, hy, hz]: uniform noise half-widths (degrees) added to every pose's
  rotation of that joint (a joint a pose does not list is at 0).
* ``facing_deg``: the angle (degrees, about the vertical) between the person's forward direction
  and the direction from the person to the camera: 0 faces the camera, 180 turns its back,
  positive turns it counter-clockwise seen from above. Absent: the yaw is uniform on [0, 360), as
  for every other object, so only about half the people face the camera (real photos: most).
* ``skin``: skin tone as display HSV distributions (``hue`` turns, ``saturation``, ``value``) and
  ``roughness``; it paints the head, neck and hands, and the arms and legs the outfit leaves bare.
  The class's ``material`` is the top; the class's ``clothing``
  (:class:`~synthloop.scenes.recipe.ClothingConfig`) adds the bottom, the shoes and the sleeve and
  leg lengths. Without it the class's ``material`` covers everything but the head, neck and hands.
* ``head`` (:class:`HeadConfig`): the hair style (``none``, ``short``, ``long``), the hair's and
  the eyes' colours. Absent: the head is skin all over (bald, no eyes), as before it existed; a
  front and a back then differ only by the face's shape, so a keypoint model learns left from
  right less easily.

Validation: every pose's ``value +- noise`` range must lie inside the joint's anatomical limits,
joints and phenotype names must be known; each problem is one RecipeError line naming the field.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from synthloop.bodies.coco import COCO17_KEYPOINTS, KEYPOINT_SETS
from synthloop.bodies.limits import JOINT_LIMITS_DEG, PHENOTYPES, check_rotation_range
from synthloop.bodies.model import pose_body
from synthloop.bodies.outfit import HAIR_STYLES
from synthloop.scenes.color import hsv_to_linear_rgb
from synthloop.scenes.distributions import CatDist, NumDist, in_range, one_of
from synthloop.scenes.spec import BodySpec, MaterialSpec, ShapeSpec
from synthloop.validation import require_one_of

Unit = Annotated[NumDist, in_range(0, 1)]
Deg3 = tuple[float, float, float]
NonNeg3 = tuple[Annotated[float, Field(ge=0)], Annotated[float, Field(ge=0)], Annotated[float, Field(ge=0)]]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class PoseConfig(_Model):
    """A canonical pose: ``joints`` joint -> [rx, ry, rz] degrees; ``weight`` its draw weight."""

    weight: float = Field(1.0, gt=0)
    joints: dict[str, Deg3] = Field(default_factory=dict)


class SkinConfig(_Model):
    """Skin tone (display HSV, hue in turns) and roughness distributions."""

    hue: NumDist = {"uniform": [0.02, 0.09]}  # type: ignore[assignment]
    saturation: Unit = {"uniform": [0.2, 0.6]}  # type: ignore[assignment]
    value: Unit = {"uniform": [0.2, 0.95]}  # type: ignore[assignment]
    roughness: Unit = {"uniform": [0.4, 0.7]}  # type: ignore[assignment]


class HairConfig(SkinConfig):
    """Hair colour (display HSV, hue in turns) and roughness distributions: browns to black."""

    hue: NumDist = {"uniform": [0.02, 0.12]}  # type: ignore[assignment]
    saturation: Unit = {"uniform": [0.2, 0.7]}  # type: ignore[assignment]
    value: Unit = {"uniform": [0.02, 0.45]}  # type: ignore[assignment]
    roughness: Unit = {"uniform": [0.45, 0.75]}  # type: ignore[assignment]


class EyesConfig(SkinConfig):
    """Eye colour (display HSV) and roughness distributions: dark and glossy, as eyes look from
    a few metres."""

    hue: NumDist = {"uniform": [0.03, 0.12]}  # type: ignore[assignment]
    saturation: Unit = {"uniform": [0.2, 0.6]}  # type: ignore[assignment]
    value: Unit = {"uniform": [0.02, 0.12]}  # type: ignore[assignment]
    roughness: Unit = {"uniform": [0.05, 0.25]}  # type: ignore[assignment]


class HeadConfig(_Model):
    """A person's hair (``hair_style``: ``none``, ``short``, ``long``; ``hair``: its colour) and
    ``eyes`` (their colour); see :mod:`synthloop.bodies.outfit` for where the hair grows."""

    hair_style: Annotated[CatDist, one_of(HAIR_STYLES, "hair_style")] = {  # type: ignore[assignment]
        "choice": list(HAIR_STYLES),
        "weights": [1.0, 4.0, 3.0],
    }
    hair: HairConfig = Field(default_factory=HairConfig)
    eyes: EyesConfig = Field(default_factory=EyesConfig)


class BodyConfig(_Model):
    """Phenotype distributions and the pose prior of a person class (module doc)."""

    keypoint_set: str = "coco17"
    skin: SkinConfig = Field(default_factory=SkinConfig)
    phenotype: dict[str, Unit] = Field(default_factory=dict)
    poses: dict[str, PoseConfig] = Field(min_length=1)
    noise_deg: dict[str, NonNeg3] = Field(default_factory=dict)
    facing_deg: NumDist | None = None
    head: HeadConfig | None = None

    @field_validator("keypoint_set")
    @classmethod
    def _kp_set(cls, v: str) -> str:
        return require_one_of(
            v, KEYPOINT_SETS, f"keypoint set '{v}' is not available from the body model; it gives: coco17"
        )

    @field_validator("phenotype")
    @classmethod
    def _pheno(cls, v: dict[str, NumDist]) -> dict[str, NumDist]:
        for name in v:
            if name not in PHENOTYPES:
                raise ValueError(
                    f"unknown phenotype parameter '{name}'; expected one of {', '.join(PHENOTYPES)}"
                )
        return v

    @model_validator(mode="after")
    def _limits(self) -> BodyConfig:
        for joint in self.noise_deg:
            if joint not in JOINT_LIMITS_DEG:
                raise ValueError(
                    f"noise_deg: unknown joint '{joint}'; posable: {', '.join(JOINT_LIMITS_DEG)}"
                )
        for name, pose in self.poses.items():
            for joint in {**pose.joints, **self.noise_deg}:
                val = np.asarray(pose.joints.get(joint, (0.0, 0.0, 0.0)))
                half = np.asarray(self.noise_deg.get(joint, (0.0, 0.0, 0.0)))
                try:
                    check_rotation_range(joint, tuple(val), tuple(val))
                except ValueError as err:
                    raise ValueError(f"poses.{name}.joints.{joint}: {err}") from None
                try:
                    check_rotation_range(joint, tuple(val - half), tuple(val + half))
                except ValueError as err:
                    raise ValueError(f"noise_deg.{joint}: {err} (pose '{name}' value +- noise_deg)") from None
        return self


def sample_skin(cfg: SkinConfig, rng: np.random.Generator) -> MaterialSpec:
    """A skin (hair, eyes) material (flat colour, mild noise bump) from the tone distributions."""
    h, s, v = (float(d.sample_float(rng)) for d in (cfg.hue, cfg.saturation, cfg.value))
    return MaterialSpec(
        base_color_hsv=(h % 1.0, s, v),
        base_color_rgb=hsv_to_linear_rgb(h, s, v),
        roughness=float(cfg.roughness.sample_float(rng)),
        specular=0.4,
    )


def sample_body(
    cfg: BodyConfig, rng: np.random.Generator
) -> tuple[ShapeSpec, dict[str, tuple[float, float, float]], dict[str, float | int | str], MaterialSpec]:
    """One person: its ``body`` ShapeSpec (dimensions = posed extents, metres), its COCO-17
    keypoints in the object frame (bounding-box centred, metres), its params for mining
    (phenotype values ``body_<name>``, ``pose``, ``skin_value``) and its skin material."""
    pheno = {name: float(d.sample_float(rng)) for name, d in cfg.phenotype.items()}
    names = list(cfg.poses)
    w = np.asarray([cfg.poses[n].weight for n in names], dtype=np.float64)
    pose_name = names[int(rng.choice(len(names), p=w / w.sum()))]
    pose = cfg.poses[pose_name]
    rotations: dict[str, Deg3] = {}
    for joint in sorted({*pose.joints, *cfg.noise_deg}):
        val = np.asarray(pose.joints.get(joint, (0.0, 0.0, 0.0)))
        half = np.asarray(cfg.noise_deg.get(joint, (0.0, 0.0, 0.0)))
        r = val + rng.uniform(-1.0, 1.0, 3) * half
        rotations[joint] = (float(r[0]), float(r[1]), float(r[2]))
    posed = pose_body(pheno, rotations, cfg.keypoint_set)
    ext = posed.vertices.max(axis=0) - posed.vertices.min(axis=0)
    spec = ShapeSpec(
        kind="body",
        dimensions=(float(ext[0]), float(ext[1]), float(ext[2])),
        body=BodySpec(
            phenotype=tuple(sorted(pheno.items())), rotations_deg=tuple(rotations.items()), pose=pose_name
        ),
    )
    kps = {
        n: (float(p[0]), float(p[1]), float(p[2]))
        for n, p in zip(COCO17_KEYPOINTS, posed.keypoints, strict=True)
    }
    params: dict[str, float | int | str] = {f"body_{k}": v for k, v in pheno.items()}
    skin = sample_skin(cfg.skin, rng)
    params.update(pose=pose_name, size=float(ext.max()), skin_value=skin.base_color_hsv[2])
    return spec, kps, params, skin


def sample_head(
    cfg: HeadConfig, rng: np.random.Generator
) -> tuple[str, MaterialSpec, MaterialSpec, dict[str, float | int | str]]:
    """A person's hair style, its hair and eyes materials, and params for mining (``hair_style``,
    ``hair_value``)."""
    style = cfg.hair_style.sample_str(rng)
    hair, eyes = sample_skin(cfg.hair, rng), sample_skin(cfg.eyes, rng)
    return style, hair, eyes, {"hair_style": style, "hair_value": hair.base_color_hsv[2]}
