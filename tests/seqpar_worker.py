"""One rank of tests/test_seqpar.py: `python seqpar_worker.py RANK WORLD STORE PRESET CHUNKS DECODE OUT`.

Transformer ranks run a `SeqParallelStream` over the tiny preset (seeded random weights, the
inputs of `stream_inputs`), and save their latents, bank shard and bytes sent; with DECODE=1
the last rank is the decode rank and saves the frames it decoded."""

import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist


def stream_inputs(model):
    """The reference picture, audio track and text track every run of the test uses."""
    from flowact.stream.generator import AudioTrack, TextTrack

    reference = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    t = np.arange(16_000 * 3) / 16_000
    samples = (0.3 * np.sin(2 * np.pi * 200 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)
    return reference, AudioTrack(model, samples, "cpu"), TextTrack(model)


def chunk_motion(model, k: int):
    """Chunk k's motion (1, frames, D) for a preset whose video model reads it (a fixed swing), else None."""
    p = model.preset
    if not p.model.motion_inject:
        return None
    t = torch.arange(k * p.frames_per_chunk, (k + 1) * p.frames_per_chunk, dtype=torch.float32)[:, None]
    return (0.5 * torch.sin(0.3 * t + torch.arange(p.model.motion_inject)))[None]


def tiny_model(preset_path: str):
    from flowact.config import load_preset
    from flowact.model import FlowActModel

    model = FlowActModel(load_preset(preset_path))
    model.init_random(0)
    return model.eval()


def main(rank: int, world: int, store: str, preset_path: str, chunks: int, decode: bool, out: str) -> None:
    from flowact.stream.seqpar import DecodeRank, LatentSender, SeqParallelStream, transformer_comm

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    model = tiny_model(preset_path)
    reference, audio, text = stream_inputs(model)
    C = model.preset.stream.chunk_latents
    comm = transformer_comm(decode_rank=decode)
    result = {}
    if comm is None:  # the decode rank
        dec = DecodeRank(model, src=0)
        dec.start(reference)
        frames = []
        while (item := dec.recv()) is not None:
            index, latents, motion = item
            assert index == len(frames)
            want = chunk_motion(model, index) if model.preset.vae.motion else None
            assert (motion is None) == (want is None) and (motion is None or torch.equal(motion, want))
            frames.append(dec.decode(latents, motion=motion))
        result["frames"] = frames
    else:
        gen = SeqParallelStream(model, comm, seed=0)
        sender = LatentSender(world - 1) if decode and comm.rank == 0 else None
        gen.start(reference)
        latents, seconds = [], []
        with torch.no_grad():
            for k in range(chunks):
                t0 = time.perf_counter()
                z = gen.chunk(k, audio.tokens(k * C, C), text.tokens("speaking"), chunk_motion(model, k))
                seconds.append(time.perf_counter() - t0)
                latents.append(z)
                if sender is not None:
                    sender.send(k, z, chunk_motion(model, k) if model.preset.vae.motion else None)
        if sender is not None:
            sender.close()
        result.update(
            latents=latents,
            bank_k=gen.bank.k,
            bank_v=gen.bank.v,
            bank_valid=gen.bank.valid,
            long_term=gen.bank.long_term,
            short_term=gen.bank.short_term,
            heads=(gen.dit.heads.start, gen.dit.heads.stop),
            sent_bytes=comm.sent_bytes,
            chunk_seconds=seconds,
        )
    torch.save(result, Path(out) / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    r, w, store, preset, chunks, decode, out = sys.argv[1:]
    main(int(r), int(w), store, preset, int(chunks), decode == "1", out)
