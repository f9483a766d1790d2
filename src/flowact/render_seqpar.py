"""`flowact render --seq-parallel`: one render over torchrun's ranks (stream/seqpar.py).

    torchrun --nproc-per-node 2 -m flowact.cli render -i IMG -a AUDIO --seq-parallel
    torchrun --nproc-per-node 3 -m flowact.cli render -i IMG -a AUDIO --seq-parallel --decode-rank

Every rank loads the model and the inputs and runs the one render loop (render.py) on a
`SeqParallelRoute`: the route's streams differ per rank, the loop does not. The transformer ranks
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

import numpy as np
import torch
import torch.distributed as dist

from .errors import FlowactError
from .render import render
from .routes import Chunk, RenderInputs, Route, ToonRoute
from .routes.toon import ToonStream
from .stream.seqpar import DecodeRank, LatentSender, SeqParallelStream, transformer_comm


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


class SeqParallelRoute(Route):
    """A loaded toon route on one rank of a sequence-parallel group: its streams are this rank's
    part (see the module's docstring); everything else is the toon route's."""

    def __init__(self, toon: ToonRoute, decode_rank: bool = False):
        if not isinstance(toon, ToonRoute):
            name = toon.preset.name
            raise FlowactError(f"--seq-parallel shards the video MMDiT: preset {name} has none (photo route)")
        super().__init__(toon.preset, toon.source, toon.device, toon.dtype, toon.threads)
        self.toon, self.decode_rank = toon, decode_rank
        self.name, self.stages, self.counted = toon.name, toon.stages, toon.counted
        self.comm = transformer_comm(decode_rank)  # None on the decode rank
        world, self.rank = dist.get_world_size(), dist.get_rank()
        self.ranks, self.transformer_ranks = world, world - 1 if decode_rank else world
        self.writes = self.rank == (world - 1 if decode_rank else 0)
        self._sender = LatentSender(world - 1, toon.preset.queue_chunks) if decode_rank and self.rank == 0 else None

    load_picture = staticmethod(ToonRoute.load_picture)
    facts = staticmethod(ToonRoute.facts)

    def prepare(self, reference: np.ndarray, face=None):
        return self.toon.prepare(reference, face)

    def conditions(self, compiled: bool = False) -> str:
        extra = " + a decode rank" if self.decode_rank else ""
        return f"{self.toon.conditions(compiled)}, {self.transformer_ranks} transformer ranks{extra}"

    def stream(self, picture, seed: int, samples=None, stages=None, sync=None):
        stages = {} if stages is None else stages
        if self.comm is None:
            return _ReceivingStream(self.toon, picture, samples, stages, sync or (lambda: None))
        gen = SeqParallelStream(self.toon.model, self.comm, seed)
        stream = ToonStream(self.toon, picture, seed, samples, stages, sync or (lambda: None), gen=gen)
        if self._sender is not None:
            return _SendingStream(stream, self._sender)
        return stream if self.writes else _GeneratingStream(stream)


class _GeneratingStream:
    """A transformer rank that does not write: it generates with the others and draws nothing."""

    def __init__(self, stream: ToonStream):
        self.stream = stream
        self.gen_stage, self.stages = stream.gen_stage, stream.stages

    def generate(self, index, keep, prompt="", state=None, pcm=None, lookahead=None) -> Chunk:
        return self.stream.generate(index, keep, prompt, state, pcm, lookahead)

    def draw(self, chunk: Chunk, early: bool = False):
        return iter(())

    def close(self) -> None:
        pass


class _SendingStream(_GeneratingStream):
    """Transformer rank 0 beside a decode rank: its draw hands the chunk's latents over, then goes on."""

    def __init__(self, stream: ToonStream, sender: LatentSender):
        super().__init__(stream)
        self.sender = sender

    def draw(self, chunk: Chunk, early: bool = False):
        self.sender.send(chunk.index, chunk.output[0])
        return iter(())

    def close(self) -> None:
        self.sender.close()  # end of stream, then wait until the decode rank has everything


class _ReceivingStream(ToonStream):
    """The decode rank: its "generate" receives the latents transformer rank 0 sends (the mel windows
    for the lip refiner are its own), its draw is the toon route's streaming decode."""

    def __init__(self, route: ToonRoute, picture, samples, stages, sync):
        self.dec = DecodeRank(route.model, src=0)
        super().__init__(route, picture, 0, samples, stages, sync, gen=self.dec)

    def generate(self, index, keep, prompt="", state=None, pcm=None, lookahead=None) -> Chunk:
        with self.timed("transformer"):  # waiting for the transformer ranks' chunk
            item = self.dec.recv()
        if item is None or item[0] != index:
            raise FlowactError(f"the decode rank expected chunk {index}, got {None if item is None else item[0]}")
        with self.timed("audio"), torch.no_grad():
            mel = self.audio.chunk(index * self.C, self.C)[1]
        return Chunk(index, (item[1], mel), keep)

    def close(self) -> None:
        if self.dec.recv() is not None:  # the end of the stream
            raise FlowactError("the decode rank got more chunks than the render has")


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
