"""VOC AP against hand-worked numbers, per-class minimum IoU, precision/recall, confusion matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from synthloop.dataset.types import Category, Dataset, Frame, ObjectAnnotation
from synthloop.evaluation.detections import Detections, EvaluationError, FrameDetections
from synthloop.evaluation.voc import confusion_matrix, voc_ap, voc_evaluate
from synthloop.geometry.masks import box_iou

CATS = [Category(1, "A"), Category(2, "B")]


def obj(cid: int, box: tuple[float, float, float, float], **kw) -> ObjectAnnotation:
    return ObjectAnnotation(cid, box, (box[2] - box[0]) * (box[3] - box[1]), **kw)


def frame(fid: str, objects: list[ObjectAnnotation]) -> Frame:
    return Frame(fid, Path(f"/nonexistent/{fid}.png"), 100, 100, objects)


def dets_of(fid: str, rows: list[tuple[int, tuple, float]]) -> FrameDetections:
    """rows: (label, box, score)."""
    return FrameDetections(
        fid,
        np.array([r[1] for r in rows], dtype=np.float32).reshape(-1, 4),
        np.array([r[2] for r in rows], dtype=np.float32),
        np.array([r[0] for r in rows], dtype=np.int64),
    )


def worked_case() -> tuple[Dataset, Detections]:
    """Frame f0, class A: GT g1, g2, g3. Detections by score:
    d1 0.9 = g1 (TP), d2 0.8 nowhere (FP), d3 0.7 = g2 (TP), d4 0.6 on g1 again (IoU 0.9, duplicate: FP).
    Frame f1, class B: b1 normal, b2 difficult, b3 normal. e1 0.9 on b2 (ignored), e2 0.8 nowhere (FP),
    e3 0.4 = b1 (TP)."""
    g1, g2, g3 = (0, 0, 10, 10), (20, 0, 30, 10), (40, 0, 50, 10)
    b1, b2, b3 = (0, 50, 10, 60), (20, 50, 30, 60), (40, 50, 50, 60)
    ds = Dataset(
        CATS,
        [
            frame("f0", [obj(1, g1), obj(1, g2), obj(1, g3)]),
            frame("f1", [obj(2, b1), obj(2, b2, attributes={"difficult": True}), obj(2, b3)]),
        ],
    )
    dets = Detections.from_frames(
        [
            dets_of("f0", [(1, g1, 0.9), (1, (60, 60, 70, 70), 0.8), (1, g2, 0.7), (1, (0, 0, 10, 9), 0.6)]),
            dets_of("f1", [(2, b2, 0.9), (2, (80, 80, 90, 90), 0.8), (2, b1, 0.4)]),
        ]
    )
    return ds, dets


def test_voc_ap_hand_worked_class_a() -> None:
    # A: TP FP TP FP, npos 3 -> recall 1/3 1/3 2/3 2/3, precision 1 1/2 2/3 1/2.
    # integrate: envelope 1 (r<=1/3), 2/3 (r<=2/3), 0 beyond -> 1/3*1 + 1/3*2/3 = 5/9.
    # sample: t=0,.1,.2,.3 -> 1; t=.4,.5,.6 -> 2/3; t=.7..1 -> 0 -> (4 + 2) / 11 = 6/11.
    ds, dets = worked_case()
    integ = voc_evaluate(ds, dets, mode="integrate")
    sample = voc_evaluate(ds, dets, mode="sample")
    assert integ["per_class"]["A"]["ap"] == pytest.approx(5 / 9)
    assert sample["per_class"]["A"]["ap"] == pytest.approx(6 / 11)


def test_voc_ap_hand_worked_class_b_difficult_ignored() -> None:
    # B: e1 hits the difficult b2 -> dropped; FP (0.8), TP (0.4); npos 2 (b2 not counted).
    # recall 0, 1/2; precision 0, 1/2. integrate: 1/2 * 1/2 = 1/4. sample: t=0..0.5 (6 points) -> 1/2,
    # t=0.6..1 -> 0 -> 3/11. (Counting b2 as normal GT would give TP FP TP, npos 3: AP 5/9 integrate.)
    ds, dets = worked_case()
    integ = voc_evaluate(ds, dets, mode="integrate")
    sample = voc_evaluate(ds, dets, mode="sample")
    b = integ["per_class"]["B"]
    assert b["num_gt"] == 2 and b["num_dets"] == 2
    assert b["ap"] == pytest.approx(1 / 4)
    assert sample["per_class"]["B"]["ap"] == pytest.approx(3 / 11)
    assert integ["mAP"] == pytest.approx((5 / 9 + 1 / 4) / 2)
    assert sample["mAP"] == pytest.approx((6 / 11 + 3 / 11) / 2)


def test_crowd_is_ignored_like_difficult() -> None:
    ds, dets = worked_case()
    ds.frames[1].objects[1] = obj(2, (20, 50, 30, 60), iscrowd=True)
    assert voc_evaluate(ds, dets)["per_class"]["B"]["ap"] == pytest.approx(1 / 4)


def test_precision_recall_at_threshold() -> None:
    # A at score >= 0.65: d1 TP, d2 FP, d3 TP -> precision 2/3, recall 2/3.
    # B at score >= 0.65: e1 ignored, e2 FP -> precision 0, recall 0.
    ds, dets = worked_case()
    pc = voc_evaluate(ds, dets, score_thr=0.65)["per_class"]
    assert (pc["A"]["tp"], pc["A"]["fp"]) == (2, 1)
    assert pc["A"]["precision"] == pytest.approx(2 / 3) and pc["A"]["recall"] == pytest.approx(2 / 3)
    assert (pc["B"]["tp"], pc["B"]["fp"], pc["B"]["precision"], pc["B"]["recall"]) == (0, 1, 0.0, 0.0)
    assert voc_evaluate(ds, dets, score_thr=0.95)["per_class"]["A"]["precision"] is None


def test_per_class_min_iou_changes_matching() -> None:
    # GT [0,0,10,10]; detection [0,0,10,6] has IoU 60/100 = 0.6.
    ds = Dataset(CATS, [frame("f", [obj(1, (0, 0, 10, 10)), obj(2, (50, 50, 60, 60))])])
    dets = Detections.from_frames([dets_of("f", [(1, (0, 0, 10, 6), 0.9), (2, (50, 50, 60, 56), 0.9)])])
    assert box_iou(np.array([[0, 0, 10, 6]]), np.array([[0, 0, 10, 10]]))[0, 0] == pytest.approx(0.6)
    default = voc_evaluate(ds, dets)["per_class"]
    assert default["A"]["ap"] == 1.0 and default["B"]["ap"] == 1.0
    strict_a = voc_evaluate(ds, dets, min_iou={"A": 0.7})["per_class"]
    assert strict_a["A"]["ap"] == 0.0 and strict_a["A"]["min_iou"] == 0.7
    assert strict_a["B"]["ap"] == 1.0 and strict_a["B"]["min_iou"] == 0.5
    by_id = voc_evaluate(ds, dets, min_iou={2: 0.65})["per_class"]
    assert by_id["A"]["ap"] == 1.0 and by_id["B"]["ap"] == 0.0
    with pytest.raises(EvaluationError, match="unknown class"):
        voc_evaluate(ds, dets, min_iou={"C": 0.5})


def test_voc_ap_curve_edge_cases() -> None:
    # perfect ranking reaching recall 1 -> 1 in both modes; nothing found -> 0; unknown mode raises
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 1.0]), "integrate") == pytest.approx(1.0)
    assert voc_ap(np.array([0.5, 1.0]), np.array([1.0, 1.0]), "sample") == pytest.approx(1.0)
    assert voc_ap(np.array([]), np.array([]), "integrate") == 0.0
    with pytest.raises(EvaluationError):
        voc_ap(np.array([1.0]), np.array([1.0]), "trapezoid")  # type: ignore[arg-type]


def test_class_without_gt_has_no_ap() -> None:
    ds = Dataset(CATS, [frame("f", [obj(1, (0, 0, 10, 10))])])
    dets = Detections.from_frames([dets_of("f", [(1, (0, 0, 10, 10), 0.9), (2, (50, 50, 60, 60), 0.8)])])
    out = voc_evaluate(ds, dets)
    assert out["per_class"]["B"]["ap"] is None and out["mAP"] == 1.0


def test_confusion_matrix() -> None:
    # GT: A@p, B@q, A@r, B@s (crowd). Detections with score >= 0.5:
    #   A@p 0.9 -> same-class match: (A, A).
    #   A@q 0.8 -> no A there; pass 2 takes the free B@q: (B, A) confusion.
    #   B@t 0.7 -> nothing there: (background, B).
    #   A@s 0.6 -> only the crowd B@s there (never a confusion target): (background, A).
    #   B@r 0.1 -> below the threshold, dropped. A@r is never found: (A, background).
    p, q, r, s, t = (0, 0, 10, 10), (20, 0, 30, 10), (40, 0, 50, 10), (60, 0, 70, 10), (80, 80, 90, 90)
    ds = Dataset(CATS, [frame("f", [obj(1, p), obj(2, q), obj(1, r), obj(2, s, iscrowd=True)])])
    dets = Detections.from_frames(
        [dets_of("f", [(1, p, 0.9), (1, q, 0.8), (2, t, 0.7), (1, s, 0.6), (2, r, 0.1)])]
    )
    cm = confusion_matrix(ds, dets, iou=0.5, score_thr=0.5)
    assert cm.labels == ["A", "B", "background"]
    # columns: predicted A, B, background
    expected = np.array(
        [
            [1, 0, 1],  # GT A
            [1, 0, 0],  # GT B
            [1, 1, 0],  # background (false positives)
        ]
    )
    np.testing.assert_array_equal(cm.matrix, expected)
    # with a low threshold, B@r (0.1) lands on the missed A@r as a confusion A -> B
    cm2 = confusion_matrix(ds, dets, iou=0.5, score_thr=0.0)
    np.testing.assert_array_equal(cm2.matrix, [[1, 1, 0], [1, 0, 0], [1, 1, 0]])
    # diagonal equals VOC TP counts at the same threshold and IoU
    pc = voc_evaluate(ds, dets, score_thr=0.5)["per_class"]
    assert [cm.matrix[0, 0], cm.matrix[1, 1]] == [pc["A"]["tp"], pc["B"]["tp"]]
    assert cm.from_dict(cm.to_dict()).matrix.tolist() == cm.matrix.tolist()


def test_unknown_gt_category_is_reported() -> None:
    ds = Dataset(CATS, [frame("f", [obj(1, (0, 0, 10, 10)), obj(9, (20, 20, 30, 30))])])
    with pytest.raises(EvaluationError, match=r"frame 'f', object 1: ground-truth category_id 9"):
        voc_evaluate(ds, Detections())
