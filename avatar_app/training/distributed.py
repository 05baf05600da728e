"""One process or many: PyTorch's own distributed engine, set up from the variables torchrun exports.

`torchrun --nproc_per_node N -m avatar_app train ...` starts N processes with RANK, LOCAL_RANK and WORLD_SIZE
set; each joins the process group (NCCL on CUDA, gloo on CPU) and trains its share of every batch under
DistributedDataParallel. A plain `avatar-app train` is a world of one and needs no process group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from avatar_app.errors import AvatarAppError, first_line


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise AvatarAppError("--device cuda was asked for but torch sees no CUDA GPU - use --device cpu")
    if name in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if name not in ("auto", "cuda"):
        raise AvatarAppError(f"unknown device '{name}' - choose auto, cpu or cuda")
    return torch.device("cpu")


def start(device: str = "auto") -> Context:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); otherwise a world of one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        try:
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", device_id=dev if dev.type == "cuda" else None)
        except (RuntimeError, ValueError) as err:
            raise AvatarAppError(f"cannot join the training processes ({first_line(err)}) - start with torchrun --nproc_per_node N") from None
    return Context(rank, world, local_rank, dev)


def stop(ctx: Context) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        dist.barrier()


def all_ok(ctx: Context, ok: bool) -> bool:
    """True when every process is ok: a check that fails on one process stops them all, not just that one."""
    if not ctx.distributed:
        return ok
    flag = torch.tensor([0.0 if ok else 1.0], device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(flag)
    return flag.item() == 0
