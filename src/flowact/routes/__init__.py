"""Routes: what differs between a drawn character and a photograph, behind one seam (base.py).

    toon.py    the video MMDiT draws every frame (toon-128, toon-256, r1-480p)
    photo.py   the motion engine moves the photo's own pixels (photo-512, photo-720p)
    seqpar.py  the toon route on one rank of a sequence-parallel group (render_seqpar.py)
    choose.py  which route a picture takes when the preset is "auto"

The route is chosen once, from the preset (`route_of`); nothing else asks which route it is.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from .base import Chunk, ChunkStream, LoadOptions, RenderInputs, Route, pick_device

# a preset's `route` -> (module, class); a route's modules load when a preset asks for it (a toon
# render never imports the photo route's face models and motion engine)
ROUTES = {"toon": ("toon", "ToonRoute"), "photo": ("photo", "PhotoRoute")}


def route_of(preset) -> type[Route]:
    """The route class of a preset (its `route`: toon or photo)."""
    module, name = ROUTES[preset.route]
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __getattr__(name: str):
    for module, cls in ROUTES.values():
        if name == cls:
            return getattr(importlib.import_module(f".{module}", __name__), cls)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_route(preset="auto", **options) -> Route:
    """A loaded route for `preset` (a name, a YAML path or a loaded preset); `options`: device, dtype,
    weights, random_weights, seed, threads, lips, int8 (those that do not apply to a route are refused)."""
    from ..config import DEFAULT_PRESET, load_preset

    p = load_preset(DEFAULT_PRESET if preset == "auto" else preset) if isinstance(preset, (str, Path)) else preset
    return route_of(p).load(p, LoadOptions(**options))


def load_inputs(preset, image, audio, fit: str = "cover", motion=None, face: int | None = None) -> RenderInputs:
    """A job's picture (as its route takes it; `face`: which face of a group photo), audio and optional
    motion track (`motion`: a file, media/motion.py), validated before any model work."""
    from ..errors import FlowactError
    from ..media.audio import load_audio

    route = route_of(preset)
    track = None
    if motion is not None:
        if not route.takes_motion(preset):
            raise FlowactError(f"--motion drives the photo route and the video models that read motion; "
                               f"{preset.name}'s draws from the audio alone")  # fmt: skip
        from ..media.motion import load_motion

        track = load_motion(motion)
    reference, mesh = route.load_picture(preset, image, fit, face)
    return RenderInputs(reference, load_audio(audio, preset.sample_rate), Path(audio), mesh, track)


__all__ = [
    "Chunk",
    "ChunkStream",
    "LoadOptions",
    "PhotoRoute",
    "RenderInputs",
    "Route",
    "ToonRoute",
    "load_inputs",
    "load_route",
    "pick_device",
    "route_of",
]
