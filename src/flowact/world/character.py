"""Procedural characters: a seed becomes a style (colours, shapes, clothes, accessories, scene).

Everything about how a character looks is drawn from `numpy.random.default_rng(seed)` in a
fixed order, so a seed always gives the same character. The discrete choices multiply to
millions of combinations before the continuous ones (colours, proportions) are counted.
"""

from __future__ import annotations

import colorsys
from dataclasses import asdict, dataclass

import numpy as np

FACE_SHAPES = ("oval", "round", "square", "long", "heart")
EYE_STYLES = ("dot", "oval", "anime", "lashes", "sleepy")
BROW_STYLES = ("thin", "thick", "arched", "none")
NOSE_STYLES = ("none", "dot", "line", "button", "long")
HAIR_STYLES = ("bald", "short", "long", "bob", "spiky", "curly", "bun", "ponytail", "mohawk", "buzz")
FRINGES = ("none", "straight", "side")
TOPS = ("tshirt", "vneck", "collar", "turtleneck", "jacket", "hoodie")
PATTERNS = ("plain", "stripes", "dots", "twotone", "plain")
HATS = ("none", "none", "none", "beanie", "cap", "tophat", "beret")
GLASSES = ("none", "none", "round", "square")
FACIAL_HAIR = ("none", "none", "none", "beard", "moustache", "goatee")
BACKGROUNDS = ("solid", "vgradient", "radial", "stripes", "room", "sky")
LINE_STYLES = ("outlined", "flat", "shaded")

_SKINS = [
    (255, 224, 196),
    (241, 194, 160),
    (224, 172, 125),
    (198, 134, 88),
    (161, 102, 64),
    (120, 72, 42),
    (86, 52, 33),
    (255, 206, 180),
    (230, 190, 150),
    (180, 200, 120),
    (150, 180, 230),
    (200, 160, 220),
]  # the last three: toon skins (green, blue, lilac)
_HAIRS = [
    (20, 16, 14),
    (60, 40, 25),
    (110, 70, 35),
    (165, 110, 55),
    (225, 190, 110),
    (240, 230, 200),
    (150, 40, 25),
    (200, 90, 40),
    (120, 120, 125),
    (40, 80, 200),
    (200, 60, 140),
    (60, 160, 90),
]
RGB = tuple[int, int, int]


def _hsv(rng: np.random.Generator, s: tuple[float, float], v: tuple[float, float]) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*s), rng.uniform(*v))
    return (int(r * 255), int(g * 255), int(b * 255))


def _jitter(rng: np.random.Generator, c: RGB, amount: int) -> RGB:
    return tuple(int(np.clip(x + rng.integers(-amount, amount + 1), 0, 255)) for x in c)  # type: ignore[return-value]


@dataclass(frozen=True)
class Character:
    seed: int
    # proportions (units: frame height; x relative to the character's centre line)
    scale: float
    x_offset: float
    head_rx: float
    head_ry: float
    face_shape: str
    neck_width: float
    shoulder_half: float
    upper_arm: float
    forearm: float
    eye_spacing: float
    eye_size: float
    mouth_width: float
    # styles
    eye_style: str
    brow_style: str
    nose_style: str
    hair_style: str
    fringe: str
    top: str
    pattern: str
    hat: str
    glasses: str
    facial_hair: str
    earrings: bool
    blush: bool
    long_sleeves: bool
    background: str
    line_style: str
    # colours
    skin: RGB
    hair: RGB
    iris: RGB
    lips: RGB
    shirt: RGB
    shirt2: RGB
    hat_colour: RGB
    glasses_colour: RGB
    accent: RGB
    bg1: RGB
    bg2: RGB
    outline: RGB
    # behaviour
    smile: float  # resting mouth curve, -0.3..1
    blink_rate: float  # blinks per second
    energy: float  # gesture and head motion amplitude

    def describe(self) -> dict:
        return asdict(self)


def sample_character(seed: int) -> Character:
    """The character for `seed` (any non-negative int)."""
    rng = np.random.default_rng([int(seed), 0xC4A7])
    face_shape = str(rng.choice(FACE_SHAPES))
    head_rx = rng.uniform(0.105, 0.13)
    head_ry = rng.uniform(0.135, 0.155) * (1.08 if face_shape == "long" else 1.0)
    skin = _jitter(rng, _SKINS[int(rng.integers(len(_SKINS)))], 10)
    hair = _jitter(rng, _HAIRS[int(rng.integers(len(_HAIRS)))], 15)
    line_style = str(rng.choice(LINE_STYLES))
    outline = (25, 20, 25) if rng.random() < 0.7 else tuple(int(c * 0.35) for c in skin)
    bg = str(rng.choice(BACKGROUNDS))
    bg1 = _hsv(rng, (0.05, 0.6), (0.35, 0.95))
    bg2 = _hsv(rng, (0.05, 0.6), (0.2, 0.95))
    lips = tuple(int(c) for c in np.clip(np.array(skin) * np.array([0.85, 0.55, 0.55]) + [40, 0, 10], 0, 255))
    if rng.random() < 0.25:
        lips = _hsv(rng, (0.5, 0.9), (0.5, 0.85))
    return Character(
        seed=int(seed),
        scale=rng.uniform(1.12, 1.26),
        x_offset=rng.uniform(-0.025, 0.025),
        head_rx=head_rx,
        head_ry=head_ry,
        face_shape=face_shape,
        neck_width=rng.uniform(0.035, 0.055),
        shoulder_half=rng.uniform(0.16, 0.2),
        upper_arm=rng.uniform(0.17, 0.2),
        forearm=rng.uniform(0.15, 0.18),
        eye_spacing=rng.uniform(0.038, 0.05),
        eye_size=rng.uniform(0.014, 0.022),
        mouth_width=rng.uniform(0.034, 0.046),
        eye_style=str(rng.choice(EYE_STYLES)),
        brow_style=str(rng.choice(BROW_STYLES)),
        nose_style=str(rng.choice(NOSE_STYLES)),
        hair_style=str(rng.choice(HAIR_STYLES)),
        fringe=str(rng.choice(FRINGES)),
        top=str(rng.choice(TOPS)),
        pattern=str(rng.choice(PATTERNS)),
        hat=str(rng.choice(HATS)),
        glasses=str(rng.choice(GLASSES)),
        facial_hair=str(rng.choice(FACIAL_HAIR)),
        earrings=bool(rng.random() < 0.25),
        blush=bool(rng.random() < 0.3),
        long_sleeves=bool(rng.random() < 0.5),
        background=bg,
        line_style=line_style,
        skin=skin,
        hair=hair,
        iris=_hsv(rng, (0.3, 0.9), (0.2, 0.7)),
        lips=lips,  # type: ignore[arg-type]
        shirt=_hsv(rng, (0.2, 0.95), (0.25, 0.95)),
        shirt2=_hsv(rng, (0.1, 0.9), (0.3, 1.0)),
        hat_colour=_hsv(rng, (0.3, 0.9), (0.2, 0.9)),
        glasses_colour=_hsv(rng, (0.0, 0.8), (0.05, 0.6)),
        accent=_hsv(rng, (0.5, 1.0), (0.6, 1.0)),
        bg1=bg1,
        bg2=bg2,
        outline=outline,  # type: ignore[arg-type]
        smile=float(rng.uniform(-0.3, 1.0)),
        blink_rate=float(rng.uniform(0.2, 0.45)),
        energy=float(rng.uniform(0.6, 1.3)),
    )
