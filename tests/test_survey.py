"""--head best: every head of the played layer tried on a few frames, the best one played."""

import json
from pathlib import Path

import torch
from transformers import GPT2Model

from badapple.atlas import Atlas
from badapple.survey import Display, best_display, candidates, survey_frames
from tests.conftest import TINY, save_checkpoint
from tests.scripts import RUN, assert_ok, run
from tests.test_end_to_end import fresh_copy

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


def test_the_shallowest_display_within_the_margin_plays():
    survey = [
        {"layer": 0, "heads": [1], "mae": 0.2},
        {"layer": 3, "heads": [4], "mae": 0.0105},
        {"layer": 5, "heads": [0], "mae": 0.0100},
    ]
    assert best_display(survey) == Display(3, (4,))  # 0.0005 worse: not worth 2 more blocks
    survey[1]["mae"] = 0.02
    assert best_display(survey) == Display(5, (0,))


def test_candidates_are_the_shallow_strong_layers_and_the_widest():
    spans = torch.tensor(
        [
            [1.0, 2.0, 1.5],  # layer 0: weak, never tried while strong ones exist
            [3.0, 50.0, 40.0],
            [60.0, 10.0, 2.0],
            [20.0, 30.0, 25.0],
            [300.0, 250.0, 9.0],
            [280.0, 1.0, 1.0],
        ]
    )
    chosen = candidates(Atlas(spans), list(range(6)), None)
    expected = {Display(1, (1,)), Display(2, (0,)), Display(3, (1,))}  # shallowest strong
    expected |= {Display(4, (0,)), Display(5, (0,)), Display(4, (1,))}  # the widest
    assert set(chosen) == expected
    assert [display.layer for display in chosen] == sorted(display.layer for display in chosen)
    # given heads: one display a layer, judged by its weakest head
    given = candidates(Atlas(spans), list(range(6)), (0, 1))
    assert Display(0, (0, 1)) not in given and Display(4, (0, 1)) in given
    # one layer, --head best: every head of it
    assert candidates(Atlas(spans), [2], None, every_head=True) == [
        Display(2, (head,)) for head in range(3)
    ]


def test_head_best_plays_on_the_head_that_shows_the_frames(tmp_path, pipeline_run):
    model = faint_heads_checkpoint(tmp_path / "faint")
    folder = fresh_copy(pipeline_run, tmp_path / "frames")
    flags = ["--model", model, "--frames-dir", folder.root, *RUN]
    result = run("optimize.py", *flags, "--frames", "1:8", "--head", "best")
    assert_ok(result)
    metrics = json.loads(folder.metrics.read_text())
    survey = metrics["display_atlas"]["survey"]
    assert [record["heads"] for record in survey] == [[head] for head in range(TINY["n_head"])]
    assert metrics["settings"]["heads"] == [STRONG_HEAD]
    faint = [record["mae"] for record in survey if record["heads"] != [STRONG_HEAD]]
    assert survey[STRONG_HEAD]["mae"] < 0.5 * min(faint), survey
    # the atlas saw it from the weights alone: the strong head spans 20 x 20 times the others
    spans = metrics["display_atlas"]["span_nats"][0]
    assert spans[STRONG_HEAD] > 100 * max(s for h, s in enumerate(spans) if h != STRONG_HEAD)
    assert f"head {STRONG_HEAD}: span" in result.stdout and "plays the video" in result.stdout
    # the same command again keeps the head; so does an extension to more frames, whose survey
    # frames would differ: the chunk files say where the run plays
    again = run("optimize.py", *flags, "--frames", "1:8", "--head", "best")
    assert_ok(again)
    assert "8 done, 0 to do" in again.stdout
    longer = run("optimize.py", *flags, "--frames", "1:12", "--head", "best")
    assert_ok(longer)
    assert "as the frames already solved in this folder do" in longer.stdout
    assert "8 done, 4 to do" in longer.stdout
    assert json.loads(folder.metrics.read_text())["settings"]["heads"] == [STRONG_HEAD]
