"""Multi-process training under torchrun: process group set-up and small collective helpers.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; with WORLD_SIZE > 1 the trainer
joins the process group (NCCL on CUDA, gloo on CPU), each process trains on its share of the batches,
DistributedDataParallel averages the gradients, and only rank 0 writes files.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from spoofrl.device import pick_device
from spoofrl.errors import ConfigError


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # True when this trainer created the process group (and must destroy it)

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_name: str) -> DistInfo:
    """Join the torchrun process group when WORLD_SIZE > 1 and pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    device = pick_device(device_name)
    if device.type == "cuda" and world > 1:
        if torch.cuda.device_count() <= local_rank:
            raise ConfigError(f"process {rank} has LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} "
                              f"CUDA device(s) are visible")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    info = DistInfo(rank, world, local_rank, device)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        # validation runs on every rank but may be slow on big dev sets: be generous before timing out
        dist.init_process_group(backend, timeout=datetime.timedelta(hours=2))
        info.owns_group = True
    return info


def teardown(info: DistInfo) -> None:
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def _tensor_device(info: DistInfo) -> torch.device:
    return info.device if dist.get_backend() == "nccl" else torch.device("cpu")


def any_flag(info: DistInfo, flag: bool) -> bool:
    """True on every process if `flag` is True on any (e.g. one process got SIGINT)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=_tensor_device(info))
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast_object(info: DistInfo, obj: Any) -> Any:
    """Rank 0's `obj` on every process."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(info: DistInfo, obj: Any) -> list[Any]:
    """Every process's `obj`, in rank order, on every process."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


__all__ = ["DistInfo", "setup", "teardown", "any_flag", "broadcast_object", "gather_objects", "barrier"]
