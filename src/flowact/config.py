"""Preset YAML -> frozen dataclasses, validated once at load with errors that name the key."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import ClassVar

import yaml

from .errors import FlowactError

DEFAULT_PRESET = "toon-128"


@dataclass(frozen=True)
class VideoConfig:
    width: int
    height: int
    fps: int = 25


@dataclass(frozen=True)
class VAEConfig:
    latent_channels: int = 8
    spatial: int = 8  # x8 down/up-sampling per side
    temporal: int = 4  # causal: the first frame alone, then 4 frames per latent frame
    channels: tuple[int, ...] = (128, 64, 32)  # decoder widths, coarse -> fine (encoder mirrors)
    latent_scale: float = 1.0  # latents are multiplied by this after encoding (unit variance)
    # the decoder also sees the reference image (features injected at every scale, and a
    # per-pixel blend towards it): the latent then only has to carry what changes
    ref_decoder: bool = False
    # the decoder also reads each video frame's motion (this many numbers: world/motion_vector.py
    # video_motion, the video model's): it draws the mouth from it (model/vae.py MotionTap)
    motion: int = 0
    # the decoder draws the arms where the motion puts them: the reference's own, cut and moved
    # (model/arms.py; needs motion 24, the numbers with the arms)
    arms: bool = False
    # the decoder draws the mouth as the motion says: the world's lip shapes at the reference's mouth
    # (model/mouth.py; needs motion and ref_decoder)
    mouth: bool = False


@dataclass(frozen=True)
class ModelConfig:
    width: int
    depth: int
    heads: int
    patch: int = 2
    mlp_ratio: float = 4.0
    # 3D RoPE: frequency pairs given to (time, height, width); they sum to head_dim / 2
    rope_axes: tuple[int, int, int] = (8, 12, 12)
    rope_theta: float = 10_000.0
    # token stream -> weight set: streams that share a set share projection/norm/MLP weights
    weight_sets: dict = field(
        default_factory=lambda: {"video": "video", "reference": "video", "audio": "cond", "text": "cond"}
    )
    # add each latent frame's audio tokens, normed and projected, to the embeddings of that
    # frame's video tokens: a direct path from the speech to the frame beside joint attention
    audio_inject: bool = False
    # a latent frame's video tokens read only that frame's audio tokens (not the chunk's others)
    # in the joint attention: the mouth of frame f is told by the sound around frame f
    audio_local: bool = False
    # per-frame motion numbers (world/motion_vector.py VIDEO_MOTION_DIM: face, head, body and arms, each
    # relative to the rest pose) added to each latent frame's video tokens through a map of their own
    # per patch position: the video model is told where the mouth and arms are (0: not read)
    motion_inject: int = 0


@dataclass(frozen=True)
class AudioConfig:
    sample_rate: int = 16_000
    mel_bins: int = 80
    tokens_per_latent: int = 4  # one per video frame
    context_ms: int = 80  # past audio each latent frame's window sees
    lookahead_ms: int = 80  # future audio (lips anticipate sound)
    width: int = 128
    # one token per video frame, each from that frame's own 40 ms and the 40 ms after, with the
    # frame's mouth parameters (the world's visemes) predicted from it beside its features; its
    # time position is the frame's own (sub-latent-frame). Off: tokens pooled over the window.
    frame_tokens: bool = False


@dataclass(frozen=True)
class LipsConfig:
    """The lip refiner (model/lips.py): decoded frames + the chunk's mel windows -> the mouth redrawn."""

    width: int = 16  # channels at full/2 resolution; x2 per halving
    ear_width: int = 96  # the ear's channels (1-D convs over the mel)


@dataclass(frozen=True)
class TextConfig:
    tokens: int = 8
    vocab: int = 4096  # hashed word buckets
    width: int = 128
    depth: int = 2


@dataclass(frozen=True)
class StreamConfig:
    chunk_latents: int = 2  # latent frames per chunk (x4 video frames each)
    long_term: int = 4  # long-term slots, in latent frames
    long_term_stride: int = 4  # admit one of every N latent frames leaving short-term memory
    memory_noise: float = 0.0  # timestep at which memory K/V are computed (0 = clean)
    queue_chunks: int = 2  # bounded queue between generation and decode
    overlap_decode: bool = True  # decode in its own thread while the next chunk generates


def shifted_timesteps(steps: int, shift: float) -> list[float]:
    """Uniform steps warped toward the noisy end (SD3's shift): t' = s t / (1 + (s - 1) t). The
    sampler's step list is preset data (stream/sampler.py integrates over it)."""
    ts = [1.0 - i / steps for i in range(steps + 1)]
    return [shift * t / (1 + (shift - 1) * t) for t in ts]


@dataclass(frozen=True)
class SamplerConfig:
    steps: int = 3
    shift: float = 3.0
    timesteps: tuple[float, ...] | None = None  # explicit schedule, 1.0 -> 0.0, overrides steps/shift


@dataclass(frozen=True)
class HubSource:
    repo: str
    file: str
    sha256: str
    revision: str = "main"


@dataclass(frozen=True)
class WeightsConfig:
    bundled: str | None = None  # file name under flowact/assets
    sha256: str | None = None  # of the bundled file
    hub: HubSource | None = None


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    video: VideoConfig
    model: ModelConfig
    vae: VAEConfig = VAEConfig()
    audio: AudioConfig = AudioConfig()
    text: TextConfig = TextConfig()
    stream: StreamConfig = StreamConfig()
    sampler: SamplerConfig = SamplerConfig()
    weights: WeightsConfig = WeightsConfig()
    lips: LipsConfig | None = None  # a lip refiner after the decoder (None: frames as decoded)
    dtype: dict = field(default_factory=lambda: {"cpu": "bfloat16", "cuda": "bfloat16"})
    where: str = ""  # where it is meant to run, for `flowact presets`

    # -- derived shapes -------------------------------------------------------------------
    @property
    def latent_hw(self) -> tuple[int, int]:
        return self.video.height // self.vae.spatial, self.video.width // self.vae.spatial

    @property
    def tokens_per_latent(self) -> int:
        h, w = self.latent_hw
        return (h // self.model.patch) * (w // self.model.patch)

    route: ClassVar[str] = "toon"  # routes/toon.py

    @property
    def frames_per_chunk(self) -> int:
        return self.stream.chunk_latents * self.vae.temporal

    @property
    def sample_rate(self) -> int:
        return self.audio.sample_rate

    @property
    def queue_chunks(self) -> int:
        return self.stream.queue_chunks

    @property
    def overlap(self) -> bool:
        """Decode in its own thread while the next chunk generates."""
        return self.stream.overlap_decode

    @property
    def head_dim(self) -> int:
        return self.model.width // self.model.heads

    def sampler_timesteps(self) -> tuple[float, ...]:
        """The step list, 1.0 (noise) -> 0.0 (clean), with the SD3-style shift applied."""
        s = self.sampler
        if s.timesteps is not None:
            return tuple(float(t) for t in s.timesteps)
        return tuple(shifted_timesteps(s.steps, s.shift))


@dataclass(frozen=True)
class PhotoPreset:
    """The photo route: a motion engine (model/motion.py) makes 16 motion numbers a frame from
    the speech and behaviour, and the photo rig (photo/) moves the photo's own pixels by them.
    No video model: the output keeps the photo's framing, scaled so it fits `video`."""

    name: str
    description: str
    video: VideoConfig  # the largest output: the photo is scaled to fit (never up), sides even
    route: str = "photo"
    chunk_frames: int = 8  # video frames per chunk (0.32 s at 25 fps, as toon-128)
    queue_chunks: int = 2  # bounded queue between motion generation and the warp + encode
    weights: WeightsConfig = WeightsConfig()  # the motion engine's
    where: str = ""  # where it is meant to run, for `flowact presets`

    sample_rate: ClassVar[int] = 16_000  # the motion engine hears 16 kHz speech
    overlap: ClassVar[bool] = True  # the warp runs in its own thread while the next chunk's motion is made

    @property
    def frames_per_chunk(self) -> int:
        return self.chunk_frames


# -- loading and validation -------------------------------------------------------------


def _convert(value, tp, key: str, src: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], key, src)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key, src)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise FlowactError(f"key '{key}' must be a list, got {value!r}", path=src)
        elem = args[0]
        if len(args) == 1 or (len(args) == 2 and args[1] is Ellipsis):  # tuple[X, ...]
            return tuple(_convert(v, elem, f"{key}[{i}]", src) for i, v in enumerate(value))
        if len(value) != len(args):
            raise FlowactError(f"key '{key}' must have {len(args)} items, got {len(value)}", path=src)
        return tuple(_convert(v, a, f"{key}[{i}]", src) for i, (v, a) in enumerate(zip(value, args)))
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise FlowactError(f"key '{key}' must be a mapping, got {value!r}", path=src)
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise FlowactError(f"key '{key}' must be true or false, got {value!r}", path=src)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FlowactError(f"key '{key}' must be a number, got {value!r}", path=src)
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise FlowactError(f"key '{key}' must be an integer, got {value!r}", path=src)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise FlowactError(f"key '{key}' must be a string, got {value!r}", path=src)
        return value
    return value


def _build(cls, data, prefix: str, src: str):
    if not isinstance(data, dict):
        raise FlowactError(f"key '{prefix or '<top>'}' must be a mapping, got {data!r}", path=src)
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise FlowactError(f"unknown key '{where}{unknown[0]}' (known: {', '.join(sorted(known))})", path=src)
    kwargs = {}
    for f in fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        if f.name in data:
            kwargs[f.name] = _convert(data[f.name], hints[f.name], key, src)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise FlowactError(f"missing required key '{key}'", path=src)
    return cls(**kwargs)


def _check(p: Preset, src: str) -> Preset:
    def bad(key: str, why: str):
        raise FlowactError(f"key '{key}' {why}", path=src)

    v, m, vae, st, smp, a = p.video, p.model, p.vae, p.stream, p.sampler, p.audio
    if v.width <= 0 or v.height <= 0 or v.width % (vae.spatial * m.patch) or v.height % (vae.spatial * m.patch):
        bad(
            "video",
            f"size {v.width}x{v.height} must be a positive multiple of vae.spatial*model.patch = "
            f"{vae.spatial * m.patch}",
        )
    if v.fps != 25:
        # the audio front end (10 ms mel hop, 4 video frames = 160 ms per latent frame), the world's
        # visemes and the training data are all laid out at 25 fps
        bad("video.fps", f"must be 25 (got {v.fps}): the audio features and the synthetic world are aligned to 25 fps")
    if m.width % m.heads:
        bad("model.heads", f"must divide model.width ({m.width})")
    if (m.width // m.heads) % 2 or sum(m.rope_axes) * 2 != m.width // m.heads:
        bad("model.rope_axes", f"must sum to head_dim/2 = {m.width // m.heads // 2}, got {sum(m.rope_axes)}")
    if set(m.weight_sets) != {"video", "reference", "audio", "text"}:
        bad("model.weight_sets", "must map exactly the streams video, reference, audio, text")
    if a.frame_tokens and a.tokens_per_latent != vae.temporal:
        bad(
            "audio.frame_tokens", f"needs tokens_per_latent equal to vae.temporal ({vae.temporal}): one token per frame"
        )
    if m.depth <= 0 or m.width <= 0:
        bad("model", "width and depth must be positive")
    if vae.temporal != 4 or vae.spatial != 8:
        bad("vae", "only spatial 8 / temporal 4 is implemented")
    if vae.motion and vae.motion != m.motion_inject:
        bad("vae.motion", f"must equal model.motion_inject ({m.motion_inject}): the decoder reads the video model's")
    if vae.arms and (vae.motion != 24 or not vae.ref_decoder):
        bad("vae.arms", "needs vae.motion 24 (the numbers with the arms) and ref_decoder (arms cut from the reference)")
    if vae.mouth and (vae.motion < 16 or not vae.ref_decoder):
        bad("vae.mouth", "needs vae.motion 16 or 24 (the mouth's and head's numbers) and ref_decoder (its colours)")
    if st.chunk_latents < 1 or st.long_term < 0 or st.long_term_stride < 1 or st.queue_chunks < 1:
        bad("stream", "chunk_latents, long_term_stride, queue_chunks must be >= 1 and long_term >= 0")
    if not 0.0 <= st.memory_noise < 1.0:
        bad("stream.memory_noise", "must be in [0, 1)")
    if smp.steps < 1:
        bad("sampler.steps", "must be >= 1")
    if smp.shift <= 0:
        bad("sampler.shift", "must be positive")
    ts = p.sampler_timesteps()
    if smp.timesteps is not None and (
        len(ts) < 2 or abs(ts[0] - 1) > 1e-6 or ts[-1] != 0.0 or any(b >= a for a, b in zip(ts, ts[1:]))
    ):
        bad("sampler.timesteps", "must decrease strictly from 1.0 to 0.0")
    if a.sample_rate != 16_000:
        bad("audio.sample_rate", "only 16000 is implemented")
    for dev, name in p.dtype.items():
        if dev not in ("cpu", "cuda") or name not in ("float32", "bfloat16", "float16"):
            bad(f"dtype.{dev}", "devices are cpu/cuda, dtypes float32/bfloat16/float16")
    return p


def preset_names() -> list[str]:
    return sorted(r.name[:-5] for r in resources.files("flowact_presets").iterdir() if r.name.endswith(".yaml"))


def load_preset(name_or_path: str | Path = DEFAULT_PRESET) -> Preset | PhotoPreset:
    """A bundled preset by name (`toon-128`) or any YAML file by path; `route: photo` in the
    YAML makes a `PhotoPreset`."""
    text_path = str(name_or_path)
    if text_path.endswith((".yaml", ".yml")) or "/" in text_path:
        path = Path(text_path)
        if not path.is_file():
            raise FlowactError("preset file not found", path=path)
        raw, src = path.read_text(), str(path)
    else:
        res = resources.files("flowact_presets") / f"{text_path}.yaml"
        if not res.is_file():
            raise FlowactError(f"unknown preset '{text_path}' (available: {', '.join(preset_names())})")
        raw, src = res.read_text(), f"preset {text_path}"
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise FlowactError(f"invalid YAML ({str(exc).splitlines()[0]})", path=src) from exc
    if isinstance(data, dict) and data.get("route", "toon") == "photo":
        return _check_photo(_build(PhotoPreset, data, "", src), src)
    if isinstance(data, dict) and data.get("route", "toon") != "toon":
        raise FlowactError(f"key 'route' must be toon or photo, got {data['route']!r}", path=src)
    data = {k: v for k, v in data.items() if k != "route"} if isinstance(data, dict) else data
    return _check(_build(Preset, data, "", src), src)


def _check_photo(p: PhotoPreset, src: str) -> PhotoPreset:
    v = p.video
    if v.width <= 0 or v.height <= 0 or v.width % 2 or v.height % 2:
        raise FlowactError(f"key 'video' size {v.width}x{v.height} must be positive and even (H.264)", path=src)
    if v.fps != 25:
        raise FlowactError(
            f"key 'video.fps' must be 25 (got {v.fps}): the motion engine is aligned to 25 fps", path=src
        )
    if p.chunk_frames < 1 or p.queue_chunks < 1:
        raise FlowactError("key 'chunk_frames' and 'queue_chunks' must be >= 1", path=src)
    return p
