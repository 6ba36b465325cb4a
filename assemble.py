"""Stage 3: the attention maps (and the soundtrack) -> the music video.

    uv run python assemble.py                        # -> bad_apple_attention.mp4, 1024x1024
    uv run python assemble.py --side-by-side         # target | attention

Reads frames/meta.json, frames/output/frame_*.png, frames/audio.m4a (if any) and, for
--side-by-side, frames/targets/frame_*.png. Writes an H.264 yuv420p mp4 with AAC audio.
"""

import argparse

from badapple.assemble import OUTPUT_NAME, assemble
from badapple.cli import HelpFormatter
from badapple.errors import exit_on_error


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=HelpFormatter
    )
    parser.add_argument(
        "--frames-dir", default="frames", metavar="DIR", help="folder shared by the four scripts"
    )
    parser.add_argument("--output", default=OUTPUT_NAME, help="the video to write")
    parser.add_argument(
        "--fps",
        type=float,
        default=None,
        help="frame rate of the video (default: the one in meta.json)",
    )
    parser.add_argument(
        "--scale",
        type=int,
        default=4,
        help="integer nearest-neighbour upscale, so video sites keep the pixels",
    )
    parser.add_argument(
        "--side-by-side",
        action="store_true",
        help="show the target frame left of the attention map",
    )
    args = parser.parse_args()
    if args.fps is not None and args.fps <= 0:
        parser.error("--fps must be positive")
    if args.scale < 1:
        parser.error("--scale must be at least 1")
    with exit_on_error("assemble.py"):
        assemble(**vars(args))


if __name__ == "__main__":
    main()
