"""Stage 1, download.py: a video -> target frames, its soundtrack and meta.json.

    frames/targets/frame_00001.png ...  8-bit gray (RGB with `color`), size x size
    frames/audio.m4a                    the soundtrack, when the video has one
    frames/meta.json                    source, fps, size, fit, channels, frame count, audio

Keyword names are download.py's flag names. Complete output is skipped; every file is written
atomically, so rerunning a stopped download finishes it. It holds the folder's lock (frames/.lock,
storage.frames_lock) as optimize.py does, so it never rewrites the targets under a running solve.
No torch here: this stage starts fast.
"""

import shutil
import warnings
from pathlib import Path

from badapple import video
from badapple.errors import DamagedFileError, UserError
from badapple.storage import (
    FramesDir,
    frame_numbers,
    frames_lock,
    png_problem,
    read_json,
    write_atomic,
    write_json,
)

BAD_APPLE_URL = "https://www.youtube.com/watch?v=FtutLA63Cp8"  # the original's video, 4:3, 30 fps


def download(
    *,
    url: str = BAD_APPLE_URL,
    input: str | None = None,
    frames_dir: str = "frames",
    fps: float = 15,
    size: int = 256,
    fit: str = "stretch",
    start: float | None = None,
    duration: float | None = None,
    color: bool = False,
    force: bool = False,
) -> dict:
    """Turn a video into target frames, its soundtrack and meta.json; returns the meta.
    Targets are gray, or RGB with `color` (meta.json's "channels": 1 or 3)."""
    folder = FramesDir(Path(frames_dir))
    folder.root.mkdir(parents=True, exist_ok=True)  # where the lock lives
    with frames_lock(folder.root, "download.py"):
        return _download(
            folder,
            url=url,
            input=input,
            fps=fps,
            size=size,
            fit=fit,
            start=start,
            duration=duration,
            color=color,
            force=force,
        )


def _download(
    folder: FramesDir,
    *,
    url: str,
    input: str | None,
    fps: float,
    size: int,
    fit: str,
    start: float | None,
    duration: float | None,
    color: bool,
    force: bool,
) -> dict:
    """`download`, holding the folder's lock."""
    source = str(Path(input).expanduser().resolve()) if input else url
    settings = {
        "source": source,
        "fps": fps,
        "size": size,
        "fit": fit,
        "start": start,
        "duration": duration,
        "channels": 3 if color else 1,
    }
    try:
        meta = read_json(folder.meta)
    except DamagedFileError as error:
        warnings.warn(f"{error.path} is damaged; redoing the frames", stacklevel=2)
        meta = None
    if not force and meta and meta.get("channels", 1) != settings["channels"]:
        # the outputs of a run on the old targets would no longer match: replacing is a choice
        kinds = {1: "gray", 3: "colour"}
        raise UserError(
            f"{folder.root} holds {kinds[meta.get('channels', 1)]} targets; rerun with --force "
            f"to replace them with {kinds[settings['channels']]} ones, or use another --frames-dir"
        )
    if (
        not force
        and meta
        and {k: meta.get(k) for k in settings} == settings
        and len(frame_numbers(folder.targets)) == meta["frame_count"]
        and (folder.audio.exists() or not meta["audio"])
        and _targets_are_whole(folder, meta["frame_count"], size)
    ):
        print(f"{folder.targets} is up to date ({meta['frame_count']} frames); --force redoes it")
        return meta

    if input:
        source_video = Path(source)
        if not source_video.is_file():
            raise UserError(f"--input {input} not found; pass the path of a video file")
    else:
        source_video = folder.root / "source.mp4"
        if force or not source_video.exists():
            print(f"downloading {url}")
            source_video = video.download_video(url, folder.root)
    info = video.probe(source_video)
    print(
        f"{source_video}: {info.width}x{info.height}, {info.fps:g} fps, "
        f"{info.duration_seconds:.1f} s; extracting frames at {fps:g} fps, {size}x{size} ({fit})"
    )

    # Frames go to a side folder that replaces the old one only once complete.
    staging = folder.root / "targets.part"
    shutil.rmtree(staging, ignore_errors=True)
    frame_count = video.extract_frames(
        source_video,
        staging,
        fps=fps,
        size=size,
        fit=fit,
        start_seconds=start,
        duration_seconds=duration,
        color=color,
    )
    shutil.rmtree(folder.targets, ignore_errors=True)
    staging.rename(folder.targets)

    has_audio = False
    if info.audio_codec is None:
        warnings.warn(f"{source_video} has no audio track; the video will be silent", stacklevel=2)
        folder.audio.unlink(missing_ok=True)
    else:
        write_atomic(
            folder.audio,
            lambda temporary: video.extract_audio(
                source_video, temporary, start_seconds=start, duration_seconds=duration
            ),
        )
        has_audio = True

    meta = {
        **settings,
        "frame_count": frame_count,
        "audio": has_audio,
        "source_width": info.width,
        "source_height": info.height,
    }
    write_json(folder.meta, meta)
    print(
        f"wrote {frame_count} frames to {folder.targets}"
        + (f" and the audio to {folder.audio}" if has_audio else "")
        + "; next: uv run python optimize.py"
    )
    return meta


def _targets_are_whole(folder: FramesDir, frame_count: int, size: int) -> bool:
    """Whether every target PNG decodes at size x size; the first that does not is reported."""
    for frame in range(1, frame_count + 1):
        problem = png_problem(folder.target_png(frame), size)
        if problem is not None:
            warnings.warn(
                f"{folder.target_png(frame)} is {problem}; redoing the frames", stacklevel=2
            )
            return False
    return True
