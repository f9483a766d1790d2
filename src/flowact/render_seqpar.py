"""`flowact render --seq-parallel`: one render over torchrun's ranks (stream/seqpar.py).

    torchrun --nproc-per-node 2 -m flowact.cli render -i IMG -a AUDIO --seq-parallel
    torchrun --nproc-per-node 3 -m flowact.cli render -i IMG -a AUDIO --seq-parallel --decode-rank

Every rank loads the model and the inputs. The transformer ranks (all, or all but the last with
`--decode-rank`) make each chunk together; the writing rank (the decode rank, else rank 0)
decodes and feeds ffmpeg. With a decode rank, rank 0 hands each chunk's latents over and the
transformer ranks go on with the next chunk while it decodes. A rank that dies takes the others
down with it (torchrun ends the group); the writing rank finalises what it wrote.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from .errors import FlowactError
from .media.ffmpeg import VideoWriter
from .routes import RenderInputs, ToonRoute
from .stream.generator import AudioTrack, TextTrack
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


@dataclass
class SeqParallelReport:
    output: str
    ranks: int  # all processes
    transformer_ranks: int
    decode_rank: bool
    frames: int
    chunks: int
    video_seconds: float
    wall_seconds: float  # after the model load -> file finalised
    ttff_seconds: float | None
    realtime_factor: float
    chunk_ms: list[float]  # rank 0's time per chunk (transformer)

    def to_dict(self) -> dict:
        return asdict(self)


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
) -> SeqParallelReport | None:
    """Called on every rank with the same arguments (after `init_ranks`); the writing rank
    returns the report, the others None."""
    if not isinstance(route, ToonRoute):
        raise FlowactError(f"--seq-parallel shards the video MMDiT: preset {route.preset.name} has none (photo route)")
    t0 = time.perf_counter()
    p, model = route.preset, route.model
    world, rank = dist.get_world_size(), dist.get_rank()
    comm = transformer_comm(decode_rank)
    writer_rank = world - 1 if decode_rank else 0
    C, per = p.stream.chunk_latents, p.frames_per_chunk
    track = inputs.audio
    seconds = track.seconds if max_seconds is None else min(track.seconds, max_seconds)
    total = max(1, round(seconds * p.video.fps))
    chunks = math.ceil(total / per)
    with torch.no_grad():
        audio = AudioTrack(model, track.samples[: int(seconds * track.rate) + 1], route.device)
        text = TextTrack(model).tokens(prompt)
    writer = None
    if rank == writer_rank:
        writer = VideoWriter(
            out, p.video.width, p.video.height, p.video.fps, audio=inputs.audio_path, ffmpeg=ffmpeg, shortest=True
        )
    chunk_ms: list[float] = []
    try:
        if comm is None:  # the decode rank
            dec = DecodeRank(model, src=0)
            dec.start(inputs.reference)
            while (item := dec.recv()) is not None:
                k, z = item
                with torch.no_grad():
                    mel = audio.chunk(k * C, C)[1]
                writer.write(dec.decode(z, mel)[: min(per, total - k * per)])
        else:
            gen = SeqParallelStream(model, comm, seed)
            sender = LatentSender(world - 1, p.stream.queue_chunks) if decode_rank and rank == 0 else None
            gen.start(inputs.reference)
            for k in range(chunks):
                with torch.no_grad():
                    a, mel = audio.chunk(k * C, C)
                t = time.perf_counter()
                z = gen.chunk(k, a, text)
                chunk_ms.append((time.perf_counter() - t) * 1000)
                if sender is not None:
                    sender.send(k, z)
                elif writer is not None:
                    writer.write(gen.decode(z, mel)[: min(per, total - k * per)])
            if sender is not None:
                sender.close()
    finally:
        stats = writer.close() if writer is not None else None
    timing = [chunk_ms]
    dist.broadcast_object_list(timing, src=0)
    dist.barrier()
    if stats is None:
        return None
    wall = time.perf_counter() - t0
    return SeqParallelReport(
        output=str(out),
        ranks=world,
        transformer_ranks=world - 1 if decode_rank else world,
        decode_rank=decode_rank,
        frames=stats.frames,
        chunks=chunks,
        video_seconds=stats.frames / p.video.fps,
        wall_seconds=wall,
        ttff_seconds=(stats.first_frame_at - t0) if stats.first_frame_at else None,
        realtime_factor=(stats.frames / p.video.fps) / wall,
        chunk_ms=[round(ms, 2) for ms in timing[0]],
    )
