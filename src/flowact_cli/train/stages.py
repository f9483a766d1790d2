"""The seven training stages (`STAGES`), each a loss over one batch of training clips.

- vae: reconstruction (L1 + image-gradient L1) + a small KL, on [reference | 4n frames];
- decoder: the same loss with the encoder frozen: sharpens decoding while keeping the latent
  space that a latent cache and the transformer were built on;
- pretrain: chunkwise diffusion forcing: every chunk of a clip gets its own noise level
  (context chunks clean with some probability), one pass over the whole clip with the
  group-causal mask of `MMDiT.forward_train`; audio and text dropped out for guidance;
- selfforce: the model rolls itself out chunk by chunk through the real inference path
  (memory bank and all, no grad), then learns to denoise the clip's true next chunk on top
  of its own context, through the same inference pass (grad through that pass only);
- distill: the student (initialised from the teacher) learns to jump between the preset's
  few timesteps where the guided many-step teacher's trajectory goes (trajectory
  regression), on teacher-forced memory;
- visemes: the lip refiner's ear alone: the chunk's mel windows -> the world's five mouth
  parameters per frame (audio only, no frames drawn);
- lips: the lip refiner's drawing net: the decoded frame with the mouth at rest + the mouth
  parameters -> the frame as the world drew it (model/lips.py).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..config import Preset
from ..errors import FlowactError
from ..model import FlowActModel
from ..model.layout import TokenLayout
from ..stream.generator import StreamGenerator
from ..stream.sampler import interpolate, velocity_target
from .sample import Sample

STAGES = ("vae", "decoder", "pretrain", "selfforce", "distill", "visemes", "lips")


@dataclass(frozen=True)
class StageSettings:
    p_clean_context: float = 0.3  # pretrain: a context chunk is clean with this probability
    p_drop_audio: float = 0.1
    p_drop_text: float = 0.1
    kl_weight: float = 1e-4
    motion_weight: float = 0.0  # vae/decoder: extra reconstruction weight on pixels that differ from the reference
    mouth_weight: float = 0.0  # extra loss weight on the open mouth (synthetic world's masks): pixels for
    # vae/decoder, latent cells for pretrain/selfforce/distill
    teacher_steps: int = 16  # distill: teacher Euler steps per chunk, split evenly over the student's steps (16 -> 15 on 3 steps, 8 -> 6)
    guidance: float = 2.0  # distill: teacher classifier-free guidance on audio + text
    lips_leak: float = 0.3  # lips: the input's mouth is the closed one plus up to this share of the real one


def trainable(model: FlowActModel, stage: str) -> list[torch.nn.Parameter]:
    if stage == "vae":
        return list(model.vae.parameters())
    if stage == "decoder":  # the encoder (so the latent space) stays frozen: sharpen the decoder only
        return list(model.vae.decoder.parameters())
    if stage in ("lips", "visemes"):  # everything else stays as it is: the refiner learns on top of it
        if model.lips is None:
            raise FlowactError(f"the {stage} stage trains the lip refiner, and preset '{model.preset.name}' has none "
                               "(add a `lips:` section, e.g. `lips: {width: 16}`)")
        return [prm for n, prm in model.lips.named_parameters() if stage == "lips" or n.startswith("ear_")]
    return [p for m in (model.dit, model.audio, model.text) for p in m.parameters()]


def to_video(samples: list[Sample], device) -> torch.Tensor:
    """(batch, 3, 1 + frames, H, W) in [-1, 1]: the reference first (the VAE's first frame alone)."""
    vids = [np.concatenate([s.reference[None], s.frames]) for s in samples]
    x = torch.from_numpy(np.stack(vids)).to(device).float() / 127.5 - 1
    return x.permute(0, 4, 1, 2, 3)


def shifted(u: torch.Tensor, shift: float) -> torch.Tensor:
    return shift * u / (1 + (shift - 1) * u)


class Stage:
    def __init__(self, name: str, model: FlowActModel, preset: Preset, settings: StageSettings = StageSettings(),
                 teacher: FlowActModel | None = None):
        self.name, self.model, self.preset, self.s = name, model, preset, settings
        self.teacher = teacher
        self.layout = TokenLayout.of(preset)
        if name == "distill" and teacher is None:
            self.teacher = copy.deepcopy(model).eval().requires_grad_(False)

    def frames_needed(self, step_rng: np.random.Generator) -> int:
        p = self.preset
        if self.name in ("vae", "decoder"):
            return 2 * p.vae.temporal * p.stream.chunk_latents
        if self.name == "lips":
            return p.vae.temporal * p.stream.chunk_latents
        if self.name == "visemes":
            return 8 * p.vae.temporal * p.stream.chunk_latents
        return self.chunks(step_rng) * p.stream.chunk_latents * p.vae.temporal

    def chunks(self, rng: np.random.Generator) -> int:
        st = self.preset.stream
        most = (st.long_term + 2 * st.chunk_latents) // st.chunk_latents
        if self.name == "pretrain":  # 1 chunk = stream start (no history) ... a full bank's worth
            return int(rng.integers(1, most + 1))
        return int(rng.integers(2, most + 2))  # selfforce / distill: at least one context chunk

    # -- shared conditioning ---------------------------------------------------------------
    def audio_windows(self, samples: list[Sample], latents: int) -> torch.Tensor:
        """(b, latents, window, bins): each latent frame's log-mel window, as the audio encoder reads it."""
        enc = self.model.audio
        dev = next(enc.parameters()).device
        return torch.stack([enc.windows(enc.mel(torch.from_numpy(s.audio).to(dev)), 0, latents) for s in samples])

    def audio_tokens(self, samples: list[Sample], latents: int) -> torch.Tensor:
        return self.model.audio(self.audio_windows(samples, latents))

    def text_tokens(self, samples: list[Sample], chunks: int) -> torch.Tensor:
        per = self.preset.frames_per_chunk
        prompts = [s.prompts[j * per] for s in samples for j in range(chunks)]
        tok = self.model.text(prompts)
        return tok.view(len(samples), chunks, *tok.shape[1:])

    # -- losses ----------------------------------------------------------------------------
    def loss(self, samples: list[Sample], g: torch.Generator) -> tuple[torch.Tensor, dict]:
        return getattr(self, f"_{self.name}")(samples, g)

    def _decoder(self, samples, g):
        return self._vae(samples, g, frozen_encoder=True)

    def _vae(self, samples, g, frozen_encoder: bool = False):
        if any(s.frames is None for s in samples):
            raise FlowactError(f"the {self.name} stage needs video frames, not a latent cache: use --data synth or a clip folder")
        vae = self.model.vae
        x = to_video(samples, next(vae.parameters()).device)
        with torch.set_grad_enabled(not frozen_encoder and torch.is_grad_enabled()):
            mean, logvar = vae.encoder(x)
        z = mean + torch.randn(mean.shape, generator=g, device=mean.device) * (0.5 * logvar).exp()
        rec = vae.decoder(z, reference=x[:, :, 0])
        w = motion_weights(x, self.s.motion_weight)
        if self.s.mouth_weight > 0:
            w = w + self.s.mouth_weight * mouth_weights(samples, x)
        l1 = _wmean((rec - x).abs(), w)
        grad = (_wmean((rec.diff(dim=-1) - x.diff(dim=-1)).abs(), w[..., 1:])
                + _wmean((rec.diff(dim=-2) - x.diff(dim=-2)).abs(), w[..., 1:, :]))
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
        loss = l1 + grad + self.s.kl_weight * kl
        mse = F.mse_loss(rec.detach().clamp(-1, 1), x)
        psnr = float(10 * torch.log10(4.0 / mse.clamp_min(1e-10)))
        return loss, {"l1": float(l1.detach()), "kl": float(kl.detach()), "psnr": psnr}

    def _visemes(self, samples, g):
        """The lip refiner's ear alone: the chunk's mel windows -> each frame's mouth parameters,
        against the world's (squared error). No frames are drawn, so a step costs ~1/40 of a lips
        step and the ear can hear many more voices before the lips stage. "r2": 1 - error / the
        batch's variance (0: no better than the mean mouth)."""
        if any(s.visemes is None for s in samples):
            raise FlowactError("the visemes stage needs the world's mouth parameters: use --data synth")
        T = len(samples[0].visemes)
        wins = self.audio_windows(samples, T // self.preset.vae.temporal)
        gt = _world_visemes(samples, wins.device)
        pred = self.model.lips.visemes(wins, T).float()
        loss = F.mse_loss(pred, gt)
        return loss, {"r2": float(1 - loss.detach() / gt.var(dim=0).mean().clamp_min(1e-8))}

    def _lips(self, samples, g):
        """The lip refiner learns to redraw the mouth from the audio alone: its input is the
        clip decoded through the (frozen) VAE with the mouth at rest, plus a random share (up to
        lips_leak) of the real mouth's decoding, as a transformer's weak mouth would give; the
        target is the frame as the world drew it inside the open mouth (dilated by 2 px) and the
        input itself everywhere else: the refiner redraws the mouth and leaves the rest alone.
        (With the whole drawn frame as the target, sharpening the VAE's blur everywhere was most
        of the loss, and the mouth did not learn in 100 steps.) The refiner's ear learns the
        world's mouth parameters (squared error, added to the loss), and the drawing half is given
        the world's own parameters for a random half of the samples. The drawing's loss is squared
        error, the mouth weighted 1 + mouth_weight (default 20). (Not L1: without the audio, L1's best answer is the median
        mouth, which is the closed one the input already shows, and 100 steps of L1 stayed at
        exactly the identity; the mean, which squared error seeks, opens the mouth by how likely
        it is open, so the audio's gradient is there from the first step.)"""
        if any(s.closed is None or s.mouth is None or s.visemes is None for s in samples):
            raise FlowactError("the lips stage needs the world's closed-mouth frames: use --data synth")
        m = self.model
        dev = next(m.lips.parameters()).device
        x = to_video(samples, dev)
        closed = to_video([Sample(s.reference, s.closed, s.audio, s.prompts) for s in samples], dev)
        b, T = x.shape[0], x.shape[2] - 1
        with torch.no_grad():
            vae, ref = m.vae, x[:, :, 0]
            dec_closed = vae.decoder(vae.encoder(closed)[0], reference=ref)[:, :, 1:].float()
            dec_real = vae.decoder(vae.encoder(x)[0], reference=ref)[:, :, 1:].float()
            leak = torch.rand(b, generator=g, device=dev) * self.s.lips_leak
            inp = dec_closed + leak.view(b, 1, 1, 1, 1) * (dec_real - dec_closed)
            wins = self.audio_windows(samples, T // self.preset.vae.temporal)
        gt = _world_visemes(samples, dev)
        pred = m.lips.visemes(wins, T).float()
        forced = (torch.rand(b, generator=g, device=dev) < 0.5).repeat_interleave(T)[:, None]
        out = m.lips(inp, wins, visemes=torch.where(forced, gt, pred)).float()
        mouth = mouth_weights(samples, x)[:, :, 1:]
        target = inp + mouth * (x[:, :, 1:] - inp)
        w = 1 + (self.s.mouth_weight or 20.0) * mouth
        vis = F.mse_loss(pred, gt)
        loss = _wmean((out - target).pow(2), w) + vis
        with torch.no_grad():
            on_mouth = mouth.sum().clamp_min(1) * 3
            logs = {"mouth_l1": float(((out - target).abs() * mouth).sum() / on_mouth),
                    "mouth_l1_input": float(((inp - target).abs() * mouth).sum() / on_mouth),
                    "l1": float((out - target).abs().mean()), "viseme_mse": float(vis),
                    "viseme_var": float(gt.var(dim=0).mean())}
        return loss, logs

    @torch.no_grad()
    def latents(self, samples) -> torch.Tensor:
        dev = next(self.model.vae.parameters()).device
        if all(s.latents is not None for s in samples):  # a latent cache: the VAE already ran
            return torch.from_numpy(np.stack([s.latents for s in samples])).to(dev)
        x = to_video(samples, dev)
        return self.model.vae.encode(x)

    def _pretrain(self, samples, g):
        p, dit = self.preset, self.model.dit
        C = p.stream.chunk_latents
        z = self.latents(samples)
        ref, x0 = z[:, :, :1], z[:, :, 1:]
        b, n = x0.shape[0], x0.shape[2]
        chunks = n // C
        dev = x0.device
        u = torch.sigmoid(torch.randn(b, chunks, generator=g, device=dev))  # logit-normal
        t = shifted(u, p.sampler.shift)
        clean = torch.rand(b, chunks, generator=g, device=dev) < self.s.p_clean_context
        clean[:, -1] = False  # the last chunk always carries a loss
        t = torch.where(clean, torch.zeros_like(t), t)
        noise = torch.randn(x0.shape, generator=g, device=dev)
        t_frames = t.repeat_interleave(C, dim=1)  # (b, n)
        tf = t_frames[:, None, :, None, None]
        xt = (1 - tf) * x0 + tf * noise  # each chunk at its own noise level
        audio = self.audio_tokens(samples, n)
        drop_a = torch.rand(b, generator=g, device=dev) < self.s.p_drop_audio
        audio = torch.where(drop_a[:, None, None], torch.zeros_like(audio), audio)
        kept = [s if not bool(d) else _no_prompts(s) for s, d in zip(samples, torch.rand(b, generator=g, device=dev) < self.s.p_drop_text)]
        text = self.text_tokens(kept, chunks)
        v = dit.forward_train(ref, xt, t, audio, text, self.layout)
        sq = (v - velocity_target(x0, noise)).pow(2)  # (b, c, n, h, w)
        logs = {}
        if self.s.mouth_weight > 0:
            m = latent_mouth(samples, x0)
            wm = 1 + self.s.mouth_weight * m
            err = (sq * wm).mean(dim=(1, 3, 4)) / wm.mean(dim=(1, 3, 4))  # (b, n), weighted per latent frame
            logs["mse_mouth"] = float((sq.detach() * m).sum() / (m.sum() * sq.shape[1]).clamp_min(1))
        else:
            err = sq.mean(dim=(1, 3, 4))  # (b, n)
        w = (t_frames > 0).float()
        loss = (err * w).sum() / w.sum()
        return loss, {"chunks": chunks, "mse_last": float(sq[:, :, -C:].detach().mean()), **logs}

    def _mse(self, v: torch.Tensor, target: torch.Tensor, sample: Sample, z: torch.Tensor, chunk: int) -> torch.Tensor:
        """MSE of one chunk's velocity (1, c, C, h, w); with --mouth-weight, its open-mouth
        latent cells weigh 1 + W (the clip's latents z give the grid, reference frame first)."""
        if self.s.mouth_weight <= 0:
            return F.mse_loss(v, target)
        C = self.preset.stream.chunk_latents
        m = latent_mouth([sample], z[:1, :, 1:])[:, :, chunk * C:(chunk + 1) * C]
        w = 1 + self.s.mouth_weight * m
        return ((v - target).pow(2) * w).mean() / w.mean()

    def _rollout_bank(self, model: FlowActModel, sample: Sample, context: int,
                      gt: torch.Tensor | None, seed: int):
        """A generator whose bank holds `context` chunks: self-generated (gt None) or the given
        clean latents (teacher forcing). Returns (generator, audio tokens fn, text tokens fn)."""
        from ..stream.generator import AudioTrack, TextTrack

        gen = StreamGenerator(model, seed)
        dev = gen.device
        atrack, ttrack = AudioTrack(model, sample.audio, dev), TextTrack(model)
        per = self.preset.frames_per_chunk
        gen.start(sample.reference)
        C = self.preset.stream.chunk_latents
        with torch.no_grad():
            for j in range(context):
                a, tx = atrack.tokens(j * C, C), ttrack.tokens(sample.prompts[j * per])
                if gt is None:
                    gen.chunk(j, a, tx)
                else:
                    gen.remember(j, gt[:, :, j * C:(j + 1) * C], a, tx)
        return gen, atrack, ttrack

    def _selfforce(self, samples, g):
        p, C = self.preset, self.preset.stream.chunk_latents
        z = self.latents(samples)
        losses = []
        for i, s in enumerate(samples):
            n_chunks = (z.shape[2] - 1) // C  # z holds the reference frame, then the clip
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
            self.model.eval()
            gen, atrack, ttrack = self._rollout_bank(self.model, s, n_chunks - 1, None, seed)
            self.model.train()
            j = n_chunks - 1
            x0 = z[i:i + 1, :, 1 + j * C:1 + (j + 1) * C]
            t = shifted(torch.sigmoid(torch.randn(1, generator=g, device=x0.device)), p.sampler.shift)
            noise = torch.randn(x0.shape, generator=g, device=x0.device)
            a = atrack.tokens(j * C, C)
            tx = ttrack.tokens(s.prompts[j * p.frames_per_chunk])
            v = self.model.dit(interpolate(x0, noise, t), t, a, tx, gen.bank.view(), gen.cos, gen.sin)
            losses.append(self._mse(v, velocity_target(x0, noise), s, z, j))
        return torch.stack(losses).mean(), {"context_chunks": n_chunks - 1}

    def _distill(self, samples, g):
        p, C = self.preset, self.preset.stream.chunk_latents
        ts = p.sampler_timesteps()
        z = self.latents(samples)
        losses = []
        for i, s in enumerate(samples):
            n_chunks = (z.shape[2] - 1) // C
            gt = z[i:i + 1, :, 1:]
            j = n_chunks - 1
            student, satrack, sttrack = self._rollout_bank(self.model, s, j, gt, 0)
            teacher, tatrack, tttrack = self._rollout_bank(self.teacher, s, j, gt, 0)
            prompt = s.prompts[j * p.frames_per_chunk]
            ta, tt = tatrack.tokens(j * C, C), tttrack.tokens(prompt)
            null_a, null_t = torch.zeros_like(ta), tttrack.tokens("")
            bank = teacher.bank.view()

            def teacher_v(x, t):
                tvec = torch.full((1,), t, device=x.device)
                vc = self.teacher.dit(x, tvec, ta, tt, bank, teacher.cos, teacher.sin)
                if self.s.guidance == 1.0:
                    return vc
                vu = self.teacher.dit(x, tvec, null_a, null_t, bank, teacher.cos, teacher.sin)
                return vu + self.s.guidance * (vc - vu)

            x = torch.randn(1, z.shape[1], C, *z.shape[3:], generator=g, device=z.device)
            states = [x]
            with torch.no_grad():  # the teacher's trajectory, finely stepped between student times
                sub = max(1, self.s.teacher_steps // (len(ts) - 1))
                for a_t, b_t in zip(ts, ts[1:]):
                    for k in range(sub):
                        t0 = a_t + (b_t - a_t) * k / sub
                        t1 = a_t + (b_t - a_t) * (k + 1) / sub
                        x = x + (t1 - t0) * teacher_v(x, t0)
                    states.append(x)
            sa, stx = satrack.tokens(j * C, C), sttrack.tokens(prompt)
            sbank = student.bank.view()
            for k, (a_t, b_t) in enumerate(zip(ts, ts[1:])):
                v = self.model.dit(states[k], torch.full((1,), a_t, device=x.device), sa, stx, sbank, student.cos, student.sin)
                target_v = (states[k + 1] - states[k]) / (b_t - a_t)  # the velocity that lands on the teacher
                losses.append(self._mse(v, target_v, s, z, j))
        return torch.stack(losses).mean(), {"student_steps": len(ts) - 1}


def motion_weights(x: torch.Tensor, strength: float) -> torch.Tensor:
    """Per-pixel reconstruction weights (b, 1, T, H, W) for a video (b, 3, T, H, W) whose
    frame 0 is the reference: 1 + strength * m, where m in [0, 1] marks pixels (dilated by
    3 px) that differ from the reference: the mouth, eyes, hands, a turned head. A plain L1
    spends the small VAE's capacity on the large static areas, and the parts that move
    (the ones lip-sync and behaviour are read from) come out as blur. Needs no labels, so it
    works on real video as well."""
    b, _, T, H, W = x.shape
    if strength <= 0:
        return torch.ones(b, 1, T, H, W, device=x.device, dtype=x.dtype)
    with torch.no_grad():
        diff = (x - x[:, :, :1]).abs().mean(dim=1, keepdim=True)  # 0 on the reference frame itself
        m = (diff * 8).clamp(max=1.0)  # a change of 1/8 of the range (in [-1, 1] units) counts fully
        m = F.max_pool3d(m, kernel_size=(1, 7, 7), stride=1, padding=(0, 3, 3))
        return 1 + strength * m


def mouth_weights(samples: list[Sample], x: torch.Tensor) -> torch.Tensor:
    """(b, 1, T, H, W) in [0, 1]: the samples' mouth masks dilated by 2 px, 0 on the reference
    frame (x's frame 0). The open mouth is a few dozen pixels of a 128x128 frame: without its
    own weight a plain L1 barely notices whether the mouth opens at all."""
    if any(s.mouth is None for s in samples):
        raise FlowactError("--mouth-weight needs mouth masks, which only the synthetic world has: use --data synth")
    m = torch.from_numpy(np.stack([s.mouth for s in samples])).to(x.device, x.dtype)[:, None]  # (b, 1, T-1, H, W)
    m = F.max_pool3d(m, kernel_size=(1, 5, 5), stride=1, padding=(0, 2, 2))
    return torch.cat([torch.zeros_like(m[:, :, :1]), m], dim=2)


def latent_mouth(samples: list[Sample], x0: torch.Tensor) -> torch.Tensor:
    """(b, 1, n, h, w) in [0, 1]: the samples' mouth masks on the latent grid of x0 (b, c, n, h,
    w), the clip's latents without the reference frame: latent frame k covers video frames
    [k*T, (k+1)*T). A cell counts when any of its pixels shows the open mouth in any of its
    frames; dilated by one cell, since the head moves and the VAE's receptive field is wider
    than a cell. Without its own weight the mouth is about 2% of the flow-matching loss."""
    if any(s.mouth is None for s in samples):
        raise FlowactError("--mouth-weight needs mouth masks, which only the synthetic world has: use --data synth")
    b, _, n, h, w = x0.shape
    m = torch.from_numpy(np.stack([s.mouth for s in samples])).to(x0.device, torch.float32)  # (b, F, H, W)
    T = m.shape[1] // n
    m = m[:, :n * T].reshape(b, n, T, *m.shape[2:]).amax(dim=2)  # (b, n, H, W)
    m = F.adaptive_max_pool2d(m, (h, w))
    m = F.max_pool2d(m, 3, stride=1, padding=1)
    return m[:, None].to(x0.dtype)


def _world_visemes(samples: list[Sample], device) -> torch.Tensor:
    """(b * frames, 5): the samples' mouth parameters as the world drew them, frame-major per sample."""
    v = torch.from_numpy(np.stack([s.visemes for s in samples])).to(device)
    return v.reshape(-1, v.shape[-1])


def _wmean(err: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Weighted mean of err (b, c, ...) with weights w (b, 1, ...), normalised so that uniform weights give .mean()."""
    return (err * w).sum() / (w.sum() * err.shape[1])


def _no_prompts(s: Sample) -> Sample:
    return Sample(s.reference, s.frames, s.audio, [""] * len(s.prompts))
