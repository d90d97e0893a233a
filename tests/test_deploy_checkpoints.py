"""Checkpoint loading for deployment: family detection, rebuild fidelity, one-line errors."""

from __future__ import annotations

import pytest
from helpers import make_checkpoint

torch = pytest.importorskip("torch")

from synthloop.deploy.graph import DetectNetRaw  # noqa: E402
from synthloop.training.checkpoints import load_model  # noqa: E402
from synthloop.training.errors import CheckpointError  # noqa: E402

torch.set_num_threads(1)


def test_training_checkpoint_rebuilds_the_same_detectnet(tmp_path):
    model = make_checkpoint(tmp_path / "dn.pt", size=(96, 64))
    loaded = load_model(tmp_path / "dn.pt", family="DetectNet_v2")
    d = loaded.desc
    assert (d.family, d.backbone, d.class_names, d.category_ids) == (
        "detectnet_v2",
        "resnet18",
        ["date", "fig"],
        [3, 7],
    )
    assert (d.input_width, d.input_height) == (96, 64)
    assert d.label_to_category() == {1: 3, 2: 7}
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = DetectNetRaw(model)(x), DetectNetRaw(loaded.model)(x)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_other_family_is_refused(tmp_path):
    make_checkpoint(tmp_path / "dn.pt")
    with pytest.raises(CheckpointError) as e:
        load_model(tmp_path / "dn.pt", family="mask_rcnn")
    msg = str(e.value)
    assert "dn.pt" in msg and "detectnet_v2" in msg and "mask_rcnn" in msg and "\n" not in msg


def test_corrupt_truncated_and_missing_files(tmp_path):
    make_checkpoint(tmp_path / "dn.pt")
    data = (tmp_path / "dn.pt").read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all" * 10)
    for name in ("trunc.pt", "junk.pt"):
        with pytest.raises(CheckpointError, match="corrupt or truncated") as e:
            load_model(tmp_path / name)
        assert name in str(e.value)
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "missing.pt")


def test_weights_that_do_not_fit_are_reported(tmp_path):
    make_checkpoint(tmp_path / "dn.pt")
    ck = torch.load(tmp_path / "dn.pt", weights_only=True)
    ck["classes"] = ["date", "fig", "hazelnut"]  # the weights have 2 classes
    ck["category_ids"] = [1, 2, 3]
    torch.save(ck, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="classes"):
        load_model(tmp_path / "bad.pt")
