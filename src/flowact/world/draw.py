"""Render a character in a pose: background, torso, arms, head, face, hair, accessories.

`Renderer(character, width, height)` prepares the static scene once; `frame(motion, mouth, i)`
draws frame i. Drawing order makes hands go in front of the face (thinking: hand on chin).
"""

from __future__ import annotations

import numpy as np

from .behaviour import HEAD_Y, SHOULDER_Y, Motion
from .canvas import Canvas, background, capsule, clip_convex, ellipse, shade, supersampling
from .character import Character

WHITE = (250, 250, 250)
DARK = (30, 22, 28)
MOUTH_BELOW_EYES = 0.078  # the mouth's centre below the eyes' line, character units


class Renderer:
    """Draws one character at one frame size; the background is drawn once."""

    def __init__(self, character: Character, width: int, height: int, ss: int | None = None):
        self.c = character
        self.width, self.height = width, height
        self.ss = ss or supersampling(height)
        rng = np.random.default_rng([character.seed, 0xB6])
        self.bg = background(
            character.background, character.bg1, character.bg2, character.accent, width, height, self.ss, rng
        )
        self.outline = character.outline if character.line_style == "outlined" else None

    def to_label_xy(self, pts: np.ndarray) -> np.ndarray:
        """Character units -> label coordinates: x = 0.5 + (px - W/2) / H, y = py / H (aspect-free)."""
        c = self.c
        pts = np.asarray(pts, float)
        x = 0.5 + c.x_offset + c.scale * pts[..., 0]
        y = 1 + c.scale * (pts[..., 1] - 1)
        return np.stack([x, y], -1)

    def to_pixel_xy(self, pts: np.ndarray) -> np.ndarray:
        """Character units -> this frame's pixels (pixel i's centre at i + 0.5), through `to_label_xy`."""
        xy = self.to_label_xy(pts)
        return np.stack([(xy[..., 0] - 0.5) * self.height + self.width / 2, xy[..., 1] * self.height], -1)

    def _head_place(self, motion: Motion, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame i's neck top (the head's pivot) and head centre, in character units."""
        c = self.c
        yaw, pitch, _ = motion.head[i]
        sway, breath, lift = motion.body[i]
        neck_top = np.array([sway * 0.6, HEAD_Y + c.head_ry * 0.75 - lift * 0.5])
        head_c = np.array([sway * 0.6 + yaw * 0.01, HEAD_Y + 0.012 * pitch - lift * 0.6 - breath * 0.5])
        return neck_top, head_c

    def mouth_place(self, motion: Motion) -> np.ndarray:
        """(frames, 3): each frame's mouth centre (x, y in label coordinates, as `to_label_xy`) and
        the character's resting mouth half-width in label units (the scale of the mouth)."""
        c = self.c
        out = np.zeros((len(motion.head), 3))
        for i in range(len(motion.head)):
            neck_top, hc = self._head_place(motion, i)
            yaw, pitch, roll = motion.head[i]
            fx, fy = _feature_slide(c, yaw, pitch)
            x, y = hc[0] + fx, hc[1] + fy + MOUTH_BELOW_EYES
            cos, sin = np.cos(roll * 0.35), np.sin(roll * 0.35)  # the head's rotation about the neck (Canvas.rot)
            dx, dy = x - neck_top[0], y - neck_top[1]
            out[i, :2] = self.to_label_xy(
                np.array([neck_top[0] + cos * dx - sin * dy, neck_top[1] + sin * dx + cos * dy])
            )
        out[:, 2] = c.scale * c.mouth_width
        return out

    def frame(self, motion: Motion, mouth: np.ndarray, i: int) -> np.ndarray:
        """uint8 (height, width, 3) for frame i; mouth: (5,) open, width, round, closed, teeth."""
        c = self.c
        cv = Canvas(self.bg, self.width, self.height, self.ss, c.scale, c.x_offset, self.outline, 0.005)
        yaw, pitch, roll = motion.head[i]
        sway, breath, lift = motion.body[i]
        neck_top, head_c = self._head_place(motion, i)
        if c.hair_style in ("long", "bob", "curly") or c.top == "hoodie":
            cv.rot = (neck_top, np.cos(roll * 0.35), np.sin(roll * 0.35))
            _hair_back(cv, c, head_c, yaw)
            cv.rot = None
        _torso(cv, c, sway, breath, lift)
        cv.line(
            np.array([[sway * 0.6, HEAD_Y + 0.1], [sway * 0.8, SHOULDER_Y - lift]]),
            shade(c.skin, 0.9),
            c.neck_width * 2,
        )
        _neckline(cv, c, sway, breath, lift)
        cv.rot = (neck_top, np.cos(roll * 0.35), np.sin(roll * 0.35))
        _head(cv, c, head_c, motion, mouth, i)
        cv.rot = None
        for k in (0, 1):
            _arm(cv, c, motion.joints[i, k], int(motion.hands[i, k]), side=(-1, 1)[k])
        return cv.finish()


def _fill_shaded(cv: Canvas, c: Character, pts: np.ndarray, colour, centre) -> None:
    if c.line_style == "shaded":
        cv.poly(pts, shade(colour, 0.78), outline=False)
        inner = (pts - centre) * 0.93 + centre + np.array([-0.006, -0.005])
        cv.poly(inner, colour, outline=False)
    else:
        cv.poly(pts, colour)


def _torso_shape(c: Character, sway: float, breath: float, lift: float) -> np.ndarray:
    sh, y = c.shoulder_half, SHOULDER_Y - breath - lift
    r = 0.05
    right = ellipse(sh - r, y + r, r, r, n=8, start=-np.pi / 2, stop=0.0)
    left = ellipse(-sh + r, y + r, r, r, n=8, start=np.pi, stop=1.5 * np.pi)
    pts = np.concatenate([left, right, [[sh + 0.01, 1.05], [-sh - 0.01, 1.05]]])
    pts[:, 0] += sway
    return pts


def _torso(cv: Canvas, c: Character, sway: float, breath: float, lift: float) -> None:
    pts = _torso_shape(c, sway, breath, lift)
    if c.top == "hoodie":
        cv.poly(ellipse(sway, SHOULDER_Y - 0.02 - lift, c.shoulder_half * 0.6, 0.05), shade(c.shirt, 0.8))
    _fill_shaded(cv, c, pts, c.shirt, np.array([sway, 0.8]))
    y0 = SHOULDER_Y - breath - lift
    if c.pattern == "stripes":
        step = 0.045
        for k in range(12):
            yb = y0 + 0.03 + k * step
            band = np.array([[-1, yb], [1, yb], [1, yb + step * 0.45], [-1, yb + step * 0.45]])
            cv.poly(clip_convex(band, pts), c.shirt2, outline=False)
    elif c.pattern == "dots":
        for yy in np.arange(y0 + 0.06, 1.0, 0.06):
            for xx in np.arange(-c.shoulder_half + 0.04, c.shoulder_half - 0.02, 0.06):
                cv.dot(xx + sway + (0.03 if int(yy / 0.06) % 2 else 0), yy, 0.009, c.shirt2)
    elif c.pattern == "twotone":
        cv.poly(clip_convex(np.array([[-1, 0.82], [1, 0.82], [1, 1.1], [-1, 1.1]]), pts), c.shirt2, outline=False)
    if c.top == "jacket":
        cv.poly(np.array([[-0.05, y0 - 0.01], [0.05, y0 - 0.01], [0.06, 1.05], [-0.06, 1.05]]) + [sway, 0], c.shirt2)
        for s in (-1, 1):
            cv.poly(
                np.array([[s * 0.05, y0], [s * 0.11, y0 + 0.02], [s * 0.05, y0 + 0.16]]) + [sway, 0],
                shade(c.shirt, 0.8),
            )


def _neckline(cv: Canvas, c: Character, sway: float, breath: float, lift: float) -> None:
    y0 = SHOULDER_Y - breath - lift
    nw = c.neck_width
    if c.top == "turtleneck":
        cv.poly(
            np.array([[-nw * 1.1, y0 - 0.05], [nw * 1.1, y0 - 0.05], [nw * 1.3, y0 + 0.01], [-nw * 1.3, y0 + 0.01]])
            + [sway, 0],
            shade(c.shirt, 0.9),
        )
    elif c.top == "vneck":
        cv.poly(
            np.array([[-nw * 1.2, y0 - 0.005], [nw * 1.2, y0 - 0.005], [0, y0 + 0.07]]) + [sway, 0],
            c.skin,
            outline=False,
        )
    elif c.top == "collar":
        cv.poly(
            np.array([[-nw * 1.1, y0 - 0.005], [nw * 1.1, y0 - 0.005], [0, y0 + 0.04]]) + [sway, 0],
            c.skin,
            outline=False,
        )
        for s in (-1, 1):
            cv.poly(
                np.array([[s * nw * 1.1, y0 - 0.02], [0, y0 + 0.045], [s * nw * 2.2, y0 + 0.03]]) + [sway, 0], WHITE
            )
    elif c.top in ("tshirt", "hoodie"):
        cv.poly(ellipse(sway, y0 - 0.004, nw * 1.25, 0.022, n=14, start=0, stop=np.pi), c.skin, outline=False)
        if c.top == "hoodie":
            for s in (-1, 1):
                cv.line(np.array([[s * 0.02 + sway, y0 + 0.02], [s * 0.022 + sway, y0 + 0.11]]), WHITE, 0.006)


def _arm(cv: Canvas, c: Character, joints: np.ndarray, hand: int, side: int) -> None:
    shoulder, elbow, wrist = joints
    sleeve = shade(c.shirt, 0.95)
    fore = sleeve if c.long_sleeves else c.skin
    cv.poly(capsule(shoulder, elbow, 0.034, 0.028), sleeve)
    cv.poly(capsule(elbow, wrist, 0.026, 0.022), fore)
    d = wrist - elbow
    d = d / max(np.linalg.norm(d), 1e-6)
    centre = wrist + d * 0.02
    if hand == 2:  # pointing: fist plus an index finger along the forearm
        cv.poly(capsule(centre, centre + d * 0.06, 0.008, 0.007, n=5), c.skin)
        cv.poly(ellipse(*centre, 0.024, 0.024, n=14), c.skin)
    elif hand == 1:  # open palm: a wide hand with spread fingers
        cv.poly(ellipse(*(centre + d * 0.01), 0.028, 0.028, n=14), c.skin)
        for a in (-0.6, -0.2, 0.2, 0.6):
            ca, sa = np.cos(a), np.sin(a)
            fd = np.array([d[0] * ca - d[1] * sa, d[0] * sa + d[1] * ca])
            cv.poly(capsule(centre + fd * 0.02, centre + fd * 0.05, 0.007, 0.006, n=4), c.skin)
    else:
        cv.poly(ellipse(*centre, 0.025 if hand == 3 else 0.023, 0.025, n=14), c.skin)


def _hair_back(cv: Canvas, c: Character, hc: np.ndarray, yaw: float) -> None:
    rx, ry = c.head_rx, c.head_ry
    x, y = hc[0] - yaw * 0.01, hc[1]
    if c.top == "hoodie":
        cv.poly(ellipse(x, y + 0.01, rx * 1.35, ry * 1.25), shade(c.shirt, 0.8))
    if c.hair_style == "long":
        pts = np.concatenate(
            [
                ellipse(x, y, rx * 1.18, ry * 1.1, n=16, start=np.pi, stop=2 * np.pi),
                [[x + rx * 1.25, y + ry * 2.0], [x - rx * 1.25, y + ry * 2.0]],
            ]
        )
        cv.poly(pts, shade(c.hair, 0.85))
    elif c.hair_style == "bob":
        cv.poly(ellipse(x, y + ry * 0.2, rx * 1.25, ry * 1.05, power=2.6), shade(c.hair, 0.85))
    elif c.hair_style == "curly":
        for a in np.linspace(np.pi * 0.9, np.pi * 2.1, 11):
            cv.dot(x + np.cos(a) * rx * 1.1, y + np.sin(a) * ry * 1.05, rx * 0.33, shade(c.hair, 0.85))


def _face_shape(c: Character, hc: np.ndarray) -> np.ndarray:
    rx, ry = c.head_rx, c.head_ry
    power = {"square": 3.2, "round": 2.0, "oval": 2.0, "long": 2.2, "heart": 2.0}[c.face_shape]
    pts = ellipse(0, 0, rx * (1.06 if c.face_shape == "round" else 1.0), ry, n=36, power=power)
    if c.face_shape in ("heart", "oval", "long"):
        taper = {"heart": 0.35, "oval": 0.15, "long": 0.12}[c.face_shape]
        pts[:, 0] *= 1 - taper * np.clip(pts[:, 1] / ry, 0, 1) ** 2
    return pts + hc


def _feature_slide(c: Character, yaw: float, pitch: float) -> tuple[float, float]:
    """How far the facial features slide from the head's centre as the head turns."""
    return yaw * 0.35 * c.head_rx, pitch * 0.22 * c.head_ry


def _head(cv: Canvas, c: Character, hc: np.ndarray, m: Motion, mouth: np.ndarray, i: int) -> None:
    rx = c.head_rx
    yaw, pitch, _ = m.head[i]
    fx, fy = _feature_slide(c, yaw, pitch)
    for s in (-1, 1):  # ears, behind the face
        ex = hc[0] + s * rx * (0.97 - 0.15 * s * yaw) - fx * 0.3
        cv.poly(ellipse(ex, hc[1] + 0.01 + fy * 0.3, 0.018, 0.028, n=12), shade(c.skin, 0.92))
        if c.earrings:
            cv.dot(ex, hc[1] + 0.045 + fy * 0.3, 0.009, c.accent)
    face = _face_shape(c, hc)
    _fill_shaded(cv, c, face, c.skin, hc)
    cx, cy = hc[0] + fx, hc[1] + fy
    if c.blush:
        for s in (-1, 1):
            cv.poly(
                ellipse(cx + s * c.eye_spacing * 1.3, cy + 0.04, 0.016, 0.009, n=12),
                shade(c.skin, 0.9) if c.skin[0] < 120 else (240, 150, 150),
                outline=False,
            )
    if c.facial_hair == "beard":
        beard = clip_convex(face, np.array([[-1, cy + 0.03], [1, cy + 0.03], [1, 1], [-1, 1]]))
        cv.poly(beard, shade(c.hair, 0.9), outline=False)
    _eyes(cv, c, cx, cy, m.gaze[i], float(m.blink[i]), float(m.brow[i]))
    _nose(cv, c, cx + fx * 0.3, cy + 0.035)
    _mouth(cv, c, cx, cy + MOUTH_BELOW_EYES, mouth, float(m.smile[i]))
    if c.facial_hair == "moustache":
        cv.poly(ellipse(cx, cy + 0.058, c.mouth_width * 1.1, 0.009, n=14), shade(c.hair, 0.9), outline=False)
    elif c.facial_hair == "goatee":
        cv.poly(ellipse(cx, cy + 0.118, 0.018, 0.014, n=12), shade(c.hair, 0.9), outline=False)
    _hair_front(cv, c, hc, yaw)
    if c.glasses != "none":
        for s in (-1, 1):
            ex = cx + s * c.eye_spacing
            r = c.eye_size * 1.9
            pw = 2.0 if c.glasses == "round" else 4.0
            cv.line(
                np.vstack(
                    [ellipse(ex, cy, r, r * 0.85, n=20, power=pw), ellipse(ex, cy, r, r * 0.85, n=20, power=pw)[:1]]
                ),
                c.glasses_colour,
                0.005,
            )
        cv.line(
            np.array([[cx - c.eye_spacing + c.eye_size * 1.9, cy], [cx + c.eye_spacing - c.eye_size * 1.9, cy]]),
            c.glasses_colour,
            0.004,
        )
    _hat(cv, c, hc)


def _eyes(cv: Canvas, c: Character, cx: float, cy: float, gaze, blink: float, brow: float) -> None:
    es = c.eye_size
    for s in (-1, 1):
        ex, ey = cx + s * c.eye_spacing, cy
        by = ey - es * 1.9 - 0.012 * brow
        if c.brow_style != "none":
            w = {"thin": 0.004, "thick": 0.009, "arched": 0.006}[c.brow_style]
            arch = 0.008 if c.brow_style == "arched" else 0.002
            cv.line(
                np.array(
                    [[ex - s * es * 1.2, by + 0.002], [ex, by - arch], [ex + s * es * 1.3, by + 0.004 - 0.004 * brow]]
                ),
                shade(c.hair, 0.7),
                w,
            )
        open_ = 1 - blink
        if c.eye_style == "sleepy":
            open_ *= 0.6
        if open_ < 0.25:
            cv.line(np.array([[ex - es * 1.1, ey], [ex, ey + es * 0.3], [ex + es * 1.1, ey]]), DARK, 0.004)
            continue
        gx, gy = gaze[0] * es * 0.45, gaze[1] * es * 0.4
        if c.eye_style == "dot":
            cv.poly(ellipse(ex + gx * 0.5, ey + gy * 0.5, es * 0.55, es * 0.8 * open_, n=14), DARK, outline=False)
            continue
        h = es * (1.45 if c.eye_style == "anime" else 1.0) * open_
        cv.poly(ellipse(ex, ey, es * 1.25, h, n=18), WHITE)
        ir = min(es * (0.85 if c.eye_style == "anime" else 0.62), h)
        cv.poly(ellipse(ex + gx, ey + gy, ir * 0.9, ir, n=14), c.iris, outline=False)
        cv.poly(ellipse(ex + gx, ey + gy, ir * 0.45, ir * 0.5, n=10), DARK, outline=False)
        if c.eye_style == "anime":
            cv.dot(ex + gx - ir * 0.3, ey + gy - ir * 0.35, ir * 0.25, WHITE)
        if c.eye_style in ("lashes", "sleepy"):
            lid = ellipse(ex, ey, es * 1.3, h, n=12, start=np.pi, stop=2 * np.pi)
            cv.line(lid, DARK, 0.005)


def _nose(cv: Canvas, c: Character, x: float, y: float) -> None:
    col = shade(c.skin, 0.72)
    if c.nose_style == "dot":
        cv.dot(x, y, 0.006, col)
    elif c.nose_style == "line":
        cv.line(np.array([[x, y - 0.03], [x + 0.006, y], [x - 0.004, y + 0.004]]), col, 0.004)
    elif c.nose_style == "button":
        cv.poly(ellipse(x, y, 0.012, 0.009, n=12), shade(c.skin, 0.88))
    elif c.nose_style == "long":
        cv.poly(
            np.array([[x, y - 0.035], [x + 0.012, y + 0.006], [x - 0.01, y + 0.006]]),
            shade(c.skin, 0.85),
            outline=False,
        )


def _mouth(cv: Canvas, c: Character, x: float, y: float, mouth: np.ndarray, smile: float) -> None:
    """Openness, width and roundness change the lip shape; m/b/p press the lips; f/v show teeth on the lip."""
    open_, width, round_, closed, teeth = (float(v) for v in mouth)
    mw = c.mouth_width * (0.72 + 0.55 * width) * (1 - 0.42 * round_)
    oh = 0.034 * open_
    pressed = float(np.clip((closed - 0.6) / 0.4, 0, 1))  # m/b/p press the lips thin; rest barely
    lip = 0.009 * (1 + 0.8 * round_) * (1 - 0.6 * pressed)
    curve = 0.008 * smile * (1 - open_)
    outer = ellipse(x, y, mw + lip * 0.6, oh + lip, n=24, power=2.0 + 0.6 * (1 - round_))
    outer[:, 1] -= curve * (np.abs(outer[:, 0] - x) / mw) ** 2  # corners up for a smile
    cv.poly(outer, c.lips)
    if oh > 0.0025:
        cav = ellipse(x, y, mw * 0.86, oh, n=22, power=2.0 + 0.6 * (1 - round_))
        cv.poly(cav, (70, 18, 30), outline=False)
        if open_ > 0.45:
            cv.poly(ellipse(x, y + oh * 0.55, mw * 0.5, oh * 0.4, n=14), (200, 90, 100), outline=False)
        top = cav.copy()
        top[:, 1] = np.minimum(top[:, 1], y - oh + min(oh * 0.55, 0.008))
        cv.poly(top, WHITE, outline=False)
    else:
        seam = np.array([[x - mw, y - curve], [x, y + 0.002 * pressed], [x + mw, y - curve]])
        cv.line(seam, shade(c.lips, 0.4), 0.0035 + 0.005 * pressed)
        if pressed > 0.3:  # dimples at the corners of pressed lips
            for sx in (-1, 1):
                cv.dot(x + sx * (mw + lip * 0.8), y - curve, 0.004 * pressed, shade(c.skin, 0.6))
    if teeth > 0.2:  # upper teeth resting on the lower lip
        band = ellipse(x, y + 0.001, mw * 0.55, 0.0065 * teeth, n=14, start=0, stop=np.pi)
        cv.poly(np.vstack([[[x + mw * 0.55, y - 0.002], [x - mw * 0.55, y - 0.002]], band[::-1]]), WHITE, outline=False)


def _hair_front(cv: Canvas, c: Character, hc: np.ndarray, yaw: float) -> None:
    rx, ry = c.head_rx, c.head_ry
    style = c.hair_style
    if style == "bald":
        return
    col = c.hair if style != "buzz" else tuple(int(0.55 * a + 0.45 * b) for a, b in zip(c.hair, c.skin))
    x, y = hc[0] - yaw * 0.012, hc[1]
    side_drop = 0.35 if style in ("long", "bob", "curly") else 0.2
    arc = ellipse(x, y - 0.004, rx * 1.07, ry * 1.06, n=24, start=np.pi - side_drop, stop=2 * np.pi + side_drop)
    xs = np.linspace(arc[-1, 0], arc[0, 0], 9)
    u = (xs - x) / rx
    if c.fringe == "straight" and style not in ("mohawk", "buzz", "spiky"):
        line = y - ry * 0.38 + ry * 0.3 * np.abs(u) ** 4
    elif c.fringe == "side" and style not in ("mohawk", "buzz"):
        line = y - ry * (0.45 + 0.25 * np.clip(u, -1, 1)) + ry * 0.25 * np.abs(u) ** 3
    else:
        line = y - ry * 0.55 + ry * 0.45 * np.abs(u) ** 2
    cap = np.vstack([arc, np.stack([xs, line], 1)])
    if style == "mohawk":
        for k in range(5):
            a = np.pi * (1.25 + 0.125 * k)
            bx, by = x + np.cos(a) * rx * 0.9, y + np.sin(a) * ry * 0.95
            cv.poly(
                np.array(
                    [[bx - 0.012, by + 0.01], [bx + 0.012, by + 0.01], [bx + np.cos(a) * 0.04, by + np.sin(a) * 0.05]]
                ),
                col,
            )
        return
    cv.poly(cap, col)
    if style == "spiky":
        for k in range(7):
            a = np.pi * (1.1 + 0.8 * k / 6)
            bx, by = x + np.cos(a) * rx, y + np.sin(a) * ry
            cv.poly(
                np.array(
                    [
                        [bx - 0.018, by + 0.012],
                        [bx + 0.018, by + 0.012],
                        [bx + np.cos(a) * 0.045, by + np.sin(a) * 0.05],
                    ]
                ),
                col,
            )
    elif style == "curly":
        for a in np.linspace(np.pi * 1.05, np.pi * 1.95, 7):
            cv.dot(x + np.cos(a) * rx * 1.02, y + np.sin(a) * ry, rx * 0.25, col)
    elif style == "bun":
        cv.poly(ellipse(x, y - ry * 1.12, 0.04, 0.035, n=16), col)
    elif style == "ponytail":
        cv.poly(ellipse(x + rx * 1.05, y - ry * 0.2, 0.03, 0.07, n=16), col)


def _hat(cv: Canvas, c: Character, hc: np.ndarray) -> None:
    rx, ry = c.head_rx, c.head_ry
    x, y = hc
    col = c.hat_colour
    if c.hat == "beanie":
        cv.poly(np.vstack([ellipse(x, y - ry * 0.4, rx * 1.1, ry * 0.85, n=18, start=np.pi, stop=2 * np.pi)]), col)
        cv.poly(
            np.array(
                [
                    [x - rx * 1.12, y - ry * 0.55],
                    [x + rx * 1.12, y - ry * 0.55],
                    [x + rx * 1.12, y - ry * 0.35],
                    [x - rx * 1.12, y - ry * 0.35],
                ]
            ),
            shade(col, 0.8),
        )
    elif c.hat == "cap":
        cv.poly(ellipse(x, y - ry * 0.45, rx * 1.08, ry * 0.72, n=18, start=np.pi, stop=2 * np.pi), col)
        cv.poly(ellipse(x + rx * 0.5, y - ry * 0.47, rx * 0.9, 0.014, n=14), shade(col, 0.75))
    elif c.hat == "tophat":
        cv.poly(
            np.array(
                [
                    [x - rx * 0.75, y - ry * 0.7],
                    [x + rx * 0.75, y - ry * 0.7],
                    [x + rx * 0.7, y - ry * 1.9],
                    [x - rx * 0.7, y - ry * 1.9],
                ]
            ),
            col,
        )
        cv.poly(ellipse(x, y - ry * 0.7, rx * 1.35, 0.013, n=16), shade(col, 0.8))
        cv.poly(
            np.array(
                [
                    [x - rx * 0.74, y - ry * 0.9],
                    [x + rx * 0.74, y - ry * 0.9],
                    [x + rx * 0.74, y - ry * 0.78],
                    [x - rx * 0.74, y - ry * 0.78],
                ]
            ),
            c.accent,
            outline=False,
        )
    elif c.hat == "beret":
        cv.poly(ellipse(x - rx * 0.15, y - ry * 0.8, rx * 1.15, ry * 0.38, n=18), col)
