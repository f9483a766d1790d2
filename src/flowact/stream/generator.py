"""The chunk loop: reference -> memory bank; then, chunk after chunk, noise -> clean latents
(N sampler steps over [bank | chunk]) -> one memory pass -> bank commit -> streaming decode.

Per-chunk cost is constant: the bank has fixed capacity, positions are per slot, and the
decoder carries only its causal convs' last frames.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from ..model import FlowActModel
from ..model.layout import TokenLayout
from ..model.vae import DecoderState, DrawPlan
from .bank import MemoryBank
from .sampler import EulerSampler, interpolate


def to_pixels(video: torch.Tensor) -> np.ndarray:
    """(1, 3, frames, H, W) in [-1, 1] -> uint8 (frames, H, W, 3)."""
    x = ((video[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).cpu().numpy()


def from_pixels(image: np.ndarray, device, dtype) -> torch.Tensor:
    """uint8 (H, W, 3) -> (1, 3, 1, H, W) in [-1, 1]."""
    x = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).to(device).permute(2, 0, 1).float() / 127.5 - 1
    return x[None, :, None].to(dtype)


class AudioTrack:
    """Log-mel of a whole file, computed once; tokens are taken per chunk (static windows)."""

    def __init__(self, model: FlowActModel, samples: np.ndarray, device):
        self.encoder = model.audio
        with torch.no_grad():
            self.mel = self.encoder.mel(torch.from_numpy(samples).to(device))

    def chunk(self, first_latent: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens (1, count * tokens_per_latent, width), the mel windows they came from
        (1, count, window, bins)): the transformer reads the tokens, a lip refiner the windows."""
        win = self.encoder.windows(self.mel, first_latent, count)[None]
        return self.encoder(win), win

    def tokens(self, first_latent: int, count: int) -> torch.Tensor:
        """The tokens of `chunk` alone."""
        return self.chunk(first_latent, count)[0]


class TextTrack:
    """Prompt -> text tokens, cached per distinct prompt (encoded when it changes)."""

    def __init__(self, model: FlowActModel):
        self.encoder = model.text
        self._cache: dict[str, torch.Tensor] = {}

    def tokens(self, prompt: str) -> torch.Tensor:
        if prompt not in self._cache:
            self._cache[prompt] = self.encoder([prompt])
        return self._cache[prompt]


class StreamGenerator:
    """One stream (batch 1). `start(reference)` then `chunk(k, audio, text)` for k = 0, 1, ...

    Chunk k covers stream latent frames [k*C, (k+1)*C), i.e. video frames [k*F, (k+1)*F).
    Noise for chunk k comes from a generator seeded by (seed, k): a seeded render is
    reproducible and chunk k never depends on how many chunks follow it.
    """

    def __init__(self, model: FlowActModel, seed: int = 0):
        self.model = model
        p = self.preset = model.preset
        prm = next(model.dit.parameters())
        self.device, self.dtype = prm.device, prm.dtype
        self.seed = seed
        self.bank = self.new_bank()
        self.dit = model.dit  # runs the passes (a sequence-parallel stream runs them sharded: seqpar.py)
        self.sampler = EulerSampler(p.sampler_timesteps(), 1, self.device)
        self.C, self.T = p.stream.chunk_latents, p.tokens_per_latent
        self.latent_shape = (1, p.vae.latent_channels, self.C, *p.latent_hw)
        self.t_memory = torch.full((1,), p.stream.memory_noise, device=self.device)
        self.t_zero = torch.zeros(1, device=self.device)
        # RoPE of the chunk's tokens [video | audio | text] at the chunk's fixed slot times
        layout = TokenLayout.of(p)
        self.cos, self.sin = layout.tables(layout.chunk(layout.chunk_time), self.device)
        self.ref_cos, self.ref_sin = layout.tables(layout.frame(layout.reference_time), self.device)
        self.decoder_state = DecoderState()
        self.reference_latent: torch.Tensor | None = None
        self._pending: tuple | None = None  # a chunk's memory pass left for later (`chunk(defer_memory=True)`)
        self._primed: Future | None = None  # the decoder's priming, run aside (`start(prime_aside=True)`)

    def new_bank(self) -> MemoryBank:
        """The stream's memory bank, all heads (a sequence-parallel rank's holds its share)."""
        return MemoryBank.of(self.preset, 1, self.device, self.dtype)

    @torch.no_grad()
    def start(self, reference: np.ndarray, prime_aside: bool = False) -> torch.Tensor:
        """Encode the reference (uint8 (H, W, 3) at the preset size), fill the bank's
        reference region, prime the streaming decoder with it. Returns its latent. `prime_aside`: the
        priming (a decode of the reference, as long as a third of a chunk's) runs in a thread of its own
        while the caller goes on to generate chunk 0; `decode` and `draw_plan` wait for it."""
        self.bank.reset()
        self._pending = None
        self.primed()  # a stream started before: its priming is over before its state is dropped
        self.decoder_state = DecoderState()
        ref = from_pixels(reference, self.device, self.dtype)
        z = self.model.vae.encode(ref)
        self.dit(
            z,
            self.t_zero,
            None,
            None,
            self.bank.view(),
            self.ref_cos,
            self.ref_sin,
            write=self.bank.reference_write(),
            video_stream="reference",
        )
        self.bank.mark_reference()
        # the reference is the causal VAE's "first frame alone": decoding it primes the
        # decoder's cache so chunk 0 decodes to exactly 4 frames per latent frame
        if prime_aside:
            pool = ThreadPoolExecutor(1, thread_name_prefix="flowact-prime")
            self._primed = pool.submit(self._prime, z, ref, self.decoder_state)
            pool.shutdown(wait=False)  # its one job goes on; the thread ends with it
        else:
            self._prime(z, ref, self.decoder_state)
        self.reference_latent = z
        return z

    @torch.no_grad()  # (grad mode is per thread)
    def _prime(self, z: torch.Tensor, ref: torch.Tensor, state: DecoderState) -> None:
        self.model.vae.decode(z, state, reference=ref)

    def primed(self) -> None:
        """Once the decoder is primed (at once unless `start(prime_aside=True)`); raises what the priming raised."""
        if self._primed is not None:
            self._primed.result()

    def noise(self, index: int) -> torch.Tensor:
        g = torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + index)
        return torch.randn(self.latent_shape, generator=g, device=self.device, dtype=torch.float32)

    @torch.no_grad()
    def chunk(
        self,
        index: int,
        audio: torch.Tensor,
        text: torch.Tensor,
        motion: torch.Tensor | None = None,
        defer_memory: bool = False,
    ):
        """Denoise chunk `index` (audio: (1, C*tokens_per_latent, width), text: (1, tokens, width),
        motion: (1, chunk frames, model.motion_inject) or None), then write it into memory. Returns
        clean latents (1, zc, C, h, w) float32. `defer_memory`: its memory pass (about a third of a
        chunk's transformer time at 1 step) runs when the next chunk starts (or `flush_memory`), so
        the latents can be decoded first: the same passes in the same order on the bank, bit for bit."""
        self.flush_memory()
        bank = self.bank.view()
        dit = self.dit

        def velocity(x, t):
            return dit(x, t, audio, text, bank, self.cos, self.sin, motion=motion)

        noise = self.noise(index)
        x0 = self.sampler.sample(velocity, noise)
        if defer_memory:  # its own copy: the caller's latents may be decoded meanwhile on another thread
            self._pending = (index, x0.clone(), audio, text, noise, motion)
        else:
            self.remember(index, x0, audio, text, noise, motion)
        return x0

    def flush_memory(self) -> None:
        """The memory pass a chunk deferred, now (before anything reads the bank); nothing if none."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self.remember(*pending)

    @torch.no_grad()
    def remember(
        self,
        index: int,
        x0: torch.Tensor,
        audio: torch.Tensor,
        text: torch.Tensor,
        noise: torch.Tensor | None = None,
        motion: torch.Tensor | None = None,
    ) -> None:
        """The memory pass: chunk `index`'s clean latents (generated, or given: teacher
        forcing in training) write their K/V into the bank, which then commits them.
        With `stream.memory_noise` > 0 they are lightly re-noised first (a preset knob)."""
        tm = self.preset.stream.memory_noise
        mem_in = interpolate(x0, self.noise(index) if noise is None else noise, tm) if tm else x0
        bank = self.bank.view()
        self.dit(
            mem_in, self.t_memory, audio, text, bank, self.cos, self.sin, write=self.bank.chunk_write(), motion=motion
        )
        self.bank.commit(index * self.C)

    @staticmethod
    def split_latents(
        latents: torch.Tensor, mel_windows: torch.Tensor | None = None, motion: torch.Tensor | None = None
    ):
        """A chunk's latents (1, zc, C, h, w), mel windows (1, C, window, bins) and motion (1, frames, D)
        as C one-latent-frame pieces: `decode` streams exactly, so decoding them in turn gives the
        same frames as decoding the chunk at once, and the first ones sooner."""
        n = latents.shape[2]
        per = None if motion is None else motion.shape[1] // n
        return [
            (
                latents[:, :, i : i + 1],
                None if mel_windows is None else mel_windows[:, i : i + 1],
                None if motion is None else motion[:, i * per : (i + 1) * per],
            )
            for i in range(n)
        ]

    @torch.no_grad()
    def draw_plan(self, motion: torch.Tensor) -> DrawPlan:
        """What a chunk's motion (1, frames, D) says its decode draws beside the latents (the arms cut and moved,
        the mouth's layers: model/vae.py `Decoder.plan`), worked out on the caller's thread from the motion and
        the stream's reference alone, so that `decode(..., plan=)` only lays it over the frames."""
        self.primed()
        return self.model.vae.decoder.plan(self.decoder_state, motion.to(self.device), self.dtype)

    @torch.no_grad()
    def decode(
        self,
        latents: torch.Tensor,
        mel_windows: torch.Tensor | None = None,
        motion: torch.Tensor | None = None,
        plan: DrawPlan | None = None,
    ) -> np.ndarray:
        """Streaming decode of consecutive chunks -> uint8 (frames, H, W, 3). A decoder that reads
        motion (preset vae.motion) draws each frame as its motion (1, frames, D) says (None: the
        reference's pose); `plan`: `draw_plan(motion)`, worked out before (None: here). A model with a
        lip refiner (preset `lips`) then redraws the mouth from the chunk's mel windows (1, C, window,
        bins): what the audio track's `chunk()` gave beside the chunk's tokens."""
        self.primed()
        video = self.model.vae.decode(latents.to(self.dtype), self.decoder_state, motion=motion, plan=plan)
        if self.model.lips is not None:
            if mel_windows is None:
                raise ValueError(
                    "this model has a lip refiner: decode(latents, mel_windows) needs the chunk's mel windows"
                )
            video = self.model.lips(video, mel_windows)
        return to_pixels(video)
