"""Outfits: which material paints each face of a body mesh.

Every face of the body model belongs to one *region*, named after the bones that drive its first
vertex most (:data:`REGION_BONES`): the head, neck and hands (skin, always), the torso, upper arms,
forearms, hips, thighs, shins and feet. An outfit maps regions to material *slots*: the object's
``material`` is slot 0 and its ``extra_materials[k]`` slot ``k + 1`` (see
:class:`~synthloop.scenes.spec.ObjectSpec`):

* :data:`TOP` (0): torso, and the arms the sleeves cover;
* :data:`SKIN` (1): head, neck, hands, and the bare arms and legs;
* :data:`BOTTOM` (2): hips, and the legs the trouser legs cover;
* :data:`SHOES` (3): feet;
* :data:`HAIR` (4): the scalp (``short`` hair), and the back of the head and neck (``long``);
* :data:`EYES` (5): the eyeballs.

The head's hair regions are carved out of the skin by geometry (:func:`head_regions`): ``scalp``
above a hairline that runs 5 cm above the eyes at the forehead and drops to 4.5 cm below them
behind the ears; ``nape`` the rest down to 16 cm below the eyes behind the ears (neck to
shoulders), covering the ears. ``hair``: ``none`` (bald), ``short`` or ``long``; empty: the head is
skin all over, eyes included, as before hair existed.

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
    ("head_hands", ("neck", "head", "wrist", "finger", "metacarpal")),
    ("torso", ("root", "spine", "clavicle", "shoulder")),
    ("upper_arm", ("upperarm",)),
    ("forearm", ("lowerarm",)),
    ("hips", ("pelvis", "spine05")),  # spine05: the lowest spine bone drives the hips and waist
    ("thigh", ("upperleg",)),
    ("shin", ("lowerleg",)),
    ("foot", ("foot", "toe")),
    ("eyes", ("eye",)),
)
HEAD_REGIONS: tuple[str, ...] = ("scalp", "nape")  # carved out of head_hands by head_regions()
REGIONS: tuple[str, ...] = tuple(name for name, _ in REGION_BONES) + HEAD_REGIONS
TOP, SKIN, BOTTOM, SHOES, HAIR, EYES = 0, 1, 2, 3, 4, 5
Sleeves = Literal["none", "short", "long"]
Legs = Literal["short", "long"]
HairStyle = Literal["none", "short", "long"]
SLEEVES: tuple[str, ...] = get_args(Sleeves)
LEGS: tuple[str, ...] = get_args(Legs)
HAIR_STYLES: tuple[str, ...] = get_args(HairStyle)

# Hairlines, metres above the eyes (negative: below), in front of and behind the ears; between
# HAIRLINE_FRONT_M and HAIRLINE_BACK_M of depth (behind the ears positive) the line drops linearly.
HAIRLINE_FOREHEAD_M = 0.05
HAIRLINE_SHORT_NAPE_M = -0.045
HAIRLINE_LONG_NAPE_M = -0.16
HAIRLINE_FRONT_M, HAIRLINE_BACK_M = -0.03, 0.01
HEAD_RADIUS_M = 0.25  # faces farther than this from the ears' midpoint (hands) are never hair


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


def _hairline(depth: np.ndarray, nape: float) -> np.ndarray:
    """(F,) hairline height above the eyes (metres) at ``depth`` metres behind the ears."""
    t = np.clip((depth - HAIRLINE_FRONT_M) / (HAIRLINE_BACK_M - HAIRLINE_FRONT_M), 0.0, 1.0)
    return HAIRLINE_FOREHEAD_M + t * (nape - HAIRLINE_FOREHEAD_M)


def head_regions(
    centroids: np.ndarray, regions: np.ndarray, eyes_mid: np.ndarray, ears_mid: np.ndarray
) -> np.ndarray:
    """(F,) regions with the hair regions carved out of ``head_hands``: ``scalp`` above the short
    hairline, ``nape`` between it and the long one (module doc). ``centroids`` (F, 3) face centres,
    ``regions`` (F,) their bone regions, ``eyes_mid`` / ``ears_mid`` (3,) the midpoints of the two
    eyes and the two ears; all in metres in the body's rest frame (+Z up, facing -Y)."""
    c = np.asarray(centroids, dtype=np.float64)
    height = c[:, 2] - float(eyes_mid[2])
    depth = c[:, 1] - float(ears_mid[1])
    near = np.linalg.norm(c - np.asarray(ears_mid, dtype=np.float64), axis=1) < HEAD_RADIUS_M
    head = (np.asarray(regions) == REGIONS.index("head_hands")) & near
    scalp = head & (height > _hairline(depth, HAIRLINE_SHORT_NAPE_M))
    nape = head & ~scalp & (height > _hairline(depth, HAIRLINE_LONG_NAPE_M))
    out = np.array(regions, dtype=np.int64, copy=True)
    out[scalp] = REGIONS.index("scalp")
    out[nape] = REGIONS.index("nape")
    return out


def _head_slots(hair: str) -> dict[str, int]:
    """Slots of the eyes and the hair regions for ``hair`` ('' = skin all over, as before hair)."""
    if hair and hair not in HAIR_STYLES:
        raise ValueError(f"hair must be one of {', '.join(HAIR_STYLES)}, got '{hair}'")
    return {
        "eyes": EYES if hair else SKIN,
        "scalp": HAIR if hair in ("short", "long") else SKIN,
        "nape": HAIR if hair == "long" else SKIN,
    }


def _outfit_slot(sleeves: str, legs: str, hair: str) -> dict[str, int]:
    """Region name -> slot in the outfit with ``sleeves``, ``legs`` and ``hair``."""
    if sleeves not in SLEEVES:
        raise ValueError(f"sleeves must be one of {', '.join(SLEEVES)}, got '{sleeves}'")
    if legs not in LEGS:
        raise ValueError(f"legs must be one of {', '.join(LEGS)}, got '{legs}'")
    slot = {
        **_head_slots(hair),
        "head_hands": SKIN,
        "torso": TOP,
        "upper_arm": SKIN if sleeves == "none" else TOP,
        "forearm": TOP if sleeves == "long" else SKIN,
        "hips": BOTTOM,
        "thigh": BOTTOM,
        "shin": BOTTOM if legs == "long" else SKIN,
        "foot": SHOES,
    }
    return slot


def _paint(slot: dict[str, int], face_regions: np.ndarray) -> np.ndarray:
    """(F,) int64 slot of each face (``face_regions`` (F,) region indices) by region name."""
    table = np.array([slot[name] for name in REGIONS], dtype=np.int64)
    return table[np.asarray(face_regions, dtype=np.int64)]


def outfit_slots(face_regions: np.ndarray, sleeves: str, legs: str, hair: str = "") -> np.ndarray:
    """(F,) int64 material slot of each face (``face_regions`` (F,) region indices) in the outfit
    with ``sleeves`` and ``legs``, and the ``hair`` style ('' = none configured)."""
    return _paint(_outfit_slot(sleeves, legs, hair), face_regions)


def body_slots(face_regions: np.ndarray, sleeves: str, legs: str, hair: str = "") -> np.ndarray:
    """(F,) int64 material slot of each face of a body: the outfit's (:func:`outfit_slots`), or
    one garment's (:func:`suit_slots`) when ``sleeves`` and ``legs`` are empty (no outfit)."""
    if not sleeves and not legs:
        return suit_slots(face_regions, hair)
    return outfit_slots(face_regions, sleeves, legs, hair)


def suit_slots(face_regions: np.ndarray, hair: str = "") -> np.ndarray:
    """(F,) int64 slots without an outfit: :data:`SKIN` for the head, neck and hands (with the
    eyes and hair of ``hair``), else 0."""
    return _paint({name: TOP for name in REGIONS} | {"head_hands": SKIN} | _head_slots(hair), face_regions)
