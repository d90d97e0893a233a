"""Data-parallel training: process-group set-up, per-rank batches, LR scaling, replica checks.

``synthloop train`` runs unchanged as one process or as one of N processes started by ``torchrun``
(``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` / ``MASTER_ADDR`` / ``MASTER_PORT``) or by Slurm's ``srun``
(``SLURM_PROCID`` / ``SLURM_NTASKS`` / ``SLURM_LOCALID``; ``MASTER_ADDR`` from the job script or
``SLURM_LAUNCH_NODE_IPADDR``). ``synthloop train --gpus N`` starts torchrun itself.

Batch semantics (as TLT's ``--gpus``): ``batch_size`` is per process. A step's *global* batch of
``batch_size * world_size`` items is exactly the batch a single process with that batch size would
draw (:mod:`synthloop.training.mixing`); :func:`rank_items` gives each rank its disjoint share, and
for a blend phase every share holds the synthetic:real ratio itself. Gradients are averaged by DDP,
and per-batch loss normalizers that count over the batch (DetectNet's positive cells) are summed
over ranks (:func:`global_mean_count`), so N processes equal one process with the N-times batch.

Pure functions (:func:`rank_items`, :func:`scaled_lr`) are separate from the torch.distributed I/O.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import torch

LRScaling = Literal["linear", "sqrt", "none"]


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: ``rank`` in ``[0, world_size)``; ``local_rank`` picks its GPU."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


SINGLE = DistContext()


def env_context(env: dict[str, str] | None = None) -> DistContext:
    """The context torchrun (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``) or srun (``SLURM_*``) describes.

    No such variables (or a world of one) -> the single-process context.
    """
    env = dict(os.environ) if env is None else env
    try:
        if "RANK" in env and "WORLD_SIZE" in env:
            rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
            local = int(env.get("LOCAL_RANK", rank))
        elif "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
            rank, world = int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"])
            local = int(env.get("SLURM_LOCALID", 0))
        else:
            return SINGLE
    except ValueError as e:
        raise ValueError(f"bad distributed environment variable ({e})") from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"bad distributed environment: rank {rank} of world size {world}")
    return DistContext(rank, world, local)


def init_process_group(ctx: DistContext, device_type: str) -> None:
    """Join the process group (NCCL on CUDA, gloo on CPU) unless this is a single process."""
    import torch.distributed as dist

    if not ctx.distributed or dist.is_initialized():
        return
    if "MASTER_ADDR" not in os.environ and "SLURM_LAUNCH_NODE_IPADDR" in os.environ:
        os.environ["MASTER_ADDR"] = os.environ["SLURM_LAUNCH_NODE_IPADDR"]
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29500")
    if device_type == "cuda":
        torch.cuda.set_device(ctx.local_rank)
    dist.init_process_group(
        backend="nccl" if device_type == "cuda" else "gloo",
        rank=ctx.rank,
        world_size=ctx.world_size,
    )


def destroy_process_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def device_for(ctx: DistContext, device: torch.device) -> torch.device:
    """The rank's own GPU (``cuda:local_rank``) for a CUDA run; the device unchanged otherwise."""
    if device.type == "cuda" and ctx.distributed:
        return torch.device("cuda", ctx.local_rank)
    return device


# ---------------------------------------------------------------- pure helpers
def scaled_lr(lr: float, world_size: int, scaling: LRScaling) -> float:
    """The learning rate for ``world_size`` processes: ``linear`` (Goyal et al.; TLT's ``--gpus``)
    multiplies by the world size, ``sqrt`` by its square root, ``none`` keeps it."""
    if scaling == "linear":
        return lr * world_size
    if scaling == "sqrt":
        return lr * world_size**0.5
    return lr


def rank_items(batch: list, rank: int, world_size: int, per_batch: tuple[int, int] | None) -> list:
    """This rank's disjoint share of one global batch.

    ``per_batch``: ``(k_s, k_r)`` synthetic and real items of a *global* blend batch (synthetic
    items first, as :meth:`Phase.epoch_batches` lays them out); each rank then gets
    ``k_s / world`` synthetic and ``k_r / world`` real items, so every rank holds the ratio.
    ``None``: a shuffled batch, split into ``world_size`` contiguous equal parts; a short last batch
    is first padded by repeating its own items (as ``DistributedSampler`` pads), so every rank steps
    the same number of times with the same per-rank batch size.
    """
    if world_size == 1:
        return list(batch)
    if per_batch is not None:
        k_s, k_r = per_batch
        if k_s % world_size or k_r % world_size:
            raise ValueError(f"blend batch {k_s}+{k_r} does not split over {world_size} ranks")
        s, r = k_s // world_size, k_r // world_size
        return list(batch[rank * s : (rank + 1) * s]) + list(batch[k_s + rank * r : k_s + (rank + 1) * r])
    if not batch:
        raise ValueError("empty batch")
    n = -(-len(batch) // world_size) * world_size
    padded = [batch[i % len(batch)] for i in range(n)]
    per = n // world_size
    return padded[rank * per : (rank + 1) * per]


# ---------------------------------------------------------------- collectives
def is_active() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def global_mean_count(count: torch.Tensor, minimum: float = 1.0) -> torch.Tensor:
    """``max(sum over ranks of count, minimum) / world_size``: a rank's share of a global normalizer.

    A loss ``sum_local / global_mean_count(n_local)`` averaged over ranks by DDP equals
    ``sum_all / max(n_all, minimum)``: what one process with the whole global batch computes.
    Outside a process group: ``max(count, minimum)``. No gradient flows through the count.
    """
    if not is_active():
        return count.clamp(min=minimum)
    import torch.distributed as dist

    total = count.detach().clone()
    dist.all_reduce(total)
    return total.clamp(min=minimum) / dist.get_world_size()


def all_reduce_mean(values: dict[str, float]) -> dict[str, float]:
    """Mean of each value over ranks (one collective; for logging)."""
    if not is_active() or not values:
        return values
    import torch.distributed as dist

    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    t = (t / dist.get_world_size()).cpu()
    return {k: float(v) for k, v in zip(keys, t.tolist(), strict=True)}


def replica_spread(model: torch.nn.Module) -> float:
    """Largest difference over ranks of a checksum of all parameters and buffers (0.0 = identical).

    One float64 value per rank is gathered; DDP keeps replicas bit-identical, so anything else is a
    bug (a rank that skipped a step, an unsynchronized buffer).
    """
    if not is_active():
        return 0.0
    import torch.distributed as dist

    dev = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    acc = torch.zeros((), dtype=torch.float64, device=dev)
    for i, t in enumerate(list(model.state_dict().values())):
        if t.is_floating_point():  # on the tensor's own device, one scalar moved per tensor
            acc += (t.detach().double().sum() * (1.0 + 1e-3 * (i % 97))).to(acc.device)
    vals = [torch.zeros((), dtype=torch.float64, device=dev) for _ in range(dist.get_world_size())]
    dist.all_gather(vals, acc)
    got = [float(v) for v in vals]
    return max(got) - min(got)


def barrier() -> None:
    if is_active():
        import torch.distributed as dist

        dist.barrier()
