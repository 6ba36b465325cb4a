"""Everything that touches a video file: the only module that runs ffmpeg or yt-dlp.

One function per use of ffmpeg:

    probe(video)                       -> VideoInfo     size, frame rate, duration, codecs
    extract_frames(video, targets/)    -> frame count   frame_00001.png ... 8-bit gray, S x S
    extract_audio(video, audio.m4a)    -> has audio     AAC, copied when it already is AAC
    encode_video(output/frame_%05d.png, video.mp4)      H.264 + AAC, nearest-neighbour upscale

ffmpeg is found through `ffmpeg_executable()`: $FFMPEG, then `ffmpeg` on PATH, then the binary
that the imageio-ffmpeg package ships. There is no ffprobe in that package, so `probe` reads the
stream summary that `ffmpeg -i FILE` prints on stderr.
"""

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from badapple.errors import UserError
from badapple.storage import FRAME_PATTERN, frame_numbers

FITS = ("stretch", "crop", "pad")  # how a non-square video becomes S x S, see `_fit_filter`
DOWNLOAD_FORMAT = "bv*[ext=mp4]+ba[ext=m4a]/b[ext=mp4]/b"  # yt-dlp: best mp4 video + m4a audio
AUDIO_BITRATE = "192k"  # AAC bitrate when the soundtrack has to be re-encoded
CRF = 18  # libx264 quality; 18 keeps the hard edges of upscaled attention maps clean
STDERR_LINES = 2  # how many of ffmpeg's last stderr lines an error message carries


@dataclass(frozen=True)
class VideoInfo:
    """What `probe` reads from a video file; the first video and audio streams only."""

    width: int  # stored pixels, before any sample aspect ratio
    height: int
    fps: float  # 0.0 when ffmpeg reports none
    duration_seconds: float  # 0.0 when ffmpeg reports N/A (some streams, raw formats)
    video_codec: str  # ffmpeg's codec name: "h264", "vp9", ...
    audio_codec: str | None  # "aac", "opus", ...; None without an audio stream


def ffmpeg_executable() -> str:
    """Path of the ffmpeg binary: $FFMPEG, else `ffmpeg` on PATH, else imageio-ffmpeg's."""
    configured = os.environ.get("FFMPEG")
    if configured:
        if not Path(configured).is_file():
            raise UserError(
                f"FFMPEG={configured} does not exist; point FFMPEG at an ffmpeg binary or unset it"
            )
        return configured
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        raise UserError(
            "no ffmpeg found; run `uv sync` (it installs imageio-ffmpeg, which ships one), "
            "install ffmpeg with your package manager, or set FFMPEG=/path/to/ffmpeg"
        ) from None


def probe(path: Path) -> VideoInfo:
    """Size, frame rate, duration and codecs of a video, read from `ffmpeg -i`'s stderr."""
    stderr = _describe(path)
    video = _first_stream(stderr, "Video")
    if "Input #0" not in stderr or video is None:
        reason = "no video stream" if "Input #0" in stderr else _stderr_tail(stderr)
        raise UserError(f"{path} is not a video ffmpeg can read ({reason}); pass a video file")
    size = re.search(r", (\d+)x(\d+)(?=[ ,]|$)", video)
    if size is None:
        raise UserError(f"{path} is not a video ffmpeg can read (no frame size); pass a video file")
    return VideoInfo(
        width=int(size.group(1)),
        height=int(size.group(2)),
        fps=_frame_rate(video),
        duration_seconds=_duration(stderr),
        video_codec=video.split(",")[0].split()[0],
        audio_codec=_first_codec(stderr, "Audio"),
    )


def download_video(url: str, destination_dir: Path) -> Path:
    """Download `url` with yt-dlp as `destination_dir/source.mp4` (H.264/AAC where offered)."""
    import yt_dlp  # imported here: it takes most of a second and only download.py needs it

    destination_dir.mkdir(parents=True, exist_ok=True)
    options = {
        "format": DOWNLOAD_FORMAT,
        "merge_output_format": "mp4",
        # the "/b" fallback may pick a webm; remux it so the result is always source.mp4
        "postprocessors": [{"key": "FFmpegVideoRemuxer", "preferedformat": "mp4"}],
        "outtmpl": str(destination_dir / "source.%(ext)s"),
        "ffmpeg_location": ffmpeg_executable(),
        "noplaylist": True,
    }
    try:
        with yt_dlp.YoutubeDL(options) as downloader:
            downloader.download([url])
    except yt_dlp.utils.DownloadError as error:
        reason = str(error).removeprefix("ERROR: ").splitlines()[0]
        raise UserError(
            f"could not download {url} ({reason}); check the network, "
            "or pass a local file with --input PATH"
        ) from None
    path = destination_dir / "source.mp4"
    if not path.is_file():
        raise UserError(f"yt-dlp did not produce {path}; pass a local file with --input PATH")
    return path


def extract_frames(
    video: Path,
    out_dir: Path,
    *,
    fps: float,
    size: int,
    fit: str,
    start_seconds: float | None,
    duration_seconds: float | None,
    color: bool = False,
) -> int:
    """Write `out_dir/frame_00001.png ...`: 8-bit gray (8-bit RGB with `color`), full range
    (black 0, white 255), size x size, square pixels. Frames already in `out_dir` are deleted
    first. Returns the frame count."""
    # setsar=1: the PNGs are square-pixel images, whatever the source's aspect ratio was.
    # format=gray (rgb24): swscale maps limited-range YUV (16-235) to full range (0-255);
    # checked on ffmpeg 5.1, 7.0 and 9.0, and tests/test_video.py checks it for the ffmpeg in use.
    scale = f"{_fit_filter(fit, size)},setsar=1,format={'rgb24' if color else 'gray'}"
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in frame_numbers(out_dir):
        (out_dir / (FRAME_PATTERN % old)).unlink()
    # fps rounds each output time to the nearest input frame, so a video shorter than half an
    # output frame (a single still) gives none; eof_action=pass then keeps its last frame. Not
    # the default: it rounds the end up and would add a frame to most videos.
    for eof_action in ("round", "pass"):
        args = [
            *_trim(start_seconds, duration_seconds),
            "-i", str(video),
            "-map", "0:v:0",
            "-vf", f"fps={_rate(fps)}:eof_action={eof_action},{scale}",
            "-start_number", "1",
            str(out_dir / FRAME_PATTERN),
        ]  # fmt: skip
        stderr = _run(
            args, failure=f"could not extract frames from {video}", fix="check that the file plays"
        )
        if "partial file" in stderr:  # mp4 demuxer: the file ends before the data it indexes
            raise UserError(
                f"{video} is truncated (ffmpeg: {_stderr_tail(stderr)}); download it again "
                "or pass a complete file"
            )
        count = len(frame_numbers(out_dir))
        if count:
            return count
    trimmed = start_seconds is not None or duration_seconds is not None
    raise UserError(
        f"no frames in {video} at those times; check --start/--duration"
        if trimmed
        else f"ffmpeg decoded no frames from {video}; check that the file plays"
    )


def extract_audio(
    video: Path,
    out_path: Path,
    *,
    start_seconds: float | None,
    duration_seconds: float | None,
) -> bool:
    """Write the first audio stream as AAC in an .m4a; False (nothing written) when there is
    none. AAC is copied as is; anything else is re-encoded at AUDIO_BITRATE."""
    audio_codec = probe(video).audio_codec
    if audio_codec is None:
        return False
    args = [
        # -ss after -i: with -c:a copy an -ss past the end before -i copies everything
        "-i", str(video),
        *_trim(start_seconds, duration_seconds),
        "-map", "0:a:0",
        "-vn",
        *_audio_codec_args(audio_codec),
        "-f", "ipod",  # the .m4a muxer, named because callers write to "audio.m4a.part"
        str(out_path),
    ]  # fmt: skip
    _run(args, failure=f"could not extract the audio of {video}", fix="check that the file plays")
    return True


def encode_video(
    frame_pattern: Path,
    out_path: Path,
    *,
    fps: float,
    scale: int,
    audio: Path | None,
    side_by_side_pattern: Path | None = None,
) -> None:
    """Encode a 1-based PNG sequence (`frames/output/frame_%05d.png`) as H.264 in an mp4.

    Each frame is upscaled `scale` times with nearest neighbour, so one attention cell stays
    one sharp block. With `side_by_side_pattern` (the targets, gray or RGB) the picture is
    target | attention. `audio` is muxed as AAC and the video cut to the shorter of the two.
    """
    rate = _rate(fps)
    inputs = [
        "-framerate", rate,
        "-start_number", "1",
        "-i", str(frame_pattern),
    ]  # fmt: skip
    upscale = f"scale=iw*{scale}:ih*{scale}:flags=neighbor"
    if side_by_side_pattern is None:
        graph = f"[0:v]format=rgb24,{upscale}[picture]"
    else:
        inputs += [
            "-framerate", rate,
            "-start_number", "1",
            "-i", str(side_by_side_pattern),
        ]  # fmt: skip
        graph = (
            f"[1:v]format=rgb24,{upscale}[target];"
            f"[0:v]format=rgb24,{upscale}[attention];"
            "[target][attention]hstack=inputs=2[picture]"
        )
    # yuv420p needs even sides: pad an odd one with a black pixel. Convert with the BT.709
    # matrix and tag it (setparams: ffmpeg 7+ ignores -color_trc etc. for PNG input), so
    # players do not shift the colormap's colours.
    graph += (
        ";[picture]pad=ceil(iw/2)*2:ceil(ih/2)*2,setsar=1,"
        "scale=out_color_matrix=bt709:out_range=limited,format=yuv420p,"
        "setparams=colorspace=bt709:color_primaries=bt709:color_trc=bt709:range=tv[video]"
    )
    audio_args = []
    if audio is not None:
        inputs += ["-i", str(audio)]
        audio_args = [
            "-map", f"{1 if side_by_side_pattern is None else 2}:a:0",
            *_audio_codec_args(_first_codec(_describe(audio), "Audio")),
            "-shortest",
        ]  # fmt: skip
    args = [
        *inputs,
        "-filter_complex", graph,
        "-map", "[video]",
        "-c:v", "libx264",
        "-crf", str(CRF),
        "-pix_fmt", "yuv420p",
        *audio_args,
        "-movflags", "+faststart",
        "-f", "mp4",  # named because callers write to "video.mp4.part"
        str(out_path),
    ]  # fmt: skip
    _run(args, failure=f"could not encode {out_path}", fix=f"check the frames in {frame_pattern}")


def _fit_filter(fit: str, size: int) -> str:
    """The filters that turn a frame of any shape into size x size square pixels.

    `dar` is the display aspect ratio (width / height as shown, sample aspect ratio included),
    so anamorphic videos are cropped or padded by the shape they are watched at.
    """
    s = size
    if fit == "stretch":  # squash the whole frame, like the original
        return f"scale={s}:{s}"
    if fit == "crop":  # cover S x S keeping the aspect ratio, then cut the centre
        return f"scale=w='max({s},{s}*dar)':h='max({s},{s}/dar)',crop={s}:{s}"
    if fit == "pad":  # fit inside S x S keeping the aspect ratio, then add black bars
        # Pad in limited-range YUV: older ffmpeg (5.1) pads gray frames with 16, not 0.
        return (
            f"scale=w='max(1,min({s},{s}*dar))':h='max(1,min({s},{s}/dar))':out_range=limited,"
            f"format=yuv444p,pad={s}:{s}:(ow-iw)/2:(oh-ih)/2:black"
        )
    raise UserError(f"unknown fit {fit!r}; use one of {', '.join(FITS)}")


def _trim(start_seconds: float | None, duration_seconds: float | None) -> list[str]:
    """`-ss`/`-t` for the part of the video to use; nothing when both are None."""
    args = []
    if start_seconds is not None:
        args += ["-ss", f"{start_seconds:.3f}"]
    if duration_seconds is not None:
        args += ["-t", f"{duration_seconds:.3f}"]
    return args


def _audio_codec_args(codec: str | None) -> list[str]:
    """Copy AAC as is; re-encode anything else (Opus, MP3, PCM ...) to AAC."""
    if codec == "aac":
        return ["-c:a", "copy"]
    return [
        "-c:a", "aac",
        "-b:a", AUDIO_BITRATE,
    ]  # fmt: skip


def _rate(fps: float) -> str:
    """A frame rate as ffmpeg's exact fraction: 15.0 -> "15", 29.97002997 -> "30000/1001"."""
    return str(Fraction(fps).limit_denominator(1001))


def _run(
    args: list[str], *, failure: str = "", fix: str = "", quiet: bool = True, check: bool = True
) -> str:
    """Run ffmpeg with `args`; returns its stderr. A failure raises UserError with its tail."""
    command = [ffmpeg_executable()]
    if quiet:
        command += [
            "-hide_banner",
            "-nostdin",
            "-y",
            "-loglevel", "error",
        ]  # fmt: skip
    try:
        result = subprocess.run(
            command + args, capture_output=True, text=True, errors="replace", check=False
        )
    except (FileNotFoundError, PermissionError) as error:
        raise UserError(
            f"cannot run ffmpeg at {command[0]} ({error.strerror}); "
            "set FFMPEG=/path/to/ffmpeg or run `uv sync` to install imageio-ffmpeg"
        ) from None
    if check and result.returncode != 0:
        raise UserError(f"{failure} (ffmpeg: {_stderr_tail(result.stderr)}); {fix}")
    return result.stderr


def _describe(path: Path) -> str:
    """What `ffmpeg -i path` prints about the file's streams (stderr)."""
    if not path.exists():
        raise UserError(f"{path} not found; check the path")
    args = [
        "-hide_banner",
        "-nostdin",
        "-i", str(path),
    ]  # fmt: skip
    # Without an output file ffmpeg always exits 1 ("At least one output file must be
    # specified"), so success is judged by what it printed, not by the exit status.
    return _run(args, quiet=False, check=False)


def _stderr_tail(stderr: str) -> str:
    """ffmpeg's last few distinct stderr lines as one line, without "[mov @ 0x...]" prefixes."""
    lines = []
    for line in stderr.splitlines():
        line = re.sub(r"^(\[[^\]]* @ 0x[0-9a-f]+\] )+", "", line.strip())
        # "Error opening input file(s) X" repeats the line before it and the path we print
        if line and not line.startswith("Error opening input file") and line not in lines:
            lines.append(line)
    return "; ".join(lines[-STDERR_LINES:]) or "no message"


def _first_stream(stderr: str, kind: str) -> str | None:
    """The description after "Stream #0:N...: Video: " of the first such stream, or None.

    Cover art in audio files shows up as a video stream marked "(attached pic)"; skip it.
    """
    for match in re.finditer(rf"^\s*Stream #0:\d+\S*: {kind}: (.*)$", stderr, re.MULTILINE):
        if "(attached pic)" not in match.group(1):
            return match.group(1)
    return None


def _first_codec(stderr: str, kind: str) -> str | None:
    """The codec name of the first `kind` stream: "h264", "aac", ...; None without one."""
    stream = _first_stream(stderr, kind)
    return stream.split(",")[0].split()[0] if stream else None


def _duration(stderr: str) -> float:
    """Seconds from "Duration: 00:03:39.07"; 0.0 for "Duration: N/A" or none."""
    match = re.search(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)", stderr)
    if match is None:
        return 0.0
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _frame_rate(video_stream: str) -> float:
    """Frames per second from "..., 29.97 fps, ..." (or "tbr" when there is no "fps").

    ffmpeg prints two decimals, so 30000/1001 reads as 29.97; snap such NTSC rates back to
    n * 1000/1001 so long videos keep their sync.
    """
    match = re.search(r"([\d.]+)(k?) (?:fps|tbr)\b", video_stream)
    if match is None:
        return 0.0
    printed = float(match.group(1)) * (1000 if match.group(2) else 1)
    ntsc = round(printed * 1.001) / 1.001
    if printed != round(printed) and abs(ntsc - printed) < 0.005:
        return ntsc
    return printed
