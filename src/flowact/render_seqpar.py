"""`flowact render --seq-parallel`: one render over torchrun's ranks (stream/seqpar.py).

    torchrun --nproc-per-node 2 -m flowact.cli render -i IMG -a AUDIO --seq-parallel
    torchrun --nproc-per-node 3 -m flowact.cli render -i IMG -a AUDIO --seq-parallel --decode-rank

Every rank loads the model and the inputs and runs the one render loop (render.py) on a
`SeqParallelRoute` (routes/seqpar.py): the route's streams differ per rank, the loop does not. The transformer ranks
(all, or all but the last with `--decode-rank`) generate each chunk together (`SeqParallelStream`:
the same MMDiT, its tokens split, stream/seqpar.py); the writing rank (the decode rank, else rank 0)
draws and feeds ffmpeg, the others draw nothing. With a decode rank, rank 0's draw hands the
chunk's latents over and the transformer ranks go on with the next chunk while the decode rank's
stream (its "generate" receives them) decodes. A rank that dies takes the others down with it
(torchrun ends the group); the writing rank finalises what it wrote.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist

from .errors import FlowactError
from .render import render
from .routes import RenderInputs, ToonRoute
from .routes.seqpar import SeqParallelRoute


def init_ranks(device: str = "auto") -> str:
    """Join torchrun's process group (nccl on GPUs, else gloo); returns this rank's device
    (`cuda:LOCAL_RANK` on GPUs)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise FlowactError(
            "--seq-parallel runs under torchrun, one process per rank: "
            "torchrun --nproc-per-node 2 -m flowact.cli render ... --seq-parallel"
        )
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return "cpu" if device == "auto" else device


def render_seq_parallel(
    route: ToonRoute,
    inputs: RenderInputs,
    out: str | Path,
    *,
    prompt: str = "",
    seed: int = 0,
    max_seconds: float | None = None,
    ffmpeg: str | None = None,
    decode_rank: bool = False,
) -> dict | None:
    """Called on every rank with the same arguments (after `init_ranks`): the one render loop on this
    rank's part. The writing rank returns the report (`render.RenderReport` as a dict, with the
    ranks; per-chunk latency is transformer rank 0's), the others None."""
    sp = SeqParallelRoute(route, decode_rank)
    report = render(sp, None, None, out, prompt=prompt, seed=seed, max_seconds=max_seconds, ffmpeg=ffmpeg,
                    inputs=inputs, overlap=False, writes=sp.writes)  # fmt: skip
    timing = [report.chunk_ms]
    dist.broadcast_object_list(timing, src=0)
    dist.barrier()
    if not sp.writes:
        return None
    report.chunk_ms = timing[0]
    summary = report.to_dict()
    summary.update(ranks=sp.ranks, transformer_ranks=sp.transformer_ranks, decode_rank=decode_rank)
    return summary
