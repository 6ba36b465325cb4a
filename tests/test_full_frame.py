"""Full frame: the frame on head A, its transpose on head B, stitched into the whole square."""

import sys

import numpy as np
import pytest
import torch

from badapple.checkpoint import open_checkpoint
from badapple.chunks import read_inputs_embeds, write_chunk
from badapple.head import attention_scores, attention_weights, load_head
from badapple.layout import head_pictures, layout_metrics, layout_picture, token_count
from badapple.render import (
    DEFAULT_BLUR_SIGMA_PIXELS,
    attention_picture,
    full_frame_picture,
    full_frame_sink_picture,
)
from badapple.solvers import METHOD_DEFAULTS, solve_reduced
from badapple.targets import DEFAULT_CONTRAST_NATS, aimed_target, target_logits
from badapple.verify import model_through_layer, transformers_attention
from tests.maps import exact_sink_scores

SIZE = 256  # tokens, as in a real run: the square is more than 1% of the picture
HEADS = (2, 5)  # any two of the tiny 8-head checkpoint


def causal_softmax(scores: np.ndarray) -> np.ndarray:
    lower = np.tri(scores.shape[-1], dtype=bool)
    exp = np.where(lower, np.exp(scores - scores.max()), 0.0)
    return exp / exp.sum(axis=-1, keepdims=True)


def corner_square(size: int = SIZE) -> torch.Tensor:
    """A white square in the upper-right corner on black, wholly above the diagonal: [T, T]."""
    frame = torch.zeros(size, size)
    frame[2 : size // 3 + 2, size - size // 3 - 2 : size - 2] = 1.0
    assert frame.tril().sum() == 0  # a half-frame map cannot show any of it
    return frame


def perfect_attention(frame: np.ndarray) -> np.ndarray:
    """The causal attention of a head that hits its target exactly: [T, T] -> [T, T]."""
    return causal_softmax(target_logits(torch.from_numpy(frame)).numpy())


def perfect_sink_attention(frame: np.ndarray) -> np.ndarray:
    """The attention of a head that hits its sink target exactly: [T, T] -> [T+1, T+1]."""
    logits = exact_sink_scores(torch.from_numpy(frame), DEFAULT_CONTRAST_NATS).numpy()
    return causal_softmax(logits)


def disc_frame(size: int) -> np.ndarray:
    """A white disc on black, off centre, crossing the diagonal: [T, T] float32."""
    rows, columns = np.indices((size, size))
    return ((rows - size * 0.4) ** 2 + (columns - size * 0.55) ** 2 < (size * 0.3) ** 2).astype(
        np.float32
    )


def test_full_frame_picture_shows_the_whole_frame_and_swapping_heads_transposes_it():
    frame = disc_frame(48)
    picture = full_frame_picture(perfect_attention(frame), perfect_attention(frame.T))
    assert picture.shape == (48, 48) and picture.dtype == np.float32
    assert 0 <= picture.min() and picture.max() <= 1
    upper = np.triu(np.ones((48, 48), dtype=bool), 1)
    assert np.corrcoef(picture[upper], frame[upper])[0, 1] > 0.6
    rng = np.random.default_rng(0)
    a, b = causal_softmax(rng.normal(size=(2, 32, 32)))
    assert np.allclose(full_frame_picture(b, a), full_frame_picture(a, b).T, atol=1e-6)


def test_no_seam_along_the_diagonal():
    """Inside a white disc that crosses the diagonal, the diagonal is as bright as its sides."""
    size = 96
    frame = disc_frame(size)
    rows, columns = np.indices((size, size))
    inside = frame > 0.5
    near = inside & (np.abs(rows - columns) <= 1)
    away = inside & (np.abs(rows - columns) >= 4) & (np.abs(rows - columns) <= 8)

    def seam(picture: np.ndarray) -> float:
        return float(picture[away].mean() - picture[near].mean())

    a, b = perfect_attention(frame), perfect_attention(frame.T)
    assert abs(seam(full_frame_picture(a, b))) < 0.03
    # Two half-frame renders stitched: each blurred with nothing of the picture beyond its edge.
    naive = np.where(rows >= columns, attention_picture(a), attention_picture(b).T)
    assert seam(naive) > 0.05  # the dark line the stitching above avoids
    # true tone, blurred as much as the original: both triangles on one scale, no seam either
    sink_a, sink_b = perfect_sink_attention(frame), perfect_sink_attention(frame.T)
    assert abs(seam(full_frame_sink_picture(sink_a, sink_b, blur_sigma=1.5))) < 0.03


def test_true_tone_full_frame_of_an_exact_fit_is_the_frame():
    """A gray ramp with a white disc: every level of the whole square comes back as it was."""
    size = 40
    ramp = np.linspace(0.1, 0.9, size, dtype=np.float32)[None, :].repeat(size, 0)
    frame = np.maximum(disc_frame(size), ramp)
    picture = full_frame_sink_picture(
        perfect_sink_attention(frame), perfect_sink_attention(frame.T)
    )
    assert picture.shape == (size, size)
    assert np.abs(picture - frame).max() < 1e-5


@pytest.fixture(scope="module", params=["sink", "zscore"])
def solved(request, tiny_eight_heads_checkpoint):
    """The corner square solved by the default reduced solver in both layouts, one render."""
    render = request.param
    checkpoint = open_checkpoint(str(tiny_eight_heads_checkpoint))
    frame = corner_square()
    results = {}
    threads = torch.get_num_threads()
    # One thread: these tensors are tiny, and on a busy machine a second thread that waits for
    # a core makes every small op slow (0.1 s became 20 s on 2 shared cores).
    torch.set_num_threads(1)
    try:
        for layout, heads in (("half", HEADS[:1]), ("full", HEADS)):
            weights = load_head(checkpoint, heads, token_count(SIZE, render))
            pictures = head_pictures(frame[None, None], layout)  # [1, H, T, T]
            targets = aimed_target(pictures, render, DEFAULT_CONTRAST_NATS)
            solution = solve_reduced(
                weights, targets, [1], METHOD_DEFAULTS["reduced"], lambda loss: None
            )
            with torch.no_grad():
                attention = attention_weights(attention_scores(solution.embeddings, weights))
            results[layout] = (weights, solution.embeddings, attention[0].numpy())
    finally:
        torch.set_num_threads(threads)
    return checkpoint, frame.numpy(), render, results


def picture(attention: np.ndarray, layout: str, render: str) -> np.ndarray:
    """A gray frame's picture at the render's default blur: [T, T]."""
    return layout_picture(attention, layout, render, DEFAULT_BLUR_SIGMA_PIXELS[render])[0]


def test_head_pictures_give_head_b_the_transposed_frame():
    frames = torch.rand(3, 1, 8, 8)
    pictures = head_pictures(frames, "full")
    assert pictures.shape == (3, 2, 8, 8)
    assert torch.equal(pictures[:, :1], frames) and torch.equal(pictures[:, 1:], frames.mT)
    assert head_pictures(frames, "half").shape == (3, 1, 8, 8)


def test_a_square_above_the_diagonal_shows_only_in_full_frame(solved):
    _, frame, render, results = solved
    inside = frame > 0.5
    half = picture(results["half"][2], "half", render)
    full = picture(results["full"][2], "full", render)
    assert half[inside].max() == 0  # the causal mask hides it all
    assert full[inside].mean() > full[~inside].mean() + 0.1
    # scored on the whole square, the full frame shows it and the half frame does not
    assert layout_metrics(full, frame, "full")["corr"] > 0.3
    assert layout_metrics(full, frame, "full")["iou"] > layout_metrics(half, frame, "full")["iou"]


def test_one_transformers_forward_reproduces_both_heads(solved, tmp_path):
    checkpoint, _, render, results = solved
    weights, embeddings, attention = results["full"]
    tokens = token_count(SIZE, render)
    path = tmp_path / "frames_00001-00001.safetensors"
    write_chunk(path, [1], embeddings, {"layout": "full"}, seconds_per_frame=0.0)
    _, saved = read_inputs_embeds(path)  # [1, T, d]
    reference = transformers_attention(model_through_layer(checkpoint), saved, weights.heads)
    assert reference.shape == (1, 2, tokens, tokens)
    assert (reference[0] - torch.from_numpy(attention)).abs().max() < 1e-4
    theirs = picture(reference[0].numpy(), "full", render)
    assert np.abs(theirs - picture(attention, "full", render)).max() < 1e-3


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--full-frame", "--heads", "3,3"], "--heads 3,3: each head may appear once"),
        (["--full-frame", "--heads", "0,b"], "expected heads separated by commas, e.g. 0,1"),
        (["--full-frame", "--heads=-1,2"], "heads must be >= 0"),
    ],
)
def test_bad_heads_are_flag_errors(monkeypatch, capsys, flags, message):
    import optimize

    monkeypatch.setattr(sys, "argv", ["optimize.py", *flags])
    with pytest.raises(SystemExit) as exit_info:
        optimize.main()
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in error.splitlines()[-1], error
