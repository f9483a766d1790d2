"""The transformer's objectives, over a shared base that rolls the stream out and weighs the mouth:

- pretrain: chunkwise diffusion forcing: every chunk of a clip gets its own noise level
  (context chunks clean with some probability), one pass over the whole clip with the
  group-causal mask of `MMDiT.forward_train`; audio and text dropped out for guidance;
- memory: teacher-forced denoising through the real memory bank: the clip's clean chunks are
  written by the stream's own memory passes (no grad), so the chunk being learnt sees exactly
  the slots and positions the bank gives it at inference, every layout the long-term stride
  makes (`TokenLayout.memory_cycle`), not the consecutive frames of pretrain's one pass;
- selfforce: the model rolls itself out chunk by chunk through the real inference path
  (memory bank and all, no grad), then learns to denoise the clip's true next chunk on top
  of its own context, through the same inference pass (grad through that pass only);
- distill: the student (initialised from the teacher) learns to jump between the preset's
  few timesteps where the guided many-step teacher's trajectory goes (trajectory
  regression), on teacher-forced memory.
"""

from __future__ import annotations


import numpy as np
import torch
import torch.nn.functional as F

from ..model import FlowActModel
from ..stream.generator import AudioTrack, StreamGenerator, TextTrack
from ..stream.sampler import interpolate, velocity_target
from ..errors import FlowactError
from .objective import Objective, decoded_mouth_l1, latent_mouth, no_prompts, shifted, world_visemes
from .sample import Sample


class TransformerObjective(Objective):
    """Shared by the stages that train the MMDiT through the stream: chunk counts, the
    mouth-weighted chunk loss, and a generator whose bank holds the clip's first chunks."""

    def chunks(self, rng: np.random.Generator) -> int:
        # selfforce / distill: at least one context chunk, and every bank layout a stream makes
        return int(rng.integers(2, self.layout.memory_cycle() + 2))

    def frames_needed(self, step_rng: np.random.Generator) -> int:
        return self.chunks(step_rng) * self.preset.stream.chunk_latents * self.preset.vae.temporal

    def chunk_mse(
        self, v: torch.Tensor, target: torch.Tensor, sample: Sample, z: torch.Tensor, chunk: int
    ) -> torch.Tensor:
        """MSE of one chunk's velocity (1, c, C, h, w); with --mouth-weight, its open-mouth
        latent cells weigh 1 + W (the clip's latents z give the grid, reference frame first)."""
        if self.s.mouth_weight <= 0:
            return F.mse_loss(v, target)
        C = self.preset.stream.chunk_latents
        m = latent_mouth([sample], z[:1, :, 1:])[:, :, chunk * C : (chunk + 1) * C]
        w = 1 + self.s.mouth_weight * m
        return ((v - target).pow(2) * w).mean() / w.mean()

    def pixel_mean(self, l1: torch.Tensor, has: torch.Tensor) -> torch.Tensor:
        """The mean of `decoded_mouth_l1`'s per-sample L1 over the samples (of the global batch)
        whose window has a mouth region."""
        return (l1 * has).sum() / self.ranks.mean(has.sum()).clamp_min(1)

    def chunk_motion(self, sample: Sample, chunk: int) -> torch.Tensor | None:
        """(1, chunk frames, model.motion_inject): the world's motion of one chunk's frames, or None."""
        m = self.motion([sample])
        per = self.preset.frames_per_chunk
        return None if m is None else m[:, chunk * per : (chunk + 1) * per]

    def rollout_bank(
        self, model: FlowActModel, sample: Sample, context: int, gt: torch.Tensor | None, seed: int, made=None
    ):
        """A generator whose bank holds `context` chunks: self-generated (gt None; each chunk's clean
        latents appended to `made` when given) or the given clean latents (teacher forcing). Returns
        (generator, audio tokens fn, text tokens fn)."""
        gen = StreamGenerator(model, seed)
        dev = gen.device
        atrack, ttrack = AudioTrack(model, sample.stream_audio(), dev), TextTrack(model)
        per = self.preset.frames_per_chunk
        gen.start(sample.reference)
        C = self.preset.stream.chunk_latents
        with torch.no_grad():
            for j in range(context):
                a, tx = atrack.tokens(j * C, C), ttrack.tokens(sample.prompts[j * per])
                m = self.chunk_motion(sample, j)
                if gt is None:
                    z = gen.chunk(j, a, tx, m)
                    if made is not None:
                        made.append(z)
                else:
                    gen.remember(j, gt[:, :, j * C : (j + 1) * C], a, tx, motion=m)
        return gen, atrack, ttrack

    def own_rollout(self, sample: Sample, context: int, seed: int, made=None):
        """`rollout_bank` of the model being trained on its own chunks, sampled as inference samples them (eval)."""
        self.model.eval()
        try:
            return self.rollout_bank(self.model, sample, context, None, seed, made)
        finally:
            self.model.train()


class PretrainObjective(TransformerObjective):
    name = "pretrain"

    def chunks(self, rng: np.random.Generator) -> int:
        st = self.preset.stream
        most = (st.long_term + 2 * st.chunk_latents) // st.chunk_latents
        return int(rng.integers(1, most + 1))  # 1 chunk = stream start (no history) ... a full bank's worth

    def loss(self, samples, g):
        p, dit = self.preset, self.model.dit
        C = p.stream.chunk_latents
        z = self.latents(samples)
        ref, x0 = z[:, :, :1], z[:, :, 1:]
        b, n = x0.shape[0], x0.shape[2]
        chunks = n // C
        dev = x0.device
        u = torch.sigmoid(self.ranks.randn((b, chunks), g, dev))  # logit-normal
        t = shifted(u, p.sampler.shift)
        clean = self.ranks.rand((b, chunks), g, dev) < self.s.p_clean_context
        clean[:, -1] = False  # the last chunk always carries a loss
        t = torch.where(clean, torch.zeros_like(t), t)
        noise = self.ranks.randn(x0.shape, g, dev)
        t_frames = t.repeat_interleave(C, dim=1)  # (b, n)
        tf = t_frames[:, None, :, None, None]
        xt = (1 - tf) * x0 + tf * noise  # each chunk at its own noise level
        logs = {}
        if self.s.viseme_weight > 0:
            if any(s.visemes is None for s in samples):
                raise FlowactError(
                    "--viseme-weight needs the world's mouth parameters: a latent cache built with --labels"
                )
            audio, vis = self.model.audio(self.audio_windows(samples, n), with_visemes=True)
            vis_mse = F.mse_loss(vis.float(), world_visemes(samples, dev).view_as(vis))  # plain mean: ranks average it
            logs["viseme_mse"] = float(vis_mse.detach())
        else:
            audio = self.audio_tokens(samples, n)
        drop_a = self.ranks.rand((b,), g, dev) < self.s.p_drop_audio
        audio = torch.where(drop_a[:, None, None], torch.zeros_like(audio), audio)
        kept = [
            s if not bool(d) else no_prompts(s)
            for s, d in zip(samples, self.ranks.rand((b,), g, dev) < self.s.p_drop_text)
        ]
        text = self.text_tokens(kept, chunks)
        v = dit.forward_train(ref, xt, t, audio, text, self.layout, self.motion(samples))
        sq = (v - velocity_target(x0, noise)).pow(2)  # (b, c, n, h, w)
        if self.s.mouth_weight > 0:
            m = latent_mouth(samples, x0)
            wm = 1 + self.s.mouth_weight * m
            err = (sq * wm).mean(dim=(1, 3, 4)) / wm.mean(dim=(1, 3, 4))  # (b, n), weighted per latent frame
            logs["mse_mouth"] = float((sq.detach() * m).sum() / (m.sum() * sq.shape[1]).clamp_min(1))
        else:
            err = sq.mean(dim=(1, 3, 4))  # (b, n)
        w = (t_frames > 0).float()
        loss = (err * w).sum() / self.ranks.mean(w.sum())  # over ranks: the global batch's noisy frames
        if self.s.viseme_weight > 0 or self.s.pixel_weight > 0:
            logs["mse"] = float(loss.detach())
        if self.s.viseme_weight > 0:
            loss = loss + self.s.viseme_weight * vis_mse
        if self.s.pixel_weight > 0:  # the last chunk (always noisy), decoded from the predicted clean latents
            tl = t[:, -1].view(b, 1, 1, 1, 1).to(v.dtype)
            x0_hat = xt[:, :, -C:] - tl * v[:, :, -C:]
            pix = self.pixel_mean(*decoded_mouth_l1(self.model, samples, z, x0_hat, n - C))
            logs["pixel_l1"] = float(pix.detach())
            loss = loss + self.s.pixel_weight * pix
        return loss, {"chunks": chunks, "mse_last": float(sq[:, :, -C:].detach().mean()), **logs}


class MemoryObjective(TransformerObjective):
    """Teacher-forced diffusion through the stream's memory bank. The chunk index j is drawn
    uniformly below `TokenLayout.memory_cycle()` (toon-128: 0..9), so every bank layout inference
    ever produces is trained, among them the long-term slots at stride gaps that pretrain's
    consecutive windows never show ([8, 12, 16, 20] + [22, 23] at chunk 12 shows the same offsets
    as chunk 10's). Chunks 0..j-1 are written clean by `StreamGenerator.remember` (no grad), chunk
    j is noised (logit-normal, shifted) and its velocity is learnt through the inference pass,
    mouth-weighted; with --viseme-weight the audio encoder's mouth-parameter error is kept in the
    loss (a cache built with --labels). Audio and text are dropped for guidance as in pretrain."""

    name = "memory"

    def chunks(self, rng: np.random.Generator) -> int:
        return int(rng.integers(1, self.layout.memory_cycle() + 1))  # chunk j = chunks - 1

    def loss(self, samples, g):
        p, C = self.preset, self.preset.stream.chunk_latents
        z = self.latents(samples)
        n_chunks = (z.shape[2] - 1) // C
        j = n_chunks - 1

        def draw():  # one sample's noise level, noise and dropouts, in this order
            u = torch.randn(1, generator=g, device=z.device)
            noise = torch.randn((1, z.shape[1], C, *z.shape[3:]), generator=g, device=z.device)
            return u, noise, torch.rand(2, generator=g, device=z.device)

        losses, vis_err, pix_err = [], [], []
        enc = self.model.audio
        for i, (s, (u, noise, drop)) in enumerate(zip(samples, self.ranks.per_sample(len(samples), draw))):
            gt = z[i : i + 1, :, 1:]
            gen, atrack, ttrack = self.rollout_bank(self.model, s, j, gt, 0)
            x0 = gt[:, :, j * C : (j + 1) * C]
            t = shifted(torch.sigmoid(u), p.sampler.shift)
            win = enc.windows(atrack.mel, j * C, C)[None]
            if self.s.viseme_weight > 0:
                if s.visemes is None:
                    raise FlowactError(
                        "--viseme-weight needs the world's mouth parameters: a latent cache built with --labels"
                    )
                a, vis = enc(win, with_visemes=True)
                per = p.frames_per_chunk
                target = torch.from_numpy(s.visemes[j * per : (j + 1) * per]).to(vis.device)
                vis_err.append(F.mse_loss(vis.float()[0], target))
            else:
                a = enc(win)
            if bool(drop[0] < self.s.p_drop_audio):
                a = torch.zeros_like(a)
            prompt = "" if bool(drop[1] < self.s.p_drop_text) else s.prompts[j * p.frames_per_chunk]
            xt = interpolate(x0, noise, t)
            m = self.chunk_motion(s, j)
            v = self.model.dit(xt, t, a, ttrack.tokens(prompt), gen.bank.view(), gen.cos, gen.sin, motion=m)
            losses.append(self.chunk_mse(v, velocity_target(x0, noise), s, z[i : i + 1], j))
            if self.s.pixel_weight > 0:  # the chunk's mouth, decoded from the predicted clean latents
                x0_hat = xt - t.view(1, 1, 1, 1, 1).to(v.dtype) * v
                pix_err.append(decoded_mouth_l1(self.model, [s], z[i : i + 1], x0_hat, j * C))
        loss = torch.stack(losses).mean()
        logs = {"chunk": j}
        if pix_err:
            pix = self.pixel_mean(torch.cat([e for e, _ in pix_err]), torch.cat([h for _, h in pix_err]))
            logs |= {"mse": float(loss.detach()), "pixel_l1": float(pix.detach())}
            loss = loss + self.s.pixel_weight * pix
        if vis_err:
            vis_mse = torch.stack(vis_err).mean()
            logs |= {"mse": float(loss.detach()), "viseme_mse": float(vis_mse.detach())}
            loss = loss + self.s.viseme_weight * vis_mse
        return loss, logs


class SelfForceObjective(TransformerObjective):
    name = "selfforce"

    def loss(self, samples, g):
        p, C = self.preset, self.preset.stream.chunk_latents
        z = self.latents(samples)
        n_chunks = (z.shape[2] - 1) // C  # z holds the reference frame, then the clip
        j = n_chunks - 1

        def draw():  # one sample's rollout seed, noise level and noise, in this order
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
            u = torch.randn(1, generator=g, device=z.device)
            return seed, u, torch.randn((1, z.shape[1], C, *z.shape[3:]), generator=g, device=z.device)

        losses = []
        for i, (s, (seed, u, noise)) in enumerate(zip(samples, self.ranks.per_sample(len(samples), draw))):
            gen, atrack, ttrack = self.own_rollout(s, n_chunks - 1, seed)
            x0 = z[i : i + 1, :, 1 + j * C : 1 + (j + 1) * C]
            t = shifted(torch.sigmoid(u), p.sampler.shift)
            a = atrack.tokens(j * C, C)
            tx = ttrack.tokens(s.prompts[j * p.frames_per_chunk])
            m = self.chunk_motion(s, j)
            v = self.model.dit(interpolate(x0, noise, t), t, a, tx, gen.bank.view(), gen.cos, gen.sin, motion=m)
            losses.append(self.chunk_mse(v, velocity_target(x0, noise), s, z, j))
        return torch.stack(losses).mean(), {"context_chunks": n_chunks - 1}


class DistillObjective(TransformerObjective):
    name = "distill"
    copies_teacher = True

    def loss(self, samples, g):
        p, C = self.preset, self.preset.stream.chunk_latents
        ts = p.sampler_timesteps()
        z = self.latents(samples)

        def draw():  # one sample's start noise (and, rolling itself out, its rollout's seed), in this order
            x = torch.randn(1, z.shape[1], C, *z.shape[3:], generator=g, device=z.device)
            return x, (int(torch.randint(0, 2**31 - 1, (1,), generator=g)) if self.s.self_context else 0)

        losses = []
        for i, (s, (x, seed)) in enumerate(zip(samples, self.ranks.per_sample(len(samples), draw))):
            n_chunks = (z.shape[2] - 1) // C
            gt = z[i : i + 1, :, 1:]
            j = n_chunks - 1
            if self.s.self_context:  # the student's own context, as inference makes it; the teacher is shown it
                made: list[torch.Tensor] = []
                student, satrack, sttrack = self.own_rollout(s, j, seed, made)
                gt = torch.cat(made, dim=2) if made else gt[:, :, :0]
            else:
                student, satrack, sttrack = self.rollout_bank(self.model, s, j, gt, 0)
            teacher, tatrack, tttrack = self.rollout_bank(self.teacher, s, j, gt, 0)
            prompt = s.prompts[j * p.frames_per_chunk]
            ta, tt = tatrack.tokens(j * C, C), tttrack.tokens(prompt)
            null_a = torch.zeros_like(ta)
            null_t = tt if self.s.guide_on == "audio" else tttrack.tokens("")
            bank = teacher.bank.view()
            m = self.chunk_motion(s, j)  # given to every pass: guidance is on the speech and the prompt

            def teacher_v(x, t):
                tvec = torch.full((1,), t, device=x.device)
                vc = self.teacher.dit(x, tvec, ta, tt, bank, teacher.cos, teacher.sin, motion=m)
                if self.s.guidance == 1.0 or t > self.s.guide_below:
                    return vc
                vu = self.teacher.dit(x, tvec, null_a, null_t, bank, teacher.cos, teacher.sin, motion=m)
                return vu + self.s.guidance * (vc - vu)

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
                tk = torch.full((1,), a_t, device=x.device)
                v = self.model.dit(states[k], tk, sa, stx, sbank, student.cos, student.sin, motion=m)
                target_v = (states[k + 1] - states[k]) / (b_t - a_t)  # the velocity that lands on the teacher
                losses.append(self.chunk_mse(v, target_v, s, z, j))
        return torch.stack(losses).mean(), {"student_steps": len(ts) - 1}
