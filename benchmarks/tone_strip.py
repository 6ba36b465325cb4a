"""The README's strip: one frame as target | original rendering | true tone | true tone full frame.

    uv run python benchmarks/tone_strip.py                 # writes docs/true_tone_strip.png

Made by the scripts, as a user makes it: a shadow-art clip of `fixtures/clips.py` is encoded
to an mp4 with ffmpeg, `download.py` turns it into targets, and `optimize.py` runs three times on
copies of them, at its defaults apart from the flags shown (a GPT-2-XL-shaped stand-in checkpoint
from benchmarks/solvers.py, heads 0 and 1):

    original rendering     --render zscore
    true tone              (the defaults: --render sink)
    true tone full frame   --full-frame

The strip shows the frame of the clip with the most white, each picture's mean corr and mae over
the clip printed under it.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from badapple.storage import FramesDir, read_gray_png, read_rgb_png  # noqa: E402
from badapple.video import ffmpeg_executable  # noqa: E402
from benchmarks.solvers import write_checkpoints  # noqa: E402
from fixtures.clips import FPS, make_clip  # noqa: E402

PICTURE = ROOT / "docs" / "true_tone_strip.png"
RUNS = {  # title -> optimize.py's flags
    "original rendering (--render zscore)": ["--render", "zscore"],
    "true tone (default)": [],
    "true tone, full frame (--full-frame)": ["--full-frame"],
}


def encode_clip(frames: np.ndarray, path: Path) -> None:
    """Gray frames [N, T, T] in [0, 1] as an H.264 mp4 at the clips' frame rate."""
    with tempfile.TemporaryDirectory() as folder:
        for index, frame in enumerate(frames, start=1):
            Image.fromarray(np.round(frame * 255).astype(np.uint8)).save(
                Path(folder) / f"f_{index:05d}.png"
            )
        subprocess.run(
            [
                ffmpeg_executable(),
                "-y",
                "-loglevel",
                "error",
                "-framerate",
                str(FPS),
                "-i",
                str(Path(folder) / "f_%05d.png"),
                "-c:v",
                "libx264",
                "-crf",
                "0",  # lossless: the targets are the clip's own pixels
                "-pix_fmt",
                "yuv444p",
                str(path),
            ],
            check=True,
        )


def script(name: str, *args) -> None:
    subprocess.run([sys.executable, str(ROOT / name), *map(str, args)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--kind", default="silhouettes", help="clip kind (fixtures/clips.py)")
    parser.add_argument("--frames", type=int, default=6, help="frames in the clip")
    parser.add_argument("--size", type=int, default=256, help="frame side in pixels")
    parser.add_argument("--output", type=Path, default=PICTURE, help="the strip's PNG")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        checkpoint = write_checkpoints(work / "checkpoints")["default"]
        encode_clip(make_clip(args.kind, args.frames, args.size), work / "clip.mp4")
        downloaded = work / "downloaded"
        script("download.py", "--input", work / "clip.mp4", "--frames-dir", downloaded,
               "--size", args.size, "--fps", FPS)  # fmt: skip
        results = {}
        for title, flags in RUNS.items():
            frames = work / f"run{len(results)}"
            shutil.copytree(downloaded, frames)
            script("optimize.py", "--model", checkpoint, "--frames-dir", frames, *flags,
                   "--verify", 2)  # fmt: skip
            metrics = json.loads(FramesDir(frames).metrics.read_text())
            results[title] = (FramesDir(frames), metrics["means"])
        targets = FramesDir(downloaded)
        shown = max(
            range(1, args.frames + 1), key=lambda f: read_gray_png(targets.target_png(f)).mean()
        )
        figure = Figure(figsize=(4 * 3.2, 3.75), dpi=100, layout="constrained")
        axes = figure.subplots(1, 4)
        axes[0].imshow(read_gray_png(targets.target_png(shown)), cmap="gray", vmin=0, vmax=1)
        axes[0].set_title("target", fontsize=10)
        for ax, (title, (folder_of_run, means)) in zip(axes[1:], results.items(), strict=True):
            ax.imshow(read_rgb_png(folder_of_run.output_png(shown)))
            ax.set_title(title, fontsize=10)
            ax.set_xlabel(f"corr {means['corr']:.3f} · mae {means['mae']:.3f}", fontsize=9)
            print(f"{title}: corr {means['corr']:.4f}, mae {means['mae']:.4f} over the clip")
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
        args.output.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(args.output)
    print(f"wrote {args.output} (frame {shown} of a {args.kind} clip)")


if __name__ == "__main__":
    main()
