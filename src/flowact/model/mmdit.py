"""The MMDiT: joint attention over several token streams, one timestep per chunk.

Token streams: the chunk's video latents, the reference latent, audio tokens aligned to
frames, text tokens. Each stream maps to a *weight set* (preset: model.weight_sets);
streams sharing a set share projections, norms and MLPs, as SD3's MMDiT shares them
within its image and text sides. Attention is joint: the chunk's queries read every
stream of the chunk plus the memory bank's cached keys/values (reference, long-term,
short-term), through `flowact_kernels.bank_attention`.

Timestep conditioning is AdaLN-single (PixArt-alpha): t -> one (6, width) modulation per
weight set, plus a learned per-block table; one t per chunk (diffusion forcing).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig
from .block import BankAttention, BankView, BankWrite, BankWriter, Block, MaskedAttention, modulate, timestep_embedding
from .layout import TokenLayout, chunk_audio_mask, local_audio_mask

__all__ = ["MMDiT", "BankView", "BankWrite", "Split"]


class Split:
    """How a pass's tokens are shared out: here, not at all (one process holds them all).
    stream/seqpar.py's `SeqSplit` shares them over ranks (sequence parallelism as a transform of this
    model: the same blocks, their attention wrapped in all-to-all exchanges)."""

    def tokens(self, segments):
        """This process's share of the pass's segments (same structure)."""
        return segments

    def video(self, segments, n_video: int) -> torch.Tensor:
        """This process's video tokens (the first segment's first `n_video`, the chunk's)."""
        return segments[0][1][:, :n_video]

    def attention(self, attend, segments, block):
        """`block`'s attention over all of the pass's tokens (`segments`: the whole pass's)."""
        return attend

    def writer(self, bank, write, n_video: int):
        return BankWriter(bank, write)

    def gather(self, out: torch.Tensor) -> torch.Tensor:
        """The velocity's patch tokens of this process -> all of them."""
        return out


WHOLE = Split()


class MMDiT(nn.Module):
    """Velocity prediction for one chunk of video latents given audio, text and the bank.

    Shapes: latents (batch, latent_channels, frames, height, width); audio (batch,
    frames * tokens_per_latent, audio_width); text (batch, text_tokens, text_width);
    t (batch,) in [0, 1], 1 = pure noise; motion (model.motion_inject) (batch, frames *
    frames_per_latent, motion_inject): the video frames' motion relative to the rest pose.
    """

    STREAMS = ("video", "reference", "audio", "text")

    MOTION_HIDDEN = 64  # the motion's features, before each patch position's own map ...
    MOTION_RANK = 16  # ... to this many directions of the width (about 70k parameters in all)

    def __init__(
        self,
        cfg: ModelConfig,
        latent_channels: int,
        audio_width: int,
        text_width: int,
        audio_per_latent: int = 4,
        grid_tokens: int = 0,
        frames_per_latent: int = 4,
    ):
        super().__init__()
        self.cfg = cfg
        self.patch = cfg.patch
        self.set_of = dict(cfg.weight_sets)
        self.set_names = tuple(dict.fromkeys(self.set_of[s] for s in self.STREAMS))
        w, p = cfg.width, cfg.patch
        patch_dim = latent_channels * p * p
        self.embed = nn.ModuleDict(
            {
                "video": nn.Linear(patch_dim, w),
                "reference": nn.Linear(patch_dim, w),
                "audio": nn.Linear(audio_width, w),
                "text": nn.Linear(text_width, w),
            }
        )
        self.stream_type = nn.Parameter(torch.zeros(len(self.STREAMS), w))
        self.t_mlp = nn.Sequential(nn.Linear(256, w), nn.SiLU(), nn.Linear(w, w))
        self.t_mod = nn.ModuleDict({s: nn.Linear(w, 6 * w) for s in self.set_names})
        self.blocks = nn.ModuleList(Block(w, cfg.heads, cfg.mlp_ratio, self.set_names) for _ in range(cfg.depth))
        self.final_mod = nn.Linear(w, 2 * w)
        self.final = nn.Linear(w, patch_dim)
        self._mask, self._mask_key = None, None  # local_mask's cache
        if cfg.audio_inject:
            # starts at zero: a model grown from weights without it is unchanged until it trains
            self.audio_inject = nn.Sequential(
                nn.LayerNorm(audio_per_latent * audio_width), nn.Linear(audio_per_latent * audio_width, w)
            )
            nn.init.zeros_(self.audio_inject[1].weight)
            nn.init.zeros_(self.audio_inject[1].bias)
        if cfg.motion_inject:
            if grid_tokens <= 0:
                raise ValueError("model.motion_inject needs the patch tokens per latent frame (grid_tokens)")
            n_in, hid, r = frames_per_latent * cfg.motion_inject, self.MOTION_HIDDEN, self.MOTION_RANK
            self.motion_in = nn.Sequential(nn.Linear(n_in, hid), nn.SiLU())
            # each patch position its own map of the motion's features (the mouth's tokens read the mouth's
            # numbers, the arms' the arms'), into a few directions of the width shared by all positions
            # (`motion_out`, zero: a model grown from weights without it is unchanged until it trains)
            self.motion_map = nn.Parameter(torch.randn(grid_tokens, hid, r) * hid**-0.5)
            self.motion_out = nn.Linear(r, w, bias=False)
            nn.init.zeros_(self.motion_out.weight)

    def inject_audio(self, video: torch.Tensor, audio: torch.Tensor | None, frames: int) -> torch.Tensor:
        """video (b, frames * per, width) embedded tokens, frame-major; audio (b, frames *
        audio_per_latent, audio_width). With model.audio_inject, every token of latent frame f
        gets the projection of frame f's audio tokens."""
        if not self.cfg.audio_inject or audio is None:
            return video
        b = video.shape[0]
        a = self.audio_inject(audio.reshape(b, frames, -1).to(video.dtype))  # (b, frames, width)
        return (video.view(b, frames, -1, video.shape[-1]) + a[:, :, None]).view_as(video)

    def inject_motion(self, video: torch.Tensor, motion: torch.Tensor | None, frames: int) -> torch.Tensor:
        """video (b, frames * per, width) embedded tokens, frame-major; motion (b, frames *
        frames_per_latent, motion_inject). With model.motion_inject, patch token p of latent frame f gets
        motion_out(motion_map[p] applied to the features of frame f's video frames' motion) (None: the
        rest pose)."""
        if not self.cfg.motion_inject or motion is None:
            return video
        b = video.shape[0]
        h = self.motion_in(motion.reshape(b, frames, -1).to(video.dtype))  # (b, frames, hidden)
        add = self.motion_out(torch.einsum("bfh,phr->bfpr", h, self.motion_map.to(video.dtype)))
        return video + add.reshape_as(video)

    def embed_chunk(self, latents, audio, text, video_stream: str = "video", motion=None):
        """A pass's token segments [(weight set, (b, n, width))] in sequence order [video | audio |
        text], adjacent streams of one set merged, and the number of video tokens."""
        dt = self.stream_type.dtype
        idx = {s: i for i, s in enumerate(self.STREAMS)}
        x = self.embed[video_stream](self.patchify(latents.to(dt))) + self.stream_type[idx[video_stream]]
        if video_stream == "video":
            x = self.inject_motion(self.inject_audio(x, audio, latents.shape[2]), motion, latents.shape[2])
        segments = [(self.set_of[video_stream], x)]
        if audio is not None:
            segments.append((self.set_of["audio"], self.embed["audio"](audio.to(dt)) + self.stream_type[idx["audio"]]))
        if text is not None:
            segments.append((self.set_of["text"], self.embed["text"](text.to(dt)) + self.stream_type[idx["text"]]))
        return self._merge(segments), x.shape[1]

    def local_mask(self, frames: int, per: int, audio, text, device) -> torch.Tensor | None:
        """model.audio_local: the chunk's [video | audio | text] mask (TokenLayout's rule), cached per shape."""
        if not self.cfg.audio_local or audio is None:
            return None
        a_per = audio.shape[1] // frames
        n_text = 0 if text is None else text.shape[1]
        key = (frames, per, a_per, n_text, str(device))
        if self._mask_key != key:
            self._mask, self._mask_key = chunk_audio_mask(frames, per, a_per, n_text).to(device), key
        return self._mask

    # -- patching -----------------------------------------------------------------------
    def patchify(self, z: torch.Tensor) -> torch.Tensor:
        """(b, c, f, h, w) -> (b, f * h/p * w/p, c*p*p), frame-major then row-major."""
        b, c, f, h, w = z.shape
        p = self.patch
        z = z.view(b, c, f, h // p, p, w // p, p).permute(0, 2, 3, 5, 1, 4, 6)
        return z.reshape(b, f * (h // p) * (w // p), c * p * p)

    def unpatchify(self, x: torch.Tensor, frames: int, h: int, w: int) -> torch.Tensor:
        b = x.shape[0]
        p = self.patch
        c = x.shape[-1] // (p * p)
        x = x.view(b, frames, h // p, w // p, c, p, p).permute(0, 4, 1, 2, 5, 3, 6)
        return x.reshape(b, c, frames, h, w)

    def modulations(self, t: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        emb = self.t_mlp(timestep_embedding(t, 256).to(self.stream_type.dtype))
        e = F.silu(emb)
        return emb, {s: self.t_mod[s](e).view(-1, 6, self.cfg.width) for s in self.set_names}

    def forward(
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
        split: Split = WHOLE,
        motion: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """One pass. `video_stream="reference"` embeds the latents as the reference stream
        (the once-per-render pass that fills the bank's reference region). cos/sin cover
        the chunk's tokens in order [video | audio | text]. A pass with `write` only fills the
        bank (the memory pass, the reference pass) and returns None: its last block writes its
        keys/values and stops there. `split`: how the tokens are shared out (stream/seqpar.py).
        `motion`: the chunk's video frames' motion (model.motion_inject; None: the rest pose)."""
        b, _, f, h, w = latents.shape
        segments, n_video = self.embed_chunk(latents, audio, text, video_stream, motion)
        emb, mods = self.modulations(t)
        chunk_mask = self.local_mask(f, h // self.patch * (w // self.patch), audio, text, latents.device)
        local = split.tokens(segments)
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            layer = bank.layer(i)
            if write is not None and i == last:
                video = [(segments[0][0], split.video(local, n_video))]
                block(video, mods, split.writer(layer, write, n_video))
                return None
            attend = BankAttention(cos, sin, layer, write, n_video, chunk_mask)
            local = block(local, mods, split.attention(attend, segments, block))
        video = split.video(local, n_video)
        shift, scale = self.final_mod(F.silu(emb)).chunk(2, dim=-1)
        out = split.gather(self.final(modulate(video, shift, scale)))
        return self.unpatchify(out.float(), f, h, w)

    def forward_train(
        self,
        reference: torch.Tensor,
        latents: torch.Tensor,
        t_chunks: torch.Tensor,
        audio: torch.Tensor,
        text: torch.Tensor,
        layout: TokenLayout,
        motion: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Chunkwise diffusion forcing over a whole clip in one pass.

        reference (b, zc, 1, h, w) clean; latents (b, zc, N, h, w), chunk j = frames
        [j*C, (j+1)*C) noised at its own level t_chunks[:, j]; audio (b, N * tokens_per_latent,
        audio_width); text (b, N / C, text_tokens, text_width). Chunk j's tokens see the
        reference, the *video* tokens of earlier chunks and all of its own tokens: what the
        memory bank shows at inference. Positions come from `layout` (layout.py): the clip's
        last chunk sits where inference puts the chunk being made. Returns the velocity for
        every clip frame (b, zc, N, h, w). motion (model.motion_inject): (b, N * frames_per_latent,
        motion_inject), each latent frame's tokens told its own video frames' motion.
        """
        b, _, n_frames, h, w = latents.shape
        C = layout.chunk_latents
        first_time = layout.train_first_time(n_frames)
        chunks = n_frames // C
        dt = self.stream_type.dtype
        idx = {s: i for i, s in enumerate(self.STREAMS)}
        per = (h // self.patch) * (w // self.patch)
        video = self.embed["video"](self.patchify(latents.to(dt))) + self.stream_type[idx["video"]]
        video = self.inject_motion(self.inject_audio(video, audio, n_frames), motion, n_frames)
        ref = self.embed["reference"](self.patchify(reference.to(dt))) + self.stream_type[idx["reference"]]
        aud = self.embed["audio"](audio.to(dt)) + self.stream_type[idx["audio"]]
        txt = self.embed["text"](text.to(dt)) + self.stream_type[idx["text"]]
        a_per = aud.shape[1] // n_frames
        t_tok = text.shape[2]
        if (a_per, t_tok, per) != (layout.audio_per_latent, layout.text_tokens, layout.grid[0] * layout.grid[1]):
            raise ValueError(
                f"tokens per latent frame / text tokens / patches ({a_per}, {t_tok}, {per}) do not match the layout"
            )
        pieces, kinds, groups, t_of = [ref], ["reference"] * per, [0] * per, []
        frame_of = [-1] * per  # each token's latent frame in the clip (audio_local), -1: none
        pos = [layout.frame(layout.reference_time)]
        t_of.append(torch.zeros(b, per, device=latents.device))
        for j in range(chunks):
            v_j = video[:, j * C * per : (j + 1) * C * per]
            a_j = aud[:, j * C * a_per : (j + 1) * C * a_per]
            pieces += [v_j, a_j, txt[:, j]]
            kinds += ["video"] * v_j.shape[1] + ["audio"] * a_j.shape[1] + ["text"] * t_tok
            groups += [j + 1] * (v_j.shape[1] + a_j.shape[1] + t_tok)
            frames_j = torch.arange(j * C, (j + 1) * C)
            frame_of += frames_j.repeat_interleave(per).tolist() + frames_j.repeat_interleave(a_per).tolist()
            frame_of += [-1] * t_tok
            pos.append(layout.chunk(first_time + j * C))  # [video | audio | text], as the pieces
            t_of.append(t_chunks[:, j : j + 1].expand(b, v_j.shape[1] + a_j.shape[1] + t_tok))
        x = torch.cat(pieces, dim=1)
        cos, sin = layout.tables(torch.cat(pos), x.device)
        g = torch.tensor(groups, device=x.device)
        is_video = torch.tensor([k in ("video", "reference") for k in kinds], device=x.device)
        mask = (g[:, None] == g[None, :]) | (g[None, :] == 0) | ((g[None, :] < g[:, None]) & is_video[None, :])
        mask &= ~((g[:, None] == 0) & (g[None, :] != 0))  # the reference sees only itself
        if self.cfg.audio_local:
            fr = torch.tensor(frame_of, device=x.device)
            is_audio = torch.tensor([k == "audio" for k in kinds], device=x.device)
            mask &= local_audio_mask(fr, is_video & (g > 0), fr, is_audio)
        t_all = torch.cat(t_of, dim=1)  # (b, tokens)
        # group the tokens by weight set (attention does not care about order: the mask and
        # RoPE travel with them), so every set is one contiguous slice: no gathers/scatters
        rank = {name: r for r, name in enumerate(self.set_names)}
        order = sorted(range(len(kinds)), key=lambda i: rank[self.set_of[kinds[i]]])
        perm = torch.tensor(order, device=x.device)
        x, cos, sin, t_all = x[:, perm], cos[perm], sin[perm], t_all[:, perm]
        mask = mask[perm][:, perm]
        kinds = [kinds[i] for i in order]
        sets: dict[str, int] = {}
        for kind in kinds:
            sets[self.set_of[kind]] = sets.get(self.set_of[kind], 0) + 1
        emb = self.t_mlp(timestep_embedding(t_all.reshape(-1), 256).to(dt)).view(b, -1, self.cfg.width)
        e = F.silu(emb)
        sizes = list(sets.values())
        mods = {s: self.t_mod[s](es).view(b, -1, 6, self.cfg.width) for s, es in zip(sets, e.split(sizes, dim=1))}
        attend = MaskedAttention(cos, sin, mask)
        segments = list(zip(sets, x.split(sizes, dim=1)))
        for block in self.blocks:
            segments = block(segments, mods, attend)
        x = torch.cat([xs for _, xs in segments], dim=1)
        vid = [i for i, k in enumerate(kinds) if k == "video"]  # in clip order (the sort is stable)
        vid_idx = slice(vid[0], vid[-1] + 1) if vid[-1] - vid[0] + 1 == len(vid) else torch.tensor(vid, device=x.device)
        shift, scale = self.final_mod(e[:, vid_idx]).chunk(2, dim=-1)
        out = self.final(modulate(x[:, vid_idx], shift, scale))
        return self.unpatchify(out.float(), n_frames, h, w)

    @staticmethod
    def _merge(segments):
        """Adjacent streams that share a weight set run as one segment (one matmul each)."""
        merged = []
        for name, x in segments:
            if merged and merged[-1][0] == name:
                merged[-1] = (name, torch.cat([merged[-1][1], x], dim=1))
            else:
                merged.append((name, x))
        return merged

    def init_random(self, generator: torch.Generator | None = None, std: float = 0.02) -> None:
        """Seeded random init; gates and output are small but non-zero so an untrained
        model still depends on its context (the pipeline is testable without weights)."""
        for name, prm in self.named_parameters():
            if name.endswith(("q_norm", "k_norm")) or name == "audio_inject.0.weight":
                nn.init.ones_(prm)
            elif name.endswith("bias") or name.endswith("mod_table"):
                nn.init.zeros_(prm)
            else:
                with torch.no_grad():
                    prm.normal_(0.0, std, generator=generator)
