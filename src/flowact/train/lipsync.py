"""The ears' and the lip refiner's objectives: `visemes` trains the lip refiner's ear alone (mel
windows -> the world's five mouth parameters per frame, no frames drawn), `audio` the same for
the transformer's own audio encoder (audio.frame_tokens); `lips` the refiner's drawing net (the
decoded frame with the mouth at rest + the mouth parameters -> the frame as the world drew it)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import FlowactError
from ..model import FlowActModel
from ..model.audio import VISEMES
from .objective import Objective, mouth_weights, to_video, wmean, world_visemes


GATE_POS_WEIGHT = 10.0  # the mouth is 4-8 of 256 cells at 1/8 size: its cells weigh 10 in the gate's loss


class _LipRefinerObjective(Objective):
    @classmethod
    def trainable(cls, model: FlowActModel) -> list[torch.nn.Parameter]:
        """The refiner alone (the ear alone for visemes): it learns on top of a finished model."""
        if model.lips is None:
            raise FlowactError(
                f"the {cls.name} stage trains the lip refiner, and preset '{model.preset.name}' has none "
                "(add a `lips:` section, e.g. `lips: {width: 16}`)"
            )
        return [prm for n, prm in model.lips.named_parameters() if cls.name == "lips" or n.startswith("ear_")]


class _EarObjective(Objective):
    """An ear alone on the world's audio: the chunk's mel windows -> each frame's mouth parameters,
    against the world's (squared error). No frames are drawn, so a step costs ~1/40 of a lips step
    and the ear hears many more voices. "r2": 1 - error / the batch's variance (0: no better than
    the mean mouth). Subclasses say which ear (`predict`)."""

    def frames_needed(self, step_rng: np.random.Generator) -> int:
        return 8 * self.preset.vae.temporal * self.preset.stream.chunk_latents

    def predict(self, windows: torch.Tensor, frames: int) -> torch.Tensor:
        """(b * frames, 5) mouth parameters in [0, 1] from windows (b, latents, window, bins)."""
        raise NotImplementedError

    def loss(self, samples, g):
        if any(s.visemes is None for s in samples):
            raise FlowactError(f"the {self.name} stage needs the world's mouth parameters: use --data synth")
        T = len(samples[0].visemes)
        wins = self.audio_windows(samples, T // self.preset.vae.temporal)
        gt = world_visemes(samples, wins.device)
        loss = F.mse_loss(self.predict(wins, T).float(), gt)
        return loss, {"r2": float(1 - loss.detach() / gt.var(dim=0).mean().clamp_min(1e-8))}


class VisemesObjective(_EarObjective, _LipRefinerObjective):
    """The lip refiner's ear alone."""

    name = "visemes"

    def predict(self, windows, frames):
        return self.model.lips.visemes(windows, frames)


class AudioObjective(_EarObjective):
    """The transformer's audio encoder (audio.frame_tokens) alone, as the visemes stage teaches the
    lip refiner's ear: its tokens then carry the mouth before the transformer learns to read them."""

    name = "audio"

    @staticmethod
    def trainable(model: FlowActModel) -> list[torch.nn.Parameter]:
        """The transformer's audio encoder alone."""
        if not model.preset.audio.frame_tokens:
            raise FlowactError(
                f"the audio stage pre-trains a frame-token audio encoder, and preset '{model.preset.name}' "
                "has none (audio.frame_tokens: true)"
            )
        return list(model.audio.parameters())

    def predict(self, windows, frames):
        return self.model.audio(windows, with_visemes=True)[1].reshape(-1, VISEMES)


class LipsObjective(_LipRefinerObjective):
    name = "lips"

    def frames_needed(self, step_rng: np.random.Generator) -> int:
        return self.preset.vae.temporal * self.preset.stream.chunk_latents

    def loss(self, samples, g):
        """The lip refiner learns to redraw the mouth from the audio alone: its input is the
        clip decoded through the (frozen) VAE with the mouth at rest, plus a random share (up to
        lips_leak) of the real mouth's decoding, as a transformer's weak mouth would give; the
        target is the frame as the world drew it inside the open mouth (dilated by 2 px) and the
        input itself everywhere else: the refiner redraws the mouth and leaves the rest alone.
        (With the whole drawn frame as the target, sharpening the VAE's blur everywhere was most
        of the loss, and the mouth did not learn in 100 steps.) The refiner's ear learns the
        world's mouth parameters (squared error, added to the loss), and the drawing half is given
        the world's own parameters for a random half of the samples. The drawing's loss is squared
        error, the mouth weighted 1 + mouth_weight (default 20). (Not L1: without the audio, L1's
        best answer is the median mouth, which is the closed one the input already shows, and 100 steps of L1 stayed at
        exactly the identity; the mean, which squared error seeks, opens the mouth by how likely
        it is open, so the audio's gradient is there from the first step.)

        The mouth map (the refiner's gate) learns where the mouth is, open or closed, from the
        world's mouth place on the 1/8 grid: binary cross-entropy, the mouth's few cells weighted
        up (GATE_POS_WEIGHT). When the map trains (not left out by --only), the stage turns it on in
        the weights it saves (gate_on)."""
        if any(s.closed is None or s.mouth is None or s.visemes is None or s.place is None for s in samples):
            raise FlowactError("the lips stage needs the world's closed-mouth frames: use --data synth")
        m = self.model
        dev = next(m.lips.parameters()).device
        x = to_video(samples, dev)
        closed = to_video([dataclasses.replace(s, frames=s.closed) for s in samples], dev)
        b, T = x.shape[0], x.shape[2] - 1
        with torch.no_grad():
            vae, ref = m.vae, x[:, :, 0]
            dec_closed = vae.decoder(vae.encoder(closed)[0], reference=ref)[:, :, 1:].float()
            dec_real = vae.decoder(vae.encoder(x)[0], reference=ref)[:, :, 1:].float()
            leak = self.ranks.rand((b,), g, dev) * self.s.lips_leak
            inp = dec_closed + leak.view(b, 1, 1, 1, 1) * (dec_real - dec_closed)
            wins = self.audio_windows(samples, T // self.preset.vae.temporal)
        gt = world_visemes(samples, dev)
        pred = m.lips.visemes(wins, T).float()
        forced = (self.ranks.rand((b,), g, dev) < 0.5).repeat_interleave(T)[:, None]
        if m.lips.gate[0].weight.requires_grad:  # the map trains here: it is on in what the stage saves
            m.lips.gate_on.fill_(1.0)
        out, logits = m.lips(inp, wins, visemes=torch.where(forced, gt, pred), gate_logits=True)
        out = out.float()
        mouth = mouth_weights(samples, x)[:, :, 1:]
        target = inp + mouth * (x[:, :, 1:] - inp)
        w = 1 + (self.s.mouth_weight or 20.0) * mouth
        vis = F.mse_loss(pred, gt)
        place = torch.from_numpy(np.stack([s.place for s in samples])).to(dev)[:, None]  # (b, 1, H, W)
        cells = F.adaptive_max_pool2d(place, logits.shape[-2:]).repeat_interleave(T, dim=0)  # (b*T, 1, h, w)
        gate = F.binary_cross_entropy_with_logits(
            logits.float(), cells, pos_weight=torch.tensor(GATE_POS_WEIGHT, device=dev)
        )
        loss = wmean((out - target).pow(2), w, self.ranks) + vis + gate
        with torch.no_grad():
            on_mouth = mouth.sum().clamp_min(1) * 3
            logs = {
                "mouth_l1": float(((out - target).abs() * mouth).sum() / on_mouth),
                "mouth_l1_input": float(((inp - target).abs() * mouth).sum() / on_mouth),
                "l1": float((out - target).abs().mean()),
                "viseme_mse": float(vis),
                "viseme_var": float(gt.var(dim=0).mean()),
                "gate_bce": float(gate),
                "gate_in": float((torch.sigmoid(logits.float()) * cells).sum() / cells.sum().clamp_min(1)),
                "gate_out": float((torch.sigmoid(logits.float()) * (1 - cells)).sum() / (1 - cells).sum().clamp_min(1)),
            }
        return loss, logs
