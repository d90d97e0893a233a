"""Outfits as pure functions: rig bones -> face regions -> material slots (no body model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from synthloop.bodies.outfit import (
    BOTTOM,
    EYES,
    HAIR,
    HAIR_STYLES,
    LEGS,
    REGIONS,
    SHOES,
    SKIN,
    SLEEVES,
    TOP,
    body_slots,
    bone_regions,
    head_regions,
    outfit_slots,
    suit_slots,
)


def test_bones_fall_in_the_region_of_their_longest_prefix():
    labels = [
        "root",
        "spine05",
        "spine04",
        "pelvis.L",
        "upperarm02.R",
        "lowerarm01.L",
        "lowerleg02.R",
        "toe3-1.L",
        "eye.R",
        "head",
    ]
    got = [REGIONS[r] for r in bone_regions(labels)]
    assert got == [
        "torso",
        "hips",
        "torso",
        "hips",
        "upper_arm",
        "forearm",
        "shin",
        "foot",
        "eyes",
        "head_hands",
    ]
    with pytest.raises(ValueError, match="tail01"):
        bone_regions(["head", "tail01"])


def test_every_outfit_keeps_head_torso_hips_and_feet_and_varies_only_arms_and_legs():
    regions = np.arange(len(REGIONS))
    seen = set()
    for sleeves in SLEEVES:
        for legs in LEGS:
            slots = dict(zip(REGIONS, outfit_slots(regions, sleeves, legs), strict=True))
            assert (slots["head_hands"], slots["torso"], slots["hips"], slots["foot"]) == (
                SKIN,
                TOP,
                BOTTOM,
                SHOES,
            )
            assert slots["thigh"] == BOTTOM
            # sleeves cover the arm from the shoulder down; a bare upper arm means a bare forearm
            assert not (slots["upper_arm"] == SKIN and slots["forearm"] == TOP)
            seen.add((slots["upper_arm"], slots["forearm"], slots["shin"]))
    assert len(seen) == len(SLEEVES) * len(LEGS)  # each outfit paints the body differently


def test_without_an_outfit_only_head_neck_and_hands_show_skin():
    regions = np.array([REGIONS.index(n) for n in ("head_hands", "torso", "forearm", "shin", "foot")])
    assert suit_slots(regions).tolist() == [SKIN, TOP, TOP, TOP, TOP]


def test_an_unknown_sleeve_or_leg_length_is_refused():
    with pytest.raises(ValueError, match="sleeves"):
        outfit_slots(np.zeros(3, dtype=np.int64), "elbow", "long")
    with pytest.raises(ValueError, match="legs"):
        outfit_slots(np.zeros(3, dtype=np.int64), "long", "capri")


def test_a_body_without_an_outfit_wears_one_garment_and_with_one_its_outfit():
    regions = np.arange(len(REGIONS))
    assert body_slots(regions, "", "").tolist() == suit_slots(regions).tolist()
    assert body_slots(regions, "none", "short").tolist() == outfit_slots(regions, "none", "short").tolist()


def _head_points() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Face centres around a head whose eyes are at z = 1.6 and ears at y = 0.1 (facing -Y):
    a forehead, a crown, an eye-level temple, the back of the head at ear level, the nape, the
    neck's back low down, a chin and a hand far away; all head_hands but a torso face."""
    centres = np.array(
        [
            [0.0, 0.0, 1.68],  # forehead, 8 cm above the eyes, in front of the ears
            [0.0, 0.1, 1.72],  # crown
            [0.07, 0.06, 1.6],  # temple at eye level, 4 cm in front of the ears
            [0.0, 0.2, 1.59],  # back of the head, ear level
            [0.0, 0.18, 1.52],  # nape, 8 cm below the eyes
            [0.0, 0.16, 1.46],  # back of the neck, 14 cm below
            [0.0, -0.02, 1.5],  # chin
            [0.5, 0.0, 0.9],  # a hand
            [0.0, 0.2, 1.59],  # a torso face at the back of the head's place
        ]
    )
    regions = np.full(len(centres), REGIONS.index("head_hands"))
    regions[-1] = REGIONS.index("torso")
    return centres, regions, np.array([0.0, 0.0, 1.6]), np.array([0.0, 0.1, 1.6])


def test_hair_regions_follow_the_hairline_from_the_forehead_down_to_the_nape():
    centres, regions, eyes, ears = _head_points()
    got = [REGIONS[r] for r in head_regions(centres, regions, eyes, ears)]
    assert got == [
        "scalp",
        "scalp",
        "head_hands",
        "scalp",
        "nape",
        "nape",
        "head_hands",
        "head_hands",
        "torso",
    ]


def test_hair_styles_paint_scalp_and_nape_and_a_head_config_paints_the_eyes():
    regions = np.array([REGIONS.index(n) for n in ("head_hands", "eyes", "scalp", "nape", "torso")])
    assert suit_slots(regions).tolist() == [SKIN, SKIN, SKIN, SKIN, TOP]  # as before heads existed
    want = {
        "none": [SKIN, EYES, SKIN, SKIN],
        "short": [SKIN, EYES, HAIR, SKIN],
        "long": [SKIN, EYES, HAIR, HAIR],
    }
    for hair in HAIR_STYLES:
        assert suit_slots(regions, hair).tolist() == [*want[hair], TOP]
        assert outfit_slots(regions, "long", "long", hair).tolist() == [*want[hair], TOP]
    with pytest.raises(ValueError, match="hair"):
        suit_slots(regions, "mohawk")
