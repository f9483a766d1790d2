"""One chunk on several ranks: Ulysses-style sequence parallelism for the MMDiT.

A transform of the one model, not a copy of it (`SeqSplit`, a `mmdit.Split`): every transformer
rank runs the same `MMDiT.forward` and `Block` weights on its share of the chunk's tokens
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

from ..errors import FlowactError
from ..model import FlowActModel
from ..model.block import BankWriter
from ..model.mmdit import MMDiT, Split
from ..model.vae import DecoderState, DrawPlan
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


class SeqSplit(Split):
    """`MMDiT.forward`'s tokens shared over the ranks of `comm` (one pass): contiguous shares for the
    per-token work, attention on all tokens and this rank's heads between two all-to-alls."""

    def __init__(self, comm: Comm):
        self.comm = comm

    def tokens(self, segments):
        self.spans = [(name, x.shape[1]) for name, x in segments]
        self.bounds = token_bounds(sum(n for _, n in self.spans), self.comm.ranks)
        if self.bounds[-1] < self.comm.ranks:
            raise ValueError(f"{self.bounds[-1]} tokens cannot be split over {self.comm.ranks} ranks")
        lo, hi = self.bounds[self.comm.rank], self.bounds[self.comm.rank + 1]
        local, start = [], 0
        for name, x in segments:
            a, z = max(lo, start), min(hi, start + x.shape[1])
            if a < z:
                local.append((name, x[:, a - start : z - start]))
            start += x.shape[1]
        return local

    def _video_bounds(self, n_video: int) -> list[int]:
        return [min(bd, n_video) for bd in self.bounds]

    def video(self, local, n_video: int) -> torch.Tensor:
        # this rank's video tokens are the first of its first segment (video comes first); none on a
        # rank past the video
        vb, r = self._video_bounds(n_video), self.comm.rank
        self.video_bounds = vb
        return local[0][1][:, : vb[r + 1] - vb[r]]

    def attention(self, attend, segments, block):
        return _Exchanged(attend, self.comm, self.bounds, [(block.sets[name], n) for name, n in self.spans])

    def writer(self, bank, write, n_video: int):
        return _ExchangedWriter(BankWriter(bank, write), self.comm, self._video_bounds(n_video))

    def gather(self, out: torch.Tensor) -> torch.Tensor:
        return self.comm.gather(out, self.video_bounds)


class _Exchanged:
    """An attention run on all the pass's tokens and this rank's heads: this rank's packed q/k/v
    (3, b, H, its tokens, d) --all-to-all--> (3, b, H/P, all tokens, d), the attention (`inner`,
    e.g. `BankAttention` with its bank write, on the rank's head shard), and its output back
    (b, H/P, all tokens, d) --all-to-all--> (b, H, its tokens, d)."""

    def __init__(self, inner, comm: Comm, bounds: list[int], spans: list):
        self.inner, self.comm, self.bounds, self.spans = inner, comm, bounds, spans

    def __call__(self, parts):
        qkv = torch.cat([p for _, p in parts], dim=3) if len(parts) > 1 else parts[0][1]
        three, b = qkv.shape[:2]
        qkv = self.comm.to_heads(qkv.flatten(0, 1), self.bounds).unflatten(0, (three, b))
        whole, start = [], 0
        for ws, n in self.spans:
            whole.append((ws, qkv[:, :, :, start : start + n]))
            start += n
        return self.comm.to_tokens(self.inner(whole), self.bounds)


class _ExchangedWriter:
    """The last block of a memory pass: only the video tokens' k, v go to the heads' ranks, then `inner` writes them."""

    def __init__(self, inner: BankWriter, comm: Comm, video_bounds: list[int]):
        self.inner, self.comm, self.video_bounds = inner, comm, video_bounds

    def __call__(self, parts) -> None:
        ws, qkv = parts[0]
        k, v = self.comm.to_heads(torch.cat([qkv[1], qkv[2]]), self.video_bounds).chunk(2)
        self.inner.keep(ws, k, v)


class SeqParallelDiT:
    """`MMDiT.forward` with the chunk's tokens split over the ranks of `comm` (`SeqSplit`): the same
    arguments, except that `bank` is this rank's head shard of the memory bank; the velocity comes
    back whole on every rank."""

    def __init__(self, dit: MMDiT, comm: Comm):
        check_heads(dit.cfg.heads, comm.ranks)
        self.dit, self.comm = dit, comm

    @property
    def heads(self) -> slice:
        h = self.dit.cfg.heads // self.comm.ranks
        return slice(self.comm.rank * h, (self.comm.rank + 1) * h)

    def __call__(self, *args, **kwargs) -> torch.Tensor | None:
        return self.dit(*args, **kwargs, split=SeqSplit(self.comm))


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
        return MemoryBank.of(self.preset, 1, self.device, self.dtype, heads=self.preset.model.heads // self.comm.ranks)


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
        while len(self._pending) >= 3 * self.in_flight:  # a header, latents (and motion) per chunk
            work, _ = self._pending.pop(0)
            work.wait()
        self._pending.append((dist.isend(tensor, self.dst), tensor))

    def send(self, index: int, latents: torch.Tensor, motion: torch.Tensor | None = None) -> None:
        """Chunk `index`'s latents (1, zc, C, h, w), and its motion (1, frames, D) for a decoder that reads
        it, sent as float32 from their device (nccl: a GPU)."""
        self.device = latents.device
        self._isend(torch.tensor([index], dtype=torch.int64, device=latents.device))
        self._isend(latents.detach().float().contiguous())
        if motion is not None:
            self._isend(motion.detach().float().to(latents.device).contiguous())

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
    def start(self, reference: np.ndarray, prime_aside: bool = False) -> None:
        """Prime the streaming decoder with the reference, as `StreamGenerator.start` does (at once: this
        rank generates nothing meanwhile)."""
        self.state = DecoderState()
        ref = from_pixels(reference, self.device, self.dtype)
        self.model.vae.decode(self.model.vae.encode(ref), self.state, reference=ref)

    def recv(self) -> tuple[int, torch.Tensor, torch.Tensor | None] | None:
        """The next chunk (index, latents, motion (None unless the decoder reads it)), or None at the end."""
        header = torch.empty(1, dtype=torch.int64, device=self.device)
        dist.recv(header, self.src)
        index = int(header.item())
        if index < 0:
            return None
        latents = torch.empty(self.latent_shape, dtype=torch.float32, device=self.device)
        dist.recv(latents, self.src)
        motion = None
        if self.model.preset.vae.motion:
            p = self.model.preset
            motion = torch.empty((1, p.frames_per_chunk, p.vae.motion), dtype=torch.float32, device=self.device)
            dist.recv(motion, self.src)
        return index, latents, motion

    @torch.no_grad()
    def decode(
        self,
        latents: torch.Tensor,
        mel_windows: torch.Tensor | None = None,
        motion: torch.Tensor | None = None,
        plan: DrawPlan | None = None,
    ) -> np.ndarray:
        """`StreamGenerator.decode`: consecutive chunks -> uint8 (frames, H, W, 3)."""
        video = self.model.vae.decode(latents.to(self.dtype), self.state, motion=motion, plan=plan)
        if self.model.lips is not None:
            if mel_windows is None:
                raise ValueError("this model has a lip refiner: decode(latents, mel_windows) needs the mel windows")
            video = self.model.lips(video, mel_windows)
        return to_pixels(video)
