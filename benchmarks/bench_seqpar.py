"""Sequence parallelism against one process: the same stream, time per chunk and difference.

    torchrun --standalone --nproc-per-node 2 benchmarks/bench_seqpar.py --preset tests/data/tiny.yaml --chunks 8
    torchrun --standalone --nproc-per-node 4 benchmarks/bench_seqpar.py --preset r1-480p --chunks 8  # 4 GPUs: nccl

Every rank builds the preset with seeded random weights (in the preset's dtype for the device)
and the same inputs. Rank 0 first runs the single-process `StreamGenerator` while the others
wait, then all ranks run the `SeqParallelStream`. Reported by rank 0: the transformer's time per
chunk (median after the first chunk; synchronised on CUDA) for both, the largest difference of
their latents, and the bytes rank 0 sent per chunk against the cost model's count.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import torch
import torch.distributed as dist

from flowact.config import load_preset
from flowact.model import FlowActModel
from flowact.stream.cost import seq_parallel_cost
from flowact.stream.generator import AudioTrack, StreamGenerator, TextTrack
from flowact.stream.seqpar import DistComm, SeqParallelStream


def run(gen, reference, audio, text, chunks: int, sync) -> tuple[list[torch.Tensor], list[float]]:
    C = gen.preset.stream.chunk_latents
    gen.start(reference)
    latents, ms = [], []
    with torch.no_grad():
        for k in range(chunks):
            a = audio.tokens(k * C, C)
            sync()
            t = time.perf_counter()
            latents.append(gen.chunk(k, a, text).cpu())
            sync()
            ms.append((time.perf_counter() - t) * 1000)
    return latents, ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tests/data/tiny.yaml")
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per rank")
    ap.add_argument("--dtype", default=None, help="float32 | bfloat16 (default: the preset's for the device)")
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    torch.set_num_threads(args.threads)
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    p = load_preset(args.preset)
    dtype = getattr(torch, args.dtype or p.dtype["cuda" if cuda else "cpu"])
    with torch.device(device):
        model = FlowActModel(p)
    model.init_random(0)
    model = model.eval().to(dtype)
    reference = (np.random.default_rng(0).random((p.video.height, p.video.width, 3)) * 255).astype(np.uint8)
    seconds = args.chunks * p.frames_per_chunk / p.video.fps + 1
    t = np.arange(int(p.audio.sample_rate * seconds)) / p.audio.sample_rate
    samples = (0.3 * np.sin(2 * np.pi * 200 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)
    with torch.no_grad():
        audio, text = AudioTrack(model, samples, device), TextTrack(model).tokens("speaking")
    rank, world = dist.get_rank(), dist.get_world_size()
    single = None
    if rank == 0:
        single = run(StreamGenerator(model), reference, audio, text, args.chunks, sync)
    dist.barrier()
    comm = DistComm()
    gen = SeqParallelStream(model, comm)
    sp_latents, sp_ms = run(gen, reference, audio, text, args.chunks, sync)
    if rank == 0:
        cost = seq_parallel_cost(p, world, dtype)
        per_chunk = (comm.sent_bytes - cost.reference_sent_bytes[0]) / args.chunks
        err = max((a.float() - b.float()).abs().max().item() for a, b in zip(sp_latents, single[0]))
        report = {
            "preset": p.name,
            "ranks": world,
            "device": torch.cuda.get_device_name(device) if cuda else f"CPU, {args.threads} thread(s) per rank",
            "dtype": str(dtype).replace("torch.", ""),
            "chunks": args.chunks,
            "single_ms_per_chunk": round(statistics.median(single[1][1:] or single[1]), 2),
            "seq_parallel_ms_per_chunk": round(statistics.median(sp_ms[1:] or sp_ms), 2),
            "max_abs_latent_difference": err,
            "rank0_sent_bytes_per_chunk": per_chunk,
            "cost_model_sent_bytes_per_chunk": cost.sent_bytes_per_chunk[0],
        }
        print(json.dumps(report, indent=2))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
