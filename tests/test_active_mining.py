"""Mining: Wilson intervals, outcome classification, and the controlled scale-failure test."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import controlled_rows

from synthloop.active.derive import derive
from synthloop.active.errors import ActiveError
from synthloop.active.mining import MiningResult, WeakRegion, mine, wilson_interval
from synthloop.active.outcomes import classify_outcome, outcome_table
from synthloop.scenes.recipe import recipe_from_dict


@pytest.fixture(scope="module")
def controlled():
    table = outcome_table(controlled_rows())
    return table, mine(table)


def test_wilson_matches_hand_computed_values():
    # 8/10 at 95 %: z = 1.959964, d = 1 + z^2/10 = 1.384146, c = (0.8 + z^2/20)/d = 0.716745,
    # h = z sqrt(0.016 + z^2/400)/d = 0.226576 -> (0.490169, 0.943321)
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.490169, abs=1e-5)
    assert hi == pytest.approx(0.943321, abs=1e-5)
    # 0/20: c - h = 0 exactly, upper = z^2 / (n + z^2) = 3.841459 / 23.841459
    lo, hi = wilson_interval(0, 20)
    assert lo == pytest.approx(0.0, abs=1e-12)
    assert hi == pytest.approx(3.841459 / 23.841459, abs=1e-6)
    # 50/100 is symmetric around 0.5: half width z sqrt(0.0025 + z^2/40000) / (1 + z^2/100)
    z = 1.959964
    half = z * math.sqrt(0.0025 + z * z / 40000) / (1 + z * z / 100)
    lo, hi = wilson_interval(50, 100)
    assert (lo, hi) == (pytest.approx(0.5 - half, abs=1e-6), pytest.approx(0.5 + half, abs=1e-6))
    # wider at higher confidence, (0, 1) without data, bad counts refused
    assert wilson_interval(8, 10, 0.99)[0] < 0.490169
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ActiveError):
        wilson_interval(11, 10)


def test_outcome_classes_and_one_hot_columns():
    assert classify_outcome({"matched": True, "best_iou": 0.9}) == "detected"
    assert classify_outcome({"matched": False, "best_iou": 0.3}) == "mislocalized"
    assert classify_outcome({"matched": False, "best_iou": 0.05}) == "missed"
    assert classify_outcome({"matched": False, "best_iou": None}) == "missed"
    rows = controlled_rows(30)
    rows[0]["ignored"] = True
    rows[1]["matched"], rows[1]["best_iou"] = False, 0.3
    t = outcome_table(rows)
    assert len(t) == 29 and t.outcome[0] == "mislocalized"
    assert {"attr.pattern=none", "attr.pattern=wood", "attr.pattern=marble"} <= set(t.columns)
    j = t.columns.index("attr.pattern=wood")
    assert np.array_equal(t.X[:, j] == 1.0, t.values["attr.pattern"] == "wood")
    assert t.X.shape == (29, len(t.columns))
    # constant params (area, occlusion, category) carry no information and are dropped
    assert "object.area" not in t.values and "object.category" not in t.values
    with pytest.raises(ActiveError):
        outcome_table([{"frame_id": "x"}])


def test_controlled_mining_names_scale_with_the_right_interval(controlled):
    table, res = controlled
    assert res.regions, "no weak region found"
    top = res.regions[0]
    assert top.param == "attr.scale" and top.kind == "numeric"
    assert top.low <= 0.81 and 0.87 <= top.high <= 0.93
    # inside recall is far below the overall recall, and its 95 % CI excludes it
    assert top.recall_inside < 0.25 < res.overall_recall
    assert top.ci_high < res.overall_recall
    inside = top.contains(table.values["attr.scale"])
    assert top.support == int(inside.sum())
    assert top.recall_inside == pytest.approx(table.detected[inside].mean())
    # noise params are never reported as weak, and the tree ranks scale first
    assert {r.param for r in res.regions} == {"attr.scale"}
    assert max(res.importance, key=res.importance.get) == "attr.scale"
    for noise in ("attr.hue", "attr.pattern", "scene.key_light_strength", "scene.camera_azimuth_deg"):
        assert res.importance[noise] < 0.05 * res.importance["attr.scale"]
        assert not any(b.weak for b in res.bins[noise])


def test_no_weak_region_when_failures_are_random():
    rows = controlled_rows(1500, seed=3)
    rng = np.random.default_rng(7)
    for r in rows:
        r["matched"] = bool(rng.random() < 0.7)
    assert mine(outcome_table(rows)).regions == []


def test_mining_result_json_round_trip(controlled, tmp_path):
    _, res = controlled
    path = res.save(tmp_path / "weak.json")
    back = MiningResult.load(path)
    assert [r.describe() for r in back.regions] == [r.describe() for r in res.regions]
    assert back.regions[0].ci_adjusted == pytest.approx(res.regions[0].ci_adjusted)
    assert back.bins["attr.scale"][0].support == res.bins["attr.scale"][0].support


def test_derived_recipe_puts_more_mass_in_the_mined_interval(controlled):
    _, res = controlled
    recipe = recipe_from_dict(
        {
            "name": "spheres",
            "resolution": [64, 48],
            "classes": [
                {
                    "name": "sphere",
                    "shape": {"kind": "sphere", "dimensions": [0.06] * 3, "scale": {"uniform": [0.8, 1.2]}},
                },
                {"name": "box", "shape": {"kind": "box", "dimensions": [0.05, 0.04, 0.03]}},
            ],
        }
    )
    d = derive(recipe, res.regions, exploration=0.3)
    assert [c.path for c in d.changes] == ["classes[0].shape.scale"] and not d.unmapped
    region = res.regions[0]
    orig, new = recipe.classes[0].shape.scale, d.recipe.classes[0].shape.scale
    r1, r2 = np.random.default_rng(1), np.random.default_rng(2)
    a = np.array([orig.sample_float(r1) for _ in range(2000)])
    b = np.array([new.sample_float(r2) for _ in range(2000)])
    in_a, in_b = region.contains(a).mean(), region.contains(b).mean()
    width = (region.high - region.low) / 0.4
    assert in_a == pytest.approx(width, abs=0.04)
    assert in_b == pytest.approx(0.3 * width + 0.7, abs=0.04)  # exploration share on the original
    assert b.min() >= 0.8 and b.max() <= 1.2  # clipped to the original support
    # the classes whose scale is constant are left alone
    assert d.recipe.classes[1].shape.scale == recipe.classes[1].shape.scale


def test_weak_region_contains_semantics():
    r = WeakRegion.from_dict(_region_fields(low=1.0, high=2.0, high_inclusive=False))
    assert r.contains(np.array([0.99, 1.0, 1.5, 2.0, math.nan])).tolist() == [False, True, True, False, False]
    r.high_inclusive = True
    assert r.contains(np.array([2.0]))[0]


def _region_fields(**kw) -> dict:
    base = {
        "param": "attr.scale",
        "kind": "numeric",
        "support": 10,
        "support_fraction": 0.1,
        "recall_inside": 0.1,
        "recall_outside": 0.8,
        "overall_recall": 0.7,
        "ci_low": 0.0,
        "ci_high": 0.4,
        "ci_adjusted": [0.0, 0.5],
        "confidence_adjusted": 0.99,
        "effect": 0.6,
        "effect_vs_outside": 0.7,
        "z": 4.0,
        "excess_failures": 6.0,
        "source": "bins",
        "weak": True,
    }
    base.update(kw)
    return base


def test_roc_auc_matches_pairwise_definition():
    from synthloop.active.mining import roc_auc

    rng = np.random.default_rng(5)
    y = rng.random(200) < 0.3
    p = np.round(rng.random(200) + 0.3 * y, 1)  # many ties
    pos, neg = p[y], p[~y]
    pairwise = ((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])).mean()
    assert roc_auc(y, p) == pytest.approx(pairwise)
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert roc_auc(np.array([1, 1, 1]), np.array([0.9, 0.2, 0.6])) == pytest.approx(2 / 3)  # one class


def test_a_rare_failure_class_keeps_both_classes_in_the_models_training_rows():
    """One or two failures among 150 rows: the random 30 % holdout can take all of them and leave
    the tree none to learn from (one-class predict_proba). Then nothing is held out, and mining
    runs for every seed."""
    for failures in ((3,), (3, 77)):
        rows = controlled_rows(150, seed=5)
        for i, r in enumerate(rows):
            r["matched"] = i not in failures
        table = outcome_table(rows)
        assert int(table.failed.sum()) == len(failures)
        for seed in range(10):
            assert mine(table, seed=seed).model_score is not None
