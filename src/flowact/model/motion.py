"""The motion MMDiT: FlowAct-R1's transformer over per-frame motion vectors (world/motion_vector.py)
instead of video latents, for the renderers that move a photo.

Token streams, each with its own weight set (projection, norms, MLP; mmdit.WeightSet):

    motion     one token per video frame: the 16 motion numbers (noised) -> width, plus the frame's
               own audio features through a frame-local projection (lip sync at lag 0)
    audio      one token per video frame: an ear (model/audio.py Ear) over the log-mel window of
               the frame's own 40 ms, `context_ms` before and `lookahead_ms` after
    behaviour  one token per chunk: the state (world/behaviour.py STATES) and the prompt's words

The blocks are the video MMDiT's (model/block.py: one `Block`, attention a plug-in); attention is
joint over the streams and the memory bank's cached motion keys/values (stream/bank.py's
`MemoryBank`, the video model's bank, one token a slot). Timestep conditioning is AdaLN-single with
one t per chunk. Positions are 1-D RoPE in time: audio token f and motion token f share frame f's
position. `MotionLayout` is the one place where slots and positions are laid out, for the stream
(stream/motion.py), its bank and training (train/motion.py) alike:

    reference 0 | long-term 1..L | short-term L+1..L+C | chunk being denoised L+C+1..L+2C

A memory frame's keys/values come from a pass over its own chunk alone (at the memory noise
level), so training can rebuild them exactly from the clip: the chunk is placed so that the kept
frame sits at its slot, and RoPE's relative angles make that pass equal to the stream's.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from .audio import HOP, LOG_FLOOR, N_FFT, VISEMES, LogMel
from .block import (
    BankAttention,
    BankView,
    BankWrite,
    BankWriter,
    Block,
    MaskedAttention,
    modulate,
    prepare,
    qk_rope,
    timestep_embedding,
)
from .layout import memory_frames
from .rope import time_tables
from .text import MAX_WORDS, tokenize

MOTION_DIM = 16  # world/motion_vector.py MOTION_DIM (the model does not import the world)
MEL_PER_FRAME = 4  # 10 ms mel frames per 40 ms video frame
STATES = ("idle", "speaking", "listening", "thinking", "waving", "nodding", "pointing", "shrugging", "head_tilt")
STREAMS = ("motion", "audio", "behaviour")


@dataclass(frozen=True)
class MotionConfig:
    width: int = 64
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 3.0
    mel_bins: int = 40
    ear_width: int = 96
    ear_dilations: tuple[int, ...] = (1, 1, 2, 2)  # the ear's valid 1-D convs (kernel 5) over the mel
    speaker_s: float = 3.0  # time constant of the running speaker mean the ear hears beside the mel
    # the mouth numbers (indices) that the output takes from the ear (deterministic) instead of sampling them
    ear_mouth: tuple[int, ...] = (1, 2, 3, 4)
    context_ms: int = 160  # past audio each frame hears
    lookahead_ms: int = 120  # future audio (lips anticipate sound)
    chunk_frames: int = 8
    long_term: int = 4
    long_term_stride: int = 12  # one of every N frames leaving short-term memory is kept
    vocab: int = 128  # hashed prompt words (model/text.py tokenize)
    rope_theta: float = 100.0
    states: tuple[str, ...] = field(default=STATES)
    # arm numbers after the contract's 16 (world/motion_vector.py ARM_KEYS: 8), for the video model; 0: none
    arms: int = 0

    @property
    def dim(self) -> int:
        """Numbers a frame the engine makes: the contract's 16, then its arms."""
        return MOTION_DIM + self.arms

    @property
    def context(self) -> int:
        return self.context_ms // 10

    @property
    def lookahead(self) -> int:
        return self.lookahead_ms // 10

    @property
    def window(self) -> int:
        """Mel frames one video frame's audio token hears."""
        return self.context + MEL_PER_FRAME + self.lookahead

    @property
    def ear_field(self) -> int:
        """Mel frames one output of the ear's conv stack reads (its receptive field)."""
        return 1 + sum(4 * d for d in self.ear_dilations)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "MotionConfig":
        d = json.loads(text)
        d["states"] = tuple(d["states"])
        if "ear_dilations" not in d:
            raise ValueError("motion weights from before the speaker-normalised ear (2026-12-06): retrain them")
        d["ear_dilations"], d["ear_mouth"] = tuple(d["ear_dilations"]), tuple(d["ear_mouth"])
        return cls(**d)


@dataclass(frozen=True)
class MotionLayout:
    """Slots, positions and the long-term policy, shared by the stream and training."""

    chunk: int  # C frames per chunk
    long_term: int  # L
    stride: int
    pairs: int = 8  # RoPE rotation pairs: head_dim / 2
    theta: float = 100.0

    @classmethod
    def of(cls, cfg: MotionConfig) -> "MotionLayout":
        return cls(cfg.chunk_frames, cfg.long_term, cfg.long_term_stride, cfg.width // cfg.heads // 2, cfg.rope_theta)

    # -- what a memory bank (stream/bank.py) asks of its layout: one token a slot --------------
    slot_tokens = 1
    reference_time = 0.0

    @property
    def chunk_slots(self) -> int:
        return self.chunk

    @property
    def long_term_stride(self) -> int:
        return self.stride

    def short_term_time(self, i: int) -> float:
        return float(1 + self.long_term + i)

    @property
    def newest_long_term_time(self) -> float:
        return float(self.long_term)

    def slot_tables(self, times, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        return time_tables(torch.tensor(times, dtype=torch.float32, device=device), self.pairs, self.theta)

    def shift_tables(self, dt: float, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.slot_tables([dt], device)

    def tables(self, times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """RoPE of tokens at these times (..., tokens) -> (cos, sin) (..., tokens, head_dim / 2)."""
        return time_tables(times, self.pairs, self.theta)

    @property
    def slots(self) -> int:
        """Memory slots: reference, long-term, short-term."""
        return 1 + self.long_term + self.chunk

    @property
    def chunk_time(self) -> int:
        """Position of the first frame of the chunk being denoised."""
        return 1 + self.long_term + self.chunk

    def slot_times(self) -> torch.Tensor:
        return torch.arange(self.slots, dtype=torch.float32)

    def chunk_times(self, first: float | None = None) -> torch.Tensor:
        """Positions of a chunk's tokens [motion (C) | audio (C) | behaviour (1)], its first frame
        at `first` (default: the chunk being denoised)."""
        t0 = float(self.chunk_time if first is None else first)
        frames = t0 + torch.arange(self.chunk, dtype=torch.float32)
        return torch.cat([frames, frames, torch.tensor([t0 + (self.chunk - 1) / 2])])

    def memory_frames(self, index: int) -> tuple[list[int | None], list[int]]:
        """Which stream frames the bank holds while chunk `index` is denoised: (long-term slots,
        oldest first, None = empty; short-term frames). Frames that leave short-term memory are
        kept when frame % stride == 0, the newest L of them."""
        return memory_frames(self.chunk, self.long_term, self.stride, index)

    def window(self, index: int) -> tuple[list[int], list[float], list[list[bool]]]:
        """The chunks that training (and the recomputing reference) places to denoise chunk `index`
        as the stream does: L long-term slots, the short-term chunk, the chunk itself. Per entry: the
        stream chunk (-1: empty slot), the position of its first frame (a long-term chunk sits so that
        its kept frame lands on its slot), and which of its frames the last chunk reads."""
        c = self.chunk
        lt, st = self.memory_frames(index)
        chunks, firsts, keep = [], [], []
        for j, f in enumerate(lt):
            chunks.append(-1 if f is None else f // c)
            firsts.append(float(1 + j - (0 if f is None else f % c)))
            keep.append([f is not None and i == f % c for i in range(c)])
        chunks.append(index - 1 if st else -1)
        firsts.append(float(1 + self.long_term))
        keep.append([bool(st)] * c)
        chunks.append(index)
        firsts.append(float(self.chunk_time))
        keep.append([False] * c)
        return chunks, firsts, keep


def mel_frames(mel: LogMel, samples: torch.Tensor) -> torch.Tensor:
    """samples (n,) at 16 kHz, starting N_FFT/2 before the first mel frame's centre -> log-mel
    (frames, bins), frame m centred at sample N_FFT/2 + m*HOP. No edge padding, so a chunk's mel
    equals the same rows of the whole clip's mel."""
    spec = torch.stft(samples.float(), N_FFT, HOP, window=mel.window, center=False, return_complex=True)
    m = (mel.fb @ spec.abs().pow(2)).clamp_min(1e-5).log()
    return ((m - LOG_FLOOR) / 8.0 - 1.0).T


def frame_windows(mel: torch.Tensor, frames: int, window: int) -> torch.Tensor:
    """mel (..., rows, bins) whose row 0 is the first frame's window start -> (..., frames, window, bins)."""
    w = mel.unfold(-2, window, MEL_PER_FRAME)[..., :frames, :, :]  # (..., frames, bins, window)
    return w.transpose(-1, -2)


class MotionEar(nn.Module):
    """The motion engine's ear: per video frame, the five mouth numbers and a feature, from the frame's
    mel window (`context` before its own 40 ms, `lookahead` after) and a running *speaker mean*.

    The mean is what lets it read vowels across voices: a vowel's formants sit higher in a small
    voice than in a large one, and the mel minus the voice's own average spectrum says which vowel
    it is more plainly than the mel alone (held-out voices, an ear probe without it: width r 0.59,
    with it 0.73; runs/probe, docs/motion.md). The mean is causal, per chunk of `chunk` frames: the
    loudness-weighted mean of the mel rows of the frames heard so far (the chunk's own included),
    decaying with time constant `speaker_s`, pulled towards a learnt prior while little is heard.

    The convs are valid (no padding) over each frame's window, so a frame's output depends on its
    window alone: the same whether a chunk or a whole clip is heard at once."""

    PRIOR_ROWS = 30.0  # the prior's weight, in loud mel rows

    def __init__(self, cfg: MotionConfig):
        super().__init__()
        self.cfg = cfg
        w, bins = cfg.ear_width, cfg.mel_bins
        self.speaker = cfg.speaker_s > 0
        self.convs = nn.ModuleList(
            nn.Conv1d(bins * (2 if self.speaker else 1) if i == 0 else w, w, 5, dilation=d)
            for i, d in enumerate(cfg.ear_dilations)
        )
        self.head = nn.Sequential(nn.Linear(w, 2 * w), nn.SiLU(), nn.Linear(2 * w, VISEMES))
        self.prior = nn.Parameter(torch.zeros(bins))  # the speaker mean before anything is heard
        self.outputs = cfg.window - cfg.ear_field + 1  # conv outputs inside a frame's window, averaged
        if self.outputs < 1:
            raise ValueError(f"the ear's receptive field ({cfg.ear_field} mel frames) exceeds a frame's window")
        # per chunk of C frames (C * 4 new mel rows), the running sums decay by this factor
        rows = cfg.chunk_frames * MEL_PER_FRAME
        self.decay = math.exp(-rows / (100.0 * max(cfg.speaker_s, 1e-6)))

    def spans(self, windows: torch.Tensor) -> torch.Tensor:
        """windows (b, chunks, C, window, bins) -> each chunk's contiguous mel (b, chunks, (C-1)*4 + window, bins)."""
        own = windows[:, :, :, :MEL_PER_FRAME].flatten(2, 3)  # rows of frames 0..C-1 (window starts)
        return torch.cat([own[:, :, :-MEL_PER_FRAME], windows[:, :, -1]], 2)

    def speaker_mean(self, windows: torch.Tensor, stats=None):
        """windows (b, chunks, C, window, bins) of consecutive chunks -> (the mean per chunk (b, chunks, bins),
        the running sums after the last chunk: (sum (b, bins), weight (b,)))."""
        b, k = windows.shape[:2]
        rows = windows[:, :, :, self.cfg.context : self.cfg.context + MEL_PER_FRAME].flatten(2, 3).float()
        wt = (rows.mean(-1) + 1.0).clamp_min(0) ** 2  # loudness above the silence floor (-1)
        add_s, add_w = (wt[..., None] * rows).sum(2), wt.sum(2)  # (b, k, bins), (b, k)
        if stats is None:
            stats = (rows.new_zeros(b, rows.shape[-1]), rows.new_zeros(b))
        s, n = stats
        means = []
        for j in range(k):
            s, n = self.decay * s + add_s[:, j], self.decay * n + add_w[:, j]
            means.append((s + self.PRIOR_ROWS * self.prior.float()) / (n + self.PRIOR_ROWS)[:, None])
        return torch.stack(means, 1), (s, n)

    def forward(self, windows: torch.Tensor, stats=None):
        """windows (b, chunks, C, window, bins) of consecutive chunks (stats: the running sums before the
        first; None = a stream's start) -> (features (b, chunks, C, width), mouth logits (b, chunks, C, 5),
        the running sums after the last chunk)."""
        b, k, c = windows.shape[:3]
        x = self.spans(windows)  # (b, k, rows, bins)
        if self.speaker:
            mean, stats = self.speaker_mean(windows, stats)
            x = torch.cat([x, x - mean[:, :, None].to(x.dtype)], -1)
        x = x.flatten(0, 1).transpose(1, 2).to(self.convs[0].weight.dtype)  # (b*k, bins', rows)
        for i, conv in enumerate(self.convs):
            y = F.gelu(conv(x))
            if i:
                cut = (x.shape[2] - y.shape[2]) // 2
                y = y + x[:, :, cut : cut + y.shape[2]]
            x = y
        # frame f's window starts at row 4f of the span: its outputs are f*4 .. f*4 + outputs - 1
        f = F.avg_pool1d(x, self.outputs, MEL_PER_FRAME)[:, :, :c].transpose(1, 2)  # (b*k, C, width)
        f = f.reshape(b, k, c, -1)
        return f, self.head(f), stats


class MotionDiT(nn.Module):
    """Velocity of the normalised motion (motion - reference) / scale, given audio, behaviour,
    a timestep per chunk and the memory bank. `mean`/`scale` are the training data's statistics."""

    def __init__(self, cfg: MotionConfig = MotionConfig()):
        super().__init__()
        self.cfg = cfg
        self.layout = MotionLayout.of(cfg)
        w = cfg.width
        self.mel = LogMel(cfg.mel_bins)
        self.ear = MotionEar(cfg)
        feat = cfg.ear_width + VISEMES
        self.audio_in = nn.Linear(feat, w)
        self.audio_local = nn.Linear(feat, w)  # frame f's audio straight into motion token f
        self.audio_null = nn.Parameter(torch.zeros(feat))  # "no audio" (guidance)
        self.motion_in = nn.Linear(cfg.dim, w)
        self.ref_embed = nn.Parameter(torch.zeros(w))
        self.state_embed = nn.Embedding(len(cfg.states) + 1, w)  # 0: no state given
        self.words = nn.EmbeddingBag(cfg.vocab, w, mode="mean", padding_idx=0)
        self.t_mlp = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        self.adaln = nn.Sequential(nn.SiLU(), nn.Linear(w, 6 * w))
        self.final_mod = nn.Sequential(nn.SiLU(), nn.Linear(w, 2 * w))
        self.out = nn.Linear(w, cfg.dim)
        self.blocks = nn.ModuleList(Block(w, cfg.heads, cfg.mlp_ratio, STREAMS) for _ in range(cfg.depth))
        self.register_buffer("mean", torch.zeros(cfg.dim))
        self.register_buffer("scale", torch.ones(cfg.dim))
        for lin in (self.out, self.final_mod[1], self.adaln[1]):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    # -- conditioning --------------------------------------------------------------------------
    def audio_features(self, windows: torch.Tensor, stats=None, with_stats: bool = False):
        """windows (b, frames, window, bins), frames a whole number of consecutive chunks (`stats`: the ear's
        running speaker sums before them; None = a stream's start) -> (features (b, frames, ear_width + 5),
        mouth logits (b, frames, 5)[, the sums after them])."""
        b, n = windows.shape[:2]
        c = self.cfg.chunk_frames
        f, logits, stats = self.ear(windows.view(b, n // c, c, *windows.shape[2:]), stats)
        feat = torch.cat([f, torch.sigmoid(logits).to(f.dtype)], dim=-1)
        out = feat.view(b, n, -1), logits.view(b, n, VISEMES)
        return (*out, stats) if with_stats else out

    def behaviour(self, state: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        """state (b,) long (0 = none, i + 1 = STATES[i]); words (b, MAX_WORDS) long, 0 = pad -> (b, width)."""
        return self.state_embed(state) + self.words(words)

    def state_id(self, state: str | None) -> int:
        return 0 if not state else self.cfg.states.index(state) + 1

    def word_ids(self, prompt: str | None) -> torch.Tensor:
        ids = torch.zeros(MAX_WORDS, dtype=torch.long)
        r = tokenize(prompt or "", self.cfg.vocab)
        ids[: len(r)] = torch.tensor(r, dtype=torch.long)
        return ids

    def modulation(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """t (...,) -> (AdaLN-single (..., 6, width), final (..., 2, width))."""
        e = self.t_mlp(timestep_embedding(t.reshape(-1), self.cfg.width).to(self.out.weight.dtype))
        w = self.cfg.width
        return self.adaln(e).view(*t.shape, 6, w), self.final_mod(e).view(*t.shape, 2, w)

    def normalise(self, motion: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return (motion - reference.unsqueeze(-2)) / self.scale

    def denormalise(self, x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return x * self.scale + reference.unsqueeze(-2)

    def reference_token(self, reference: torch.Tensor) -> torch.Tensor:
        """reference (b, 16) -> (b, 1, width)."""
        return (self.motion_in((reference - self.mean) / self.scale) + self.ref_embed)[:, None]

    def motion_tokens(self, x: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """x (b, n, 16) normalised noisy motion, audio features (b, n, feat) -> (b, n, width)."""
        return self.motion_in(x) + self.audio_local(audio)

    def condition_tokens(self, audio: torch.Tensor, behaviour: torch.Tensor):
        """audio features (b, n, feat), behaviour (b, k, width) -> [(stream, tokens)]."""
        return [("audio", self.audio_in(audio)), ("behaviour", behaviour)]

    # -- passes ---------------------------------------------------------------------------------
    def run(self, segs, mods, attend, final=None):
        """The blocks. mods: stream -> modulation (a `Prepared` list, one per block, or a tensor);
        attend(i): block i's attention (model/block.py). Returns the first segment's velocity (None
        without `final`, its final modulation (..., 2, width), or when a block's attention stops the pass)."""
        last = len(self.blocks) - 1
        for i, blk in enumerate(self.blocks):
            bm = {k: m[i] if isinstance(m, list) else m for k, m in mods.items()}
            # the last block: only the motion tokens' output is read
            segs = blk(segs, bm, attend(i), finish=1 if i == last else None)
            if segs is None:
                return None
        if final is None:
            return None
        f = final.unbind(-2)
        return self.out(modulate(segs[0][1], f[0], f[1]))

    def prepare(self, ada: torch.Tensor, stream: str) -> list:
        """A chunk-wide modulation (b, 6, width) made ready for `stream`'s weight set in every block
        (`block.Prepared`). The stream computes these once, for its fixed timesteps."""
        return [prepare(ada, blk.sets[stream].mod_table) for blk in self.blocks]

    def condition_kv(self, audio: torch.Tensor, behaviour: torch.Tensor, clean_mods, cos, sin) -> BankView:
        """A chunk's condition tokens through the blocks once (they read only each other, modulated as
        clean): their keys (rotated at cos/sin) and values per layer, as a view the chunk's passes read."""
        segs = self.condition_tokens(audio, behaviour)
        kv: list = []
        nothing = empty_view(segs[0][1], self.cfg)
        last = len(self.blocks) - 1

        def attend(i):
            return BankAttention(cos, sin, nothing.layer(i), record=kv) if i < last else _Keys(cos, sin, kv)

        self.run(segs, clean_mods, attend)
        k, v = torch.stack([k for k, _ in kv]), torch.stack([v for _, v in kv])
        return BankView(k, v, None, k.shape[3])  # every condition token is there

    def write_pass(self, segs, mods, cos, sin, reads: BankView, into: BankView, write: BankWrite) -> None:
        """A pass that only fills the bank (`into`, all layers): the first segment's keys/values go to
        `write`'s slots, layer by layer, its tokens reading `reads` (e.g. their chunk's conditions)."""
        last = len(self.blocks) - 1
        n = segs[0][1].shape[1]

        def attend(i):
            if i == last:
                return BankWriter(into.layer(i), write)
            return BankAttention(cos, sin, reads.layer(i), write, n, into=into.layer(i))

        self.run(segs, mods, attend)

    def forward_train(self, reference, x, t, audio, behaviour, first, keep):
        """One pass over a window of chunks laid out as the stream sees them (`MotionLayout.window`).
        reference (b, 16); x (b, K, C, 16) normalised noisy motion; t (b, K) a noise level per chunk;
        audio (b, K, C, feat); behaviour (b, K, width); first (b, K) position of each chunk's first
        frame; keep (b, K, C) bool: the memory frames the last chunk reads. Chunks 0..K-2 are memory
        (each sees only itself, as the stream's memory pass); chunk K-1 is denoised reading them.
        A chunk's condition tokens read only each other (the stream computes them once per chunk).
        Returns the velocity (b, K, C, 16)."""
        b, k, c, _ = x.shape
        dev = x.device
        flat_audio = audio.reshape(b, k * c, -1)
        motion = torch.cat(
            [self.reference_token(reference), self.motion_tokens(x.reshape(b, k * c, -1), flat_audio)], 1
        )
        segs = [("motion", motion), *self.condition_tokens(flat_audio, behaviour)]
        ada, fin = self.modulation(torch.cat([torch.zeros(b, 1, device=dev), t], 1))  # (b, 1 + K, ...)
        frame_chunk = torch.arange(k, device=dev).repeat_interleave(c) + 1  # 0 = reference
        m_ids = torch.cat([torch.zeros(1, dtype=torch.long, device=dev), frame_chunk])
        c_ids = torch.cat([frame_chunk, torch.arange(k, device=dev) + 1])
        clean = ada[:, :1]
        mods = {"motion": ada[:, m_ids], "audio": clean, "behaviour": clean}
        frames = first[:, :, None] + torch.arange(c, device=dev)
        pos = torch.cat([torch.zeros(b, 1, device=dev), frames.flatten(1), frames.flatten(1), first + (c - 1) / 2], 1)
        cos, sin = self.layout.tables(pos)
        ids = torch.cat([m_ids, c_ids])
        is_motion = torch.arange(ids.shape[0], device=dev) < m_ids.shape[0]
        same = ids[:, None] == ids[None, :]
        # motion reads its chunk (motion and conditions), conditions read their chunk's conditions
        mask = same & (is_motion[:, None] | ~is_motion[None, :])
        reads = torch.zeros(b, ids.shape[0], dtype=torch.bool, device=dev)
        reads[:, 0] = True
        reads[:, 1 : 1 + k * c] = keep.flatten(1)
        current = ((ids == k) & is_motion)[None, :, None]
        mask = (mask[None] | (current & reads[:, None, :]))[:, None]
        attend = MaskedAttention(cos[:, None], sin[:, None], mask)
        v = self.run(segs, mods, lambda i: attend, fin[:, m_ids])
        return v[:, 1:].reshape(b, k, c, -1)


def empty_view(like: torch.Tensor, cfg: MotionConfig) -> BankView:
    """No memory, every layer (a pass whose tokens read only each other), for a batch like `like` (b, n, width)."""
    b, hd = like.shape[0], cfg.width // cfg.heads
    z = like.new_zeros(cfg.depth, b, cfg.heads, 0, hd)
    return BankView(z, z, None, 0)


class _Keys:
    """The last block of the condition pass: only its keys (rotated) and values are kept."""

    def __init__(self, cos, sin, record: list):
        self.cos, self.sin, self.record = cos, sin, record

    def __call__(self, parts) -> None:
        _, k, v = qk_rope(parts, self.cos, self.sin)
        self.record.append((k, v))
