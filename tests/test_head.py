import pytest
import torch

from badapple.checkpoint import open_checkpoint
from badapple.errors import UserError
from badapple.head import attention_scores, attention_weights, load_head
from badapple.verify import model_through_layer, transformers_attention
from tests.conftest import TINY, save_checkpoint


@pytest.mark.parametrize("heads", [(0,), (1,), (3,), (2, 0)])
def test_head_forward_equals_transformers_gpt2(tiny_checkpoint, heads):
    checkpoint = open_checkpoint(str(tiny_checkpoint))
    weights = load_head(checkpoint, heads, tokens=32)
    embeddings = torch.randn(3, 32, checkpoint.shape.d_model)
    ours = attention_weights(attention_scores(embeddings, weights))  # [3, H, 32, 32]
    reference = transformers_attention(model_through_layer(checkpoint), embeddings, heads)
    assert ours.shape == (3, len(heads), 32, 32)
    assert (ours - reference).abs().max() < 1e-6


def test_lm_head_checkpoints_with_prefixed_names_load(tiny_lm_checkpoint):
    checkpoint = open_checkpoint(str(tiny_lm_checkpoint))
    weights = load_head(checkpoint, (1,), tokens=16)
    embeddings = torch.randn(2, 16, checkpoint.shape.d_model)
    reference = transformers_attention(model_through_layer(checkpoint), embeddings, (1,))
    assert (attention_weights(attention_scores(embeddings, weights)) - reference).abs().max() < 1e-6


def test_half_precision_checkpoints_load_as_float32(tmp_path):
    checkpoint = open_checkpoint(str(save_checkpoint(tmp_path, dtype=torch.float16, **TINY)))
    weights = load_head(checkpoint, (0,), tokens=8)
    assert weights.query_key_weight.dtype == torch.float32
    assert weights.query_key_weight.shape == (64, 2 * 16)


def test_only_the_heads_columns_are_kept(tiny_checkpoint):
    checkpoint = open_checkpoint(str(tiny_checkpoint))
    weights = load_head(checkpoint, (2,), tokens=8)
    assert weights.heads == (2,) and weights.head_dim == 16 and weights.scale == 0.25
    assert weights.position.shape == (8, 64)


def test_a_head_out_of_range_names_the_range(tiny_checkpoint):
    with pytest.raises(UserError, match=r"head 4 is out of range.*0\.\.3"):
        load_head(open_checkpoint(str(tiny_checkpoint)), (4,), tokens=8)


def test_frames_longer_than_the_context_are_refused(tiny_checkpoint):
    with pytest.raises(UserError, match="smaller --size"):
        load_head(open_checkpoint(str(tiny_checkpoint)), (0,), tokens=65)


@pytest.mark.parametrize("model_type", ["gemma2", "bloom", "mpt"])
def test_the_mechanisms_on_the_scores_are_read_into_the_head(tmp_path, model_type):
    """What load_head says of each: Gemma 2's cap and its query_pre_attn_scalar^-½ scale;
    ALiBi's slopes of 8 heads, 2^-1 ... 2^-8 (the ALiBi paper's), on the played heads, times
    the key position (BLOOM) or its distance back from the last (MPT); BLOOM's input norm at
    layer 0 only."""
    from tests.conftest import save_family_checkpoint

    folder = str(save_family_checkpoint(tmp_path, model_type))
    checkpoint = open_checkpoint(folder, layer=0 if model_type == "bloom" else 1)
    weights = load_head(checkpoint, (0, 6), tokens=10)
    positions = torch.arange(10.0)
    slopes = torch.tensor([2.0**-1, 2.0**-7])[:, None]  # heads 0 and 6
    if model_type == "gemma2":
        assert weights.softcap == 5.0 and weights.scale == pytest.approx(32**-0.5)
        assert weights.score_bias is None and weights.input_ln_weight is None
    elif model_type == "bloom":
        assert torch.allclose(weights.score_bias, slopes * positions)
        assert weights.softcap is None and weights.input_ln_weight.shape == (64,)
        with pytest.raises(UserError, match="word_embeddings_layernorm"):
            open_checkpoint(folder, layer=1)
    else:
        assert torch.allclose(weights.score_bias, slopes * (positions - 9))
        assert weights.softcap is None and weights.input_ln_weight is None
        assert load_head(checkpoint, (0,), tokens=10, layer=1).score_bias.shape == (1, 10)
