"""Where every token sits in time and space: the one place the RoPE positions are laid out,
for the stream (generator.py), the memory bank (bank.py) and training (`MMDiT.forward_train`).

Time positions are slots of latent frames, fixed per preset so that every shape and table is
static however long a stream runs:

    reference 0 | long-term 1..L | short-term L+1..L+C | the chunk being denoised L+C+1..L+2C

A latent frame's patch tokens sit at (time, row, column); its audio tokens and the chunk's
text tokens at (time, 0, 0), and with `audio_subframe` (preset audio.frame_tokens: one audio
token per video frame) audio token i of a latent frame at (time + i / audio_per_latent, 0, 0),
so their order is visible. Within a chunk the tokens run [video | audio | text]. Training
places a clip so that its last chunk sits where inference puts the chunk being made.
`local_audio_mask` is the one rule for model.audio_local (a frame's video tokens read only
that frame's audio tokens), for the stream and for training alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .rope import grid_positions, rope_tables


@dataclass(frozen=True)
class TokenLayout:
    grid: tuple[int, int]  # patch tokens per latent frame: (rows, columns)
    chunk_latents: int  # C
    long_term: int  # L
    audio_per_latent: int
    text_tokens: int
    rope_axes: tuple[int, int, int]
    rope_theta: float
    audio_subframe: bool = False
    long_term_stride: int = 1

    @classmethod
    def of(cls, preset) -> "TokenLayout":
        """The layout of a `config.Preset`."""
        m = preset.model
        return cls(
            tuple(s // m.patch for s in preset.latent_hw),
            preset.stream.chunk_latents,
            preset.stream.long_term,
            preset.audio.tokens_per_latent,
            preset.text.tokens,
            tuple(m.rope_axes),
            m.rope_theta,
            preset.audio.frame_tokens,
            preset.stream.long_term_stride,
        )

    # -- slot times --------------------------------------------------------------------------
    reference_time = 0.0

    @property
    def chunk_time(self) -> float:
        """Time of the first latent frame of the chunk being denoised."""
        return float(1 + self.long_term + self.chunk_latents)

    def short_term_time(self, i: int) -> float:
        return float(self.long_term + 1 + i)

    @property
    def newest_long_term_time(self) -> float:
        return float(self.long_term)

    def train_first_time(self, clip_latents: int) -> float:
        """Time of a training clip's first latent frame: its last chunk sits where inference
        puts the chunk being made."""
        return self.chunk_time + self.chunk_latents - clip_latents

    def memory_frames(self, index: int) -> tuple[list[int | None], list[int]]:
        """Which stream latent frames the memory bank (bank.py) holds while chunk `index` is
        denoised: (long-term slots oldest first, None = empty; short-term frames). A frame that
        leaves short-term memory is admitted to long-term when frame % stride == 0; the newest L
        admitted frames stay. E.g. toon-128 (L 4, stride 4, C 2), chunk 12: ([8, 12, 16, 20], [22, 23])."""
        return memory_frames(self.chunk_latents, self.long_term, self.long_term_stride, index)

    def memory_cycle(self) -> int:
        """How many chunks a stream runs before the bank has shown every layout it ever will (the
        relative frame offsets of its slots then repeat with the stride's period): training that
        draws its chunk index below this sees every layout inference makes."""

        def offsets(j):
            lt, st = self.memory_frames(j)
            return tuple(None if f is None else j * self.chunk_latents - f for f in lt + st)

        seen, j = set(), 0
        while offsets(j) not in seen:
            seen.add(offsets(j))
            j += 1
        return j

    # -- positions (tokens, 3) ---------------------------------------------------------------
    def frame(self, time: float) -> torch.Tensor:
        """One latent frame's patch tokens, row-major."""
        return grid_positions(time, *self.grid)

    def frames(self, times) -> torch.Tensor:
        return torch.cat([self.frame(t) for t in times])

    def audio(self, first_time: float, latents: int) -> torch.Tensor:
        """`audio_per_latent` tokens per latent frame, at that frame's time."""
        n = self.audio_per_latent
        pos = torch.zeros(latents * n, 3)
        pos[:, 0] = first_time + torch.arange(latents).repeat_interleave(n).float()
        if self.audio_subframe:
            pos[:, 0] += torch.arange(n).repeat(latents).float() / n
        return pos

    def text(self, time: float) -> torch.Tensor:
        pos = torch.zeros(self.text_tokens, 3)
        pos[:, 0] = time
        return pos

    def chunk(self, first_time: float) -> torch.Tensor:
        """A chunk's tokens in sequence order [video | audio | text], its first latent frame at
        `first_time`."""
        C = self.chunk_latents
        return torch.cat(
            [self.frames([first_time + f for f in range(C)]), self.audio(first_time, C), self.text(first_time)]
        )

    def time_shift(self, dt: float) -> torch.Tensor:
        """A pure time offset for one latent frame's tokens (re-rotating a key that moves slot)."""
        pos = torch.zeros(self.grid[0] * self.grid[1], 3)
        pos[:, 0] = dt
        return pos

    # -- what a memory bank (stream/bank.py) asks of its layout ------------------------------
    @property
    def slot_tokens(self) -> int:
        """Tokens per slot (a latent frame's patch tokens)."""
        return self.grid[0] * self.grid[1]

    @property
    def chunk_slots(self) -> int:
        return self.chunk_latents

    def slot_tables(self, times, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """RoPE of whole slots at these times, in order: (cos, sin) (len(times) * slot_tokens, head_dim/2)."""
        return self.tables(self.frames(times), device)

    def shift_tables(self, dt: float, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The rotation that moves one slot's keys by `dt` in time."""
        return self.tables(self.time_shift(dt), device)

    # -- masks -------------------------------------------------------------------------------
    def chunk_mask(self) -> torch.Tensor:
        """model.audio_local within one chunk (chunk tokens, chunk tokens)."""
        per = self.grid[0] * self.grid[1]
        return chunk_audio_mask(self.chunk_latents, per, self.audio_per_latent, self.text_tokens)

    # -- RoPE --------------------------------------------------------------------------------
    def tables(self, positions: torch.Tensor, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin), each (tokens, head_dim / 2) float32, on `device`."""
        cos, sin = rope_tables(positions, self.rope_axes, self.rope_theta)
        return (cos, sin) if device is None else (cos.to(device), sin.to(device))


def memory_frames(chunk: int, long_term: int, stride: int, index: int) -> tuple[list[int | None], list[int]]:
    """The long-term policy of a memory bank of `long_term` slots fed by chunks of `chunk` frames
    (the video bank, bank.py, in latent frames; the motion engine's, in video frames): while chunk
    `index` is denoised, (long-term slots oldest first, None = empty; short-term frames). A frame
    that leaves short-term memory is kept when frame % stride == 0; the newest `long_term` stay."""
    short = list(range(chunk * (index - 1), chunk * index)) if index > 0 else []
    left = chunk * (index - 1) if index > 1 else 0  # frames [0, left) have left short-term memory
    kept = list(range(0, left, stride))[-long_term:] if long_term else []
    return [None] * (long_term - len(kept)) + kept, short


def local_audio_mask(frame_q: torch.Tensor, video_q: torch.Tensor, frame_k: torch.Tensor, audio_k: torch.Tensor):
    """(queries, keys) bool, True = may attend: a video token does not read the audio tokens of
    another latent frame (frames numbered alike for queries and keys)."""
    return ~(video_q[:, None] & audio_k[None, :] & (frame_q[:, None] != frame_k[None, :]))


def chunk_audio_mask(frames: int, per: int, audio_per: int, text: int) -> torch.Tensor:
    """`local_audio_mask` over one chunk's tokens [video | audio | text]: `frames` latent frames of
    `per` patch tokens and `audio_per` audio tokens each, then `text` text tokens."""
    frame = torch.cat(
        [
            torch.arange(frames).repeat_interleave(per),
            torch.arange(frames).repeat_interleave(audio_per),
            torch.full((text,), -1),
        ]
    )
    kind = torch.cat([torch.zeros(frames * per), torch.ones(frames * audio_per), torch.full((text,), 2)])
    return local_audio_mask(frame, kind == 0, frame, kind == 1)
