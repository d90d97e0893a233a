"""Mixing: the seeded real subset, blend batches at the exact ratio, phase plans."""

from __future__ import annotations

import numpy as np
import pytest

from synthloop.training.mixing import REAL, SYNTHETIC, build_phases, real_subset

KW = dict(
    schedule="blend",
    real_fraction=1.0,
    ratio=(3, 1),
    epochs=2,
    lr=0.01,
    batch_size=8,
    finetune_epochs=1,
    finetune_lr=None,
    seed=0,
)


def test_real_subset_is_seeded_fraction():
    a = real_subset(40, 0.25, seed=1)
    assert len(a) == 10 and len(set(a.tolist())) == 10 and a.min() >= 0 and a.max() < 40
    assert np.array_equal(a, real_subset(40, 0.25, seed=1))
    assert not np.array_equal(a, real_subset(40, 0.25, seed=2))
    assert len(real_subset(40, 0.0, 1)) == 0 and len(real_subset(3, 0.01, 1)) == 1
    assert set(real_subset(40, 0.1, 1).tolist()) != set(range(4))


def test_blend_batches_hold_the_exact_ratio():
    (phase,) = build_phases(10, 40, **{**KW, "real_fraction": 0.5})
    assert phase.name == "blend" and phase.per_batch() == (6, 2)
    real_allowed = set(phase.real.tolist())
    assert len(real_allowed) == 20
    batches = phase.epoch_batches(seed=0, phase_index=0, epoch=0)
    assert len(batches) == phase.batches_per_epoch() == 2  # ceil(10 synthetic / 6 per batch)
    for b in batches:
        src = [s for s, _, _ in b]
        assert src.count(SYNTHETIC) == 6 and src.count(REAL) == 2
        assert {i for s, i, _ in b if s == REAL} <= real_allowed
    # deterministic per (seed, phase, epoch), different across epochs
    assert batches == phase.epoch_batches(0, 0, 0) and batches != phase.epoch_batches(0, 0, 1)
    # with replacement: over many epochs a synthetic frame repeats inside one epoch somewhere
    reps = any(
        len({i for b in phase.epoch_batches(0, 0, e) for s, i, _ in b if s == SYNTHETIC}) < 12
        for e in range(20)
    )
    assert reps


def test_ratio_must_divide_batch_size():
    with pytest.raises(ValueError, match="not a multiple of ratio 3:1"):
        build_phases(10, 10, **{**KW, "batch_size": 6})


def test_ends_of_the_spec_and_pretrain_finetune():
    (only_s,) = build_phases(10, 40, **{**KW, "real_fraction": 0.0})
    assert only_s.name == "synthetic" and len(only_s.real) == 0
    (only_r,) = build_phases(0, 40, **{**KW, "real_fraction": 0.5})
    assert only_r.name == "real" and len(only_r.real) == 20 and len(only_r.synthetic) == 0
    batches = only_r.epoch_batches(0, 0, 0)
    flat = sorted(i for b in batches for _, i, _ in b)
    assert flat == sorted(only_r.real.tolist())  # one pass, without replacement
    pre, fine = build_phases(
        10,
        40,
        **{
            **KW,
            "schedule": "pretrain_finetune",
            "real_fraction": 0.25,
            "finetune_epochs": 3,
            "finetune_lr": 0.001,
        },
    )
    assert (pre.name, len(pre.synthetic), len(pre.real), pre.epochs, pre.lr) == ("pretrain", 10, 0, 2, 0.01)
    assert (fine.name, len(fine.synthetic), len(fine.real), fine.epochs, fine.lr) == (
        "finetune",
        0,
        10,
        3,
        0.001,
    )
    with pytest.raises(ValueError, match="no training frames"):
        build_phases(0, 40, **{**KW, "real_fraction": 0.0})


def test_soft_start_annealing_and_cosine_factors():
    from synthloop.training.loop import LRFactor
    from synthloop.training.spec import LRScheduleSpec

    f = LRFactor(LRScheduleSpec(soft_start=0.1, annealing=0.7, min_lr_ratio=0.01), total=100)
    assert f(0) == pytest.approx(0.01) and f(5) == pytest.approx(0.1)  # log-linear ramp: sqrt(0.01)
    assert f(10) == f(50) == f(69) == 1.0
    assert f(85) == pytest.approx(0.1) and f(100) == pytest.approx(0.01)
    c = LRFactor(LRScheduleSpec(name="cosine", min_lr_ratio=0.0 + 1e-3), total=10)
    assert c(0) == pytest.approx(1.0) and c(5) == pytest.approx(0.5005) and c(10) == pytest.approx(1e-3)
