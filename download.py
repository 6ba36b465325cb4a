"""Stage 1: a video -> target frames, soundtrack and meta.json in the frames folder.

    uv run python download.py                    # Bad Apple!! from YouTube (yt-dlp, network)
    uv run python download.py --input clip.mp4   # any local video, no network

    uv run python download.py --input clip.mp4 --color   # colour targets, for three heads

Writes frames/targets/frame_00001.png ... (8-bit gray, or RGB with --color; --size x --size),
frames/audio.m4a (when the video has sound) and frames/meta.json. Skips what is already
complete; --force redoes it. Holds frames/.lock as optimize.py does: refused while one runs there.
"""

import argparse
import math

from badapple.cli import HelpFormatter
from badapple.download import BAD_APPLE_URL, download
from badapple.errors import exit_on_error


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=HelpFormatter
    )
    parser.add_argument("--url", default=BAD_APPLE_URL, help="video to fetch with yt-dlp")
    parser.add_argument(
        "--input",
        default=None,
        metavar="PATH",
        help="use this local video file instead of downloading",
    )
    parser.add_argument(
        "--frames-dir", default="frames", metavar="DIR", help="folder shared by the four scripts"
    )
    parser.add_argument("--fps", type=float, default=15, help="frames per second to extract")
    parser.add_argument(
        "--size",
        type=int,
        default=256,
        help="frame side in pixels = sequence length fed to the model",
    )
    parser.add_argument(
        "--fit",
        choices=["stretch", "crop", "pad"],
        default="stretch",
        help="how a non-square video becomes square",
    )
    parser.add_argument(
        "--start",
        type=float,
        default=None,
        metavar="SECONDS",
        help="skip the video before this time",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="keep only this much of the video",
    )
    parser.add_argument(
        "--color",
        action="store_true",
        help="RGB targets: optimize.py then plays R, G and B on three heads",
    )
    parser.add_argument("--force", action="store_true", help="redo steps whose output exists")
    args = parser.parse_args()
    if not 0 < args.fps < math.inf:
        parser.error("--fps must be a positive finite number")
    if not 2 <= args.size <= 4096:
        parser.error("--size must be between 2 and 4096 pixels")
    if args.start is not None and not 0 <= args.start < math.inf:
        parser.error("--start must be >= 0 seconds, a finite number")
    if args.duration is not None and not 0 < args.duration < math.inf:
        parser.error("--duration must be a positive finite number of seconds")
    with exit_on_error("download.py"):
        download(**vars(args))


if __name__ == "__main__":
    main()
