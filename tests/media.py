"""Small real media files for the tests, made with the same ffmpeg the project uses."""

import subprocess
from pathlib import Path

from badapple.video import ffmpeg_executable

TONE_HZ = 440  # the test clips' soundtrack: a sine tone


def make_clip(
    path: Path,
    *,
    seconds: float = 2.0,
    width: int = 320,
    height: int = 240,
    fps: int = 30,
    audio: bool = True,
    color: bool = False,
    pixel_format: str = "yuv420p",
    frames: int | None = None,
    faststart: bool = False,
) -> Path:
    """An H.264 mp4 of white silhouettes moving on black, with an AAC sine tone when `audio`.

    The shapes are a tall "body" moving right, a square "head" moving down and a thin "limb"
    moving right; `color` adds a red square in the middle. yuv420p needs even sides; odd ones
    need `pixel_format="yuv444p"`. `frames` stops the video after that many frames;
    `faststart` puts the index (moov) before the data, as web videos do.
    """
    w, h = width, height
    shapes = [  # (colour, box width, box height, x at time t, y at time t)
        ("white", w // 6, h // 2, f"{w // 8}+{w // 5}*t", f"{h // 4}"),
        ("white", w // 5, w // 5, f"{w * 5 // 8}", f"{h // 8}+{h // 6}*t"),
        ("white", w // 4, 4, f"{w // 3}+{w // 16}*t", f"{h * 7 // 8}"),
    ]
    if color:
        shapes.append(("red", w // 8, w // 8, f"{w // 2}", f"{h // 2}"))

    inputs, outputs = _moving_shapes(f"color=c=black:s={w}x{h}", shapes, fps, pixel_format, audio)
    if frames is not None:
        outputs += ["-frames:v", str(frames)]
    if faststart:
        outputs += ["-movflags", "+faststart"]
    _ffmpeg([*inputs, *outputs, "-t", str(seconds), str(path)])
    return path


def make_colour_clip(
    path: Path, *, seconds: float = 2.0, width: int = 320, height: int = 240
) -> Path:
    """An H.264 mp4 (yuv444p, so colours keep full resolution) of saturated red, green and blue
    squares and a yellow bar moving over a dark blue-to-teal gradient, with an AAC sine tone."""
    w, h, fps = width, height, 30
    shapes = [  # (colour, box width, box height, x at time t, y at time t)
        ("red", w // 4, w // 4, f"{w // 10}+{w // 6}*t", f"{h // 8}"),
        ("lime", w // 5, w // 5, f"{w * 3 // 5}", f"{h // 10}+{h // 5}*t"),
        ("blue", w // 4, w // 5, f"{w // 2}-{w // 8}*t", f"{h * 3 // 5}"),
        ("yellow", w // 2, h // 12, f"{w // 6}", f"{h * 4 // 5}-{h // 10}*t"),
    ]
    gradient = f"gradients=s={w}x{h}:c0=0x102060:c1=0x30a0a0:x0=0:y0=0:x1={w}:y1={h}:speed=0"
    inputs, outputs = _moving_shapes(gradient, shapes, fps, "yuv444p", audio=True)
    _ffmpeg([*inputs, *outputs, "-t", str(seconds), str(path)])
    return path


def _moving_shapes(
    background: str, shapes: list[tuple], fps: int, pixel_format: str, audio: bool
) -> tuple[list[str], list[str]]:
    """ffmpeg's inputs and outputs for boxes (colour, width, height, x(t), y(t)) moving over a
    lavfi `background`, H.264, with an AAC sine tone when `audio`."""
    inputs = ["-f", "lavfi", "-i", f"{background}:r={fps}"]
    graph, last = [], "0"
    for index, (colour, box_w, box_h, x, y) in enumerate(shapes, start=1):
        inputs += ["-f", "lavfi", "-i", f"color=c={colour}:s={box_w}x{box_h}:r={fps}"]
        graph.append(f"[{last}][{index}]overlay=x='{x}':y='{y}'[v{index}]")
        last = f"v{index}"
    graph.append(f"[{last}]format={pixel_format}[video]")
    outputs = ["-filter_complex", ";".join(graph), "-map", "[video]", "-c:v", "libx264"]
    if audio:
        inputs += ["-f", "lavfi", "-i", f"sine=frequency={TONE_HZ}"]
        outputs += ["-map", f"{len(shapes) + 1}:a", "-c:a", "aac"]
    return inputs, outputs


def make_variable_rate_clip(path: Path) -> Path:
    """2 s of make_clip at a variable frame rate: 10 fps for the first second, then 30 fps."""
    steady = make_clip(path.with_name("steady_" + path.name), seconds=2, fps=30, audio=False)
    keep = r"select='gte(t\,1)+not(mod(n\,3))'"  # every third frame of the first second
    _ffmpeg(["-i", str(steady), "-vf", keep, "-fps_mode", "vfr", "-c:v", "libx264", str(path)])
    steady.unlink()
    return path


def truncate(path: Path, fraction: float = 0.5) -> Path:
    """Cut a file to `fraction` of its bytes, like a download that stopped."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def make_audio_only(path: Path) -> Path:
    """One second of sine tone; the codec follows the name (.m4a: AAC, .wav: PCM)."""
    _ffmpeg(["-f", "lavfi", "-i", f"sine=frequency={TONE_HZ}:duration=1", str(path)])
    return path


def make_text_file(path: Path) -> Path:
    """A text file, whatever its name says."""
    path.write_text("this is not a video\n")
    return path


def streams(path: Path) -> str:
    """ffmpeg's description of a file's streams, e.g. to find "Audio: aac" in an .m4a."""
    command = [ffmpeg_executable(), "-hide_banner", "-i", str(path)]
    return subprocess.run(command, capture_output=True, text=True).stderr


def _ffmpeg(args: list[str]) -> None:
    command = [ffmpeg_executable(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error"]
    result = subprocess.run(command + args, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
