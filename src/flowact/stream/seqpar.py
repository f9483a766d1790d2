"""One chunk on several ranks: Ulysses-style sequence parallelism for the MMDiT.

Every transformer rank runs the same `Block` weights on its share of the chunk's tokens
(contiguous, sizes differing by at most one) for the per-token work: modulation, the q/k/v
projections, the output projection, the MLP. Around attention, an all-to-all turns
[its tokens, all heads] into [all tokens, its heads], and back:

    per block:  qkv  (3, b, H, N/P, d) --all-to-all--> (3, b, H/P, N, d)   QK-norm, RoPE,
                attention over [bank | chunk], bank write: per head, so on the rank's heads
                attn (b, H/P, N, d)    --all-to-all--> (b, H, N/P, d)
    per pass:   the velocity's patch tokens (b, N_video/P, patch_dim) --all-gather--> every rank
    last block of a memory pass: only the video tokens' k, v (2, b, H, N_video/P, d) --all-to-all--> heads

The memory bank is sharded by heads: rank r keeps heads [r H/P, (r+1) H/P) of every layer,
1/P of the bank, and its bookkeeping (admission, eviction, re-rotation) is per head, so it
runs unchanged. Embeddings, timestep modulations and the sampler's update are replicated
(every rank holds the whole latent: < 0.01% of a pass's FLOPs on r1-480p).

The exchanges go through a `Comm`: `DistComm` over torch.distributed (gloo on CPU, nccl on
CUDA), `MetaComm` on the meta device, where the cost model (stream/cost.py) counts each
rank's FLOPs and bytes sent with the very code that runs. Optionally one more rank decodes:
transformer rank 0 sends each chunk's latents (`LatentSender`) and goes on with the next
chunk while the decode rank (`DecodeRank`) runs the causal VAE on the last one.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

import flowact_kernels as K

from ..errors import FlowactError
from ..model import FlowActModel
from ..model.mmdit import MMDiT, BankView, BankWrite, Block, modulate
from ..model.vae import DecoderState
from .bank import MemoryBank
from .generator import StreamGenerator, from_pixels, to_pixels


def check_heads(heads: int, ranks: int) -> None:
    """Heads are what the ranks share out around attention: they must divide evenly."""
    if ranks < 1 or heads % ranks:
        raise FlowactError(
            f"sequence parallelism over {ranks} ranks needs model.heads divisible by the rank count "
            f"(this preset has {heads} heads: use {', '.join(str(p) for p in range(1, heads + 1) if heads % p == 0)})"
        )


def token_bounds(tokens: int, ranks: int) -> list[int]:
    """Rank r holds tokens [bounds[r], bounds[r + 1]): contiguous, the first `tokens % ranks`
    ranks one more. A rank may hold none (only the memory pass's video-only exchange does)."""
    base, extra = divmod(tokens, ranks)
    bounds = [0]
    for r in range(ranks):
        bounds.append(bounds[-1] + base + (r < extra))
    return bounds


class Comm:
    """The three exchanges of a sequence-parallel pass, and the bytes this rank sent to others.

    All three are one uneven all-to-all of a flat buffer (`_exchange`), so any token split works.
    """

    def __init__(self, rank: int, ranks: int):
        self.rank, self.ranks = rank, ranks
        self.sent_bytes = 0  # to other ranks (what crosses the link), since construction

    def _exchange(self, send: torch.Tensor, send_sizes: list[int], recv_sizes: list[int]) -> torch.Tensor:
        raise NotImplementedError

    def _all_to_all(self, send: torch.Tensor, send_sizes: list[int], recv_sizes: list[int]) -> torch.Tensor:
        self.sent_bytes += (sum(send_sizes) - send_sizes[self.rank]) * send.element_size()
        return self._exchange(send, send_sizes, recv_sizes)

    def to_heads(self, x: torch.Tensor, bounds: list[int]) -> torch.Tensor:
        """(B, H, this rank's tokens, d) -> (B, H/P, all tokens, d): this rank's heads."""
        B, H, n, d = x.shape
        P, h = self.ranks, H // self.ranks
        send = x.reshape(B, P, h, n, d).transpose(0, 1).reshape(-1)  # block i: rank i's heads
        sizes = [B * h * (bounds[i + 1] - bounds[i]) * d for i in range(P)]
        recv = self._all_to_all(send, [B * h * n * d] * P, sizes)
        parts = [part.view(B, h, -1, d) for part in recv.split(sizes)]
        return torch.cat(parts, dim=2)

    def to_tokens(self, y: torch.Tensor, bounds: list[int]) -> torch.Tensor:
        """(B, H/P, all tokens, d) -> (B, H, this rank's tokens, d): the inverse of `to_heads`."""
        B, h, _, d = y.shape
        P, n = self.ranks, bounds[self.rank + 1] - bounds[self.rank]
        send = torch.cat([y[:, :, bounds[i] : bounds[i + 1]].reshape(-1) for i in range(P)])
        sizes = [B * h * (bounds[i + 1] - bounds[i]) * d for i in range(P)]
        recv = self._all_to_all(send, sizes, [B * h * n * d] * P)
        return recv.view(P, B, h, n, d).transpose(0, 1).reshape(B, P * h, n, d)

    def gather(self, x: torch.Tensor, bounds: list[int]) -> torch.Tensor:
        """(B, this rank's tokens, c) -> (B, all tokens, c) on every rank."""
        B, n, c = x.shape
        sizes = [B * (bounds[i + 1] - bounds[i]) * c for i in range(self.ranks)]
        recv = self._all_to_all(x.reshape(-1).repeat(self.ranks), [B * n * c] * self.ranks, sizes)
        return torch.cat([part.view(B, -1, c) for part in recv.split(sizes)], dim=1)


class DistComm(Comm):
    """The exchanges over a torch.distributed process group (default: the whole world)."""

    def __init__(self, group: dist.ProcessGroup | None = None):
        super().__init__(dist.get_rank(group), dist.get_world_size(group))
        self.group = group

    def _exchange(self, send, send_sizes, recv_sizes):
        recv = send.new_empty(sum(recv_sizes))
        dist.all_to_all_single(recv, send.contiguous(), recv_sizes, send_sizes, group=self.group)
        return recv


class MetaComm(Comm):
    """Rank `rank` of `ranks` on the meta device: shapes and byte counts, no data (stream/cost.py)."""

    def _exchange(self, send, send_sizes, recv_sizes):
        return send.new_empty(sum(recv_sizes))


class SeqParallelDiT:
    """`MMDiT.forward` with the chunk's tokens split over the ranks of `comm`: the same
    arguments, except that `bank` is this rank's head shard of the memory bank; the velocity
    comes back whole on every rank."""

    def __init__(self, dit: MMDiT, comm: Comm):
        check_heads(dit.cfg.heads, comm.ranks)
        self.dit, self.comm = dit, comm

    @property
    def heads(self) -> slice:
        h = self.dit.cfg.heads // self.comm.ranks
        return slice(self.comm.rank * h, (self.comm.rank + 1) * h)

    def __call__(
        self,
        latents: torch.Tensor,
        t: torch.Tensor,
        audio: torch.Tensor | None,
        text: torch.Tensor | None,
        bank: BankView,
        cos: torch.Tensor,
        sin: torch.Tensor,
        write: BankWrite | None = None,
        video_stream: str = "video",
    ) -> torch.Tensor | None:
        dit = self.dit
        b, _, f, h, w = latents.shape
        whole, n_video = dit.embed_chunk(latents, audio, text, video_stream)
        chunk_mask = dit.local_mask(f, h // dit.patch * (w // dit.patch), audio, text, latents.device)
        spans = [(name, x.shape[1]) for name, x in whole]
        bounds = token_bounds(sum(n for _, n in spans), self.comm.ranks)
        if bounds[-1] < self.comm.ranks:
            raise ValueError(f"{bounds[-1]} tokens cannot be split over {self.comm.ranks} ranks")
        lo, hi = bounds[self.comm.rank], bounds[self.comm.rank + 1]
        local, start = [], 0
        for name, x in whole:
            a, z = max(lo, start), min(hi, start + x.shape[1])
            if a < z:
                local.append((name, x[:, a - start : z - start]))
            start += x.shape[1]
        emb, mods = dit.modulations(t)
        video_bounds = [min(bd, n_video) for bd in bounds]
        last = len(dit.blocks) - 1
        for i, block in enumerate(dit.blocks):
            if write is not None and i == last:
                self._write_only(block, local, spans, mods, bank.layer(i), write, video_bounds)
                return None
            local = self._block(block, local, spans, mods, cos, sin, bank.layer(i), write, n_video, bounds, chunk_mask)
        # this rank's video tokens are the first of its first segment (video comes first)
        mine = video_bounds[self.comm.rank + 1] - video_bounds[self.comm.rank]
        video = local[0][1][:, :mine]
        shift, scale = dit.final_mod(F.silu(emb)).chunk(2, dim=-1)
        out = self.comm.gather(dit.final(modulate(video, shift, scale)), video_bounds)
        return dit.unpatchify(out.float(), f, h, w)

    def _block(self, block: Block, local, spans, mods, cos, sin, bank: BankView, write, n_video, bounds, chunk_mask):
        """`Block.forward` on this rank's tokens (`local`, the same segment structure) and heads;
        attention sees every token of the chunk, so model.audio_local's mask applies unchanged."""
        qkv = []
        for name, x in local:
            ws = block.sets[name]
            m = mods[name] + ws.mod_table
            qkv.append(torch.stack(ws.qkv_heads(x, m[:, 0], m[:, 1])))  # (3, b, H, n, d)
        qkv = torch.cat(qkv, dim=3) if len(qkv) > 1 else qkv[0]
        three, b = qkv.shape[:2]
        q, k, v = self.comm.to_heads(qkv.flatten(0, 1), bounds).unflatten(0, (three, b))
        # from here on as Block.forward, on all the chunk's tokens and this rank's heads
        q_all, k_all, start = [], [], 0
        for name, n in spans:
            ws = block.sets[name]
            c, s = cos[start : start + n], sin[start : start + n]
            q_all.append(K.rms_norm_rope(q[:, :, start : start + n], ws.q_norm, c, s))
            k_all.append(K.rms_norm_rope(k[:, :, start : start + n], ws.k_norm, c, s))
            start += n
        q_cat = torch.cat(q_all, 2) if len(q_all) > 1 else q_all[0]
        k_cat = torch.cat(k_all, 2) if len(k_all) > 1 else k_all[0]
        a = bank.attend
        attn = K.bank_attention(q_cat, k_cat, v, bank.k[:, :, :a], bank.v[:, :, :a], bank.valid[:, :a], chunk_mask)
        if write is not None:
            kw = block.sets[spans[0][0]].k_norm
            K.bank_write(k[:, :, :n_video], v[:, :, :n_video], kw, write.cos, write.sin, bank.k, bank.v, write.start)
        attn = self.comm.to_tokens(attn, bounds)  # (b, H, this rank's tokens, d)
        bb, hh, n, d = attn.shape
        attn = attn.transpose(1, 2).reshape(bb, n, hh * d)
        out, start = [], 0
        for name, x in local:
            ws = block.sets[name]
            n = x.shape[1]
            out.append((name, ws.finish(x, attn[:, start : start + n], mods[name] + ws.mod_table)))
            start += n
        return out

    def _write_only(self, block: Block, local, spans, mods, bank: BankView, write, video_bounds) -> None:
        """`Block.write_only`: only the video tokens' k, v, to the heads' ranks, then the bank write."""
        ws = block.sets[spans[0][0]]
        r = self.comm.rank
        x = local[0][1][:, : video_bounds[r + 1] - video_bounds[r]]  # none on a rank past the video
        m = mods[spans[0][0]] + ws.mod_table
        _, k, v = ws.qkv_heads(x, m[:, 0], m[:, 1])
        k, v = self.comm.to_heads(torch.cat([k, v]), video_bounds).chunk(2)
        K.bank_write(k, v, ws.k_norm, write.cos, write.sin, bank.k, bank.v, write.start)


class SeqParallelStream(StreamGenerator):
    """`StreamGenerator` on one transformer rank of a sequence-parallel group: the same calls
    (`start`, `chunk`, ...) on every rank of `comm`, with the same inputs and seed; every rank
    gets the same clean latents. Its bank holds this rank's heads only (`SeqParallelDiT.heads`)."""

    def __init__(self, model: FlowActModel, comm: Comm, seed: int = 0):
        check_heads(model.preset.model.heads, comm.ranks)
        self.comm = comm
        super().__init__(model, seed)
        self.dit = SeqParallelDiT(model.dit, comm)

    def new_bank(self) -> MemoryBank:
        return MemoryBank(self.preset, 1, self.device, self.dtype, heads=self.preset.model.heads // self.comm.ranks)


def transformer_comm(decode_rank: bool = False) -> DistComm | None:
    """After `dist.init_process_group`: the comm of the transformer ranks, all ranks but the
    last when `decode_rank` (the last decodes), or None on the decode rank. Every rank calls it
    (creating a group is collective)."""
    world = dist.get_world_size()
    if not decode_rank:
        return DistComm()
    if world < 2:
        raise FlowactError("a decode rank needs at least 2 ranks (1 transformer rank + the decode rank)")
    group = dist.new_group(list(range(world - 1)))
    return DistComm(group) if dist.get_rank() < world - 1 else None


class LatentSender:
    """On transformer rank 0: each chunk's clean latents to the decode rank, without waiting for
    it (`in_flight` sends at most, then the oldest is waited for: bounded memory)."""

    def __init__(self, dst: int, in_flight: int = 2):
        self.dst, self.in_flight = dst, in_flight
        self.device = torch.device("cpu")
        self._pending: list[tuple[dist.Work, torch.Tensor]] = []

    def _isend(self, tensor: torch.Tensor) -> None:
        while len(self._pending) >= 2 * self.in_flight:  # a header and latents per chunk
            work, _ = self._pending.pop(0)
            work.wait()
        self._pending.append((dist.isend(tensor, self.dst), tensor))

    def send(self, index: int, latents: torch.Tensor) -> None:
        """Chunk `index`'s latents (1, zc, C, h, w), sent as float32 from their device (nccl: a GPU)."""
        self.device = latents.device
        self._isend(torch.tensor([index], dtype=torch.int64, device=latents.device))
        self._isend(latents.detach().float().contiguous())

    def close(self) -> None:
        """End of stream (index -1), then wait until the decode rank has everything."""
        self._isend(torch.tensor([-1], dtype=torch.int64, device=self.device))
        for work, _ in self._pending:
            work.wait()
        self._pending.clear()


class DecodeRank:
    """The decode rank: the streaming causal VAE decode (and lip refiner) of the chunks that
    transformer rank `src` sends, while the transformer ranks make the next ones."""

    def __init__(self, model: FlowActModel, src: int = 0):
        self.model, self.src = model, src
        p = model.preset
        prm = next(model.vae.parameters())
        self.device, self.dtype = prm.device, prm.dtype
        self.latent_shape = (1, p.vae.latent_channels, p.stream.chunk_latents, *p.latent_hw)
        self.state = DecoderState()

    @torch.no_grad()
    def start(self, reference: np.ndarray) -> None:
        """Prime the streaming decoder with the reference, as `StreamGenerator.start` does."""
        self.state = DecoderState()
        ref = from_pixels(reference, self.device, self.dtype)
        self.model.vae.decode(self.model.vae.encode(ref), self.state, reference=ref)

    def recv(self) -> tuple[int, torch.Tensor] | None:
        """The next chunk (index, latents), or None at the end of the stream."""
        header = torch.empty(1, dtype=torch.int64, device=self.device)
        dist.recv(header, self.src)
        index = int(header.item())
        if index < 0:
            return None
        latents = torch.empty(self.latent_shape, dtype=torch.float32, device=self.device)
        dist.recv(latents, self.src)
        return index, latents

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, mel_windows: torch.Tensor | None = None) -> np.ndarray:
        """`StreamGenerator.decode`: consecutive chunks -> uint8 (frames, H, W, 3)."""
        video = self.model.vae.decode(latents.to(self.dtype), self.state)
        if self.model.lips is not None:
            if mel_windows is None:
                raise ValueError("this model has a lip refiner: decode(latents, mel_windows) needs the mel windows")
            video = self.model.lips(video, mel_windows)
        return to_pixels(video)
