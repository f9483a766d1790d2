"""The toon route on one rank of a sequence-parallel group (render_seqpar.py runs the render loop on it).

Every rank makes the same calls; the streams differ per rank: the transformer ranks generate each
chunk together (`SeqParallelStream`: the same MMDiT, its tokens split, stream/seqpar.py); the
writing rank (the decode rank, else rank 0) draws, the others draw nothing; beside a decode rank,
rank 0's draw hands the chunk's latents over and the decode rank's "generate" receives them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

from ..errors import FlowactError
from ..stream.seqpar import DecodeRank, LatentSender, SeqParallelStream, transformer_comm
from .base import Chunk, LoadOptions, Route
from .toon import ToonRoute, ToonStream


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

    @classmethod
    def load(cls, preset, options: LoadOptions = LoadOptions()) -> "SeqParallelRoute":
        """After `dist.init_process_group` (every rank): the toon route, this rank's part of it."""
        return cls(ToonRoute.load(preset, options))

    load_picture = staticmethod(ToonRoute.load_picture)
    facts = staticmethod(ToonRoute.facts)

    def prepare(self, reference: np.ndarray, face=None):
        return self.toon.prepare(reference, face)

    def conditions(self, compiled: bool = False) -> str:
        extra = " + a decode rank" if self.decode_rank else ""
        return f"{self.toon.conditions(compiled)}, {self.transformer_ranks} transformer ranks{extra}"

    def stream(self, picture, seed: int, samples=None, stages=None, sync=None, motion=None):
        if motion is not None:
            raise FlowactError("--seq-parallel renders from the audio: the video model does not read a motion track")
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
        stream.plans = False  # it draws nothing: no draw plans
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
        self.sender.send(chunk.index, chunk.output[0], chunk.output[2])
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
        return Chunk(index, (item[1], mel, item[2], None), keep)  # the draw plan: worked out in the decode

    def close(self) -> None:
        if self.dec.recv() is not None:  # the end of the stream
            raise FlowactError("the decode rank got more chunks than the render has")
