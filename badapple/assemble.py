"""Stage 3, assemble.py: the attention maps (and the audio) -> the music video.

Keyword names are assemble.py's flag names. No torch here: this stage starts fast.
"""

from pathlib import Path

from badapple import video
from badapple.errors import UserError
from badapple.storage import (
    FRAME_PATTERN,
    FramesDir,
    frame_numbers,
    png_problem,
    read_json,
    write_atomic,
)

OUTPUT_NAME = "bad_apple_attention.mp4"  # assemble.py's video


def assemble(
    *,
    frames_dir: str = "frames",
    output: str = OUTPUT_NAME,
    fps: float | None = None,
    scale: int = 4,
    side_by_side: bool = False,
) -> Path:
    """Encode the attention maps (and the audio) into an H.264 mp4; returns its path."""
    folder = FramesDir(Path(frames_dir))
    meta = read_json(folder.meta)
    if meta is None:
        raise UserError(f"{folder.meta} not found; run download.py and optimize.py first")
    out_path = Path(output)
    if out_path.is_dir():
        raise UserError(
            f"--output {output} is a folder; name the video file, e.g. {out_path / OUTPUT_NAME}"
        )
    frame_count = meta["frame_count"]
    present = set(frame_numbers(folder.output))
    if not present:
        raise UserError(f"no attention maps in {folder.output}; run optimize.py first")
    missing = [f for f in range(1, frame_count + 1) if f not in present]
    if missing:
        raise UserError(
            f"{folder.output} lacks {len(missing)} of {frame_count} frames (first: "
            f"{missing[0]}); run optimize.py to finish them (it resumes)"
        )
    for frame in range(1, frame_count + 1):
        problem = png_problem(folder.output_png(frame))
        if problem is not None:
            raise UserError(
                f"{folder.output_png(frame)} is {problem}; run optimize.py, which recomputes it"
            )
    if side_by_side and len(frame_numbers(folder.targets)) < frame_count:
        raise UserError(f"{folder.targets} is incomplete; rerun download.py for --side-by-side")
    audio = folder.audio if folder.audio.exists() else None
    write_atomic(
        out_path,
        lambda temporary: video.encode_video(
            folder.output / FRAME_PATTERN,
            temporary,
            fps=fps or meta["fps"],
            scale=scale,
            audio=audio,
            side_by_side_pattern=folder.targets / FRAME_PATTERN if side_by_side else None,
        ),
    )
    print(
        f"wrote {out_path} ({frame_count} frames"
        + (", with audio)" if audio else ", silent)")
        + "; next: uv run python plot.py"
    )
    return out_path
