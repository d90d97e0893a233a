"""Real-pool selection: entropy/margin/TTA scores on hand cases, k-center greedy, ranking, files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from synthloop.active.select import (
    binary_entropy,
    detection_entropy,
    detection_margin,
    flip_boxes_horizontal,
    k_center_greedy,
    rank_pool,
    select_pool,
    tta_disagreement,
)


def test_entropy_hand_cases():
    assert binary_entropy(np.array([0.0, 0.5, 1.0])).tolist() == pytest.approx([0.0, 1.0, 0.0])
    h = -(0.9 * math.log2(0.9) + 0.1 * math.log2(0.1))  # 0.468996
    assert detection_entropy(np.array([0.9, 0.5])) == pytest.approx((h + 1.0) / 2)
    assert detection_entropy(np.array([0.9, 0.01]), min_score=0.05) == pytest.approx(h)  # below min_score
    assert detection_entropy(np.zeros(0)) == 0.0
    probs = np.array([[1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0]])
    assert detection_entropy(np.array([0.4, 0.9]), probs) == pytest.approx(0.5, abs=1e-6)


def test_margin_hand_cases():
    assert detection_margin(np.array([0.9])) == pytest.approx(0.2)  # 1 - (0.9 - 0.1)
    assert detection_margin(np.array([0.5, 1.0])) == pytest.approx(0.5)  # (1 + 0) / 2
    probs = np.array([[0.6, 0.3, 0.1]])
    assert detection_margin(np.array([0.6]), probs) == pytest.approx(0.7)
    assert detection_margin(np.zeros(0)) == 0.0


def test_flip_and_tta_disagreement():
    b = np.array([[10.0, 5.0, 30.0, 25.0]])
    f = flip_boxes_horizontal(b, 100)
    assert f.tolist() == [[70.0, 5.0, 90.0, 25.0]]
    assert np.allclose(flip_boxes_horizontal(f, 100), b)
    assert tta_disagreement(b, [1], b, [1]) == pytest.approx(0.0)
    shifted = b + np.array([10.0, 0, 10.0, 0])  # IoU = 10*20 / (30*20) = 1/3
    assert tta_disagreement(b, [1], shifted, [1]) == pytest.approx(2 / 3)
    assert tta_disagreement(b, [1], b, [2]) == pytest.approx(1.0)  # labels differ: no match
    assert tta_disagreement(b, [1], b, [2], match_labels=False) == pytest.approx(0.0)
    two = np.vstack([b, [[50.0, 50.0, 60.0, 60.0]]])
    assert tta_disagreement(two, [1, 1], b, [1]) == pytest.approx(0.5)  # one unmatched of two
    assert tta_disagreement(np.zeros((0, 4)), None, np.zeros((0, 4)), None) == 0.0


def test_k_center_greedy_picks_the_farthest_points():
    # a tight cluster at the origin plus three outliers at increasing distance
    pts = np.array([[0, 0], [0.1, 0], [0, 0.1], [0.1, 0.1], [10, 0], [0, 5], [-3, 0]], dtype=float)
    order, dists = k_center_greedy(pts, 4, first=0)
    assert order == [0, 4, 5, 6]
    assert dists[0] == math.inf and dists[1] == pytest.approx(10.0)
    assert dists[2] == pytest.approx(5.0) and dists[3] == pytest.approx(3.0)
    # with labeled embeddings covering the origin and (10, 0), the next pick is (0, 5)
    order, _ = k_center_greedy(pts, 2, labeled=np.array([[0.0, 0.0], [10.0, 0.0]]))
    assert order == [5, 6]
    # default start: the point farthest from the mean
    assert k_center_greedy(pts, 1)[0] == [4]


def test_rank_pool_trades_uncertainty_for_diversity():
    # two near-duplicate uncertain images and one distinct, slightly less uncertain one
    emb = np.array([[0.0, 0.0], [0.01, 0.0], [5.0, 5.0]])
    u = np.array([0.9, 0.89, 0.6])
    assert rank_pool(u, emb, 2, weight=1.0)[0] == [0, 1]  # pure uncertainty
    assert rank_pool(u, emb, 2, weight=0.5)[0] == [0, 2]  # the duplicate loses to the distinct image
    assert rank_pool(u, None, 3)[0] == [0, 1, 2]
    # weight 0 is k-center greedy after the most uncertain first pick
    u4, e4 = np.array([0.1, 0.2, 0.9, 0.0]), np.array([[0.0], [1.0], [2.0], [10.0]])
    assert rank_pool(u4, e4, 3, weight=0.0)[0] == [2, 3, 0]


def test_select_pool_writes_json_and_txt(tmp_path):
    pool = tmp_path / "pool"
    pool.mkdir()
    for i in range(4):
        Image.fromarray(np.full((16, 20, 3), i * 40, np.uint8)).save(pool / f"im{i}.png")

    def predict(images):
        out = []
        for im in images:
            level = int(im[0, 0, 0]) // 40
            # image 3 is confident, image 1 is uncertain, others in between
            p = {0: 0.7, 1: 0.5, 2: 0.8, 3: 0.99}[level]
            out.append(
                {"boxes": np.array([[2.0, 2.0, 8.0, 8.0]]), "scores": np.array([p]), "labels": np.array([1])}
            )
        return out

    def embed(images):
        return np.array([[float(im[0, 0, 0]), 0.0] for im in images])

    sel = select_pool(pool, predict, embed, budget=2, out_dir=tmp_path / "sel", weight=1.0)
    assert [p.rsplit("/", 1)[-1] for p in sel.paths] == ["im1.png", "im0.png"]
    data = json.loads((tmp_path / "sel" / "selection.json").read_text())
    assert data["entries"][0]["rank"] == 1 and data["pool_size"] == 4
    # the fake predictor ignores the flip: its box mapped back (x 12..18) misses the original (2..8)
    assert data["entries"][0]["tta_disagreement"] == pytest.approx(1.0)
    assert (tmp_path / "sel" / "selection.txt").read_text().splitlines() == sel.paths


def test_backbone_embedder_pools_the_last_feature_map():
    import torch

    torch.set_num_threads(1)

    class Tiny(torch.nn.Module):
        """Stride-1 'features': '0' is junk, '2' (last) is the per-channel image itself."""

        def forward(self, x):
            return {"0": torch.zeros_like(x[:, :1]), "2": x}

    from synthloop.active.select import backbone_embedder
    from synthloop.training.backbones import IMAGENET_MEAN, IMAGENET_STD

    embed = backbone_embedder(Tiny(), max_side=32)
    red = np.zeros((20, 40, 3), np.uint8)
    red[..., 0] = 255
    e = embed([red, red[:, ::-1].copy()])
    assert e.shape == (2, 3)
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0)
    expect = np.array(
        [
            (1 - IMAGENET_MEAN[0]) / IMAGENET_STD[0],
            -IMAGENET_MEAN[1] / IMAGENET_STD[1],
            -IMAGENET_MEAN[2] / IMAGENET_STD[2],
        ]
    )
    assert np.allclose(e[0], expect / np.linalg.norm(expect), atol=1e-5)
    assert np.allclose(e[0], e[1])


def test_predictor_embedder_finds_the_detector_backbone():
    import torch

    from synthloop.active.errors import ActiveError
    from synthloop.active.select import predictor_embedder
    from synthloop.training.backbones import build_backbone

    torch.set_num_threads(1)

    class Detector(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = build_backbone("resnet18", None)
            self.head = torch.nn.Conv2d(512, 2, 1)

    class P:
        model = Detector()
        device = "cpu"

    e = predictor_embedder(P(), max_side=64)(
        [np.zeros((30, 40, 3), np.uint8), np.full((30, 40, 3), 200, np.uint8)]
    )
    assert e.shape == (2, 512) and np.allclose(np.linalg.norm(e, axis=1), 1.0)
    assert not np.allclose(e[0], e[1])
    with pytest.raises(ActiveError):
        predictor_embedder(torch.nn.Linear(2, 2))
