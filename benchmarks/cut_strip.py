"""A strip of frames from two runs of the same video: target | before | after, frame by frame.

    uv run python benchmarks/full_video.py --keep /tmp/after                 # this version
    (the same from another checkout, --keep /tmp/before)
    uv run python benchmarks/cut_strip.py --before /tmp/before/frames --after /tmp/after/frames \
        --frames 251:256 --output docs/cut_strip.png

Reads each run's frames folder as optimize.py left it (targets/, output/ and output/metrics.json
for each frame's mae) and draws one column a frame: its target on top, then each run's PNG with
its mae. Nothing is solved: the pictures are the runs' own.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from badapple.storage import FramesDir, read_rgb_png  # noqa: E402


def maes(folder: FramesDir) -> dict[int, float]:
    """Each frame's mae, from the run's metrics.json."""
    metrics = json.loads(folder.metrics.read_text())
    return {record["frame"]: record["mae"] for record in metrics["frames"]}


def draw(before: FramesDir, after: FramesDir, frames: list[int], labels: tuple[str, str]) -> Figure:
    """Rows target, before, after; one column a frame."""
    rows = [("target", None), (labels[0], before), (labels[1], after)]
    figure = Figure(figsize=(2.1 * len(frames), 6.6), dpi=100, layout="constrained")
    axes = np.atleast_2d(figure.subplots(len(rows), len(frames)).T).T  # [rows, frames]
    scores = {id(before): maes(before), id(after): maes(after)}
    for column, frame in enumerate(frames):
        for row, (label, run) in enumerate(rows):
            ax = axes[row, column]
            folder = run or after
            png = folder.target_png(frame) if run is None else folder.output_png(frame)
            ax.imshow(read_rgb_png(png), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if run is not None:
                ax.set_xlabel(f"mae {scores[id(run)][frame]:.3f}")
            if row == 0:
                ax.set_title(f"frame {frame}")
            if column == 0:
                ax.set_ylabel(label)
    return figure


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--before", type=Path, required=True, help="a run's frames folder")
    parser.add_argument("--after", type=Path, required=True, help="another run's, same video")
    parser.add_argument("--frames", required=True, metavar="START:END", help="1-based, inclusive")
    parser.add_argument("--labels", default="before,after", help="the two runs' row labels")
    parser.add_argument("--output", type=Path, default=Path("docs/cut_strip.png"))
    args = parser.parse_args()
    start, _, end = args.frames.partition(":")
    frames = list(range(int(start), int(end or start) + 1))
    labels = tuple(args.labels.split(","))
    figure = draw(FramesDir(args.before), FramesDir(args.after), frames, labels)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
