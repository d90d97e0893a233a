"""Real-pool selection: which unlabeled real images should be labeled next?

Scores (pure functions of arrays, testable without a model):

* **Entropy** of the detections: the mean binary entropy ``H(p) = -p log2 p - (1-p) log2 (1-p)``
  (in [0, 1]) of the detection scores ``p >= min_score``; with per-class probabilities (N, C) the
  Shannon entropy normalized by ``log2 C``. An image without detections scores 0.
* **Margin** uncertainty: mean ``1 - (p1 - p2)`` over detections, where ``p1 >= p2`` are the two
  largest class probabilities (for a bare score ``p``: the pair ``{p, 1-p}``, i.e. ``1 - |2p - 1|``).
* **Test-time-augmentation disagreement**: predictions on the horizontally flipped image, mapped
  back (``x -> W - x``: continuous pixel coordinates, pixel i covers [i, i+1)), matched one-to-one to
  the original ones (Hungarian on IoU, same label by default); ``1 - mean IoU`` over
  ``max(n_orig, n_flip)`` detections (unmatched ones count IoU 0). Both empty: 0.
* **Diversity**: k-center greedy on embeddings (global-average-pooled backbone features): each
  step takes the image farthest (Euclidean) from everything already chosen (and from
  ``labeled`` embeddings, when given).

:func:`rank_pool` combines them: ``uncertainty`` = weighted mean of the three scores, then a
greedy pass takes, at each step, the image maximizing ``w * uncertainty + (1 - w) * d / d0``
(``d``: distance to the chosen set, ``d0``: the largest such distance after the first pick; with
nothing labeled the first pick is the most uncertain image), so ``w = 1`` is pure uncertainty
top-k and ``w = 0`` k-center greedy.

The thin wrappers (:func:`score_pool`, :func:`select_pool`) call a ``predict(images)`` function
(e.g. the training package's ``Predictor``) and an ``embed(images)`` function (a backbone) on
RGB uint8 arrays (H, W, 3).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synthloop.active.errors import ActiveError
from synthloop.atomic import atomic_write_bytes, atomic_write_json
from synthloop.geometry.masks import box_iou

SELECTION_SCHEMA = "synthloop.selection/1"
DEFAULT_WEIGHTS = {"entropy": 1.0, "margin": 1.0, "tta": 1.0}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

Predict = Callable[[list[np.ndarray]], Sequence[Any]]
Embed = Callable[[list[np.ndarray]], np.ndarray]


# ----------------------------------------------------------------------------- pure scores
def binary_entropy(p: np.ndarray) -> np.ndarray:
    """Elementwise binary entropy in bits (0 at p in {0, 1}, 1 at p = 0.5)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return np.nan_to_num(h, nan=0.0)


def _keep(scores: np.ndarray, min_score: float) -> np.ndarray:
    return np.asarray(scores, dtype=np.float64).reshape(-1) >= min_score


def detection_entropy(scores: np.ndarray, probs: np.ndarray | None = None, min_score: float = 0.05) -> float:
    """Mean normalized entropy of an image's detections (module docstring); 0 without any.

    ``scores``: (N,) confidences; ``probs``: optional (N, C) class probabilities (rows sum to 1)."""
    keep = _keep(scores, min_score)
    if not keep.any():
        return 0.0
    if probs is not None:
        pr = np.clip(np.asarray(probs, dtype=np.float64)[keep], 1e-12, 1.0)
        c = pr.shape[1]
        if c < 2:
            return float(binary_entropy(pr[:, 0]).mean())
        return float((-(pr * np.log2(pr)).sum(axis=1) / math.log2(c)).mean())
    return float(binary_entropy(np.asarray(scores, dtype=np.float64)[keep]).mean())


def detection_margin(scores: np.ndarray, probs: np.ndarray | None = None, min_score: float = 0.05) -> float:
    """Mean margin uncertainty ``1 - (p1 - p2)`` of an image's detections; 0 without any."""
    keep = _keep(scores, min_score)
    if not keep.any():
        return 0.0
    if probs is not None and np.asarray(probs).shape[1] >= 2:
        top = -np.sort(-np.asarray(probs, dtype=np.float64)[keep], axis=1)
        return float((1.0 - (top[:, 0] - top[:, 1])).mean())
    p = np.asarray(scores, dtype=np.float64)[keep]
    return float((1.0 - np.abs(2.0 * p - 1.0)).mean())


def flip_boxes_horizontal(boxes: np.ndarray, width: float) -> np.ndarray:
    """(N, 4) xyxy boxes mirrored in an image of ``width`` pixels: ``x1' = W - x2``, ``x2' = W - x1``."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    x1 = width - b[:, 2]
    x2 = width - b[:, 0]
    b[:, 0], b[:, 2] = x1, x2
    return b


def tta_disagreement(
    boxes: np.ndarray,
    labels: np.ndarray | None,
    flipped_boxes: np.ndarray,
    flipped_labels: np.ndarray | None,
    *,
    match_labels: bool = True,
) -> float:
    """``1 - mean IoU`` between original detections and the flipped image's detections **already
    mapped back** to the original frame (see :func:`flip_boxes_horizontal`), matched one-to-one."""
    from scipy.optimize import linear_sum_assignment

    a = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(flipped_boxes, dtype=np.float64).reshape(-1, 4)
    n = max(len(a), len(b))
    if n == 0:
        return 0.0
    if len(a) == 0 or len(b) == 0:
        return 1.0
    iou = box_iou(a, b)
    if match_labels and labels is not None and flipped_labels is not None:
        same = np.asarray(labels).reshape(-1, 1) == np.asarray(flipped_labels).reshape(1, -1)
        iou = np.where(same, iou, 0.0)
    rows, cols = linear_sum_assignment(-iou)
    return float(1.0 - iou[rows, cols].sum() / n)


def k_center_greedy(
    embeddings: np.ndarray,
    budget: int,
    *,
    labeled: np.ndarray | None = None,
    first: int | None = None,
) -> tuple[list[int], list[float]]:
    """Indices chosen by k-center greedy, in order, and each one's distance to the set chosen
    before it (``inf`` for the very first pick when nothing is labeled).

    ``embeddings``: (N, D); ``labeled``: (M, D) embeddings already covered. The first pick (with no
    ``labeled``) is ``first`` if given, else the point farthest from the mean (deterministic).
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ActiveError(f"embeddings must have shape (N, D), got {x.shape}", where="embeddings")
    budget = min(int(budget), len(x))
    if budget <= 0:
        return [], []
    dmin = np.full(len(x), np.inf)
    if labeled is not None and len(labeled):
        lab = np.asarray(labeled, dtype=np.float64)
        dmin = np.sqrt(((x[:, None, :] - lab[None, :, :]) ** 2).sum(-1)).min(axis=1)
    order: list[int] = []
    dists: list[float] = []
    for _ in range(budget):
        if not order and not np.isfinite(dmin).any():
            i = int(first) if first is not None else int(np.argmax(((x - x.mean(0)) ** 2).sum(1)))
        else:
            cand = np.where(np.isin(np.arange(len(x)), order), -np.inf, dmin)
            i = int(np.argmax(cand))
        order.append(i)
        dists.append(float(dmin[i]))
        dmin = np.minimum(dmin, np.sqrt(((x - x[i]) ** 2).sum(1)))
    return order, dists


def combine_uncertainty(
    scores: Mapping[str, np.ndarray], weights: Mapping[str, float] | None = None
) -> np.ndarray:
    """(N,) weighted mean of the named per-image scores present in ``scores`` (each in [0, 1])."""
    w = dict(DEFAULT_WEIGHTS if weights is None else weights)
    used = [(k, v) for k, v in w.items() if k in scores and v > 0]
    if not used:
        raise ActiveError(
            f"no uncertainty score to combine (have {sorted(scores)}, weights {w})", where="weights"
        )
    total = sum(v for _, v in used)
    return np.asarray(sum(v * np.asarray(scores[k], dtype=np.float64) for k, v in used) / total)


def rank_pool(
    uncertainty: np.ndarray,
    embeddings: np.ndarray | None,
    budget: int,
    *,
    weight: float = 0.5,
    labeled: np.ndarray | None = None,
) -> tuple[list[int], list[float]]:
    """Greedy combined ranking (module docstring): (chosen indices in order, their combined score).

    Without ``embeddings`` (or ``weight = 1``) it is the top-``budget`` uncertainty order."""
    u = np.asarray(uncertainty, dtype=np.float64).reshape(-1)
    budget = min(int(budget), len(u))
    if not 0.0 <= weight <= 1.0:
        raise ActiveError(f"weight must be in [0, 1], got {weight}", where="weight")
    if embeddings is None or weight >= 1.0:
        top = [int(i) for i in np.argsort(-u, kind="stable")[:budget]]
        return top, [float(u[i]) for i in top]
    x = np.asarray(embeddings, dtype=np.float64)
    if len(x) != len(u):
        raise ActiveError(f"{len(x)} embeddings for {len(u)} images", where="embeddings")
    taken = np.zeros(len(u), dtype=bool)
    order: list[int] = []
    scores: list[float] = []
    if labeled is not None and len(labeled):
        lab = np.asarray(labeled, dtype=np.float64)
        dmin = np.sqrt(((x[:, None, :] - lab[None, :, :]) ** 2).sum(-1)).min(axis=1)
    elif budget:  # nothing covered yet: every image is equally novel, the most uncertain goes first
        i = int(np.argmax(u))
        order.append(i)
        scores.append(float(u[i]))
        taken[i] = True
        dmin = np.sqrt(((x - x[i]) ** 2).sum(1))
    else:
        return [], []
    d0 = float(dmin.max()) or 1.0
    while len(order) < budget:
        s = weight * u + (1.0 - weight) * dmin / d0
        s[taken] = -np.inf
        i = int(np.argmax(s))
        order.append(i)
        scores.append(float(s[i]))
        taken[i] = True
        dmin = np.minimum(dmin, np.sqrt(((x - x[i]) ** 2).sum(1)))
    return order, scores


# ----------------------------------------------------------------------------- wrappers
def _np(v: Any) -> np.ndarray:
    if hasattr(v, "detach"):
        v = v.detach().cpu().numpy()
    return np.asarray(v)


def detection_arrays(det: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(boxes (N, 4), scores (N,), labels (N,), probs (N, C) or None) of one image's predictions:
    a :class:`~synthloop.evaluation.detections.FrameDetections`-like object or a dict with
    ``boxes``/``scores``/``labels`` (numpy or torch) and optional ``probs``."""
    get = det.get if isinstance(det, Mapping) else lambda k, d=None: getattr(det, k, d)
    try:
        boxes = _np(get("boxes")).astype(np.float64).reshape(-1, 4)
        scores = _np(get("scores")).astype(np.float64).reshape(-1)
        labels = _np(get("labels")).reshape(-1)
    except (TypeError, ValueError, AttributeError) as e:
        raise ActiveError(f"predictions need boxes/scores/labels ({e})") from e
    probs = get("probs", None)
    return boxes, scores, labels, None if probs is None else _np(probs).astype(np.float64)


def list_pool_images(pool: str | Path | Sequence[str | Path]) -> list[Path]:
    """Images of a pool: a folder (sorted, by suffix), a .txt file of paths, or a list of paths."""
    if isinstance(pool, str | Path):
        p = Path(pool)
        if p.is_dir():
            out = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file() and p.suffix == ".txt":
            out = [Path(line.strip()) for line in p.read_text().splitlines() if line.strip()]
        else:
            raise ActiveError("pool must be an image folder or a .txt list of image paths", path=str(p))
    else:
        out = [Path(q) for q in pool]
    missing = [q for q in out if not q.is_file()]
    if missing:
        raise ActiveError(f"{len(missing)} pool image(s) not found, e.g. {missing[0]}", path=str(pool))
    if not out:
        raise ActiveError("the pool has no images", path=str(pool))
    return out


def load_rgb(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@dataclass
class PoolScores:
    """Per-image scores of a pool (all (N,) arrays) and ``embeddings`` (N, D) or None."""

    paths: list[Path]
    entropy: np.ndarray
    margin: np.ndarray
    tta: np.ndarray
    num_detections: np.ndarray
    embeddings: np.ndarray | None = None

    def as_dict(self) -> dict[str, np.ndarray]:
        return {"entropy": self.entropy, "margin": self.margin, "tta": self.tta}


def score_pool(
    paths: Sequence[str | Path],
    predict: Predict,
    embed: Embed | None = None,
    *,
    batch_size: int = 8,
    min_score: float = 0.05,
    tta: bool = True,
) -> PoolScores:
    """Run ``predict`` (and on flipped copies for TTA) and ``embed`` over the pool in batches."""
    paths = [Path(p) for p in paths]
    ent, mar, dis, nd, embs = [], [], [], [], []
    for s in range(0, len(paths), batch_size):
        images = [load_rgb(p) for p in paths[s : s + batch_size]]
        preds = list(predict(images))
        flips = (
            list(predict([np.ascontiguousarray(im[:, ::-1]) for im in images]))
            if tta
            else [None] * len(images)
        )
        if len(preds) != len(images) or len(flips) != len(images):
            raise ActiveError(f"predict returned {len(preds)} results for {len(images)} images")
        for im, p, f in zip(images, preds, flips, strict=True):
            b, sc, lab, pr = detection_arrays(p)
            keep = sc >= min_score
            ent.append(detection_entropy(sc, pr, min_score))
            mar.append(detection_margin(sc, pr, min_score))
            nd.append(int(keep.sum()))
            if f is not None:
                fb, fs, fl, _ = detection_arrays(f)
                fk = fs >= min_score
                back = flip_boxes_horizontal(fb[fk], im.shape[1])
                dis.append(tta_disagreement(b[keep], lab[keep], back, fl[fk]))
            else:
                dis.append(0.0)
        if embed is not None:
            embs.append(np.asarray(embed(images), dtype=np.float64).reshape(len(images), -1))
    return PoolScores(
        paths=[Path(p) for p in paths],
        entropy=np.asarray(ent),
        margin=np.asarray(mar),
        tta=np.asarray(dis),
        num_detections=np.asarray(nd),
        embeddings=np.concatenate(embs) if embs else None,
    )


@dataclass
class Selection:
    """The chosen images, best first, with their scores (``entries``: JSON-able dicts)."""

    budget: int
    weight: float
    score_weights: dict[str, float]
    entries: list[dict[str, Any]] = field(default_factory=list)
    pool_size: int = 0

    @property
    def paths(self) -> list[str]:
        return [e["path"] for e in self.entries]

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SELECTION_SCHEMA, **asdict(self)}


def select_from_scores(
    scores: PoolScores,
    budget: int,
    *,
    weight: float = 0.5,
    score_weights: Mapping[str, float] | None = None,
    labeled_embeddings: np.ndarray | None = None,
) -> Selection:
    """Rank a scored pool (:func:`rank_pool`) and keep ``budget`` images."""
    if budget < 1:
        raise ActiveError(f"budget must be >= 1, got {budget}", where="budget")
    sw = dict(DEFAULT_WEIGHTS if score_weights is None else score_weights)
    u = combine_uncertainty(scores.as_dict(), sw)
    order, combined = rank_pool(u, scores.embeddings, budget, weight=weight, labeled=labeled_embeddings)
    entries = [
        {
            "rank": r + 1,
            "path": str(scores.paths[i]),
            "score": combined[r],
            "uncertainty": float(u[i]),
            "entropy": float(scores.entropy[i]),
            "margin": float(scores.margin[i]),
            "tta_disagreement": float(scores.tta[i]),
            "num_detections": int(scores.num_detections[i]),
        }
        for r, i in enumerate(order)
    ]
    return Selection(budget, weight, sw, entries, len(scores.paths))


def write_selection(selection: Selection, out_dir: str | Path) -> dict[str, Path]:
    """``selection.json`` (ranked entries with scores) and ``selection.txt`` (one path per line)."""
    out = Path(out_dir)
    paths = {"json": out / "selection.json", "txt": out / "selection.txt"}
    atomic_write_json(paths["json"], selection.to_dict())
    atomic_write_bytes(paths["txt"], "".join(f"{p}\n" for p in selection.paths).encode())
    return paths


def select_pool(
    pool: str | Path | Sequence[str | Path],
    predict: Predict,
    embed: Embed | None,
    budget: int,
    out_dir: str | Path | None = None,
    *,
    weight: float = 0.5,
    score_weights: Mapping[str, float] | None = None,
    batch_size: int = 8,
    min_score: float = 0.05,
) -> Selection:
    """Score the pool, rank it, keep ``budget`` images, and write them to ``out_dir`` if given."""
    paths = list_pool_images(pool)
    sw = dict(DEFAULT_WEIGHTS if score_weights is None else score_weights)
    scores = score_pool(
        paths, predict, embed, batch_size=batch_size, min_score=min_score, tta=sw.get("tta", 0) > 0
    )
    sel = select_from_scores(scores, budget, weight=weight if embed is not None else 1.0, score_weights=sw)
    if out_dir is not None:
        write_selection(sel, out_dir)
    return sel


def backbone_embedder(backbone: Any, *, max_side: int = 320, device: str = "cpu") -> Embed:
    """``embed(images) -> (B, C)``: the backbone's last feature map (stride 32), global-average-pooled
    and L2-normalized. Images are resized so the longer side is ``max_side`` and normalized with the
    ImageNet mean/std (:mod:`synthloop.training.backbones`)."""
    import torch
    import torch.nn.functional as F

    from synthloop.training.backbones import IMAGENET_MEAN, IMAGENET_STD

    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    backbone = backbone.to(device).eval()

    @torch.no_grad()
    def embed(images: list[np.ndarray]) -> np.ndarray:
        out = []
        for im in images:
            t = (
                torch.from_numpy(np.array(im, dtype=np.uint8)).to(device).permute(2, 0, 1)[None].float()
                / 255.0
            )
            h, w = t.shape[-2:]
            s = max_side / max(h, w)
            t = F.interpolate(
                t, size=(max(32, round(h * s)), max(32, round(w * s))), mode="bilinear", align_corners=False
            )
            feats = backbone((t - mean) / std)
            last = feats[list(feats)[-1]] if isinstance(feats, Mapping) else feats
            v = last.mean(dim=(2, 3))[0]
            out.append((v / v.norm().clamp_min(1e-12)).cpu().numpy())
        return np.stack(out)

    return embed


def predictor_embedder(predictor: Any, *, max_side: int = 320) -> Embed:
    """:func:`backbone_embedder` on the feature backbone inside a trained detector
    (``predictor.model``: the first :class:`~synthloop.training.backbones.FeatureBackbone` module),
    so diversity is measured in the detector's own feature space."""
    from synthloop.training.backbones import FeatureBackbone

    model = getattr(predictor, "model", predictor)
    for m in model.modules():
        if isinstance(m, FeatureBackbone):
            device = str(getattr(predictor, "device", "cpu"))
            return backbone_embedder(m, max_side=max_side, device=device)
    raise ActiveError("the predictor's model has no feature backbone to embed images with")
