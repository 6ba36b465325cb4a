"""--head best: every head of the played layer tried on a few frames, the best one played."""

import json
from pathlib import Path

import torch
from transformers import GPT2Model

from badapple.survey import best_head, survey_frames
from tests.conftest import TINY, save_checkpoint
from tests.scripts import RUN, assert_ok, run
from tests.test_end_to_end import clip, fresh_copy, pipeline_run  # noqa: F401 (fixtures)

STRONG_HEAD = 2


def faint_heads_checkpoint(directory: Path) -> Path:
    """The tiny GPT-2 with every head's queries and keys but STRONG_HEAD's scaled down 20x: a
    head that reaches only a narrow range of logits shows the frames faintly."""
    save_checkpoint(directory, **TINY)
    model = GPT2Model.from_pretrained(directory)
    d, head_dim = TINY["n_embd"], TINY["n_embd"] // TINY["n_head"]
    with torch.no_grad():
        attention = model.h[0].attn.c_attn  # [d, 3d], columns [Q | K | V]
        for head in range(TINY["n_head"]):
            if head == STRONG_HEAD:
                continue
            for start in (head * head_dim, d + head * head_dim):  # its Q, then its K
                attention.weight[:, start : start + head_dim] /= 20
                attention.bias[start : start + head_dim] /= 20
    model.save_pretrained(directory)
    return directory


def test_survey_frames_spread_over_the_video():
    assert survey_frames(range(1, 101)) == [1, 34, 67, 100]
    assert survey_frames(range(5, 8)) == [5, 6, 7]


def test_the_best_head_is_the_lowest_mae():
    survey = [{"head": 0, "mae": 0.2}, {"head": 1, "mae": 0.05}, {"head": 2, "mae": 0.05}]
    assert best_head(survey) == 1


def test_head_best_plays_on_the_head_that_shows_the_frames(tmp_path, pipeline_run):  # noqa: F811
    model = faint_heads_checkpoint(tmp_path / "faint")
    folder = fresh_copy(pipeline_run, tmp_path / "frames")
    flags = ["--model", model, "--frames-dir", folder.root, *RUN, "--frames", "1:8"]
    result = run("optimize.py", *flags, "--head", "best")
    assert_ok(result)
    metrics = json.loads(folder.metrics.read_text())
    survey = metrics["head_survey"]
    assert [record["head"] for record in survey] == list(range(TINY["n_head"]))
    assert metrics["settings"]["heads"] == [STRONG_HEAD]
    faint = [record["mae"] for record in survey if record["head"] != STRONG_HEAD]
    assert survey[STRONG_HEAD]["mae"] < 0.5 * min(faint), survey
    assert f"head   {STRONG_HEAD}: mae" in result.stdout and "plays the video" in result.stdout
    # the same command again picks the same head, and resumes
    again = run("optimize.py", *flags, "--head", "best")
    assert_ok(again)
    assert "8 done, 0 to do" in again.stdout
