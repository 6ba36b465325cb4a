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
) -> Path:
    """An H.264 mp4 of white silhouettes moving on black, with an AAC sine tone when `audio`.

    The shapes are a tall "body" moving right, a square "head" moving down and a thin "limb"
    moving right; `color` adds a red square.
    """
    w, h = width, height
    shapes = [  # (colour, box width, box height, x at time t, y at time t)
        ("white", w // 6, h // 2, f"{w // 8}+{w // 5}*t", f"{h // 4}"),
        ("white", w // 5, w // 5, f"{w * 5 // 8}", f"{h // 8}+{h // 6}*t"),
        ("white", w // 4, 4, f"{w // 3}+{w // 16}*t", f"{h * 7 // 8}"),
    ]
    if color:
        shapes.append(("red", w // 8, w // 8, f"{w // 2}", f"{h // 2}"))

    inputs = ["-f", "lavfi", "-i", f"color=c=black:s={w}x{h}:r={fps}"]
    graph, last = [], "0"
    for index, (colour, box_w, box_h, x, y) in enumerate(shapes, start=1):
        inputs += ["-f", "lavfi", "-i", f"color=c={colour}:s={box_w}x{box_h}:r={fps}"]
        graph.append(f"[{last}][{index}]overlay=x='{x}':y='{y}'[v{index}]")
        last = f"v{index}"
    graph.append(f"[{last}]format=yuv420p[video]")
    outputs = ["-filter_complex", ";".join(graph), "-map", "[video]", "-c:v", "libx264"]
    if audio:
        inputs += ["-f", "lavfi", "-i", f"sine=frequency={TONE_HZ}"]
        outputs += ["-map", f"{len(shapes) + 1}:a", "-c:a", "aac"]
    _ffmpeg([*inputs, *outputs, "-t", str(seconds), str(path)])
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
