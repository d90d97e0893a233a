"""Data-parallel training on the CPU: 2 gloo processes against one process with the doubled batch.

Pure parts (rank shares, item streams, lr scaling, the launcher environment) are checked directly;
the integration tests start real processes (``torch.multiprocessing`` spawn and ``--gpus 2``, which
runs torchrun) on tiny toy data.
"""

from __future__ import annotations

import json
import os
import socket
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import yaml
from helpers import ddp_spec_dict as _spec_dict
from typer.testing import CliRunner

from synthloop.training import distributed as du
from synthloop.training.loop import load_checkpoint, train
from synthloop.training.mixing import REAL, SYNTHETIC, build_phases
from synthloop.training.spec import parse_spec

torch.set_num_threads(1)

KW = dict(
    schedule="blend",
    real_fraction=1.0,
    ratio=(1, 1),
    epochs=1,
    lr=0.01,
    finetune_epochs=0,
    finetune_lr=None,
    seed=5,
)


# ---------------------------------------------------------------- pure
def test_blend_shares_are_disjoint_and_each_holds_the_ratio():
    (phase,) = build_phases(12, 12, **{**KW, "ratio": (3, 1), "batch_size": 4}, world_size=2)
    assert phase.batch_size == 8 and phase.per_batch() == (6, 2)
    for batch in phase.epoch_batches(5, 0, 0):
        shares = [du.rank_items(batch, r, 2, phase.per_batch()) for r in range(2)]
        for sh in shares:
            src = [s for s, _, _ in sh]
            assert src.count(SYNTHETIC) == 3 and src.count(REAL) == 1
        assert Counter(shares[0] + shares[1]) == Counter(batch)  # together exactly the global batch
        assert not set(shares[0]) & set(shares[1])
    with pytest.raises(ValueError, match="not a multiple of ratio"):
        build_phases(12, 12, **{**KW, "ratio": (3, 1), "batch_size": 2}, world_size=4)


def test_shuffled_last_batch_is_padded_to_equal_shares():
    batch = [(0, i, i) for i in range(5)]
    shares = [du.rank_items(batch, r, 2, None) for r in range(2)]
    assert [len(s) for s in shares] == [3, 3]
    assert set(shares[0]) | set(shares[1]) == set(batch)
    assert du.rank_items(batch, 0, 1, None) == batch


@pytest.mark.parametrize("schedule_ratio", [None, (1, 1), (3, 1)])
def test_item_streams_do_not_depend_on_the_batch_size(schedule_ratio):
    """The same items in the same order for any global batch, and from any unit-aligned start."""
    kw = {**KW, "ratio": schedule_ratio or (1, 1), "real_fraction": 1.0 if schedule_ratio else 0.0}
    flat = {}
    for b in (4, 8):  # 10 synthetic frames: epochs of different lengths for the two batch sizes
        (phase,) = build_phases(10, 16, **{**kw, "batch_size": b})
        flat[b] = [it for batch in phase.epoch_batches(5, 0, 2) for it in batch]
        if schedule_ratio is not None:  # blend batches list synthetic first: compare per source
            flat[b] = sorted(flat[b], key=lambda it: it[0])
    n = min(len(flat[4]), len(flat[8]))
    if schedule_ratio == (1, 1):  # 5 batches of 2+2 against 3 of 4+4: streams of different lengths
        assert len(flat[4]) != len(flat[8])
    if schedule_ratio is None:
        assert flat[4] == flat[8]
    else:
        for src in (SYNTHETIC, REAL):
            a = [it for it in flat[4] if it[0] == src]
            c = [it for it in flat[8] if it[0] == src]
            assert a[: min(len(a), len(c))] == c[: min(len(a), len(c))]
    assert n > 0
    (phase,) = build_phases(16, 16, **{**kw, "batch_size": 4})
    full = phase.epoch_batches(5, 0, 2)
    assert phase.epoch_batches(5, 0, 2, start=8) == full[2:]


def test_lr_scaling_and_environment():
    assert du.scaled_lr(0.01, 4, "linear") == pytest.approx(0.04)
    assert du.scaled_lr(0.01, 4, "sqrt") == pytest.approx(0.02)
    assert du.scaled_lr(0.01, 4, "none") == 0.01
    assert du.env_context({}) == du.SINGLE
    assert du.env_context({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == du.DistContext(1, 2, 1)
    slurm = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1"}
    assert du.env_context(slurm) == du.DistContext(5, 8, 1)
    assert du.env_context({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}) == du.SINGLE
    with pytest.raises(ValueError, match="rank 3 of world size 2"):
        du.env_context({"RANK": "3", "WORLD_SIZE": "2"})


def test_gpus_option_builds_the_torchrun_command(tmp_path):
    from synthloop.commands.train import torchrun_command

    cmd = torchrun_command(tmp_path / "s.yaml", tmp_path / "run", 4, resume=True, quiet=True)
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4"]
    assert cmd[5:8] == ["-m", "synthloop.cli", "train"] and cmd[-2:] == ["--resume", "--quiet"]


# ---------------------------------------------------------------- processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _traced(trace: Path):
    """A ``MixedDataset.__getitem__`` that records every item it serves into ``trace`` (JSON lines)."""
    from synthloop.training import mixing

    orig = mixing.MixedDataset.__getitem__

    def traced(self, item):
        with open(trace, "a") as fh:
            fh.write(json.dumps(list(item)) + "\n")
        return orig(self, item)

    return traced


def _worker(rank: int, world: int, port: int, spec: dict, out: str, trace_dir: str, stop_after) -> None:
    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    from synthloop.training import mixing

    mixing.MixedDataset.__getitem__ = _traced(Path(trace_dir) / f"rank{rank}.jsonl")
    train(parse_spec(spec), out, quiet=True, stop_after=stop_after, resume=True)


def _spawn(spec: dict, out: Path, trace_dir: Path, world: int = 2, stop_after=None) -> None:
    trace_dir.mkdir(parents=True, exist_ok=True)
    mp.start_processes(
        _worker,
        args=(world, _free_port(), spec, str(out), str(trace_dir), stop_after),
        nprocs=world,
        join=True,
        start_method="spawn",
    )


def _items(path: Path) -> list[tuple]:
    return [tuple(json.loads(line)) for line in path.read_text().splitlines()]


def _metrics(run: Path, kind: str) -> list[dict]:
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in recs if r["kind"] == kind]


def test_two_gloo_ranks_equal_one_process_with_the_doubled_batch(tmp_path, data, monkeypatch):
    from synthloop.training import mixing

    spec = _spec_dict(data)
    _spawn(spec, tmp_path / "ddp", tmp_path / "trace_ddp")
    # the reference: one process, batch 4 (= 2 ranks x 2)
    with monkeypatch.context() as m:
        m.setattr(mixing.MixedDataset, "__getitem__", _traced(tmp_path / "single.jsonl"))
        train(parse_spec({**spec, "batch_size": 4}), tmp_path / "single", quiet=True)
    # and one process with the per-rank batch: what the comparison must tell apart
    train(parse_spec(spec), tmp_path / "half", quiet=True)

    r0, r1 = _items(tmp_path / "trace_ddp" / "rank0.jsonl"), _items(tmp_path / "trace_ddp" / "rank1.jsonl")
    single = _items(tmp_path / "single.jsonl")
    assert len(r0) == len(r1) == 4 * 2 and len(single) == 4 * 4
    for step in range(4):  # per step: disjoint shares that together are the single process's batch
        a, b, s = r0[2 * step : 2 * step + 2], r1[2 * step : 2 * step + 2], single[4 * step : 4 * step + 4]
        assert not set(a) & set(b)
        assert Counter(a + b) == Counter(s)
        assert [x[0] for x in a] == [x[0] for x in b] == [SYNTHETIC, REAL]  # the 1:1 ratio on each rank

    # rank 0 alone wrote the log; replicas were checked identical at every checkpoint
    assert [r["step"] for r in _metrics(tmp_path / "ddp", "train")] == [1, 2, 3, 4]
    spreads = [r["spread"] for r in _metrics(tmp_path / "ddp", "replicas")]
    assert len(spreads) >= 2 and set(spreads) == {0.0}
    assert all(r["images_per_s"] > 0 for r in _metrics(tmp_path / "ddp", "train"))

    a = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "single" / "checkpoints" / "last.pt")
    half = load_checkpoint(tmp_path / "half" / "checkpoints" / "last.pt")
    assert a["state"]["world_size"] == 2 and b["state"]["world_size"] == 1
    worst = worst_half = 0.0
    for k, v in a["model"].items():
        if v.is_floating_point():
            torch.testing.assert_close(v, b["model"][k], rtol=0, atol=1e-6, msg=k)
            worst = max(worst, float((v - b["model"][k]).abs().max()))
            worst_half = max(worst_half, float((v - half["model"][k]).abs().max()))
    assert worst_half > 1000 * max(worst, 1e-7), (worst, worst_half)  # the check tells them apart
    losses_ddp = [r["loss"] for r in _metrics(tmp_path / "ddp", "train")]
    losses_one = [r["loss"] for r in _metrics(tmp_path / "single", "train")]
    assert losses_ddp == pytest.approx(losses_one, rel=1e-3)  # the logged loss is the mean over ranks


def test_resume_on_another_number_of_processes(tmp_path, data, monkeypatch):
    """Stopped after 2 steps on 2 ranks, resumed in 1 process: it continues at the same item."""
    spec = _spec_dict(data, distributed={"lr_scaling": "linear"})
    _spawn(spec, tmp_path / "run", tmp_path / "trace", stop_after=2)
    cut = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert cut["state"]["global_step"] == 2 and cut["state"]["consumed"] == 8  # 2 steps x 4 items
    # uninterrupted 2-rank run: the 4 items of its step 3 (2 per rank)
    _spawn(spec, tmp_path / "full", tmp_path / "trace_full")
    full = [_items(tmp_path / "trace_full" / f"rank{r}.jsonl") for r in range(2)]
    step3 = Counter(full[0][4:6] + full[1][4:6])

    from synthloop.training import mixing

    monkeypatch.setattr(mixing.MixedDataset, "__getitem__", _traced(tmp_path / "resumed.jsonl"))
    train(parse_spec(spec), tmp_path / "run", quiet=True, resume=True)
    resumed = _items(tmp_path / "resumed.jsonl")
    end = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert end["state"]["global_step"] == 4 and end["state"]["world_size"] == 1
    # 2 more steps of 2 items on 1 process: the next 4 items of the same stream
    assert len(resumed) == 4 and Counter(resumed) == step3
    lrs = [r["lr"] for r in _metrics(tmp_path / "run", "train")]
    ref = [r["lr"] for r in _metrics(tmp_path / "full", "train")]
    assert lrs[:2] == pytest.approx(ref[:2])  # 2 ranks: 2 x the base lr (linear scaling)
    assert lrs[2:] == pytest.approx([x / 2 for x in ref[2:]])  # 1 process: the base lr, same schedule


def test_cli_gpus_2_runs_torchrun_and_resumes(tmp_path, data):
    from synthloop.commands.train import app

    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(_spec_dict(data, iterations=2, checkpoint_interval=1)))
    res = CliRunner().invoke(app, [str(p), "--out", str(tmp_path / "run"), "--gpus", "2", "--quiet"])
    assert res.exit_code == 0, res.output
    ck = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert ck["state"]["world_size"] == 2 and ck["state"]["global_step"] == 2
    assert [r["step"] for r in _metrics(tmp_path / "run", "train")] == [1, 2]
    # the same folder again without --resume: every rank refuses, the launcher exits non-zero
    res = CliRunner().invoke(app, [str(p), "--out", str(tmp_path / "run"), "--gpus", "2", "--quiet"])
    assert res.exit_code != 0


def test_mask_rcnn_trains_under_two_gloo_ranks(tmp_path, data):
    """torchvision's Mask R-CNN (RPN + box + mask heads) as a DDP replica: every parameter that
    trains gets its gradient averaged; replicas stay identical."""
    small = dict(
        fpn_channels=32,
        box_head_dim=64,
        mask_head_dim=32,
        rpn_batch_size_per_image=32,
        rpn_pre_nms_top_n_train=100,
        rpn_post_nms_top_n_train=50,
        box_batch_size_per_image=32,
    )
    spec = _spec_dict(
        data,
        model={"family": "mask_rcnn", "input_width": 96, "input_height": 64, "mask_rcnn": small},
        iterations=2,
        checkpoint_interval=2,
    )
    _spawn(spec, tmp_path / "mr", tmp_path / "trace")
    ck = load_checkpoint(tmp_path / "mr" / "checkpoints" / "last.pt")
    assert ck["family"] == "mask_rcnn" and ck["state"]["world_size"] == 2
    assert [r["spread"] for r in _metrics(tmp_path / "mr", "replicas")][:1] == [0.0]
    recs = _metrics(tmp_path / "mr", "train")
    assert [r["step"] for r in recs] == [1, 2] and all("loss_mask" in r for r in recs)
