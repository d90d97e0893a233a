"""Training loop end to end on tiny toy data (CPU, one thread): overfitting, predictor, phase switch,
exact resume, CLI errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from synthloop.dataset.folder import load_dataset
from synthloop.exporters.coco import write_coco
from synthloop.geometry.masks import box_iou
from synthloop.training.data import load_rgb
from synthloop.training.errors import SpecError, TrainingError
from synthloop.training.loop import load_checkpoint, train
from synthloop.training.predictor import Predictor
from synthloop.training.spec import parse_spec
from synthloop.training.toydata import make_toy_dataset, write_toy_folder

torch.set_num_threads(1)

SMALL_MRCNN = dict(
    fpn_channels=64,
    box_head_dim=256,
    mask_head_dim=64,
    rpn_batch_size_per_image=64,
    rpn_pre_nms_top_n_train=200,
    rpn_post_nms_top_n_train=100,
    rpn_pre_nms_top_n_test=200,
    rpn_post_nms_top_n_test=100,
    box_batch_size_per_image=64,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("loopdata")
    synth = write_toy_folder(root / "synth", num_frames=4, seed=0)
    real = write_coco(make_toy_dataset(root / "realimg", 4, seed=7, source="real"), root / "real")
    synth_coco = write_coco(load_dataset(synth), root / "synth_coco")  # the training frames as a val split
    return {"synth": synth, "real": real, "synth_coco": synth_coco}


def _spec(data, **over):
    d = {
        "datasets": [{"kind": "synthetic", "paths": [str(data["synth"])]}],
        "model": {"family": "detectnet_v2", "input_width": 128, "input_height": 96},
        "backbone": {"name": "efficientnet_lite0", "weights": "package", "freeze_bn": True},
        "augment": {"enabled": False},
        "optimizer": {"name": "adamw", "lr": 0.001, "weight_decay": 0.0},
        "lr_schedule": {"name": "constant"},
        "batch_size": 4,
        "device": "cpu",
        "amp": False,
        "log_interval": 1,
    }
    for k, v in over.items():
        d[k] = {**d[k], **v} if isinstance(v, dict) and isinstance(d.get(k), dict) else v
    return parse_spec(d)


def _metrics(run: Path, kind: str = "train") -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["kind"] == kind]


def _assert_overfit(run: Path, data, check_masks: bool) -> None:
    losses = [r["loss"] for r in _metrics(run)]
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])
    pred = Predictor.from_checkpoint(run / "checkpoints" / "last.pt")
    ds = load_dataset(data["synth"])
    results = pred.predict([load_rgb(f) for f in ds.frames])
    for f, r in zip(ds.frames, results, strict=True):
        keep = r["scores"] >= 0.5
        boxes, labels = r["boxes"][keep], r["labels"][keep]
        gt = np.array([o.bbox for o in f.objects])
        iou = box_iou(gt, boxes.astype(np.float64)) if len(boxes) else np.zeros((len(gt), 0))
        for k, o in enumerate(f.objects):
            ok = [j for j in range(len(boxes)) if labels[j] == o.category_id and iou[k, j] >= 0.5]
            assert ok, (f.frame_id, o.bbox, boxes.tolist(), labels.tolist())
            if check_masks:
                from pycocotools import mask as mask_utils

                gm = mask_utils.decode({"size": o.mask["size"], "counts": o.mask["counts"].encode()}).astype(
                    bool
                )
                pm = r["masks"][keep][ok[0]]
                assert (gm & pm).sum() / (gm | pm).sum() >= 0.5
    dets = pred.predict_dataset(ds, batch_size=3)
    assert [d.frame_id for d in dets] == [f.frame_id for f in ds.frames]
    assert (dets[0].masks is not None) == check_masks


def test_detectnet_overfits_and_predicts_training_boxes(tmp_path, data):
    run = tmp_path / "dn"
    spec = _spec(
        data,
        iterations=150,
        validation={"kind": "real", "coco_json": str(data["synth_coco"])},
        validation_interval=75,
    )
    train(spec, run, quiet=True)
    val = _metrics(run, "validation")
    assert [r["step"] for r in val] == [75, 150] and val[-1]["recall"] == 1.0
    assert val[-1]["AP50"] > 0.9 and 0 < val[-1]["AP"] <= val[-1]["AP50"]  # pycocotools on the val split
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    tb = EventMultiplexer().AddRunsFromDirectory(str(run / "tensorboard"))
    tb.Reload()
    tags = {k: v for run_tags in tb.Runs().values() for k, v in run_tags.items() if isinstance(v, list)}
    assert "validation/AP" in tags["scalars"] and "validation/recall" in tags["scalars"]
    assert len([t for t in tags["images"] if t.startswith("validation/predictions/")]) == 4
    hp = [t for r in tb.PluginRunToTagToContent("hparams").values() for t in r]  # add_hparams
    assert "_hparams_/experiment" in hp and "hparam/AP" in tags["scalars"]
    assert (run / "checkpoints" / "best.pt").exists()
    assert (
        (run / "spec.json").exists() and (run / "versions.json").exists() and (run / "tensorboard").is_dir()
    )
    ck = load_checkpoint(run / "checkpoints" / "last.pt")
    assert {"model", "optimizer", "lr_scheduler", "scaler", "state", "rng", "spec"} <= set(ck)
    assert ck["state"]["global_step"] == 150
    _assert_overfit(run, data, check_masks=False)


def test_mask_rcnn_overfits_boxes_and_masks(tmp_path, data):
    run = tmp_path / "mr"
    spec = _spec(data, iterations=80, model={"family": "mask_rcnn", "mask_rcnn": SMALL_MRCNN})
    train(spec, run, quiet=True)
    ck = load_checkpoint(run / "checkpoints" / "last.pt")
    sizes = ck["anchor_sizes"]
    assert (
        len(sizes) == 4 and sizes == sorted(sizes) and sizes[0] >= 10 and sizes[-1] <= 45
    )  # toy boxes 20-40 px
    _assert_overfit(run, data, check_masks=True)


def test_pretrain_finetune_switches_datasets_at_the_switch(tmp_path, data, monkeypatch):
    spec = _spec(
        data,
        datasets=[
            {"kind": "synthetic", "paths": [str(data["synth"])]},
            {"kind": "real", "coco_json": str(data["real"])},
        ],
        mix={
            "schedule": "pretrain_finetune",
            "real_fraction": 0.5,
            "finetune_epochs": 2,
            "finetune_lr": 0.0001,
        },
        epochs=2,
        batch_size=2,
    )
    train(spec, tmp_path / "pf", quiet=True)
    recs = _metrics(tmp_path / "pf")
    phases = [r["phase"] for r in recs]
    # 4 synthetic frames / batch 2 = 2 steps x 2 epochs; then 2 real frames / batch 2 = 1 step x 2 epochs
    assert phases == ["pretrain"] * 4 + ["finetune"] * 2
    assert [r["real_share"] for r in recs] == [0.0] * 4 + [1.0] * 2
    assert recs[3]["lr"] == pytest.approx(0.001)  # constant schedule in the pretrain phase
    assert 0 < recs[4]["lr"] <= 0.0001 + 1e-12  # the finetune phase runs at finetune_lr (cosine-decayed)

    # killed right after the phase-boundary checkpoint, then resumed: same weights as uninterrupted
    from synthloop.training import mixing

    real_epoch_batches = mixing.Phase.epoch_batches

    def die_in_finetune(self, seed, phase_index, epoch, start=0):
        if phase_index == 1:
            raise KeyboardInterrupt
        return real_epoch_batches(self, seed, phase_index, epoch, start)

    monkeypatch.setattr(mixing.Phase, "epoch_batches", die_in_finetune)
    with pytest.raises(KeyboardInterrupt):
        train(spec, tmp_path / "pf2", quiet=True)
    monkeypatch.setattr(mixing.Phase, "epoch_batches", real_epoch_batches)
    cut = load_checkpoint(tmp_path / "pf2" / "checkpoints" / "last.pt")
    assert cut["state"]["phase"] == 1 and cut["state"]["global_step"] == 4 and cut["lr_scheduler"] is None
    train(spec, tmp_path / "pf2", quiet=True, resume=True)
    a = load_checkpoint(tmp_path / "pf" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "pf2" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_blend_run_holds_ratio_and_resume_gives_identical_weights(tmp_path, data):
    spec = _spec(
        data,
        datasets=[
            {"kind": "synthetic", "paths": [str(data["synth"])]},
            {"kind": "real", "coco_json": str(data["real"])},
        ],
        mix={"schedule": "blend", "ratio": [1, 1], "real_fraction": 1.0},
        augment={"enabled": True, "hflip_prob": 0.5, "noise_prob": 0.5, "blur_prob": 0.5},
        lr_schedule={"name": "soft_start_annealing"},
        backbone={"name": "resnet18", "weights": None, "freeze_bn": False},
        iterations=6,
        checkpoint_interval=2,
        batch_size=2,
        deterministic=True,
        seed=3,
    )
    train(spec, tmp_path / "full", quiet=True)
    assert [r["real_share"] for r in _metrics(tmp_path / "full")] == [0.5] * 6
    train(spec, tmp_path / "cut", quiet=True, stop_after=3)
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["state"]["global_step"] == 3
    with pytest.raises(TrainingError, match="--resume"):
        train(spec, tmp_path / "cut", quiet=True)
    train(spec, tmp_path / "cut", quiet=True, resume=True)
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert a["state"]["global_step"] == b["state"]["global_step"] == 6
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert [r["step"] for r in _metrics(tmp_path / "cut")] == list(range(1, 7))
    assert [r["loss"] for r in _metrics(tmp_path / "cut")] == [r["loss"] for r in _metrics(tmp_path / "full")]
    # a different spec cannot resume this run
    other = spec.model_copy(update={"seed": 4})
    with pytest.raises(TrainingError, match="spec differs"):
        train(other, tmp_path / "cut", quiet=True, resume=True)


def test_cli_bad_spec_one_line_exit_2(tmp_path):
    from synthloop.commands.train import app

    p = tmp_path / "bad.yaml"
    p.write_text(
        yaml.safe_dump({"datasets": [{"kind": "synthetic", "paths": ["x"]}], "backbone": {"name": "vgg"}})
    )
    res = CliRunner().invoke(app, [str(p), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2
    err = res.stderr.strip()
    assert "\n" not in err and "backbone.name" in err and str(p) in err and "Traceback" not in res.output
    p.write_text(yaml.safe_dump({"datasets": [{"kind": "synthetic", "paths": [str(tmp_path / "none")]}]}))
    res = CliRunner().invoke(app, [str(p), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and "datasets.0.paths.0" in res.stderr


def test_cli_trains_and_resumes(tmp_path, data):
    from synthloop.commands.train import app

    p = tmp_path / "ok.yaml"
    spec = _spec(data, iterations=2, backbone={"name": "resnet18", "weights": None}, batch_size=2)
    p.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    res = CliRunner().invoke(app, [str(p), "--out", str(tmp_path / "run")])  # rich progress path
    assert res.exit_code == 0, res.output
    assert (tmp_path / "run" / "checkpoints" / "last.pt").exists()
    res = CliRunner().invoke(app, [str(p), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and "--resume" in res.stderr
    res = CliRunner().invoke(app, [str(p), "--out", str(tmp_path / "run"), "--resume", "--quiet"])
    assert res.exit_code == 0 and len(_metrics(tmp_path / "run")) == 2


REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "fruits-nuts"


@pytest.mark.skipif(not (REAL / "train.json").exists(), reason="fruits-nuts data not available")
def test_real_fruits_nuts_mask_rcnn_smoke_and_full_size_prediction(tmp_path, data):
    spec = _spec(
        data,
        datasets=[
            {"kind": "synthetic", "paths": [str(data["synth"])]},
            {"kind": "real", "coco_json": str(REAL / "train.json"), "images_dir": str(REAL / "images")},
        ],
        model={"family": "mask_rcnn", "input_width": 160, "input_height": 120, "mask_rcnn": SMALL_MRCNN},
        mix={"real_fraction": 0.5},
        iterations=2,
        batch_size=2,
        num_workers=1,
    )
    with pytest.raises(SpecError, match=r"only in real: \['hazelnut'\]"):
        train(spec, tmp_path / "bad", quiet=True)  # the toy synthetic set has no hazelnuts
    toy3 = write_toy_folder(tmp_path / "synth3", num_frames=2, class_names=("date", "fig", "hazelnut"))
    spec.datasets[0].paths = [str(toy3)]
    train(spec, tmp_path / "run", quiet=True)
    assert [r["real_share"] for r in _metrics(tmp_path / "run")] == [0.5, 0.5]
    pred = Predictor.from_checkpoint(tmp_path / "run", device="cpu")
    assert pred.classes == ["date", "fig", "hazelnut"] and pred.category_ids == [1, 2, 3]
    from synthloop.importers.coco import load_coco

    real = load_coco(REAL / "train.json", REAL / "images")
    (r,) = pred.predict([load_rgb(real.frames[0])])
    n = len(r["scores"])
    assert r["boxes"].shape == (n, 4) and r["masks"].shape == (n, 600, 800)
    assert np.all(r["boxes"][:, 2] <= 800) and np.all(r["boxes"][:, 3] <= 600)
    assert set(r["labels"].tolist()) <= {1, 2, 3}


def test_load_graph_retrains_a_pruned_model(data, tmp_path):
    """prune -> `model.load_graph` -> train() -> Predictor: the pruned widths are kept throughout."""
    from synthloop.deploy.prune import prune_checkpoint

    ckpt = train(_spec(data, iterations=2), tmp_path / "run", quiet=True)
    full_params = sum(p.numel() for p in Predictor.from_checkpoint(ckpt).model.parameters())
    prune_checkpoint(ckpt, tmp_path / "pruned.pt", threshold=0.9, min_filters=8, granularity=8)
    spec = _spec(data, iterations=3)
    spec = spec.model_copy(
        update={"model": spec.model.model_copy(update={"load_graph": str(tmp_path / "pruned.pt")})}
    )
    retrained = train(spec, tmp_path / "retrain", quiet=True)
    pred = Predictor.from_checkpoint(retrained)
    pruned_params = sum(p.numel() for p in pred.model.parameters())
    assert pruned_params < 0.8 * full_params
    img = load_rgb(load_dataset(data["synth"]).frames[0])
    assert len(pred.predict([img])) == 1
    # the evaluator reads the pruned checkpoint itself too (through synthloop.deploy)
    from synthloop.training.api import predict_dataset

    ds = load_dataset(data["synth"])
    dets = predict_dataset(tmp_path / "pruned.pt", ds)
    assert set(dets) == {f.frame_id for f in ds.frames}
    # the retrained checkpoint stands alone: without the pruned file the run read, it rebuilds its
    # widths from its weights (Predictor, synthloop.deploy) and predicts the same
    from synthloop.training.checkpoints import load_model

    (tmp_path / "pruned.pt").rename(tmp_path / "moved.pt")
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    x = torch.nn.functional.interpolate(x, size=(96, 128), mode="bilinear")
    with torch.no_grad():
        want = pred.model.eval().head(x)
        for model in (Predictor.from_checkpoint(retrained).model, load_model(retrained).model):
            assert sum(p.numel() for p in model.parameters()) == pruned_params
            for a, b in zip(want, model.eval().head(x), strict=True):
                torch.testing.assert_close(a, b)
    bad = _spec(data, iterations=1)
    bad = bad.model_copy(update={"model": bad.model.model_copy(update={"load_graph": str(ckpt)})})
    with pytest.raises(SpecError, match="load_graph"):
        train(bad, tmp_path / "bad", quiet=True)


def test_load_graph_retraining_follows_the_spec_freeze_settings(data, tmp_path):
    """freeze_blocks / freeze_bn apply to a loaded pruned graph as to a built model (they were
    ignored before); a graph of another backbone than the spec's is refused."""
    from synthloop.deploy.prune import load_pruned, prune_checkpoint

    ckpt = train(_spec(data, iterations=1), tmp_path / "run", quiet=True)
    prune_checkpoint(ckpt, tmp_path / "pruned.pt", threshold=0.9, min_filters=8, granularity=8)
    before = load_pruned(tmp_path / "pruned.pt").state_dict()
    spec = _spec(data, iterations=2, backbone={"freeze_blocks": [0, 1], "freeze_bn": False})
    spec = spec.model_copy(
        update={"model": spec.model.model_copy(update={"load_graph": str(tmp_path / "pruned.pt")})}
    )
    after = load_checkpoint(train(spec, tmp_path / "retrain", quiet=True))["model"]
    stem_and_stage1 = [k for k in before if k.startswith(("backbone.body.stem.", "backbone.body.blocks.0."))]
    later = [k for k in before if k.startswith("backbone.body.blocks.1.") and k.endswith(".weight")]
    assert stem_and_stage1 and later
    for k in stem_and_stage1:
        if not k.endswith(("running_mean", "running_var", "num_batches_tracked")):  # BN stats still move
            assert torch.equal(before[k], after[k]), k
    assert any(not torch.equal(before[k], after[k]) for k in later)
    other = spec.model_copy(update={"backbone": spec.backbone.model_copy(update={"name": "resnet18"})})
    with pytest.raises(SpecError, match="resnet18"):
        train(other, tmp_path / "other", quiet=True)


def _init_from(spec, path):
    return spec.model_copy(update={"model": spec.model.model_copy(update={"init_from": str(path)})})


def test_init_from_starts_a_run_from_a_trained_checkpoint(data, tmp_path):
    """`model.init_from`: the run starts from every weight of the checkpoint (a 1e-9 lr step keeps
    them), not from the package's backbone and fresh heads; its optimizer and schedule are new."""
    pre = train(_spec(data, iterations=3), tmp_path / "pre", quiet=True)
    tiny = _spec(data, iterations=1, optimizer={"lr": 1e-9})
    tuned = load_checkpoint(train(_init_from(tiny, pre), tmp_path / "tuned", quiet=True))
    fresh = load_checkpoint(train(tiny, tmp_path / "fresh", quiet=True))
    start = load_checkpoint(pre)["model"]
    for k, v in start.items():
        if v.is_floating_point():
            torch.testing.assert_close(tuned["model"][k], v, atol=1e-6, rtol=0)
    heads = [k for k in start if not k.startswith("backbone.") and k.endswith(".weight")]
    assert heads and any(not torch.allclose(fresh["model"][k], start[k], atol=1e-3) for k in heads)
    assert tuned["state"]["global_step"] == 1 and tuned["spec"]["model"]["init_from"] == str(pre)


def test_init_from_keeps_the_checkpoints_anchors_and_refuses_what_does_not_fit(data, tmp_path):
    """An R-CNN run started from a checkpoint keeps its anchor sizes (its RPN learned offsets against
    them), not the new data's; other classes, a pruned file, a missing file, another head width, or
    both `load_graph` and `init_from` are refused naming the field."""
    from synthloop.deploy.prune import prune_checkpoint

    mr = {"family": "mask_rcnn", "mask_rcnn": {**SMALL_MRCNN, "anchor_sizes": [8, 16, 24, 40]}}
    pre = train(_spec(data, iterations=1, model=mr), tmp_path / "pre", quiet=True)
    tuned = _init_from(
        _spec(data, iterations=1, model={"family": "mask_rcnn", "mask_rcnn": SMALL_MRCNN}), pre
    )
    assert load_checkpoint(train(tuned, tmp_path / "tuned", quiet=True))["anchor_sizes"] == [8, 16, 24, 40]
    wider = tuned.model_copy(
        update={
            "model": tuned.model.model_copy(
                update={"mask_rcnn": tuned.model.mask_rcnn.model_copy(update={"box_head_dim": 128})}
            )
        }
    )
    with pytest.raises(SpecError, match="model.init_from.*do not fit"):
        train(wider, tmp_path / "wider", quiet=True)
    det = train(_spec(data, iterations=1), tmp_path / "det", quiet=True)
    toy3 = write_toy_folder(tmp_path / "synth3", num_frames=2, class_names=("date", "fig", "hazelnut"))
    other = _init_from(_spec(data, iterations=1, datasets=[{"kind": "synthetic", "paths": [str(toy3)]}]), det)
    with pytest.raises(SpecError, match=r"model.init_from.*classes"):
        train(other, tmp_path / "other", quiet=True)
    prune_checkpoint(det, tmp_path / "pruned.pt", threshold=0.9, min_filters=8, granularity=8)
    for bad in (tmp_path / "pruned.pt", tmp_path / "missing.pt"):
        with pytest.raises(SpecError, match="model.init_from"):
            train(_init_from(_spec(data, iterations=1), bad), tmp_path / "bad", quiet=True)
    with pytest.raises(SpecError, match="load_graph or model.init_from"):
        _spec(data, iterations=1, model={"load_graph": str(tmp_path / "pruned.pt"), "init_from": str(det)})


def test_a_retrained_pruned_rcnn_keeps_the_graphs_anchors(data, tmp_path):
    """`model.load_graph` of a pruned Mask R-CNN: the checkpoint records the anchors its RPN was
    trained with (the graph's), not the new data's, so the evaluator rebuilds the same model."""
    from synthloop.deploy.prune import prune_checkpoint
    from synthloop.training.checkpoints import load_model

    mr = {"family": "mask_rcnn", "mask_rcnn": {**SMALL_MRCNN, "anchor_sizes": [8, 16, 24, 40]}}
    pre = train(_spec(data, iterations=1, model=mr), tmp_path / "pre", quiet=True)
    prune_checkpoint(pre, tmp_path / "pruned.pt", threshold=0.9, min_filters=8, granularity=8)
    graph = {"family": "mask_rcnn", "mask_rcnn": SMALL_MRCNN, "load_graph": str(tmp_path / "pruned.pt")}
    retrained = train(_spec(data, iterations=1, model=graph), tmp_path / "re", quiet=True)
    assert load_checkpoint(retrained)["anchor_sizes"] == [8, 16, 24, 40]
    assert load_model(retrained).model.rpn.anchor_generator.sizes == ((8,), (16,), (24,), (40,))


def test_distillation_terms_vanish_when_the_student_is_the_teacher():
    from synthloop.training.backbones import build_backbone
    from synthloop.training.detectnet import DetectNetV2

    torch.manual_seed(0)
    net = DetectNetV2(build_backbone("resnet18", weights=None), num_classes=2).train()
    x = torch.rand(2, 3, 64, 64)
    targets = [
        {"boxes": torch.tensor([[4.0, 4.0, 30.0, 40.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.tensor([[20.0, 10.0, 60.0, 50.0]]), "labels": torch.tensor([2])},
    ]
    cov, bbox = net.head(x)
    cov = cov.detach().requires_grad_(True)
    bbox = bbox.detach().requires_grad_(True)
    same = net.loss(cov, bbox, targets, soft=(cov.detach(), bbox.detach()))
    assert same["loss_distill_bbox"].item() == 0.0
    (g,) = torch.autograd.grad(same["loss_distill_cov"], cov)
    assert g.abs().max().item() < 1e-6  # BCE against its own probabilities is at its minimum
    other = net.loss(cov, bbox, targets, soft=(cov.detach() + 1.0, bbox.detach() + 0.5))
    assert other["loss_distill_cov"] > same["loss_distill_cov"] and other["loss_distill_bbox"] > 0
    with pytest.raises(ValueError, match="do not match"):
        net.loss(cov, bbox, targets, soft=(cov.detach()[:, :1], bbox.detach()))


def test_distillation_pulls_the_student_to_the_teacher(data, tmp_path):
    """A pruned student retrained with `distill` ends closer to its teacher's coverage maps than the
    same retraining without it; a teacher of another input size is refused before training."""
    from synthloop.deploy.graph import DetectNetRaw
    from synthloop.deploy.prune import prune_checkpoint
    from synthloop.training.checkpoints import load_model

    teacher_ckpt = train(_spec(data, iterations=6), tmp_path / "teacher", quiet=True)
    prune_checkpoint(teacher_ckpt, tmp_path / "pruned.pt", threshold=0.5, granularity=1, allocation="uniform")
    base = _spec(data, iterations=30)
    base = base.model_copy(
        update={"model": base.model.model_copy(update={"load_graph": str(tmp_path / "pruned.pt")})}
    )
    kd = parse_spec(
        {**base.model_dump(mode="json"), "distill": {"teacher": str(teacher_ckpt), "weight": 5.0}}
    )
    runs = {
        "plain": train(base, tmp_path / "plain", quiet=True),
        "kd": train(kd, tmp_path / "kd", quiet=True),
    }
    assert "loss_distill_cov" in _metrics(tmp_path / "kd")[-1]
    # --resume refuses a teacher file that changed since the run started
    changed = tmp_path / "teacher2.pt"
    changed.write_bytes(Path(teacher_ckpt).read_bytes())
    kd2 = parse_spec({**kd.model_dump(mode="json"), "distill": {"teacher": str(changed), "weight": 5.0}})
    train(kd2, tmp_path / "kd2", quiet=True, stop_after=1)
    changed.write_bytes(Path(runs["plain"]).read_bytes())
    with pytest.raises(TrainingError, match="teacher file changed"):
        train(kd2, tmp_path / "kd2", resume=True, quiet=True)
    frames = load_dataset(data["synth"]).frames
    x = torch.stack([torch.from_numpy(np.array(load_rgb(f))).permute(2, 0, 1).float() / 255 for f in frames])
    x = torch.nn.functional.interpolate(x, size=(96, 128), mode="bilinear")
    with torch.no_grad():
        ref = torch.sigmoid(DetectNetRaw(load_model(teacher_ckpt).model.eval())(x)[0])
        gap = {
            k: (torch.sigmoid(DetectNetRaw(load_model(p).model.eval())(x)[0]) - ref).abs().mean().item()
            for k, p in runs.items()
        }
    assert gap["kd"] < 0.7 * gap["plain"], gap
    wrong = parse_spec(
        {**kd.model_dump(mode="json"), "model": {**kd.model.model_dump(mode="json"), "input_width": 96}}
    )
    with pytest.raises(SpecError, match="distill.teacher"):
        train(wrong, tmp_path / "wrong", quiet=True)
    kd_json = kd.model_dump(mode="json")
    other_norm = {**kd_json["model"], "detectnet": {**kd_json["model"]["detectnet"], "bbox_norm": 50.0}}
    with pytest.raises(SpecError, match="bbox_norm"):
        train(parse_spec({**kd_json, "model": other_norm}), tmp_path / "norm", quiet=True)
    with pytest.raises(SpecError, match="detectnet_v2 only"):
        parse_spec({**kd.model_dump(mode="json"), "model": {"family": "mask_rcnn"}})


def test_resume_accepts_a_spec_saved_before_a_field_existed(data, tmp_path):
    """A checkpoint whose saved spec lacks a newer field (here `distill`, added later) resumes; a
    spec that really differs is still refused."""
    from synthloop.training.loop import save_checkpoint

    spec = _spec(data, iterations=3)
    train(spec, tmp_path / "run", quiet=True, stop_after=2)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    ck = load_checkpoint(last)
    del ck["spec"]["distill"]
    save_checkpoint(last, ck)
    train(spec, tmp_path / "run", resume=True, quiet=True)
    assert load_checkpoint(last)["state"]["global_step"] == 3
    with pytest.raises(TrainingError, match="spec differs"):
        train(_spec(data, iterations=4), tmp_path / "run", resume=True, quiet=True)


def test_distillation_coverage_term_follows_cov_normalize():
    from synthloop.training.backbones import build_backbone
    from synthloop.training.detectnet import DetectNetV2

    torch.manual_seed(0)
    net = DetectNetV2(build_backbone("resnet18", weights=None), num_classes=1, cov_normalize="cells")
    cov = torch.randn(2, 1, 4, 4)
    bbox = torch.randn(2, 1, 4, 4, 4)
    t_cov = torch.randn(2, 1, 4, 4)
    targets = [{"boxes": torch.tensor([[4.0, 4.0, 30.0, 40.0]]), "labels": torch.tensor([1])}] * 2
    out = net.loss(cov, bbox, targets, soft=(t_cov, bbox))
    want = torch.nn.functional.binary_cross_entropy_with_logits(cov, torch.sigmoid(t_cov))
    torch.testing.assert_close(out["loss_distill_cov"], net.cov_loss_weight * want)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
@pytest.mark.parametrize("family", ["detectnet_v2", "mask_rcnn"])
def test_cuda_graph_backbone_replays_every_step(tmp_path, data, family):
    """On CUDA the backbone replays captured graphs every step (spec ``cuda_graph``, default on)
    and the first step's loss equals the eager run's."""
    model = {"family": family, "input_width": 128, "input_height": 96}
    if family == "mask_rcnn":
        model["mask_rcnn"] = SMALL_MRCNN
    losses = {}
    for on in (True, False):
        spec = _spec(data, iterations=6, device="cuda", amp=True, cuda_graph=on, model=model)
        run = train(spec, tmp_path / f"run_{on}", quiet=True)
        recs = _metrics(run.parent.parent)
        losses[on] = recs[0]["loss"]
        if on:
            assert "cuda_graph_error" not in recs[-1]
            assert recs[-1]["cuda_graph_replays"] == 6 and recs[-1]["cuda_graph_eager"] == 0
        else:
            assert "cuda_graph_replays" not in recs[-1]
    assert losses[True] == pytest.approx(losses[False], rel=1e-2)


@pytest.mark.parametrize("family", ["detectnet_v2", "mask_rcnn"])
def test_backbone_example_matches_what_a_training_batch_feeds_the_backbone(data, family):
    """The CUDA graph is captured for ``_backbone_example``'s input and replays only on inputs with
    its signature: it must be what a real training batch gives the backbone (shape, dtype, layout),
    or the graph would never replay. Checked on the CPU, where the graph itself is not used."""
    from synthloop.training.build import build_model, data_anchor_sizes, prepare_data
    from synthloop.training.cuda_graph import input_signature
    from synthloop.training.data import collate
    from synthloop.training.loop import _backbone_example, _datasets

    model_spec = {"family": family, "input_width": 100, "input_height": 75}  # not multiples of 32
    if family == "mask_rcnn":
        model_spec["mask_rcnn"] = SMALL_MRCNN
    spec = _spec(data, iterations=1, model=model_spec, augment={"enabled": True})
    prepared = prepare_data(spec, "<test>")
    anchors = data_anchor_sizes(spec, prepared) if family == "mask_rcnn" else None
    model = build_model(spec, prepared.classes, anchors, pretrained=False).train()
    ds = _datasets(spec, prepared, family)
    images, targets = collate([ds[(0, i, 7)] for i in range(spec.batch_size)])
    seen = []
    model.backbone.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    model(list(images), list(targets))
    example = _backbone_example(model, family, spec.batch_size, spec, torch.device("cpu"))
    assert len(seen) == 1
    assert input_signature(example) == input_signature(seen[0])
