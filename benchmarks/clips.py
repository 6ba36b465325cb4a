"""Synthetic shadow-art clips, like the Bad Apple!! video, for benchmarking the solvers.

    from benchmarks.clips import CLIP_KINDS, benchmark_clips, make_clip
    clip = make_clip("thin_limbs", frames=30, size=256, seed=0)  # float32 [30, 256, 256] in [0, 1]

No files and no ffmpeg: every clip is drawn with PIL (no anti-aliasing, so pixels are exactly 0
or 1) or numpy masks, and only the fades have gray levels. A clip is deterministic in its seed.
Scenes are laid out on a 256 x 256 stage and scaled to `size`, so a size-64 clip is the same
picture, smaller. Time runs at FPS frames a second and things move a few stage pixels a frame,
so consecutive frames change as smoothly as the original's.

A whole music video, for benchmarks that see what users see:

    from benchmarks.clips import dance_video, dance_video_cuts, dance_video_scenes
    video = dance_video(330, size=256, seed=0)  # float32 [330, 256, 256]: 22 s at 15 fps
    cuts = dance_video_cuts(330, seed=0)  # [121, 214, 250, 291]: frames that start a scene

Scenes of 2-4 s, black figures on white and white on black, hard cuts, dips through black and
white, cross-fades, a zoom and a pan, dancers at a music video's pace with hair, fingers,
ribbons and sticks 1-2 px wide (`dance_video`); `iter_dance_video` yields the frames one by one.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass

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
    """A binary picture drawn white in stage coordinates (0..256), scaled to `size`.

    `zoom` and `origin` are a camera: the stage point `origin` shows at the top-left corner and
    a stage pixel is `zoom` stage pixels wide on the picture (`_camera` centres it on a point).
    """

    def __init__(self, size: int, zoom: float = 1.0, origin: tuple[float, float] = (0.0, 0.0)):
        self.image = Image.new("L", (size, size), 0)
        self.draw = ImageDraw.Draw(self.image)
        self.scale = size / STAGE * zoom
        self.origin = origin

    def _xy(self, points):
        ox, oy = self.origin
        return [((x - ox) * self.scale, (y - oy) * self.scale) for x, y in points]

    def _width(self, width: float) -> int:
        return max(1, round(width * self.scale))  # a limb never vanishes at small sizes

    def disc(self, x: float, y: float, r: float, fill: int = 255):  # fill=0 cuts a hole
        r = r * self.scale
        ((x, y),) = self._xy([(x, y)])
        if r < 1:  # PIL draws nothing for an ellipse under 2 px across
            self.draw.point((x, y), fill)
        else:
            self.draw.ellipse([x - r, y - r, x + r, y + r], fill)

    def ellipse(self, x: float, y: float, rx: float, ry: float):
        s = self.scale
        rx, ry = max(rx * s, 1), max(ry * s, 1)  # PIL draws nothing under 2 px across
        ((x, y),) = self._xy([(x, y)])
        self.draw.ellipse([x - rx, y - ry, x + rx, y + ry], 255)

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


def _camera(size: int, x: float, y: float, zoom: float) -> _Canvas:
    """A canvas whose picture is centred on stage point (x, y), magnified `zoom` times."""
    half = STAGE / 2 / zoom
    return _Canvas(size, zoom, (x - half, y - half))


class _NoCanvas:
    """Draws nothing: for a figure's pose at another time (a ribbon's trail)."""

    def disc(self, *args, **kwargs):
        pass

    ellipse = line = polygon = disc


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


def _draw_figure(canvas, x, y, height, t, dance, thin=False, fingers=False) -> dict:
    """A dancing figure, hips at (x, y), about `height` stage pixels tall.

    thin=True draws 2-3 px limbs with 1 px fingers, the detail a low-rank map loses first;
    fingers=True gives the full-bodied figure 1 px fingers too. Returns where its head is,
    (x, y, radius), and its hands, [(x, y, forearm angle)] right then left.
    """
    k = height / 170  # the figure is laid out 170 units tall
    period, (p_right, p_left, p_legs, p_bend) = dance["period"], dance["phases"]
    limb, leg, chest = (2, 3, 5) if thin else (11, 13, 17)  # widths in figure units
    y = y + 4 * k * _swing(t, period / 2, 0)  # bobs twice a beat
    head = (x, y - 86 * k, 14 * k)
    canvas.disc(*head)
    canvas.ellipse(x, y - 34 * k, chest * k, 32 * k)  # torso
    arms = [
        (+1, 1.2 + 1.1 * _swing(t, period, p_right)),  # 0.1..2.3 rad: hanging to raised
        (-1, 1.2 + 1.1 * _swing(t, period, p_left)),
    ]
    hands = []
    for side, upper in arms:
        elbow = 0.4 + 0.4 * _swing(t, period, p_bend)
        points = _chain(
            (x + side * (chest - 5) * k, y - 60 * k),
            (side * upper, side * (upper + elbow)),
            (30 * k, 28 * k),
        )
        canvas.line(points, limb * k)
        hands.append((*points[-1], side * (upper + elbow)))
        if thin or fingers:  # a hand of four 1 px fingers fanned along the forearm
            length = (10 if thin else 17) * k  # past the round end of a thick forearm
            for spread in (-0.6, -0.2, 0.2, 0.6):
                finger = _chain(points[-1], (side * (upper + elbow) + spread,), (length,))
                canvas.line(finger, 1)
    for side, phase in ((+1, p_legs), (-1, p_legs + np.pi)):
        thigh = side * (0.2 + 0.35 * _swing(t, period, phase))
        points = _chain(
            (x + side * chest / 2 * k, y - 4 * k), (thigh, thigh - side * 0.25), (38 * k, 36 * k)
        )
        canvas.line(points, leg * k)
    return {"head": head, "hands": hands}


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


# --- a music video: scenes, hard cuts and fades ------------------------------------------------
#
# Shadow-art music videos (Bad Apple!! the first) cut every few seconds between black figures on
# white and white figures on black, dip through black or white, cross-fade, zoom and pan, and
# their dancers move fast and carry fine detail: hair, fingers, ribbons, sticks. `dance_video`
# is such a video, in blocks of DANCE_FRAMES frames (22 s): each block is 8 scenes of 2-4 s and
# holds every kind of scene and every transition, in an order drawn from the seed.

DANCE_FRAMES = 330  # one block of scenes: 22 s at 15 fps
BAD_APPLE_FRAMES = 3286  # the original video's length at 15 fps (219 s)
BLACK_ON_WHITE, WHITE_ON_BLACK = "black_on_white", "white_on_black"
SCENE_KINDS = ("solo", "duo", "zoom", "pan", "apple", "hair", "crowd")
# How a scene begins: a hard cut; a dip from the scene before through black or white (it fades
# out over its last DIP_FRAMES, this one in over its first); a cross-fade from the scene before
# (still moving) over CROSSFADE_FRAMES; the video's first scene fades in from black.
TRANSITIONS = ("cut", "dip_to_black", "dip_to_white", "crossfade", "fade_in")
DIP_FRAMES = 10
CROSSFADE_FRAMES = 10
_SCENES_PER_BLOCK = 8
_SCENE_FRAMES = (30, 60)  # 2 to 4 s
# the transitions into scenes 1..7 of a block (scene 0 is entered by a cut, or fades in)
_BLOCK_TRANSITIONS = ("cut", "cut", "cut", "cut", "dip_to_black", "dip_to_white", "crossfade")


@dataclass(frozen=True)
class DanceScene:
    """One scene of `dance_video`: frames [start, start + frames) of the video, 0-based."""

    start: int
    frames: int
    kind: str  # one of SCENE_KINDS
    polarity: str  # BLACK_ON_WHITE or WHITE_ON_BLACK
    transition: str  # how it begins, one of TRANSITIONS
    seed: int  # of its figures' and camera's random draws

    @property
    def end(self) -> int:
        return self.start + self.frames


def _block_scenes(seed: int, block: int) -> list[DanceScene]:
    """The 8 scenes of block `block`, DANCE_FRAMES frames together, starting at frame 0 of it."""
    rng = np.random.default_rng([seed, 2024, block])
    low, high = _SCENE_FRAMES
    spare = DANCE_FRAMES - _SCENES_PER_BLOCK * low  # 90 frames shared out, at most 30 a scene
    extra = rng.multinomial(spare, rng.dirichlet(np.full(_SCENES_PER_BLOCK, 2.0)))
    while extra.max() > high - low:
        over = extra.max() - (high - low)
        extra[extra.argmax()] -= over
        extra[extra.argmin()] += over
    lengths = low + extra
    kinds = [str(k) for k in rng.permutation(SCENE_KINDS)] + [str(rng.choice(SCENE_KINDS))]
    transitions = ["fade_in" if block == 0 else "cut"]
    transitions += [str(name) for name in rng.permutation(_BLOCK_TRANSITIONS)]
    # Three of the block's four cuts go into black on white, the case a warm start finds hardest;
    # a scene before a cut has the other polarity where it can, so that the cut flips the frame.
    cuts = [j for j in range(1, _SCENES_PER_BLOCK) if transitions[j] == "cut"]
    white_on_black_cut = cuts[rng.integers(len(cuts))]
    polarity: list[str | None] = [None] * _SCENES_PER_BLOCK
    for j in cuts:
        polarity[j] = WHITE_ON_BLACK if j == white_on_black_cut else BLACK_ON_WHITE
    for j in range(_SCENES_PER_BLOCK - 1, -1, -1):  # backwards: a scene looks at the next one
        if polarity[j] is None:
            if j + 1 < _SCENES_PER_BLOCK and transitions[j + 1] == "cut":
                polarity[j] = (
                    BLACK_ON_WHITE if polarity[j + 1] == WHITE_ON_BLACK else WHITE_ON_BLACK
                )
            else:
                polarity[j] = (BLACK_ON_WHITE, WHITE_ON_BLACK)[rng.integers(2)]
    seeds = rng.integers(0, 2**32, _SCENES_PER_BLOCK)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]) + block * DANCE_FRAMES
    return [
        DanceScene(int(a), int(n), k, str(p), tr, int(sd))
        for a, n, k, p, tr, sd in zip(
            starts, lengths, kinds, polarity, transitions, seeds, strict=True
        )
    ]


def _scene_plan(frames: int, seed: int) -> list[DanceScene]:
    """Every scene with a frame before `frames`, and the one after them (its transition
    decides how the last of them ends)."""
    scenes: list[DanceScene] = []
    block = 0
    while not scenes or scenes[-1].start < frames:
        scenes += _block_scenes(seed, block)
        block += 1
    return scenes[: next(i for i, s in enumerate(scenes) if s.start >= frames) + 1]


def dance_video_scenes(frames: int = DANCE_FRAMES, seed: int = 0) -> list[DanceScene]:
    """The scenes of `dance_video(frames, seed=seed)`, in order (the last may run past the end)."""
    return [scene for scene in _scene_plan(frames, seed) if scene.start < frames]


def dance_video_cuts(frames: int = DANCE_FRAMES, seed: int = 0) -> list[int]:
    """The 0-based frame indices of `dance_video(frames, seed=seed)` where a new scene starts
    with a hard cut (not a fade): frame `cut` is the new scene, frame `cut - 1` the old one."""
    return [s.start for s in dance_video_scenes(frames, seed) if s.transition == "cut"]


def _fast_dance(rng: np.random.Generator) -> dict:
    """A dance at a music video's pace: a beat of 1.0-1.6 s (clips' `_dancer`: 2.5-3.5 s)."""
    return {"period": rng.uniform(1.0, 1.6), "phases": rng.uniform(0, 2 * np.pi, 4)}


def _hair(canvas, head, t, facing, strands, length, period, phase, width=1.0, wind=0.35):
    """Strands of hair from the back of a head (x, y, r), flowing away from where it faces
    (+1: +x), waving in a wave that runs down each strand; 1 stage px wide by default."""
    x, y, r = head
    for s in range(strands):
        u = s / max(strands - 1, 1)  # 0 at the back of the head, 1 at its crown
        root = -facing * (1.7 + 1.2 * u)  # angle on the head, from straight down
        point = (x + r * np.sin(root), y + r * np.cos(root))
        base = -facing * (1.25 + 0.7 * u)  # flowing back, the crown's strands higher
        angles = [
            base
            + facing * 0.16 * j  # droops towards its tip
            + wind * _swing(t, period / 2, phase + 2.1 * u - 0.8 * j)
            for j in range(5)
        ]
        canvas.line(_chain(point, angles, [length * (0.8 + 0.4 * u) / 5] * 5), width)


def _stick(canvas, x, y, angle, length, width=1.5):
    """A straight thin prop held at (x, y), a third of it behind the hand: 1-2 px wide."""
    dx, dy = np.sin(angle), np.cos(angle)
    canvas.line(
        [(x - dx * length / 3, y - dy * length / 3), (x + dx * length, y + dy * length)], width
    )


def _ribbon(canvas, hand_at, t, samples=18, sag=0.6, width=1.5):
    """A ribbon trailing from a hand: the hand's path over the last 0.6 s, drooping with age.
    `hand_at(t)` is where the hand is at time t."""
    points = []
    for j in range(samples):
        x, y = hand_at(t - j / 30)
        points.append((x, y + sag * j**1.5))
    canvas.line(points, width)


def _pose(x_at, y_at, height, dance, **kwargs):
    """The figure whose hips are at (x_at(t), y_at(t)): draws at t, returns _draw_figure's."""

    def pose(canvas, t):
        return _draw_figure(canvas, x_at(t), y_at(t), height, t, dance, **kwargs)

    return pose


def _hop(y, period, height):
    """Hips at y, hopping `height` stage px twice a beat."""
    return lambda t: y - height * abs(np.sin(2 * np.pi * t / period))


def _solo(rng, duration):
    """One dancer crossing the stage at 3-5 px a frame, with hair and fingers, carrying a
    ribbon or a stick."""
    dance, facing = _fast_dance(rng), int(rng.choice([-1, 1]))
    height, speed = rng.uniform(150, 190), min(rng.uniform(45, 75), 200 / duration)
    x0 = 128 - facing * speed * duration / 2
    pose = _pose(
        lambda t: x0 + facing * speed * t,
        _hop(rng.uniform(160, 172), dance["period"], rng.uniform(6, 14)),
        height,
        dance,
        fingers=True,
    )
    ribbon, phase, k = rng.random() < 0.5, rng.uniform(0, 2 * np.pi), height / 170

    def frame(size, t):
        canvas = _Canvas(size)
        body = pose(canvas, t)
        _hair(canvas, body["head"], t, facing, 9, 48 * k, dance["period"], phase)
        hand = body["hands"][0]
        if ribbon:
            _ribbon(canvas, lambda s: pose(_NoCanvas(), s)["hands"][0][:2], t)
        else:
            _stick(canvas, hand[0], hand[1], hand[2] + 1.2 * _swing(t, 0.9, phase), 90 * k)
        return canvas

    return frame


def _duo(rng, duration):
    """Two dancers meeting and parting, mirror images of each other; one twirls a baton."""
    dance = _fast_dance(rng)
    right, left, legs, bend = dance["phases"]
    mirror = {"period": dance["period"], "phases": np.array([left, right, legs + np.pi, bend])}
    height, phase = rng.uniform(125, 150), rng.uniform(0, 2 * np.pi)

    def gap(t):  # half the distance between them: 35 to 90 stage px
        return 35 + 55 * abs(np.cos(np.pi * t / duration + phase / 4))

    hips = _hop(rng.uniform(170, 180), dance["period"], 8)
    dancers = [
        (_pose(lambda t: 128 - gap(t), hips, height, dance, fingers=True), +1),
        (_pose(lambda t: 128 + gap(t), hips, height, mirror, fingers=True), -1),
    ]
    spin = rng.uniform(0.6, 0.9) * 2 * np.pi  # rad a second

    def frame(size, t):
        canvas = _Canvas(size)
        for number, (pose, facing) in enumerate(dancers):
            body = pose(canvas, t)
            _hair(canvas, body["head"], t, facing, 7, 40, dance["period"], phase + number)
            if number == 0:
                x, y, _ = body["hands"][1]
                _stick(canvas, x, y, spin * t + phase, 60)
        return canvas

    return frame


def _zoom(rng, duration):
    """The camera zooms in on a dancer's head and shoulders (or out from them): 1x to 1.8-2.6x.
    Seen this close, the dance is slower (a beat of 1.6-2.2 s)."""
    dance = {"period": rng.uniform(1.6, 2.2), "phases": rng.uniform(0, 2 * np.pi, 4)}
    facing = int(rng.choice([-1, 1]))
    x0, speed = rng.uniform(100, 156), facing * rng.uniform(15, 30)
    pose = _pose(
        lambda t: x0 + speed * t,
        _hop(rng.uniform(165, 175), dance["period"], 5),
        170,
        dance,
        fingers=True,
    )
    most, inwards, phase = rng.uniform(1.8, 2.6), rng.random() < 0.7, rng.uniform(0, 2 * np.pi)

    def frame(size, t):
        u = t / duration if inwards else 1 - t / duration  # how far in, 0..1
        body = pose(_NoCanvas(), t)
        hx, hy, _ = body["head"]
        cx, cy = 128 + u * (hx - 128), 128 + u * (hy + 30 - 128)  # towards the shoulders
        canvas = _camera(size, cx, cy, most**u)
        body = pose(canvas, t)
        _hair(canvas, body["head"], t, facing, 14, 55, dance["period"], phase)
        return canvas

    return frame


def _pan(rng, duration):
    """The camera pans at 3-5 px a frame along a row of dancers, lamp posts and the ground."""
    direction, speed = int(rng.choice([-1, 1])), rng.uniform(50, 75)
    start = 128 - direction * speed * duration / 2
    end = start + direction * speed * duration
    left, right = min(start, end) - 128, max(start, end) + 128  # all the camera sees
    dancers = []
    for x in np.arange(left + 40, right, 115):
        dance, height = _fast_dance(rng), rng.uniform(110, 170)
        hips = rng.uniform(180, 195)
        dancers.append(
            _pose(lambda t, x=x: x, _hop(hips, dance["period"], 6), height, dance, fingers=True)
        )
    posts = np.arange(left + rng.uniform(0, 60), right, rng.uniform(130, 170)) + 57

    def frame(size, t):
        canvas = _camera(size, start + direction * speed * t, 128, 1.0)
        canvas.line([(left, 232), (right, 232)], 2)
        for x in posts:  # a 1 px post with a lamp, taller than the dancers
            canvas.line([(x, 232), (x, 40), (x + 14, 40)], 1)
            canvas.disc(x + 14, 44, 4)
        for pose in dancers:
            pose(canvas, t)
        return canvas

    return frame


def _apple(rng, duration):
    """An apple bouncing and turning, petals falling past it, a hand with open fingers."""
    phase, radius = rng.uniform(0, 2 * np.pi), rng.uniform(1.1, 1.5)
    count = 30
    x0, y0 = rng.uniform(0, STAGE, count), rng.uniform(0, STAGE, count)
    fall, size_of = rng.uniform(45, 90, count), rng.choice([1.0, 1.5, 2.0], count)
    side = int(rng.choice([-1, 1]))

    def frame(size, t):
        canvas = _Canvas(size)
        ax = 128 + 45 * _swing(t, 3.1, phase)
        ay = 150 - 50 * abs(np.sin(np.pi * t / 0.9 + phase))
        r = 26 * radius
        for dx, dy, rr in ((-0.4, 0, 1.0), (0.4, 0, 1.0), (0, 0.3, 0.93)):
            canvas.disc(ax + dx * r, ay + dy * r, rr * r)
        canvas.disc(ax, ay - r, 0.22 * r, fill=0)  # the dimple at the stalk
        turn = 2.5 * t + phase  # the stalk and leaf turn with the apple
        tip = (ax + 0.5 * r * np.sin(0.3 * np.sin(turn)), ay - 1.7 * r)
        canvas.line([(ax, ay - 0.8 * r), tip], 1.5)
        leaf = [(0, 0), (0.5, -0.25), (1.0, 0), (0.5, 0.2)]
        stretch = 0.9 * r * np.cos(turn)  # the leaf foreshortens as it turns
        canvas.polygon([(tip[0] + stretch * u, tip[1] + 0.9 * r * v) for u, v in leaf])
        xs = (x0 + 8 * np.sin(2 * np.pi * t / 1.5 + fall)) % STAGE
        ys = (y0 + fall * t) % (STAGE + 8) - 4
        for x, y, rr in zip(xs, ys, size_of, strict=True):
            canvas.disc(x, y, rr)
        # an arm from the bottom corner, its open hand reaching for the apple and back
        reach = 0.5 + 0.5 * _swing(t, 1.8, phase)
        hx, hy = 128 + side * (110 - 40 * reach), 250 - 60 * reach
        shoulder = (128 + side * 150, 290)
        canvas.line([shoulder, (hx, hy)], 14)
        point = np.arctan2(hx - shoulder[0], hy - shoulder[1])  # from straight down
        for spread in (-0.7, -0.35, 0, 0.35, 0.7):
            finger = _chain((hx, hy), (point + spread * (1 - 0.5 * reach),), (20,))
            canvas.line(finger, 1.5 if spread == -0.7 else 1)  # a thumb, four 1 px fingers
        return canvas

    return frame


def _hair_close_up(rng, duration):
    """A head and shoulders in profile, close, long hair streaming in the wind: 1 px strands."""
    facing, phase, period = (
        int(rng.choice([-1, 1])),
        rng.uniform(0, 2 * np.pi),
        rng.uniform(1.2, 1.8),
    )
    x0 = 128 + facing * rng.uniform(20, 45)

    def frame(size, t):
        canvas = _Canvas(size)
        hx = x0 - facing * 15 * _swing(t, 2.4, phase)  # sways to the beat
        hy = 105 + 8 * _swing(t, period, phase)
        canvas.ellipse(hx - facing * 10, 230, 80, 40)  # shoulders
        canvas.line([(hx - facing * 5, hy), (hx - facing * 10, 215)], 26)  # neck
        canvas.disc(hx, hy, 38)
        canvas.polygon(
            [(hx + facing * 30, hy - 5), (hx + facing * 46, hy + 8), (hx + facing * 32, hy + 14)]
        )
        wave = 2 * period  # a slower wave than a dancer's: long hair, seen close
        _hair(canvas, (hx, hy, 38), t, facing, 28, 130, wave, phase, wind=0.4)
        _hair(canvas, (hx, hy, 36), t + 0.2, facing, 4, 110, wave, phase + 1, width=2, wind=0.3)
        return canvas

    return frame


def _crowd(rng, duration):
    """Seven small thin-limbed dancers in two rows, in step, drifting sideways: 1 px fingers."""
    dance, drift = _fast_dance(rng), rng.choice([-1, 1]) * rng.uniform(20, 40)
    figures = []
    for row, (y, height, count) in enumerate(((120, 60, 3), (215, 85, 4))):
        for x in np.linspace(0, STAGE, count, endpoint=False) + rng.uniform(0, STAGE / count):
            delay = rng.uniform(0, 0.15)  # a crowd is never quite in step
            figures.append((x, y, height * rng.uniform(0.9, 1.1), delay, row))
    sticks = rng.random(len(figures)) < 0.4

    def frame(size, t):
        canvas = _Canvas(size)
        for (x, y, height, delay, row), stick in zip(figures, sticks, strict=True):
            shift = (x + drift * t * (1 + 0.3 * row)) % (STAGE + 60) - 30
            body = _draw_figure(canvas, shift, y, height, t - delay, dance, thin=True)
            if stick:
                hx, hy, angle = body["hands"][0]
                _stick(canvas, hx, hy, angle, height * 0.6, width=1)
        return canvas

    return frame


_DANCE_SCENES = {
    "solo": _solo,
    "duo": _duo,
    "zoom": _zoom,
    "pan": _pan,
    "apple": _apple,
    "hair": _hair_close_up,
    "crowd": _crowd,
}
assert tuple(_DANCE_SCENES) == SCENE_KINDS


def iter_dance_video(
    frames: int = DANCE_FRAMES, size: int = 256, seed: int = 0
) -> Iterator[np.ndarray]:
    """The frames of `dance_video` one at a time (float32 [size, size] each), for videos too
    long to hold: 3,286 frames of 256 x 256 are 0.86 GB."""
    if frames < 1 or size < 8:
        raise ValueError(f"need frames >= 1 and size >= 8, got frames={frames}, size={size}")
    plan = _scene_plan(frames, seed)
    drawers: dict[int, Callable] = {}

    def picture(number: int, local: int) -> np.ndarray:
        """Scene `number`'s picture at its frame `local` (past its end for a cross-fade)."""
        scene = plan[number]
        if number not in drawers:
            drawers.clear()  # scenes are drawn in order: only this one and the one before
            if number > 0:
                drawers[number - 1] = _DANCE_SCENES[plan[number - 1].kind](
                    np.random.default_rng(plan[number - 1].seed), plan[number - 1].frames / FPS
                )
            drawers[number] = _DANCE_SCENES[scene.kind](
                np.random.default_rng(scene.seed), scene.frames / FPS
            )
        shown = drawers[number](size, local / FPS).array()  # white figures on black
        return 1 - shown if scene.polarity == BLACK_ON_WHITE else shown

    number = 0
    for index in range(frames):
        while plan[number].end <= index:
            number += 1
        scene, following = plan[number], plan[number + 1]
        local = index - scene.start
        frame = picture(number, local)
        if scene.transition == "crossfade" and local < CROSSFADE_FRAMES:
            before = picture(number - 1, plan[number - 1].frames + local)  # still moving
            weight = (local + 1) / (CROSSFADE_FRAMES + 1)
            frame = weight * frame + (1 - weight) * before
        fade_in = min((local + 1) / (DIP_FRAMES + 1), 1.0)  # the first frames of a dip
        fade_out = min((scene.frames - 1 - local) / DIP_FRAMES, 1.0)  # the last: 0 at the end
        if scene.transition == "fade_in":
            frame = frame * min(local / DIP_FRAMES, 1.0)  # from a black first frame
        if scene.transition == "dip_to_black":
            frame = frame * fade_in
        if scene.transition == "dip_to_white":
            frame = 1 - (1 - frame) * fade_in
        if following.transition == "dip_to_black":
            frame = frame * fade_out
        if following.transition == "dip_to_white":
            frame = 1 - (1 - frame) * fade_out
        yield np.clip(frame, 0, 1).astype(np.float32)


def dance_video(frames: int = DANCE_FRAMES, size: int = 256, seed: int = 0) -> np.ndarray:
    """A shadow-art music video: float32 [frames, size, size] in [0, 1] at FPS frames a second,
    the same for the same seed, and the first n frames of a longer one are the shorter one.

    Scenes of 2-4 s (`dance_video_scenes`): black figures on white and white on black, entered
    by hard cuts (`dance_video_cuts`), dips through black or white, and cross-fades; dancers
    crossing the stage at 3-5 px a frame with fast limbs, hair strands, fingers, ribbons and
    sticks 1-2 px wide, a camera zoom and a pan, a close-up of streaming hair, a thin-limbed
    crowd, a bouncing apple. Pure black and white but for the fades.
    """
    return np.stack(list(iter_dance_video(frames, size, seed)))
