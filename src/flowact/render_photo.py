"""The photo route of `render`: a photograph talks.

    photo --face mesh (photo/face.py)--> rig (photo/rig.py: triangulation, per-pixel weights, once)
    speech --16 kHz--> motion engine chunk by chunk (model/motion.py, stream/motion.py: MMDiT over
                       motion, audio and behaviour tokens, memory bank, 3 steps) -> 16 numbers a frame
    motion --warp stage (its own thread)--> the photo's pixels moved, frame by frame -> ffmpeg

The chunk loop, the bounded hand-offs, the finalising on Ctrl-C or a failing stage and the report
are `render.py`'s (`_RenderRun`); this file supplies the photo's phases.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from . import weights as W
from .config import PhotoPreset
from .errors import FlowactError
from .media.ffmpeg import VideoWriter, find_ffmpeg
from .render import Engine, _RenderRun, default_threads, pick_device
from .stream.motion import MotionStream, padded


class PhotoEngine(Engine):
    """The motion engine for one photo preset; renders many photos (a rig per job)."""

    @classmethod
    def load(
        cls,
        preset: PhotoPreset,
        *,
        device: str = "auto",
        weights: str | Path | None = None,
        random_weights: bool = False,
        seed: int = 0,
        threads: int | None = None,
        **_ignored,
    ) -> "PhotoEngine":
        from .model.motion import MotionConfig, MotionDiT
        from .stream.motion import MotionEngine

        # the motion engine is tiny and the warp runs on the CPU: a GPU would only add transfers
        dev = pick_device("cpu" if device == "auto" else device)
        if dev.type != "cpu":
            raise FlowactError(f"preset {preset.name} runs on the CPU (its motion engine and warp are small)")
        torch.set_num_threads(threads or default_threads(preset))  # motion and warp run side by side
        source = W.resolve(preset, weights=weights, random_weights=random_weights, seed=seed)
        torch.manual_seed(seed)
        if source.kind == "random":
            model = MotionEngine(MotionDiT(MotionConfig()).eval().requires_grad_(False))
        else:
            model = MotionEngine.load(source.path, device="cpu")
        return cls(preset, model, source, dev, torch.float32, torch.get_num_threads(), "photo route", "off")

    def conditions(self, compiled: bool = False) -> str:
        nfe = len(self.model.timesteps) - 1
        return f"CPU x{self.threads} threads, float32, photo route (motion NFE {nfe} + face-mesh warp), compile off"


class _PhotoRun(_RenderRun):
    """`_RenderRun`'s chunk loop with the photo's phases: motion instead of latents, the warp
    instead of the VAE decode."""

    gen_stage = "motion"
    counted = "warp+encode"

    def __init__(self, engine, inputs, out, t_request, seed, max_seconds, on_chunk, sync_timing):
        super().__init__(engine, inputs, out, t_request, seed, max_seconds, on_chunk, sync_timing)
        self.stages = {"load_inputs": self.stages["load_inputs"], "reference": 0.0, "motion": 0.0, "warp": 0.0,
                       "encode": 0.0}  # fmt: skip

    def start(self, prompt: str, ffmpeg: str | None) -> None:
        from .photo.rig import build_rig

        find_ffmpeg(ffmpeg)
        self.prompt = prompt or None
        t0 = time.perf_counter()
        h, w = self.inputs.reference.shape[:2]
        self.rig = build_rig(self.inputs.reference, size=max(h, w), mesh=self.inputs.face)  # once per job
        self.stream = MotionStream(self.engine.model, seed=self.seed)
        self.stages["reference"] = time.perf_counter() - t0
        track = self.inputs.audio
        self.samples = track.samples[: int(self.seconds * track.rate) + 1].astype(np.float32)
        per = self.preset.frames_per_chunk
        self.writer = VideoWriter(self.out, w, h, self.preset.video.fps, audio=self.inputs.audio_path,
                                  ffmpeg=ffmpeg, shortest=True, queue_frames=2 * per)  # fmt: skip

    def generate(self, k: int):
        per = self.preset.frames_per_chunk
        t = time.perf_counter()
        motion = self.stream.chunk(k, padded(self.samples, self.stream.audio_span(k)), prompt=self.prompt)
        dt = time.perf_counter() - t
        self.stages["motion"] += dt
        self.chunk_ms.append(dt * 1000)
        return k, motion, min(per, self.total - k * per), None

    def emit(self, item) -> None:
        k, motion, keep, _ = item
        for i in range(keep):  # frame by frame: the first frame reaches ffmpeg after one warp, not eight
            t = time.perf_counter()
            frame = self.rig.render(motion[i : i + 1])
            self.stages["warp"] += time.perf_counter() - t
            self.writer.write(frame)
            self.done_frames += 1
        self._chunk_done(k)


PhotoEngine.run_class = _PhotoRun
