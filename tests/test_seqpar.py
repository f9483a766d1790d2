"""Sequence parallelism (stream/seqpar.py): 2 gloo ranks on CPU give the single-process stream's
latents, bank (each rank its heads) and, through a decode rank, frames; uneven token splits and
a rank without video tokens work; the cost model's per-rank figures are those of the code that
runs (the bytes the ranks really sent) and add up to the single-process ones."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from flowact.config import load_preset
from flowact.errors import FlowactError
from flowact.stream.bank import MemoryBank
from flowact.stream.cost import seq_parallel_cost
from flowact.stream.generator import StreamGenerator
from flowact.stream.seqpar import check_heads, token_bounds
from helpers import TINY, make_inputs, run_cli
from seqpar_worker import chunk_motion, stream_inputs, tiny_model

WORKER = Path(__file__).parent / "seqpar_worker.py"
gloo = pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="this PyTorch has no gloo backend")
DEADLINE = 240.0  # seconds for all ranks together: a hung collective fails instead of hanging


def launch(tmp_path: Path, world: int, preset: str, chunks: int, decode: bool) -> list[dict]:
    """`world` worker processes over a file-store gloo group; their saved results by rank."""
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [str(tmp_path / "store"), preset, str(chunks), "1" if decode else "0", str(out)]
    logs = [open(tmp_path / f"rank{r}.log", "w") for r in range(world)]
    procs = [
        subprocess.Popen([sys.executable, str(WORKER), str(r), str(world), *args], stdout=log, stderr=log, env=env)
        for r, log in enumerate(logs)
    ]
    end = time.monotonic() + DEADLINE
    try:
        for proc in procs:
            proc.wait(timeout=max(1.0, end - time.monotonic()))
    except subprocess.TimeoutExpired:
        pytest.fail(f"sequence-parallel ranks still running after {DEADLINE} s: a hang")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()
    for r, proc in enumerate(procs):
        assert proc.returncode == 0, f"rank {r} failed:\n{(tmp_path / f'rank{r}.log').read_text()[-3000:]}"
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(world)]


def single_stream(preset: str, chunks: int):
    """The single-process StreamGenerator on the same inputs: latents, frames, the generator."""
    model = tiny_model(preset)
    reference, audio, text = stream_inputs(model)
    C = model.preset.stream.chunk_latents
    gen = StreamGenerator(model, seed=0)
    gen.start(reference)
    latents, frames = [], []
    with torch.no_grad():
        for k in range(chunks):
            motion = chunk_motion(model, k)
            latents.append(gen.chunk(k, audio.tokens(k * C, C), text.tokens("speaking"), motion))
            frames.append(gen.decode(latents[-1], motion=motion if model.preset.vae.motion else None))
    return latents, frames, gen


def check_ranks_match(ranks: list[dict], latents, gen, tol: float = 1e-5) -> float:
    """Every transformer rank: the single stream's latents, its heads of the bank. Returns the max error."""
    heads = gen.preset.model.heads // len(ranks)
    worst = 0.0
    for r, res in enumerate(ranks):
        assert len(res["latents"]) == len(latents)
        for a, b in zip(res["latents"], latents):
            worst = max(worst, (a - b).abs().max().item())
        assert res["heads"] == (r * heads, (r + 1) * heads)
        assert res["bank_k"].shape[2] == heads  # 1/P of the bank per rank
        sl = slice(r * heads, (r + 1) * heads)
        torch.testing.assert_close(res["bank_k"], gen.bank.k[:, :, sl], atol=tol, rtol=0)
        torch.testing.assert_close(res["bank_v"], gen.bank.v[:, :, sl], atol=tol, rtol=0)
        assert torch.equal(res["bank_valid"], gen.bank.valid)
        assert (res["long_term"], res["short_term"]) == (gen.bank.long_term, gen.bank.short_term)
    assert worst <= tol, f"sequence-parallel latents differ from the single stream by {worst}"
    for res in ranks[1:]:  # every rank holds the same latents (it runs the sampler on them)
        assert all(torch.equal(a, b) for a, b in zip(res["latents"], ranks[0]["latents"]))
    return worst


def test_token_bounds_and_the_heads_rule():
    assert token_bounds(44, 2) == [0, 22, 44]
    assert token_bounds(81, 2) == [0, 41, 81]
    assert token_bounds(10, 4) == [0, 3, 6, 8, 10]
    assert token_bounds(3, 4) == [0, 1, 2, 3, 3]  # a rank may hold nothing (video-only exchanges)
    check_heads(12, 4)
    with pytest.raises(FlowactError, match=r"12 heads: use 1, 2, 3, 4, 6, 12"):
        check_heads(12, 8)


@gloo
def test_two_ranks_and_a_decode_rank_equal_the_single_process_stream(tmp_path):
    chunks = 4  # > short-term + long-term: admission, re-rotation and eviction all run
    ranks = launch(tmp_path, 3, TINY, chunks, decode=True)
    latents, frames, gen = single_stream(TINY, chunks)
    assert None not in gen.bank.long_term  # the long-term path was exercised
    check_ranks_match(ranks[:2], latents, gen)
    decoded = ranks[2]["frames"]  # the decode rank, pipelined behind the transformer ranks
    assert len(decoded) == chunks
    for a, b in zip(decoded, frames):
        assert a.shape == b.shape == (8, 64, 64, 3)
        assert np.abs(a.astype(int) - b).max() <= 1
    # the cost model counts what the ranks really sent: the reference pass, then per chunk
    cost = seq_parallel_cost(load_preset(TINY), 2, torch.float32)
    for r in range(2):
        expected = cost.reference_sent_bytes[r] + chunks * cost.sent_bytes_per_chunk[r]
        assert ranks[r]["sent_bytes"] == expected > 0


@gloo
@pytest.mark.parametrize("hear", [False, True])
def test_uneven_split_and_a_rank_without_video_tokens(tmp_path, hear):
    # 32 video + 8 audio + 41 text tokens = 81: ranks hold 41 and 40, and rank 1 none of the
    # video, so the memory pass's last exchange and the velocity's gather are uneven too;
    # `hear`: the frame-token audio path (audio injected into the video, the local-audio mask)
    data = yaml.safe_load(Path(TINY).read_text())
    data["text"]["tokens"] = 41
    if hear:
        data["model"].update(audio_inject=True, audio_local=True)
        data["audio"]["frame_tokens"] = True
    preset = tmp_path / "tiny-uneven.yaml"
    preset.write_text(yaml.safe_dump(data))
    chunks = 3
    ranks = launch(tmp_path, 2, str(preset), chunks, decode=False)
    latents, _, gen = single_stream(str(preset), chunks)
    check_ranks_match(ranks, latents, gen)
    cost = seq_parallel_cost(load_preset(preset), 2, torch.float32)
    assert cost.sent_bytes_per_pass[0] != cost.sent_bytes_per_pass[1]  # uneven shares
    for r in range(2):
        assert ranks[r]["sent_bytes"] == cost.reference_sent_bytes[r] + chunks * cost.sent_bytes_per_chunk[r]


@gloo
def test_a_decode_rank_draws_each_chunk_with_its_motion(tmp_path):
    """A video model and a decoder that read the motion: the transformer ranks hand each chunk's motion
    to the decode rank with its latents, and it draws what the single process draws."""
    data = yaml.safe_load(Path(TINY).read_text())
    data["model"]["motion_inject"] = data["vae"]["motion"] = 24
    preset = tmp_path / "tiny-motion.yaml"
    preset.write_text(yaml.safe_dump(data))
    chunks = 2
    ranks = launch(tmp_path, 3, str(preset), chunks, decode=True)
    latents, frames, gen = single_stream(str(preset), chunks)
    check_ranks_match(ranks[:2], latents, gen)
    for a, b in zip(ranks[2]["frames"], frames):
        assert a.shape == b.shape == (8, 64, 64, 3)
        assert np.abs(a.astype(int) - b).max() <= 1


def only_presets(monkeypatch, *names):
    """`flowact presets` over these presets only (the full list costs a minute on a busy CPU)."""
    import flowact.config

    monkeypatch.setattr(flowact.config, "preset_names", lambda: list(names))


def test_r1_480p_per_rank_cost_adds_up_and_its_all_to_all_volume(monkeypatch):
    only_presets(monkeypatch, "r1-480p")
    P = 2
    code, stdout, _ = run_cli(["presets", "--ranks", str(P), "--json"])
    assert code == 0
    (row,) = json.loads(stdout)["presets"]
    sp = row["seq_parallel"]
    assert sp["ranks"] == P and sp["dtype"] == "bfloat16"  # the preset's GPU dtype
    # FLOPs split: the ranks together do one rank's work, plus the replicated embeddings
    assert sum(sp["flops_per_pass"]) == pytest.approx(row["flops_per_pass"], rel=1e-3)
    assert max(sp["flops_per_pass"]) == pytest.approx(row["flops_per_pass"] / P, rel=1e-3)
    # memory: all weights on every rank, 1/P of the bank's keys and values (and the whole valid mask)
    p, m = load_preset("r1-480p"), load_preset("r1-480p").model
    full = MemoryBank.of(p, 1, "meta", torch.bfloat16)
    assert sp["bank_bytes"] - full.valid.numel() == (full.nbytes() - full.valid.numel()) // P
    assert sp["dit_weight_bytes"] == 2 * row["params"]["dit"]
    # all-to-all volume, element for element: per block q, k, v to heads and attention back; per
    # pass the velocity's patch tokens to all; the memory pass's last block only k, v of the video
    C = p.stream.chunk_latents
    n_video = C * p.tokens_per_latent
    N = n_video + C * p.audio.tokens_per_latent + p.text.tokens
    w, depth, patch_dim = m.width, m.depth, p.vae.latent_channels * m.patch**2
    nfe = len(p.sampler_timesteps()) - 1
    for r in range(P):
        n = N // P
        nv = min((r + 1) * n, n_video) - min(r * n, n_video)
        block = 3 * n * (w // P) * (P - 1) + (w // P) * (N - n)
        per_pass = depth * block + (P - 1) * nv * patch_dim
        memory_pass = (depth - 1) * block + 2 * nv * (w // P) * (P - 1)
        assert sp["sent_bytes_per_pass"][r] == 2 * per_pass
        assert sp["sent_bytes_per_chunk"][r] == 2 * (nfe * per_pass + memory_pass)
    assert 0.8e9 < max(sp["sent_bytes_per_chunk"]) < 1.0e9  # ~0.92 GB per rank per 0.32 s chunk
    with pytest.raises(FlowactError, match="12 heads"):
        seq_parallel_cost(p, 8)


def test_presets_table_shows_per_rank_costs_or_why_not(monkeypatch):
    only_presets(monkeypatch, TINY)
    code, stdout, _ = run_cli(["presets", "--ranks", "2"])
    assert code == 0 and "one chunk on 2 sequence-parallel ranks" in stdout and "float32" in stdout
    code, stdout, _ = run_cli(["presets", "--ranks", "3"])
    assert code == 0 and "n/a: 2 heads" in stdout


@gloo
def test_render_seq_parallel_under_torchrun_writes_the_single_process_video(tmp_path):
    from flowact.media.probe import read_frames
    from flowact.render import render
    from flowact.routes import load_route

    image, audio = make_inputs(tmp_path, seconds=1.0)
    single = tmp_path / "single.mp4"
    render(load_route(TINY, device="cpu", random_weights=True, int8="off"), image, audio, single)
    out = tmp_path / "sp.mp4"
    args = ["render", "-i", str(image), "-a", str(audio), "-o", str(out), "--preset", TINY, "--random-weights"]
    args += ["--seq-parallel", "--decode-rank", "--json"]
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "3", "-m", "flowact.cli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(run + args, capture_output=True, text=True, timeout=DEADLINE, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout[proc.stdout.index("{") :])  # the writing rank's summary, once
    assert (report["ranks"], report["transformer_ranks"], report["frames"], report["chunks"]) == (3, 2, 25, 4)
    assert proc.stderr.count("RANDOM WEIGHTS") == 1
    a, b = read_frames(out), read_frames(single)
    assert a.shape == b.shape == (25, 64, 64, 3)
    assert np.abs(a.astype(int) - b).mean() < 0.05  # the same frames through the same encoder


def test_seq_parallel_flags_explain_themselves(tmp_path):
    image, audio = make_inputs(tmp_path, seconds=0.5)
    base = ["render", "-i", str(image), "-a", str(audio), "-o", str(tmp_path / "x.mp4"), "--preset", TINY]
    code, _, stderr = run_cli(base + ["--seq-parallel"])  # not under torchrun
    assert code == 2 and "runs under torchrun" in stderr and "--nproc-per-node" in stderr
    code, _, stderr = run_cli(base + ["--decode-rank"])
    assert code == 2 and "--decode-rank goes with --seq-parallel" in stderr
