"""The photo route: a photograph's own pixels move.

prepare:  face mesh (found when the picture loads) -> rig (photo/rig.py: triangulation, weights), once
generate: speech -> the motion engine (stream/motion.py: motion MMDiT over its memory bank, 3
          steps) -> 16 motion numbers a frame
draw:     the rig's warp of the photo, frame by frame
"""

from __future__ import annotations


import numpy as np
import torch

from .. import weights as W
from ..errors import FlowactError
from ..media.image import fit_within
from ..stream.motion import MotionSource
from ..world.motion_vector import MOTION_DIM, MOUTH
from .base import Chunk, ChunkStream, LoadOptions, Route, pick_device
from .toon import default_threads


def _refuse(option: str, value, preset) -> None:
    given = f"{option} {value}" if value else option
    raise FlowactError(f"{given} does not apply to the photo route ({preset.name}): {_WHY[option]}")


MIN_SIDE = 256  # a smaller photo (a 112 px face crop) is scaled up to this shorter side

_WHY = {
    "--device": "its motion engine and warp are small and run on the CPU",
    "--dtype": "its motion engine runs in float32",
    "--int8": "its motion engine has no int8 path",
    "--no-lips": "it has no lip refiner (the motion engine moves the mouth)",
}


class PhotoRoute(Route):
    name = "photo"
    stages = ("reference", "motion", "warp", "encode")
    counted = "warp+encode"
    needs_face = True
    reads_motion = True

    def __init__(self, preset, engine, source, device, threads: int):
        super().__init__(preset, source, device, torch.float32, threads)
        self.engine = engine  # the motion engine (stream/motion.py)

    @classmethod
    def load(cls, preset, options: LoadOptions = LoadOptions()) -> "PhotoRoute":
        """The toon route's options, where they mean something here; the others are refused."""
        from ..model.motion import MotionConfig, MotionDiT
        from ..stream.motion import MotionEngine

        o = options
        if o.device not in ("auto", "cpu"):
            _refuse("--device", o.device, preset)
        if o.dtype not in (None, "float32"):
            _refuse("--dtype", o.dtype, preset)
        if o.int8 == "on":
            _refuse("--int8", o.int8, preset)
        if not o.lips:
            _refuse("--no-lips", "", preset)
        dev = pick_device("cpu")
        torch.set_num_threads(o.threads or default_threads(preset))  # motion and warp run side by side
        source = W.resolve(preset, weights=o.weights, random_weights=o.random_weights, seed=o.seed)
        torch.manual_seed(o.seed)
        if source.kind == "random":
            engine = MotionEngine(MotionDiT(MotionConfig()).eval().requires_grad_(False))
        else:
            engine = MotionEngine.load(source.path, device="cpu")
        return cls(preset, engine, source, dev, torch.get_num_threads())

    @staticmethod
    def load_picture(preset, image, fit: str = "cover", face: int | None = None):
        """The photo keeps its framing, scaled to fit (a tiny one up to a 256 px shorter side); its face
        (the most confident, or the `face`-th left to right) is found now, so a photo without one fails
        before any model loads (`fit` is the toon route's)."""
        from ..photo.face import analyse

        reference = fit_within(image, preset.video.width, preset.video.height, min_side=MIN_SIDE)
        return reference, analyse(reference, name=str(image), face=face)

    def prepare(self, reference: np.ndarray, face=None):
        from ..photo.rig import build_rig

        return build_rig(reference, size=max(reference.shape[:2]), mesh=face)

    def stream(self, picture, seed: int, samples=None, stages=None, sync=None, motion=None) -> "PhotoStream":
        return PhotoStream(
            self, picture, seed, samples, {} if stages is None else stages, sync or (lambda: None), motion
        )

    @staticmethod
    def facts(preset, ranks: int = 1) -> dict:
        """The motion engine's parameters and steps, read from its weights file."""
        p, params, steps = preset, 0, None
        if p.weights.bundled and W.bundled_path(p.weights.bundled).is_file():
            header, state = W.read(W.bundled_path(p.weights.bundled), "motion")
            params = sum(t.numel() for t in state.values())
            steps = int(header.extra.get("steps", 0)) or None
        out = {
            "resolution": f"{p.video.width}x{p.video.height}",
            "fps": p.video.fps,
            "chunk_frames": p.frames_per_chunk,
            "chunk_ms": 1000 * p.frames_per_chunk / p.video.fps,
            "steps": steps,
            "params": {"motion": params},
            "params_total": params,
            "flops_per_chunk": None,
        }
        out["cells"] = {
            "size": f"up to {out['resolution']}",
            "chunk": f"{out['chunk_frames']} fr ({out['chunk_ms']:.0f} ms)",
            "params": f"{params / 1e6:.2f}M",
            "cost": "motion + warp",
            "needs": "a CPU core",
        }
        if ranks > 1:
            out["seq_parallel"] = {"ranks": ranks, "error": "the photo route runs on one CPU"}
        return out

    def conditions(self, compiled: bool = False) -> str:
        nfe = len(self.engine.timesteps) - 1
        # the warp's two halves: its draw thread and the rig's own (photo/rig.py), beside torch's threads
        return (
            f"CPU x{self.threads} threads, float32, photo route (motion NFE {nfe} + face-mesh warp in two halves "
            "side by side), compile off"
        )


def _eased(shown: np.ndarray, remade: np.ndarray, start: int) -> np.ndarray:
    """A chunk made again from frame `start` on (a splice): its mouth at once, the rest of the motion
    (head, gaze, brows, body) eased from what was shown to the new chunk by its last frame. The new
    chunk's head and gaze differ from the old one's everywhere (its noise is the same, its speech is
    not); taken at once, the head turned by 0.18 (yaw, ~5 degrees) in a frame, the median of 10
    splices, where a frame's step is 0.01."""
    out = np.array(remade, np.float32, copy=True)
    n = len(out)
    w = (np.arange(start, n) - start + 1) / (n - start)  # 1 at the chunk's last frame
    rest = slice(MOUTH.stop, None)
    out[start:, rest] = shown[start:, rest] + (remade[start:, rest] - shown[start:, rest]) * w[:, None]
    return out


class PhotoStream(ChunkStream):
    """The photo warped by the motion of a `MotionSource` (the motion engine, or a given track)."""

    gen_stage = "motion"

    def __init__(self, route: PhotoRoute, rig, seed: int, samples, stages, sync, track=None):
        super().__init__(stages, sync)
        self.rig = rig
        self.source = MotionSource(route.engine, seed, samples, track)
        self.chunk_frames = self.source.chunk_frames
        self.chunk_samples = self.source.chunk_samples
        self.lookahead_samples = self.source.lookahead_samples
        self._made: tuple[int, np.ndarray] | None = None  # the newest live chunk's motion, as drawn

    def generate(self, index, keep, prompt="", state=None, pcm=None, lookahead=None) -> Chunk:
        with self.timed("motion"):
            # the contract's 16 numbers (an engine that also makes arms: the photo has none to move)
            return Chunk(index, self.source.chunk(index, prompt, state, pcm, lookahead)[:, :MOTION_DIM], keep)

    def live_parts(self, index, prompt, state, pcm, lookahead, start: int = 0):
        """The first frame alone, then three, then the rest: the live loop shows a chunk's first frame once
        the motion and that one warp are made (its margin ahead of the clock is then that, not the whole
        chunk's warp), the rest are warped while it shows, and speech that arrives meanwhile is taken between
        two parts (not frame by frame: that cost 8.8 ms of CPU a 512x512 frame against 6.7 in 8-frame calls,
        and three sessions on two cores then held 10% of frames). `start`: frames start.. only, the first of
        them alone (a chunk made again from `snapshot`, spliced into the one showing from there)."""
        self.stage = "generation"
        chunk = self.generate(index, 1 << 30, prompt, state, pcm, lookahead)
        self.stage = "decode"
        n = len(chunk.output)
        if start and self._made is not None and self._made[0] == index:
            chunk = Chunk(index, _eased(self._made[1], chunk.output, start), chunk.keep)
        self._made = (index, chunk.output)
        cuts = [start, start + 1] + ([4] if start == 0 else []) + [n]
        for a, b in zip(cuts, cuts[1:]):
            if a >= b:
                continue
            with self.timed("warp"):
                frames = self.rig.render(chunk.output[a:b])
            yield frames
        self.stage = "generation"

    def snapshot(self):
        """The stream's state before its next chunk (the motion source's; None: a given track)."""
        return self.source.snapshot()

    def restore(self, state) -> None:
        self.source.restore(state)

    def draw(self, chunk: Chunk, early: bool = False):
        motion = chunk.output
        n = min(chunk.keep, len(motion))
        # the first chunk frame by frame: its first frame reaches ffmpeg after one warp
        if early and chunk.index == 0:
            for i in range(n):
                with self.timed("warp"):
                    frame = self.rig.render(motion[i : i + 1])
                yield frame
            return
        # later chunks (drawn while the next is generated) in one call: the warp's passes and the mouth's
        # painting (~3 ms a call whatever the frames, once for the chunk) cost less per frame
        with self.timed("warp"):
            frames = self.rig.render(motion[:n])
        yield frames
