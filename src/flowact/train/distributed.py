"""Data-parallel training over torch.distributed: torchrun starts one process (rank) per device,
each computes its share of the global batch, and the gradients are averaged across ranks after
backward, before clipping and the optimizer step, so every rank holds the same weights.

A rank's share is exact, not a look-alike: samples are pure functions of (step, index), so rank
r takes the global indices [r * b, (r + 1) * b) of a batch of b per rank; the noise of a step is
drawn for the whole global batch on every rank (`Ranks.randn`, `per_sample`), which keeps the
draws of a one-process run; and a loss that is a weighted mean divides by the mean over ranks of
its weights (`Ranks.mean`), so the mean of the ranks' losses is the global batch's loss.

Gradients are reduced by hand, not by wrapping the model in DistributedDataParallel: the stages
call submodules (the VAE's encoder, the MMDiT inside a stream rollout), never `model.forward`,
so DDP's forward hooks would not see them. `Ranks()` is one process: every helper is then the
identity and costs nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import FlowactError

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
BUCKET = 1 << 25  # gradient elements per all-reduce (128 MB of fp32): bounded extra memory


def launched() -> bool:
    """torchrun (or a launcher that sets the same variables) started this process."""
    return all(k in os.environ for k in TORCHRUN_ENV)


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run: rank `rank` of `world`, its collectives on `device`."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes logs, checkpoints and weights."""
        return self.rank == 0

    def rows(self, per_rank: int) -> slice:
        """This rank's samples among the global batch's world * per_rank."""
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        """The mean over ranks of x (detached; x itself on one process)."""
        if self.world == 1:
            return x
        y = x.detach().clone()
        dist.all_reduce(y)
        return y / self.world

    def mean_floats(self, values: list[float]) -> list[float]:
        """The mean over ranks of each value, in one all-reduce."""
        if self.world == 1 or not values:
            return list(values)
        return self.mean(torch.tensor(values, dtype=torch.float64, device=self.device)).tolist()

    def agree(self, value: int, what: str) -> None:
        """Raise on every rank unless all ranks hold the same value."""
        if self.world == 1:
            return
        t = torch.tensor([value, -value], dtype=torch.int64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        if int(t[0]) != -int(t[1]):
            raise FlowactError(f"the ranks disagree on {what} ({-int(t[1])} .. {int(t[0])})")

    def broadcast(self, tensors) -> None:
        """Every rank takes rank 0's values of these tensors (in place)."""
        if self.world == 1:
            return
        for t in tensors:
            dist.broadcast(t.data, src=0)

    def average_grads(self, params: list[torch.nn.Parameter]) -> None:
        """Average the gradients over ranks, in place. A parameter no rank gave a gradient keeps
        None (the optimizer skips it, as one process would); one that only some ranks reached
        counts zeros on the others."""
        if self.world == 1 or not params:
            return
        reached = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=self.device)
        dist.all_reduce(reached, op=dist.ReduceOp.MAX)
        live = [p for p, r in zip(params, reached.tolist()) if r]
        for p in live:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for p in live:
            by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
        for grads in by_dtype.values():
            for bucket in _buckets(grads, BUCKET):
                flat = torch.cat([gr.reshape(-1) for gr in bucket])
                dist.all_reduce(flat)
                flat /= self.world
                for gr, part in zip(bucket, flat.split([gr.numel() for gr in bucket])):
                    gr.copy_(part.view_as(gr))

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    # -- noise: the global batch's draws, this rank's rows ----------------------------------
    def randn(self, shape: tuple[int, ...], g: torch.Generator, device=None) -> torch.Tensor:
        """torch.randn of (b, ...) for this rank's b samples: every rank draws the noise of the
        whole global batch, as one process would, and keeps its rows."""
        return self._rows(torch.randn, shape, g, device)

    def rand(self, shape: tuple[int, ...], g: torch.Generator, device=None) -> torch.Tensor:
        return self._rows(torch.rand, shape, g, device)

    def _rows(self, draw, shape, g, device) -> torch.Tensor:
        if self.world == 1:
            return draw(shape, generator=g, device=device)
        full = draw((shape[0] * self.world, *shape[1:]), generator=g, device=device)
        return full[self.rows(shape[0])]

    def per_sample(self, count: int, draw) -> list:
        """draw() for each sample of the global batch in turn (count per rank), this rank's share:
        for losses that draw their noise sample by sample."""
        return [draw() for _ in range(count * self.world)][self.rows(count)]


def _buckets(tensors: list[torch.Tensor], elements: int):
    """Consecutive groups of the tensors, each closed once it holds `elements` or more."""
    bucket, size = [], 0
    for t in tensors:
        bucket.append(t)
        size += t.numel()
        if size >= elements:
            yield bucket
            bucket, size = [], 0
    if bucket:
        yield bucket


def join(device: str) -> tuple[Ranks, torch.device, bool]:
    """Join the process group that torchrun's environment describes (or the one already
    started): NCCL on CUDA, each rank on GPU LOCAL_RANK; gloo on CPU. Returns this rank's
    Ranks, its device, and whether this call started the group (then `leave` ends it)."""
    dev = torch.device(device)
    started = False
    if not (dist.is_available() and dist.is_initialized()):
        if not launched():
            raise FlowactError(
                "distributed training needs torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, "
                "MASTER_ADDR, MASTER_PORT): launch it as `torchrun --nproc-per-node N -m flowact train ...`"
            )
        if dev.type == "cuda":
            dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        started = True
    elif dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", torch.cuda.current_device())))
    return Ranks(dist.get_rank(), dist.get_world_size(), dev), dev, started


def leave() -> None:
    dist.destroy_process_group()
