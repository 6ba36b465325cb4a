"""Synthetic shadow-art clips, like the Bad Apple!! video, for benchmarking the solvers.

    from benchmarks.clips import CLIP_KINDS, benchmark_clips, make_clip
    clip = make_clip("thin_limbs", frames=30, size=256, seed=0)  # float32 [30, 256, 256] in [0, 1]

No files and no ffmpeg: every clip is drawn with PIL (no anti-aliasing, so pixels are exactly 0
or 1) or numpy masks, and only the fades have gray levels. A clip is deterministic in its seed.
Scenes are laid out on a 256 x 256 stage and scaled to `size`, so a size-64 clip is the same
picture, smaller. Time runs at FPS frames a second and things move a few stage pixels a frame,
so consecutive frames change as smoothly as the original's.
"""

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

FPS = 15  # the original's frame rate: a frame is 1/15 s of scene time
STAGE = 256  # scenes are laid out in pixels of a 256 x 256 frame, then scaled to `size`
CLIP_KINDS = (
    "silhouettes",
    "thin_limbs",
    "text",
    "specks",
    "fade_to_black",
    "fade_to_white",
    "inverted",
)


class _Canvas:
    """A binary picture drawn white in stage coordinates (0..256), scaled to `size`."""

    def __init__(self, size: int):
        self.image = Image.new("L", (size, size), 0)
        self.draw = ImageDraw.Draw(self.image)
        self.scale = size / STAGE

    def _xy(self, points):
        return [(x * self.scale, y * self.scale) for x, y in points]

    def _width(self, width: float) -> int:
        return max(1, round(width * self.scale))  # a limb never vanishes at small sizes

    def disc(self, x: float, y: float, r: float, fill: int = 255):  # fill=0 cuts a hole
        r = r * self.scale
        x, y = x * self.scale, y * self.scale
        if r < 1:  # PIL draws nothing for an ellipse under 2 px across
            self.draw.point((x, y), fill)
        else:
            self.draw.ellipse([x - r, y - r, x + r, y + r], fill)

    def ellipse(self, x: float, y: float, rx: float, ry: float):
        s = self.scale
        rx, ry = max(rx * s, 1), max(ry * s, 1)  # PIL draws nothing under 2 px across
        self.draw.ellipse([x * s - rx, y * s - ry, x * s + rx, y * s + ry], 255)

    def line(self, points, width: float):
        """A polyline with round ends and joints."""
        self.draw.line(self._xy(points), 255, self._width(width))
        if width * self.scale >= 3:  # thinner lines need no caps
            for x, y in points:
                self.disc(x, y, self._width(width) / 2 / self.scale)

    def polygon(self, points):
        self.draw.polygon(self._xy(points), 255)

    def array(self) -> np.ndarray:
        return np.asarray(self.image, dtype=np.float32) / 255  # [size, size], exactly 0 or 1


def _render(frames: int, size: int, scene: Callable[[_Canvas, float], None]) -> np.ndarray:
    """Calls scene(canvas, t) at t = 0, 1/FPS, ... and stacks the pictures: [frames, size, size]."""
    pictures = []
    for i in range(frames):
        canvas = _Canvas(size)
        scene(canvas, i / FPS)
        pictures.append(canvas.array())
    return np.stack(pictures)


def _swing(t: float, period: float, phase: float) -> float:
    return float(np.sin(2 * np.pi * t / period + phase))


def _chain(start, angles, lengths):
    """Joint positions of a limb; angles in radians from straight down, positive towards +x."""
    points = [start]
    for angle, length in zip(angles, lengths, strict=True):
        x, y = points[-1]
        points.append((x + length * np.sin(angle), y + length * np.cos(angle)))
    return points


def _dancer(rng: np.random.Generator) -> dict:
    """A random dance: a beat period in seconds and a phase for each limb."""
    return {"period": rng.uniform(2.5, 3.5), "phases": rng.uniform(0, 2 * np.pi, 4)}


def _draw_figure(canvas, x, y, height, t, dance, thin=False):
    """A dancing figure, hips at (x, y), about `height` stage pixels tall.

    thin=True draws 2-3 px limbs with 1 px fingers, the detail a low-rank map loses first.
    """
    k = height / 170  # the figure is laid out 170 units tall
    period, (p_right, p_left, p_legs, p_bend) = dance["period"], dance["phases"]
    limb, leg, chest = (2, 3, 5) if thin else (11, 13, 17)  # widths in figure units
    y = y + 4 * k * _swing(t, period / 2, 0)  # bobs twice a beat
    canvas.disc(x, y - 86 * k, 14 * k)  # head
    canvas.ellipse(x, y - 34 * k, chest * k, 32 * k)  # torso
    arms = [
        (+1, 1.2 + 1.1 * _swing(t, period, p_right)),  # 0.1..2.3 rad: hanging to raised
        (-1, 1.2 + 1.1 * _swing(t, period, p_left)),
    ]
    for side, upper in arms:
        elbow = 0.4 + 0.4 * _swing(t, period, p_bend)
        points = _chain(
            (x + side * (chest - 5) * k, y - 60 * k),
            (side * upper, side * (upper + elbow)),
            (30 * k, 28 * k),
        )
        canvas.line(points, limb * k)
        if thin:  # a hand of four 1 px fingers fanned along the forearm
            for spread in (-0.6, -0.2, 0.2, 0.6):
                finger = _chain(points[-1], (side * (upper + elbow) + spread,), (10 * k,))
                canvas.line(finger, 1)
    for side, phase in ((+1, p_legs), (-1, p_legs + np.pi)):
        thigh = side * (0.2 + 0.35 * _swing(t, period, phase))
        points = _chain(
            (x + side * chest / 2 * k, y - 4 * k), (thigh, thigh - side * 0.25), (38 * k, 36 * k)
        )
        canvas.line(points, leg * k)


def _silhouettes(rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    dance, phase = _dancer(rng), rng.uniform(0, 2 * np.pi)

    def scene(canvas, t):  # crosses 140 px of stage each way in 8 s: <= 4 px a frame
        _draw_figure(canvas, 128 + 70 * _swing(t, 8, phase), 160, 170, t, dance)

    return _render(frames, size, scene)


def _thin_limbs(rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    dance, phase, pivot = _dancer(rng), rng.uniform(0, 2 * np.pi), rng.uniform(40, 216)

    def scene(canvas, t):
        _draw_figure(canvas, 128 + 60 * _swing(t, 9, phase), 165, 160, t, dance, thin=True)
        angle = 0.35 * _swing(t, 4, phase)  # a 1 px pendulum from the top edge
        canvas.line(_chain((pivot, 0), (angle,), (200,)), 1)

    return _render(frames, size, scene)


# 5 x 7 bitmap glyphs, drawn blocky on purpose: no font file, no anti-aliasing.
_GLYPHS = {
    "A": ".###. #...# #...# ##### #...# #...# #...#",
    "B": "####. #...# #...# ####. #...# #...# ####.",
    "D": "####. #...# #...# #...# #...# #...# ####.",
    "E": "##### #.... #.... ####. #.... #.... #####",
    "H": "#...# #...# #...# ##### #...# #...# #...#",
    "L": "#.... #.... #.... #.... #.... #.... #####",
    "O": ".###. #...# #...# #...# #...# #...# .###.",
    "P": "####. #...# #...# ####. #.... #.... #....",
    "R": "####. #...# #...# ####. #.#.. #..#. #...#",
    "S": ".#### #.... #.... .###. ....# ....# ####.",
    "T": "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "W": "#...# #...# #...# #.#.# #.#.# ##.## #...#",
    "!": "..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#..",
    " ": "..... ..... ..... ..... ..... ..... .....",
}


def _bitmap(text: str) -> np.ndarray:
    """The text as glyph cells, one blank column after each letter: bool [7, 6 * len(text)]."""
    rows = [[[c == "#" for c in row] + [False] for row in _GLYPHS[ch].split()] for ch in text]
    return np.concatenate([np.array(glyph) for glyph in rows], axis=1)


def _text(rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    cell = 9  # stage pixels per glyph cell: letters 45 x 63, strokes 9 px wide
    lines = [(_bitmap("BAD APPLE!! "), 40), (_bitmap("SHADOW ART "), 150)]  # (bitmap, top y)
    offsets = rng.uniform(0, 1000, len(lines))
    coords = (np.arange(size) + 0.5) * STAGE / size  # pixel centres in stage units
    clip = np.zeros((frames, size, size), np.float32)
    for i in range(frames):
        for (bitmap, top), offset, direction in zip(lines, offsets, (1, -1), strict=True):
            shift = offset + direction * 20 * i / FPS  # 20 stage px a second: 1.3 px a frame
            rows = np.floor((coords - top) / cell).astype(int)  # [size]
            cols = np.floor((coords + shift) / cell).astype(int) % bitmap.shape[1]  # wraps around
            inside = (rows >= 0) & (rows < bitmap.shape[0])
            clip[i][inside] = np.maximum(clip[i][inside], bitmap[rows[inside]][:, cols])
    return clip


def _specks(rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    count = 40
    x0, y0 = rng.uniform(0, STAGE, count), rng.uniform(0, STAGE, count)
    radius = rng.choice([1.0, 1.5, 2.0], count)  # 2-4 px across
    fall = rng.uniform(15, 40, count)  # stage px a second: 1-2.7 px a frame
    wobble = rng.uniform(0, 2 * np.pi, count)
    phase = rng.uniform(0, 2 * np.pi)

    def scene(canvas, t):
        # a crescent moon on a slow loop: a disc with an offset black disc bitten out of it
        mx, my = 128 + 50 * _swing(t, 10, phase), 110 + 30 * _swing(t, 7, phase)
        canvas.disc(mx, my, 48)
        canvas.disc(mx + 22, my - 12, 42, fill=0)
        xs = (x0 + 5 * np.sin(2 * np.pi * t / 3 + wobble)) % STAGE
        ys = (y0 + fall * t) % (STAGE + 8) - 4  # falls off the bottom, comes back at the top
        for x, y, r in zip(xs, ys, radius, strict=True):
            canvas.disc(x, y, r)

    return _render(frames, size, scene)


def _still_life(rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    """A big disc drifting and a rectangle turning slowly, white on black."""
    phase, cx, cy = rng.uniform(0, 2 * np.pi), rng.uniform(70, 110), rng.uniform(70, 110)

    def scene(canvas, t):
        canvas.disc(cx + 15 * _swing(t, 6, phase), cy, 55)
        angle = 0.3 * t + phase  # 0.3 rad a second: the corners move ~1 px a frame
        corners = [(70 * np.cos(a), 35 * np.sin(a)) for a in (0.5, np.pi - 0.5, np.pi + 0.5, -0.5)]
        turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        canvas.polygon([tuple(turn @ c + (170, 175)) for c in corners])

    return _render(frames, size, scene)


def _fade_to_black(rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    # 1 at the start, 0 at the end
    fade = np.linspace(1, 0, frames, dtype=np.float32)[:, None, None]
    return _still_life(rng, frames, size) * fade


def _fade_to_white(rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    rise = np.linspace(0, 1, frames, dtype=np.float32)[:, None, None]  # the black turns white
    scene = _still_life(rng, frames, size)
    return scene + (1 - scene) * rise


def _inverted(rng: np.random.Generator, frames: int, size: int) -> np.ndarray:
    dance, phase = _dancer(rng), rng.uniform(0, 2 * np.pi)

    def scene(canvas, t):  # drawn white on black, then inverted
        _draw_figure(canvas, 150 + 50 * _swing(t, 8, phase), 170, 150, t, dance)
        ax, ay = 60, 70 + 12 * _swing(t, 3, phase)  # an apple bobbing in the top left
        for dx, dy, r in ((-11, 0, 28), (11, 0, 28), (0, 8, 26)):  # two shoulders, a rounder base
            canvas.disc(ax + dx, ay + dy, r)
        canvas.disc(ax, ay - 28, 6, fill=0)  # the dimple at the stalk
        canvas.line([(ax, ay - 22), (ax + 3, ay - 40)], 4)
        canvas.polygon(
            [(ax + 3, ay - 34), (ax + 14, ay - 44), (ax + 26, ay - 42), (ax + 14, ay - 34)]
        )

    return 1 - _render(frames, size, scene)


_SCENES = {
    "silhouettes": _silhouettes,
    "thin_limbs": _thin_limbs,
    "text": _text,
    "specks": _specks,
    "fade_to_black": _fade_to_black,
    "fade_to_white": _fade_to_white,
    "inverted": _inverted,
}
assert tuple(_SCENES) == CLIP_KINDS


def make_clip(kind: str, frames: int, size: int = 256, seed: int = 0) -> np.ndarray:
    """One clip: float32 [frames, size, size] in [0, 1], the same for the same arguments.

    The fades reach full black / white on the last frame, whatever the clip's length (a 1-frame
    fade is the unfaded scene).
    """
    if kind not in _SCENES:
        raise ValueError(f"unknown clip kind {kind!r}; the kinds are {', '.join(CLIP_KINDS)}")
    if frames < 1 or size < 8:
        raise ValueError(f"need frames >= 1 and size >= 8, got frames={frames}, size={size}")
    rng = np.random.default_rng([seed, CLIP_KINDS.index(kind)])  # each kind its own stream
    clip = _SCENES[kind](rng, frames, size)  # [frames, size, size]
    return np.clip(clip, 0, 1).astype(np.float32)


def benchmark_clips(frames_per_clip: int, size: int = 256, seed: int = 0) -> dict[str, np.ndarray]:
    """One clip of each kind, in CLIP_KINDS order: {kind: float32 [frames_per_clip, size, size]}."""
    return {kind: make_clip(kind, frames_per_clip, size, seed) for kind in CLIP_KINDS}
