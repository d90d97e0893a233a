"""Outfits as pure functions: rig bones -> face regions -> material slots (no body model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from synthloop.bodies.outfit import (
    BOTTOM,
    LEGS,
    REGIONS,
    SHOES,
    SKIN,
    SLEEVES,
    TOP,
    body_slots,
    bone_regions,
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
    ]
    got = [REGIONS[r] for r in bone_regions(labels)]
    assert got == ["torso", "hips", "torso", "hips", "upper_arm", "forearm", "shin", "foot"]
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
