"""Causal video VAE: x8 spatial, x4 temporal; the first frame alone, then 4 frames per latent.

Causality: every temporal convolution sees only past frames (it pads with the past, never
the future), so latent frame j depends on video frames <= its own, and decoded frame n on
latents <= its own. Streaming decode threads each causal conv's last input frames through
a `DecoderState`, so decoding chunk by chunk equals decoding the whole latent video at once.

flowact uses the reference image as latent frame 0 (the "first frame alone"), so every
generated latent frame decodes to exactly 4 video frames.

With `ref_decoder` the decoder also sees the reference image itself: a small pyramid of its
features (computed once per stream, kept in the `DecoderState`) is added to the decoder's
activations at every scale, and the output is blended per pixel towards the reference
(`out = rgb + alpha * (reference - rgb)`, alpha predicted per frame). The latent then only
has to carry what changes (mouth, eyes, hands, head), not the character's whole look: a
small decoder no longer spends its capacity redrawing each identity, and the static parts
come out as sharp as the reference. It adds no per-frame cost beyond one add per scale and
a 1-channel output conv, and it reads nothing from the future, so streaming stays exact.

The blend has a cost at the mouth: the reference's mouth is closed, and the trained blend sits
at 0.73-0.88 over the mouth's region even when the mouth opens, so it paints the closed mouth
over what the latents say (docs/experiments.md, "The reference blend hides the mouth"). The
mouth's keep-out (`mouth`, on once trained: `mouth_on`, how far it lifts, 0..1) is a small map of where
the mouth is, from each frame's 1/8 activations, that lifts the blend there. Fully lifted, the lower face
around the mouth is the decoder's own drawing, a blur; toon-128 lifts it half way (docs/motion-video.md).

With `motion` (VAEConfig.motion) the decoder also reads each video frame's motion, the numbers the
video model is conditioned on (world/motion_vector.py video_motion: mouth shape, head, gaze, blink,
brows, body and arms, relative to the reference's pose). A latent frame stands for 4 video frames
and the mouth covers less than one latent cell: the latents say roughly what moved, the motion says
exactly what each frame shows. `MotionTap`s at 1/8, 1/4 and 1/2 size add to a frame's activations
what its motion means at each place (bilinear in the activations' features and the motion), where the
keep-out's map finds the mouth: they draw the mouth, not the arms or the head, which stay the latents'.
Their outputs start at zero, so grown on a decoder without them it draws as before; for the reference's
pose (zeros, or no motion given) they add only their output convs' biases there (trained: a motion-free
change of the mouth's place).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import VAEConfig
from .arms import BESIDE, ArmRig, arm_beside, arm_composite, arm_rest, widen
from .derived import derived
from .mouth import MouthLayers, MouthRig, mouth_plan, paint_mouth
from .upconv import up2_conv


def _frames2d(x: torch.Tensor):
    """(b, c, t, h, w) -> (b*t, c, h, w)"""
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w), b, t


def _frames3d(x: torch.Tensor, b: int, t: int):
    bt, c, h, w = x.shape
    return x.view(b, t, c, h, w).transpose(1, 2)


class CausalConv3d(nn.Module):
    """3x3x3 conv, causal in time. forward(x, past) -> (y, new_past); past: the last 2 input frames.

    It runs as one 2-D conv over each frame with its two past frames stacked on the channels
    (the 3x3x3 kernel refolded to (cout, 3 * cin, 3, 3)): the same sums, but through the
    CPU's fast 2-D conv path. PyTorch's CPU Conv3d with this padding falls to a slow im2col
    kernel (measured: ~2.6x slower than the folded 2-D conv at 64 channels, 32x32, 8 frames).
    """

    def __init__(self, cin: int, cout: int, kernel: int = 3):
        super().__init__()
        self.kt = kernel
        self.conv = nn.Conv3d(cin, cout, kernel, padding=(0, kernel // 2, kernel // 2))

    def folded_weight(self) -> torch.Tensor:
        """(cout, cin, kt, kh, kw) -> (cout, kt * cin, kh, kw), tap-major like `frames`' stack."""
        w = self.conv.weight
        return derived(self, "_folded", (w,), lambda: w.transpose(1, 2).flatten(1, 2).contiguous())

    def frames(self, x: torch.Tensor, b: int, past: torch.Tensor | None = None):
        """Time-major frames: x (b*t, cin, h, w); past (b, kt-1, cin, h, w) or None (stream
        start: the first frame replicated into the past) -> (y (b*t, cout, h, w), new past)."""
        bt, c, h, w = x.shape
        t = bt // b
        x5 = x.view(b, t, c, h, w)
        if past is None:
            past = x5[:, :1].expand(-1, self.kt - 1, -1, -1, -1)
        xx = torch.cat([past, x5], dim=1)  # (b, t + kt - 1, c, h, w)
        taps = torch.cat([xx[:, i : i + t] for i in range(self.kt)], dim=2)  # (b, t, kt * c, h, w)
        y = F.conv2d(
            taps.view(bt, self.kt * c, h, w), self.folded_weight(), self.conv.bias, padding=self.conv.padding[1:]
        )
        return y, xx[:, t:]

    def forward(self, x: torch.Tensor, past: torch.Tensor | None = None):
        """x (b, c, t, h, w); past (b, c, kt-1, h, w) or None -> (y (b, cout, t, h, w), new past)."""
        xf, b, t = _frames2d(x)
        y, new = self.frames(xf, b, None if past is None else past.transpose(1, 2))
        return _frames3d(y, b, t), new.transpose(1, 2)


def frame_norm(norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    """GroupNorm applied to each frame on its own: normalising over time would leak the future."""
    y, b, t = _frames2d(x)
    return _frames3d(norm(y), b, t)


class CausalRes3d(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, ch)
        self.conv1 = CausalConv3d(ch, ch)
        self.norm2 = nn.GroupNorm(8, ch)
        self.conv2 = CausalConv3d(ch, ch)

    def frames(self, x: torch.Tensor, b: int, past: list | None):
        """Time-major frames (b*t, c, h, w) (GroupNorm over a frame is per frame already)."""
        p1, p2 = past if past is not None else (None, None)
        h, n1 = self.conv1.frames(F.silu(self.norm1(x)), b, p1)
        h, n2 = self.conv2.frames(F.silu(self.norm2(h)), b, p2)
        return x + h, [n1, n2]

    def forward(self, x, past: list | None):
        xf, b, t = _frames2d(x)
        if past is not None:
            past = [p.transpose(1, 2) for p in past]
        y, new = self.frames(xf, b, past)
        return _frames3d(y, b, t), [p.transpose(1, 2) for p in new]


class Res2d(nn.Module):
    """Per-frame residual block (no temporal mixing: cheap at high resolution)."""

    def __init__(self, ch: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, ch)
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.norm2 = nn.GroupNorm(8, ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(x))))))


class Encoder(nn.Module):
    """Video (b, 3, 1 + 4n, H, W) in [-1, 1] -> latent mean and logvar (b, zc, 1 + n, H/8, W/8)."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        c0, c1, c2 = cfg.channels
        self.conv_in = nn.Conv2d(3, c2, 3, padding=1)
        self.res_a = Res2d(c2)
        self.down_a = nn.Conv2d(c2, c2, 3, stride=2, padding=1)  # /2
        self.res_b = Res2d(c2)
        self.down_b = nn.Conv2d(c2, c1, 3, stride=2, padding=1)  # /4
        self.res_c = CausalRes3d(c1)
        self.down_c = nn.Conv2d(c1, c0, 3, stride=2, padding=1)  # /8
        self.time_down = nn.Conv3d(4 * c0, c0, 1)
        self.res_d = CausalRes3d(c0)
        self.norm_out = nn.GroupNorm(8, c0)
        self.conv_out = nn.Conv3d(c0, 2 * cfg.latent_channels, 1)

    def forward(self, video: torch.Tensor):
        if (video.shape[2] - 1) % 4:
            raise ValueError(f"encoder needs 1 + 4n frames, got {video.shape[2]}")
        x, b, t = _frames2d(video)
        x = self.down_a(self.res_a(self.conv_in(x)))
        x = self.down_b(self.res_b(x))
        x, _ = self.res_c(_frames3d(x, b, t), None)
        x, b, t = _frames2d(x)
        x = _frames3d(self.down_c(x), b, t)
        # first frame alone: replicate it to a group of 4, then fold time into channels
        x = torch.cat([x[:, :, :1].expand(-1, -1, 3, -1, -1), x], dim=2)
        bb, c, tt, h, w = x.shape
        x = x.view(bb, c, tt // 4, 4, h, w).permute(0, 3, 1, 2, 4, 5).reshape(bb, 4 * c, tt // 4, h, w)
        x, _ = self.res_d(self.time_down(x), None)
        mean, logvar = self.conv_out(F.silu(frame_norm(self.norm_out, x))).chunk(2, dim=1)
        return mean, logvar.clamp(-20, 10)


class MotionTap(nn.Module):
    """A frame's motion (n, d) and activations (n, c, h, w) -> an addition to the activations, bilinear:
    out = W_o (SiLU(W_x norm(x)) * W_m m) + b_o at every position. A place's own features (this is the
    mouth) choose what the motion means there, and apart from the bias b_o the addition is proportional to
    the motion, so from the first step every gradient of W_o is the motion's (a sum inside the SiLU learnt a
    motion-free mean mouth first and the motion not at all, docs/motion-video.md). W_o and b_o start at zero."""

    def __init__(self, ch: int, dim: int, hidden: int):
        super().__init__()
        self.norm = nn.GroupNorm(8, ch)
        self.read = nn.Conv2d(ch, hidden, 1)
        self.motion = nn.Linear(dim, hidden, bias=False)
        nn.init.normal_(self.motion.weight, 0.0, 1.0)  # a motion number's unit swing moves a feature by about 1
        self.out = nn.Conv2d(hidden, ch, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, m: torch.Tensor, where: torch.Tensor | None = None) -> torch.Tensor:
        """m (n, d): the frames' motion; `where` (n, 1, h, w) in [0, 1]: where the addition counts (None:
        everywhere)."""
        h = F.silu(self.read(self.norm(x))) * self.motion(m)[:, :, None, None].to(x.dtype)
        add = self.out(h)
        return x + (add if where is None else add * where.to(x.dtype))


class DecoderState:
    """The causal convs' past frames between streamed calls (one list per causal block),
    and, for a reference-conditioned decoder, the reference's features and pixels."""

    def __init__(self):
        self.conv_in = None
        self.res0 = None
        self.res1 = None
        self.started = False
        self.ref = None  # (injections per scale, reference pixels (b, 3, H, W))
        self.arms = None  # the reference's arms at rest (ArmRig: joints px, pixels per unit); may be set before
        self.arms_hidden = None  # where they are and what they hide (model/arms.py arm_rest), once per stream
        self.mouth_rig = None  # the reference's mouth (MouthRig: centre, unit, shape, colours), once per stream
        self.trail = None  # where a moved arm was in the frames before, fading (Decoder._trail), (b, 1, H, W) or None
        self.head = None  # the box over the head the trail leaves out (b, 1, H, W) bool, once per stream


@dataclass
class DrawPlan:
    """What a chunk's motion says the decoder draws beside its latents, worked out from the motion and the
    stream's rigs alone (`Decoder.plan`): a stream works it out on the generation thread, beside the video
    model, so that the decode thread only lays it over the decoded frames.

    `frames`: how many frames it is for. `arms`: `arm_composite`'s (frames that moved an arm, the arm cut and
    moved, where it is now, where it was, what it hid) or None; `arm_maps`: where an arm is now and was, at
    1/8, 1/4 and 1/2 size, told to the decoder's activations, and `arm_now` where it is now at full size (b*t,
    1, H, W), every frame (zeros: at rest); `beside`: the band beside the moved arm and its old place
    (`arm_beside`); `mouth`: the drawn mouth's layers (model/mouth.py `mouth_plan`) or None."""

    frames: int
    arms: tuple | None = None
    arm_maps: list | None = None
    arm_now: torch.Tensor | None = None
    beside: torch.Tensor | None = None
    mouth: MouthLayers | None = None


class RefPyramid(nn.Module):
    """Reference image (b, 3, H, W) -> additive injections at /8, /4, /2 and full size
    (one per decoder scale). The injection convs start at zero: a decoder trained without
    the reference starts out unchanged."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        c0, c1, c2 = cfg.channels
        self.stem = nn.Conv2d(3, c2, 3, padding=1)
        self.res = Res2d(c2)
        self.down2 = nn.Conv2d(c2, c2, 3, stride=2, padding=1)
        self.down4 = nn.Conv2d(c2, c1, 3, stride=2, padding=1)
        self.down8 = nn.Conv2d(c1, c0, 3, stride=2, padding=1)
        self.inject = nn.ModuleList([nn.Conv2d(c, c, 1) for c in (c0, c1, c2, c2)])
        for conv in self.inject:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, ref: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.res(self.stem(ref))
        f2 = self.down2(F.silu(f1))
        f4 = self.down4(F.silu(f2))
        f8 = self.down8(F.silu(f4))
        return [inj(f) for inj, f in zip(self.inject, (f8, f4, f2, f1))]


class Decoder(nn.Module):
    """Latents (b, zc, n, h, w) -> video (b, 3, 4n, 8h, 8w) in [-1, 1] (the stream's
    first latent, when decoded with a fresh state, yields 1 frame: the first frame alone)."""

    # parameter-name prefixes of the reference branch (`ref_decoder`): what a plain decoder lacks
    REFERENCE_BRANCH = ("ref.", "alpha_out.", "mouth.", "mouth_on")
    MOTION_BRANCH = ("taps.",)  # the motion taps (VAEConfig.motion): grown at zero
    # the arms (VAEConfig.arms): the rig, trained apart (scripts/train_rig.py), and where the arms are and
    # were told to the decoder's activations (grown at zero)
    ARMS_BRANCH = ("arms.", "arms_in.")
    # the drawn mouth (VAEConfig.mouth): its rig, trained apart (scripts/train_rig.py --part mouth), and the
    # flag that it is (off until then: the decoder draws as before)
    MOUTH_BRANCH = ("mouth_rig.", "mouth_drawn")

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        c0, c1, c2 = cfg.channels
        self.conv_in = CausalConv3d(cfg.latent_channels, c0)
        self.res0 = CausalRes3d(c0)
        self.time_up = nn.Conv3d(c0, 4 * c0, 1)
        self.up1 = nn.Conv2d(c0, c1, 3, padding=1)  # x2
        self.res1 = CausalRes3d(c1)
        self.up2 = nn.Conv2d(c1, c2, 3, padding=1)  # x4
        self.res2 = Res2d(c2)
        self.up3 = nn.Conv2d(c2, c2, 3, padding=1)  # x8
        self.norm_out = nn.GroupNorm(8, c2)
        self.conv_out = nn.Conv2d(c2, 3, 3, padding=1)
        self.ref = RefPyramid(cfg) if cfg.ref_decoder else None
        if self.ref is not None:  # blend logit: starts near 0 blend (the plain decoder's output)
            self.alpha_out = nn.Conv2d(c2, 1, 3, padding=1)
            nn.init.zeros_(self.alpha_out.weight)
            nn.init.constant_(self.alpha_out.bias, -3.0)
            # the mouth's keep-out: where the mouth is (open or closed), from a frame's 1/8 activations;
            # there the blend towards the reference (whose mouth is closed) is lifted. Off (mouth_on 0)
            # until trained: weights that predate it draw as before.
            self.mouth = nn.Sequential(nn.Conv2d(c0, 16, 3, padding=1), nn.SiLU(), nn.Conv2d(16, 1, 3, padding=1))
            self.register_buffer("mouth_on", torch.zeros(()))
        self.motion_dim = cfg.motion
        if cfg.motion:  # each frame's motion, read by one tap at 1/8, 1/4 and 1/2 size
            m = cfg.motion
            self.taps = nn.ModuleList([MotionTap(c0, m, 64), MotionTap(c1, m, 32), MotionTap(c2, m, 16)])
        self.arms = None
        if cfg.arms:  # the rig, and where an arm is now and where the reference's was, told at 1/8, 1/4, 1/2 size
            self.arms = ArmRig()
            self.arms_in = nn.ModuleList([nn.Conv2d(2, c, 1, bias=False) for c in (c0, c1, c2)])
            for conv in self.arms_in:
                nn.init.zeros_(conv.weight)
        self.mouth_rig = None
        if cfg.mouth:  # the mouth drawn by rule where the rig finds it, as the motion says (model/mouth.py)
            self.mouth_rig = MouthRig()
            self.register_buffer("mouth_drawn", torch.zeros(()))  # 1 once the rig is trained

    @staticmethod
    def mouth_map(logits: torch.Tensor, size) -> torch.Tensor:
        """Keep-out logits (n, 1, h, w) at 1/8 -> (n, 1, H, W) in [0, 1]: where the blend is lifted.
        Not widened (unlike the lip refiner's map): on a small face a cell's neighbours are the eyes,
        and there the decoder's own drawing is a blur that only the blend makes sharp."""
        return torch.sigmoid(F.interpolate(logits.float(), size=tuple(size), mode="bilinear", align_corners=False))

    def _mouth_live(self) -> bool:
        """Whether the keep-out is on: read on the host once per change of `mouth_on`, not per call
        (no device sync per chunk), so that weights without it pay nothing for it."""
        if self.mouth_on.is_meta:  # a model without values (the analytic cost model): off, as it is built
            return False
        return derived(self, "_mouth_on_cache", (self.mouth_on,), lambda: bool(self.mouth_on > 0))

    def _mouth_drawn(self) -> bool:
        """Whether the mouth is drawn (a trained rig), read on the host once per change of the flag."""
        if self.mouth_rig is None or self.mouth_drawn.is_meta:
            return False
        return derived(self, "_mouth_drawn_cache", (self.mouth_drawn,), lambda: bool(self.mouth_drawn > 0))

    def _rgb_alpha(self) -> tuple[torch.Tensor, torch.Tensor]:
        """conv_out's and alpha_out's kernels stacked (4 output channels), cached for inference."""
        ws, bs = (self.conv_out.weight, self.alpha_out.weight), (self.conv_out.bias, self.alpha_out.bias)
        return derived(self, "_rgb_alpha_cache", ws + bs, lambda: (torch.cat(ws), torch.cat(bs)))

    def _reference(self, st: DecoderState, reference: torch.Tensor | None, z: torch.Tensor):
        if self.ref is None:
            return None
        if reference is not None:
            if reference.dim() == 5:  # (b, 3, 1, H, W)
                reference = reference[:, :, 0]
            reference = reference.to(z.dtype)
            inj = self.ref(reference)
            # the full-size injections meet channels-last activations (see forward)
            st.ref = (
                [inj[0]] + [i.contiguous(memory_format=torch.channels_last) for i in inj[1:]],
                reference.contiguous(memory_format=torch.channels_last),
            )
            # the rigs, trained apart (not by the decoder's loss), read the reference once per stream
            if self.arms is not None and st.arms is None:
                st.arms = tuple(v.detach() for v in self.arms(reference))
            if self.arms is not None and st.arms_hidden is None:  # once, here, not raced by a plan's thread
                st.arms_hidden = arm_rest(st.ref[1], *st.arms)
            if self._mouth_drawn() and st.mouth_rig is None:
                st.mouth_rig = tuple(v.detach() for v in self.mouth_rig(reference))
        if st.ref is None:
            raise ValueError(
                "this decoder is conditioned on the reference image: pass reference= on the stream's first call"
            )
        return st.ref

    @staticmethod
    def _add(x: torch.Tensor, inj: torch.Tensor, b: int, t: int) -> torch.Tensor:
        """x: frames (b*t, c, h, w) + one injection per clip (b, c, h, w)."""
        return (x.view(b, t, *x.shape[1:]) + inj[:, None]).view_as(x)

    def _motion(self, motion: torch.Tensor | None, b: int, t: int, x: torch.Tensor) -> torch.Tensor | None:
        """The taps' motion (b*t, motion_dim) from (b, t, motion_dim) (None: the reference's pose, zeros)."""
        if not self.motion_dim:
            return None
        if motion is None:
            motion = torch.zeros(b, t, self.motion_dim, device=x.device)
        if motion.shape[0] != b or motion.shape[1] != t or motion.shape[2] != self.motion_dim:
            want = f"{t} frames of {self.motion_dim} motion numbers"
            raise ValueError(f"the decoder draws {want}, got motion of shape {tuple(motion.shape)}")
        w = self.taps[0].motion.weight
        return motion.reshape(b * t, -1).to(w.device, w.dtype)

    @torch.no_grad()
    def plan(self, state: DecoderState, motion: torch.Tensor, dtype: torch.dtype) -> DrawPlan:
        """What the frames' motion (b, t, VAEConfig.motion) says to draw beside the latents (`DrawPlan`), from the
        stream's reference and rigs (`state`, after the stream's first call) and the motion alone."""
        b, t = motion.shape[:2]
        plan = DrawPlan(b * t)
        if self.ref is None:  # a decoder without the reference branch draws nothing beside its latents
            return plan
        if state.ref is None:
            raise ValueError("a draw plan needs the stream's reference: decode its first call first")
        ref_px = state.ref[1]
        if self.arms is not None:  # the reference's arms, moved
            if state.arms_hidden is None:  # arms set on the state after its first call
                state.arms_hidden = arm_rest(ref_px, *state.arms)
            arms = arm_composite(ref_px, *state.arms, motion, state.arms_hidden)
            if len(arms[0]):  # (b*t, 2, H, W): where an arm is now, where the reference's was (zeros: at rest)
                idx, _, now, gone, _ = arms
                maps = torch.zeros((b * t, 2, *ref_px.shape[-2:]), dtype=dtype, device=ref_px.device)
                maps = maps.index_copy(0, idx, torch.cat([now, gone], 1).to(dtype))
                plan.arms, plan.arm_now = arms, maps[:, :1]
                plan.arm_maps = [F.avg_pool2d(maps, k).contiguous(memory_format=torch.channels_last) for k in (8, 4, 2)]
                # just beside a moved arm or where the resting arm was: the latents' own drawing of the arm there,
                # at either place, is a smudge
                plan.beside = arm_beside(torch.maximum(now, gone))
        if self._mouth_drawn():
            plan.mouth = mouth_plan(state.mouth_rig, motion, ref_px.shape[-2:], ref_px)
        return plan

    TRAIL = 0.92  # how much of where a moved arm was is still kept one frame later ...
    TRAIL_FULL = 0.4  # ... and the reference drawn fully there until it fades below this (about 11 frames)

    def _trail(self, st: DecoderState, plan: DrawPlan | None, b: int, t: int, like: torch.Tensor):
        """Where a moved arm was in the last frames and is no more, widened by the band beside an arm ((b*t, 1, H, W)
        in [0, 1], fading by TRAIL a frame), outside the head; or None. The video model's latents remember a raised
        hand for a few frames after it went: a faint ghost of it where it was (docs/motion-video.md). The world draws
        the background or the body there, so the decoder draws the reference. Kept across calls in `st.trail`."""
        if st.mouth_rig is None:  # the head's place (below) is the mouth rig's
            return None
        moved = plan is not None and plan.arm_now is not None
        if not moved and st.trail is None:
            return None
        H, W = like.shape[-2:]
        now = plan.arm_now.to(like.dtype) if moved else like.new_zeros((b * t, 1, H, W))
        cur = st.trail if st.trail is not None else like.new_zeros((b, 1, H, W))
        swept = []
        for i in range(t):
            cur = torch.maximum(cur * self.TRAIL, now.view(b, t, 1, H, W)[:, i])
            swept.append(cur)
        st.trail = cur if float(cur.amax()) > 0.02 else None
        near = widen(torch.stack(swept, 1).view(b * t, 1, H, W).float(), max(1, round(BESIDE * H)))
        band = ((near / self.TRAIL_FULL).clamp(0, 1) - now.float()).clamp(0, 1)
        if st.head is None:
            # not on the head: a hand that passed in front of the face leaves the face to the latents (the
            # reference's face would not turn or blink); a box from the mouth up, 1.3 head half-widths either side
            centre, unit, shape, _ = st.mouth_rig
            half_w = (1.3 * shape[:, 1] * unit).view(b, 1, 1, 1)
            below = (0.5 * shape[:, 2] * unit).view(b, 1, 1, 1)
            xs = torch.arange(W, device=like.device, dtype=torch.float32) + 0.5
            ys = torch.arange(H, device=like.device, dtype=torch.float32) + 0.5
            st.head = ((xs.view(1, 1, 1, W) - centre[:, 0].view(b, 1, 1, 1)).abs() <= half_w) & (
                ys.view(1, 1, H, 1) <= centre[:, 1].view(b, 1, 1, 1) + below
            )
        band = band.view(b, t, 1, H, W) * (~st.head).float()[:, None]
        return band.view(b * t, 1, H, W).to(like.dtype)

    def forward(
        self,
        z: torch.Tensor,
        state: DecoderState | None = None,
        reference: torch.Tensor | None = None,
        motion: torch.Tensor | None = None,
        plan_given: DrawPlan | None = None,
    ) -> torch.Tensor:
        """`reference` (b, 3, H, W) or (b, 3, 1, H, W) in [-1, 1]: needed by a reference-
        conditioned decoder on a stream's first call (the state keeps it afterwards). `motion`
        (b, frames out, VAEConfig.motion): each drawn frame's motion, for a decoder that reads it
        (None: the reference's pose). A stream's first call draws 1 frame for its first latent.
        `plan_given`: `plan(state, motion)` worked out before (on another thread), or None (here).

        Runs on time-major frames (b*t, c, h, w) from the first layer to the last: the causal
        convs stack each frame's past on the channels, so no layer transposes time."""
        st = state if state is not None else DecoderState()
        first = not st.started
        ref = self._reference(st, reference, z)
        inj, ref_px = ref if ref is not None else (None, None)
        b, _, n, h, w = z.shape
        x = z.transpose(1, 2).reshape(b * n, -1, h, w)
        x, st.conv_in = self.conv_in.frames(x, b, st.conv_in)
        if ref is not None:
            x = self._add(x, inj[0], b, n)
        x, st.res0 = self.res0.frames(x, b, st.res0)
        # 1x1 temporal upsampling: channel j * c0 + c of latent frame i is channel c of video frame 4i + j
        tw = self.time_up.weight
        x = F.conv2d(x, tw.view(tw.shape[0], tw.shape[1], 1, 1), self.time_up.bias)
        t = 4 * n
        x = x.view(b * t, -1, h, w)
        if first:  # the stream's first latent frame stands for one video frame
            t -= 3
            x = x.view(b, 4 * n, -1, h, w)[:, 3:].reshape(b * t, -1, h, w)
        # the keep-out's logits (b*t, 1, h, w) at 1/8: when it is on, or while its map trains (from the
        # latents' activations, before the motion's: where the mouth is, not how open)
        # a drawn mouth (VAEConfig.mouth) covers what the keep-out and the taps draw at the mouth: they are skipped
        drawn = ref is not None and motion is not None and self._mouth_drawn()
        live = ref is not None and self._mouth_live() and not drawn
        training_map = ref is not None and torch.is_grad_enabled() and self.mouth[-1].weight.requires_grad
        e = None if drawn else self._motion(motion, b, t, x)
        plan = None
        if motion is not None and ref is not None and (self.arms is not None or drawn):
            plan = plan_given if plan_given is not None else self.plan(st, motion.to(x.device), x.dtype)
            if plan.frames != b * t:
                raise ValueError(f"a draw plan for {plan.frames} frames given to a decode of {b * t}")
        arms = None if plan is None else plan.arms  # the frames whose arms moved and their pieces
        arm_maps = None if plan is None else plan.arm_maps
        mouth = self.mouth(x) if live or training_map or (e is not None and ref is not None) else None
        where = None  # the taps draw where the keep-out's map finds the mouth (a decoder without one: everywhere)
        if e is not None:
            if mouth is not None:
                where = [self.mouth_map(mouth, (h * s, w * s)).to(x.dtype) for s in (1, 2, 4)]
            x = self.taps[0](x, e, None if where is None else where[0])
        if arm_maps is not None:
            x = x + self.arms_in[0](arm_maps[0])
        # channels-last from here on: the 2-D convs at 32-128 px run ~2x faster on a CPU in it
        x = x.contiguous(memory_format=torch.channels_last)
        x = up2_conv(x, self.up1)  # nearest x2, then the 3x3 conv
        if ref is not None:
            x = self._add(x, inj[1], b, t)
        if e is not None:
            x = self.taps[1](x, e, None if where is None else where[1].contiguous(memory_format=torch.channels_last))
        if arm_maps is not None:
            x = x + self.arms_in[1](arm_maps[1])
        x, st.res1 = self.res1.frames(x, b, st.res1)
        x = up2_conv(x, self.up2)  # nearest x2, then the 3x3 conv
        if ref is not None:
            x = self._add(x, inj[2], b, t)
        if e is not None:
            x = self.taps[2](x, e, None if where is None else where[2].contiguous(memory_format=torch.channels_last))
        if arm_maps is not None:
            x = x + self.arms_in[2](arm_maps[2])
        x = self.res2(x)
        x = up2_conv(x, self.up3)  # nearest x2, then the 3x3 conv
        if ref is not None:
            x = self._add(x, inj[3], b, t)
        hid = F.silu(self.norm_out(x))
        if ref is not None:  # rgb and the blend logit from one 4-channel conv (one pass over hid)
            out = F.conv2d(hid, *self._rgb_alpha(), padding=1)
            x, alpha = out[:, :3], torch.sigmoid(out[:, 3:])
            if live:  # the mouth's keep-out lifts the blend there
                lift = self.mouth_map(mouth, x.shape[-2:]) * self.mouth_on.float()  # mouth_on: how far, 0..1
                alpha = alpha * (1 - lift).to(x.dtype)
            trail = self._trail(st, plan, b, t, alpha) if self.arms is not None else None
            if trail is not None:  # where a moved arm was in the last frames: the reference's, not a ghost of it
                alpha = torch.maximum(alpha, trail)
            if arms is not None:  # where the reference's arm was and is no more: not the reference's pixels
                idx, cut, now, gone, fill = arms
                # and just beside a moved arm or where the resting arm was, the reference's (or what the resting
                # arm hid): the latents' own drawing of the arm there, at either place, is a smudge
                a = torch.maximum(alpha[idx], plan.beside.to(alpha.dtype)) * (1 - gone)
                alpha = alpha.index_copy(0, idx, a)
            x = x + alpha * self._add(-x, ref_px, b, t)  # rgb + alpha * (reference - rgb)
            if drawn:  # the mouth as the motion says, under the arms
                x = paint_mouth(x, plan.mouth)
            if arms is not None:  # what the resting arm hid, then the moved arms on top
                y = x[idx]
                y = y + gone * (fill - y)
                x = x.index_copy(0, idx, y + now * (cut - y))
        else:
            x = self.conv_out(hid)
        st.started = True
        return _frames3d(x, b, t)


class VideoVAE(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        # per-channel latent statistics, measured once the VAE is trained (`set_latent_stats`):
        # the transformer sees zero-mean, unit-variance latents
        self.register_buffer("latent_mean", torch.zeros(cfg.latent_channels))
        self.register_buffer("latent_std", torch.ones(cfg.latent_channels))

    def _stats(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, -1) + (1,) * (z.dim() - 2)
        return self.latent_mean.to(z.dtype).view(shape), self.latent_std.to(z.dtype).view(shape)

    @torch.no_grad()
    def set_latent_stats(self, videos: list[torch.Tensor]) -> None:
        """Measure the per-channel mean and std of the encoder's latents over `videos`,
        each (b, 3, t, H, W) (encoded one by one: memory stays that of one clip)."""
        z = torch.cat([self.encoder(v)[0].float().transpose(0, 1).flatten(1) for v in videos], dim=1)
        self.latent_mean.copy_(z.mean(dim=1))
        self.latent_std.copy_(z.std(dim=1).clamp_min(1e-3))

    def encode(self, video: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None):
        mean, logvar = self.encoder(video)
        z = mean
        if sample:
            z = (
                mean
                + torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
                * (0.5 * logvar).exp()
            )
        m, s = self._stats(z)
        return (z - m) / s * self.cfg.latent_scale

    def decode(
        self,
        z: torch.Tensor,
        state: DecoderState | None = None,
        reference: torch.Tensor | None = None,
        motion: torch.Tensor | None = None,
        plan: DrawPlan | None = None,
    ) -> torch.Tensor:
        """Latents -> video in [-1, 1]. `reference`: the stream's reference image in [-1, 1],
        (b, 3, H, W) or (b, 3, 1, H, W); a reference-conditioned decoder needs it on the first call.
        `motion`: each drawn frame's motion (b, frames, VAEConfig.motion), for a decoder that reads it.
        `plan`: `Decoder.plan` of that motion, worked out before (None: in the call)."""
        m, s = self._stats(z)
        return self.decoder(z / self.cfg.latent_scale * s + m, state, reference, motion, plan)
