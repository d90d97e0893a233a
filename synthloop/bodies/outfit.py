"""Outfits: which material paints each face of a body mesh.

Every face of the body model belongs to one *region*, named after the bones that drive its first
vertex most (:data:`REGION_BONES`): the head, neck and hands (skin, always), the torso, upper arms,
forearms, hips, thighs, shins and feet. An outfit maps regions to material *slots*: the object's
``material`` is slot 0 and its ``extra_materials[k]`` slot ``k + 1`` (see
:class:`~synthloop.scenes.spec.ObjectSpec`):

* :data:`TOP` (0): torso, and the arms the sleeves cover;
* :data:`SKIN` (1): head, neck, hands, and the bare arms and legs;
* :data:`BOTTOM` (2): hips, and the legs the trouser legs cover;
* :data:`SHOES` (3): feet.

``sleeves``: ``none`` (bare arms), ``short`` (upper arms covered) or ``long``; ``legs``: ``short``
(thighs covered) or ``long``. Without an outfit (:func:`suit_slots`) every region but the head,
neck and hands is slot 0: one garment over the whole body. Pure functions; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

import numpy as np

# region name -> bone-name prefixes of the body model's rig
REGION_BONES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("head_hands", ("neck", "head", "eye", "wrist", "finger", "metacarpal")),
    ("torso", ("root", "spine", "clavicle", "shoulder")),
    ("upper_arm", ("upperarm",)),
    ("forearm", ("lowerarm",)),
    ("hips", ("pelvis", "spine05")),  # spine05: the lowest spine bone drives the hips and waist
    ("thigh", ("upperleg",)),
    ("shin", ("lowerleg",)),
    ("foot", ("foot", "toe")),
)
REGIONS: tuple[str, ...] = tuple(name for name, _ in REGION_BONES)
TOP, SKIN, BOTTOM, SHOES = 0, 1, 2, 3
Sleeves = Literal["none", "short", "long"]
Legs = Literal["short", "long"]
SLEEVES: tuple[str, ...] = get_args(Sleeves)
LEGS: tuple[str, ...] = get_args(Legs)


def bone_regions(bone_labels: Sequence[str]) -> np.ndarray:
    """(B,) int64 region index (into :data:`REGIONS`) of each bone: the region with the longest
    prefix of its name (``spine05`` is hips, the other spine bones torso). ValueError names a bone
    that no region claims (a rig this module does not know)."""
    out = np.empty(len(bone_labels), dtype=np.int64)
    for i, label in enumerate(bone_labels):
        hits = [(len(p), r) for r, (_, ps) in enumerate(REGION_BONES) for p in ps if str(label).startswith(p)]
        if not hits:
            raise ValueError(f"body rig bone '{label}' belongs to no outfit region")
        out[i] = max(hits)[1]
    return out


def _slot_table(sleeves: str, legs: str) -> np.ndarray:
    if sleeves not in SLEEVES:
        raise ValueError(f"sleeves must be one of {', '.join(SLEEVES)}, got '{sleeves}'")
    if legs not in LEGS:
        raise ValueError(f"legs must be one of {', '.join(LEGS)}, got '{legs}'")
    slot = {
        "head_hands": SKIN,
        "torso": TOP,
        "upper_arm": SKIN if sleeves == "none" else TOP,
        "forearm": TOP if sleeves == "long" else SKIN,
        "hips": BOTTOM,
        "thigh": BOTTOM,
        "shin": BOTTOM if legs == "long" else SKIN,
        "foot": SHOES,
    }
    return np.array([slot[name] for name in REGIONS], dtype=np.int64)


def outfit_slots(face_regions: np.ndarray, sleeves: str, legs: str) -> np.ndarray:
    """(F,) int64 material slot of each face (``face_regions`` (F,) region indices) in the outfit
    with ``sleeves`` and ``legs``."""
    return _slot_table(sleeves, legs)[np.asarray(face_regions, dtype=np.int64)]


def body_slots(face_regions: np.ndarray, sleeves: str, legs: str) -> np.ndarray:
    """(F,) int64 material slot of each face of a body: the outfit's (:func:`outfit_slots`), or
    one garment's (:func:`suit_slots`) when ``sleeves`` and ``legs`` are empty (no outfit)."""
    if not sleeves and not legs:
        return suit_slots(face_regions)
    return outfit_slots(face_regions, sleeves, legs)


def suit_slots(face_regions: np.ndarray) -> np.ndarray:
    """(F,) int64 slots without an outfit: :data:`SKIN` for the head, neck and hands, else 0."""
    regions = np.asarray(face_regions, dtype=np.int64)
    return np.where(regions == REGIONS.index("head_hands"), SKIN, TOP).astype(np.int64)
