"""The display atlas: each head's span from its weights, checked against its singular values
and against solves on real trained weights."""

import math

import pytest
import torch

from badapple.atlas import WEAK_SPAN_NATS, display_spans, measure_atlas
from badapple.checkpoint import open_checkpoint, read_tensors
from badapple.head import load_head
from tests.conftest import TINY_EIGHT_HEADS, save_family_checkpoint


def span_from_singular_values(weights, head_index: int) -> float:
    """d · gm(σ(A_q)) · gm(σ(A_k)) · scale for one head of a HeadWeights, from torch's SVD of
    its own columns (a LayerNorm's centred)."""
    scaled = weights.ln_weight[:, None].double() * weights.query_key_weight.double()
    if weights.norm == "layer":
        scaled = scaled - scaled.mean(dim=0, keepdim=True)
    hd, heads = weights.head_dim, len(weights.heads)
    query = scaled[:, head_index * hd : (head_index + 1) * hd]
    key_start = (heads + weights.key_of_head[head_index]) * hd
    key = scaled[:, key_start : key_start + hd]
    gm = [torch.linalg.svdvals(block).log().mean().exp() for block in (query, key)]
    return float(weights.d_model * gm[0] * gm[1] * weights.scale)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_spans_are_the_singular_values_of_each_head(tmp_path, family, tiny_eight_heads_checkpoint):
    """Every head at once (one Gram matrix each, the key heads shared under grouped-query
    attention) gives what one head's own columns give."""
    if family == "gpt2":
        checkpoint = open_checkpoint(str(tiny_eight_heads_checkpoint))
    else:
        checkpoint = open_checkpoint(str(save_family_checkpoint(tmp_path / family, family)))
    heads = checkpoint.shape.heads
    attention = checkpoint.family.attention(
        checkpoint.config, lambda names: read_tensors(checkpoint, names), tuple(range(heads)), 0
    )
    spans = display_spans(attention, heads)
    for head in (0, 5):
        alone = load_head(checkpoint, (head,), tokens=8)
        assert spans[head].item() == pytest.approx(span_from_singular_values(alone, 0), rel=1e-4)


def test_a_head_scaled_down_spans_less_by_that_factor(tmp_path, tiny_eight_heads_checkpoint):
    """Queries 1/4 as long: a quarter of the span; the measure is absolute."""
    checkpoint = open_checkpoint(str(tiny_eight_heads_checkpoint))
    heads = TINY_EIGHT_HEADS["n_head"]
    attention = checkpoint.family.attention(
        checkpoint.config, lambda names: read_tensors(checkpoint, names), tuple(range(heads)), 0
    )
    before = display_spans(attention, heads)
    weight = attention["query_key_weight"].clone()
    hd = weight.shape[1] // (2 * heads)
    weight[:, 3 * hd : 4 * hd] /= 4  # head 3's queries
    after = display_spans({**attention, "query_key_weight": weight}, heads)
    assert after[3].item() == pytest.approx(before[3].item() / 4, rel=1e-5)
    others = [head for head in range(heads) if head != 3]
    torch.testing.assert_close(after[others], before[others])


def test_smollm2_layer_0_is_weak_and_layer_1_strong(smollm2_checkpoint):
    """The real model the atlas was made for: its layer-0 heads span about a nat, its layer-1
    heads tens of nats (README: The display atlas)."""
    checkpoint = open_checkpoint(str(smollm2_checkpoint))
    atlas = measure_atlas(checkpoint, [0, 1])
    assert atlas.spans.shape == (2, 9)
    assert atlas.spans[0].max() < 2 < WEAK_SPAN_NATS < 40 < atlas.spans[1].min()
    layer, head, span = atlas.ranked()[0]
    assert layer == 1 and span == atlas.spans.max().item()
    assert math.isclose(atlas.span(0, 3), atlas.spans[0].max().item())  # layer 0's widest


def test_a_norm_after_the_projection_spans_by_its_weight_not_the_projection(tmp_path):
    """Qwen3: queries 1/4 as long before the norm are the same queries after it (span
    unchanged), while the norm's weight halved halves every head's span."""
    checkpoint = open_checkpoint(str(save_family_checkpoint(tmp_path / "qwen3", "qwen3")))
    heads = checkpoint.shape.heads
    attention = checkpoint.family.attention(
        checkpoint.config, lambda names: read_tensors(checkpoint, names), tuple(range(heads)), 0
    )
    before = display_spans(attention, heads)
    weight = attention["query_key_weight"].clone()
    hd = checkpoint.shape.head_dim
    weight[:, 3 * hd : 4 * hd] /= 4  # head 3's queries, before the norm
    torch.testing.assert_close(
        display_spans({**attention, "query_key_weight": weight}, heads), before
    )
    halved = display_spans({**attention, "query_norm": attention["query_norm"] / 2}, heads)
    torch.testing.assert_close(halved, before / 2)
    # and the span is what the normalised queries and keys reach: √hd |w| along each dimension
    expected = hd * math.exp(
        attention["query_norm"].abs().log().mean() + attention["key_norm"].abs().log().mean()
    )
    assert before[0].item() == pytest.approx(expected * attention["scale"], rel=1e-5)


def test_a_norm_over_all_heads_spans_each_head_by_its_own_weights(tmp_path):
    """OLMo 2: one norm weight across every head's queries, so a head whose share of it is
    scaled by 4 spans 4 times as far, and the others not at all further; the key head it uses
    (heads 6 and 7 share key head 3) likewise moves both of its query heads."""
    checkpoint = open_checkpoint(str(save_family_checkpoint(tmp_path / "olmo2", "olmo2")))
    heads = checkpoint.shape.heads
    attention = checkpoint.family.attention(
        checkpoint.config, lambda names: read_tensors(checkpoint, names), tuple(range(heads)), 0
    )
    before = display_spans(attention, heads)
    assert len(set(before.tolist())) == heads  # each head its own weights: no two alike
    query_norm, key_norm = attention["query_norm"].clone(), attention["key_norm"].clone()
    query_norm[2] *= 4
    key_norm[3] *= 4
    after = display_spans({**attention, "query_norm": query_norm, "key_norm": key_norm}, heads)
    factor = torch.ones(heads)
    factor[2], factor[6:8] = 4.0, 4.0
    torch.testing.assert_close(after, before * factor)


def test_a_capped_head_spans_at_most_its_cap(tmp_path):
    """Gemma 2 caps every score at ±cap (5 nats in the tiny one, whose heads span more): a span
    S shows as cap·tanh(S/cap), under the cap however wide the head."""
    checkpoint = open_checkpoint(str(save_family_checkpoint(tmp_path / "gemma2", "gemma2")))
    heads = checkpoint.shape.heads
    attention = checkpoint.family.attention(
        checkpoint.config, lambda names: read_tensors(checkpoint, names), tuple(range(heads)), 0
    )
    cap = attention["softcap"]
    capped = display_spans(attention, heads)
    uncapped = display_spans({**attention, "softcap": None}, heads)
    assert float(uncapped.max()) > cap  # the cap matters here
    assert float(capped.max()) < cap
    assert torch.allclose(capped, cap * torch.tanh(uncapped / cap), rtol=1e-5)
    assert float(uncapped[0]) == pytest.approx(span_from_singular_values(
        load_head(checkpoint, (0,), tokens=8), 0), rel=1e-4)  # fmt: skip


def test_alibi_s_ramp_across_the_frame_is_taken_off_the_span(tmp_path):
    """BLOOM's head h adds slope_h · j to its scores on key j: over a frame of T tokens a ramp
    of slope_h·(T - 1) nats its own scores must undo. A steep head is a weak display."""
    checkpoint = open_checkpoint(str(save_family_checkpoint(tmp_path / "bloom", "bloom")))
    heads, tokens = checkpoint.shape.heads, 33
    attention = checkpoint.family.attention(
        checkpoint.config, lambda names: read_tensors(checkpoint, names), tuple(range(heads)), 0
    )
    plain = display_spans(attention, heads)
    slopes = torch.tensor([2 ** (-(head + 1)) for head in range(heads)])  # BLOOM's, 8 heads
    spans = measure_atlas(checkpoint, [0], tokens=tokens).spans[0]
    assert torch.allclose(spans, (plain - slopes * (tokens - 1)).clamp(min=0), atol=1e-4)
    assert float(spans[0]) < float(plain[0]) - 15  # head 0: a ramp of 16 nats
