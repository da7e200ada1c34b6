"""Data-parallel training under torchrun: one process per GPU (or per CPU worker, on gloo).

    torchrun --nproc_per_node 8 -m stemserver_training train paper

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; without them this is a single process and every
helper here is a no-op. Each rank takes its own slice of every global batch (see `shard`), so the
examples of a step are the same whatever the number of processes; DistributedDataParallel averages
the gradients; every rank then applies the same update and the weights stay identical. Only rank 0
writes checkpoints and logs.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from stemserver.device import select_device
from stemserver.errors import ConfigError


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints, logs and the progress bar."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_name: str = "auto") -> tuple[Distributed, torch.device]:
    """Join the process group torchrun describes (NCCL on CUDA, gloo on CPU) and pick this rank's
    device: cuda:LOCAL_RANK on GPUs. Without torchrun: one process on `device_name`."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Distributed(), select_device(device_name)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ConfigError(f"distributed training runs on CUDA (NCCL) or on the CPU (gloo), not on {device.type}")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(minutes=30))
    return Distributed(rank, local_rank, world_size), device


def shutdown(ddp: Distributed) -> None:
    if ddp.enabled and dist.is_initialized():
        dist.destroy_process_group()


def shard(indices: range, ddp: Distributed) -> range:
    """This rank's contiguous slice of a (micro-)batch of example indices (the length must divide)."""
    if len(indices) % ddp.world_size:
        raise ValueError(f"a batch of {len(indices)} cannot be split evenly over {ddp.world_size} processes")
    per_rank = len(indices) // ddp.world_size
    return indices[ddp.rank * per_rank:(ddp.rank + 1) * per_rank]


def barrier(ddp: Distributed) -> None:
    if ddp.enabled:
        dist.barrier()


def all_reduce_mean(value: torch.Tensor, ddp: Distributed) -> torch.Tensor:
    """The mean of `value` over ranks (itself when single-process)."""
    if not ddp.enabled:
        return value
    value = value.clone()
    dist.all_reduce(value)
    return value / ddp.world_size


def any_rank(flag: bool, ddp: Distributed, device: torch.device) -> bool:
    """True on every rank when `flag` is true on any (e.g. a stop request that reached one rank)."""
    if not ddp.enabled:
        return flag
    value = torch.tensor(int(flag), device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward returns this rank's share of the gradient of the gathered tensor.

    Every rank computes the same loss on the gathered batch; summing the gradients of the gathered
    tensor over ranks then slicing this rank's rows gives W times its features' gradient, which
    DDP's averaging over W ranks turns back into exactly the single-process gradient.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad.chunk(dist.get_world_size())[dist.get_rank()]


def gather_with_grad(x: torch.Tensor, ddp: Distributed) -> torch.Tensor:
    """Concatenate every rank's `x` along dim 0, in rank order, keeping the gradient path to `x`."""
    return _GatherWithGrad.apply(x) if ddp.enabled else x
