"""Draw the figures of a run from the metrics optimize.py wrote.

    uv run python plot.py --frames-dir frames --out-dir plots

Reads   frames/output/metrics.json
        frames/targets/frame_NNNNN.png and frames/output/frame_NNNNN.png (a few chosen frames)
Writes  plots/pixel_metrics.png       correlation, IoU and MAE vs video time
        plots/cumulative_quality.png  share of frames with corr >= x (0.9 and 0.95 written out)
        plots/best_worst.png          the 4 best and 4 worst frames by corr
        plots/target_vs_output.png    targets over attention maps, frames spread over the video
        plots/hero_frame.png          one representative frame (best corr), large
    and, only where the loss is the original's (--render zscore, loss_kind "original: ..."):
        plots/loss_timeline.png       loss per frame vs video time, with a 1 s rolling mean
        plots/loss_histogram.png      distribution of the loss

A partial run works too: the figures show the frames optimize.py has finished.
"""

import argparse
from pathlib import Path

from badapple.cli import HelpFormatter
from badapple.errors import exit_on_error
from badapple.figures import write_all_figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Draw the figures of a run from frames/output/metrics.json.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--frames-dir",
        type=Path,
        default=Path("frames"),
        help="the frames folder optimize.py wrote into",
    )
    parser.add_argument(
        "--out-dir", type=Path, default=Path("plots"), help="folder for the PNG figures"
    )
    args = parser.parse_args()

    print(f"plot.py: figures of {args.frames_dir / 'output' / 'metrics.json'} -> {args.out_dir}/")
    with exit_on_error("plot.py"):
        paths = write_all_figures(frames_dir=args.frames_dir, out_dir=args.out_dir)
    for path in paths:
        print(f"  {path}")
    print(
        f"wrote {len(paths)} figures to {args.out_dir}/; start with "
        f"{args.out_dir / 'hero_frame.png'}"
    )


if __name__ == "__main__":
    main()
