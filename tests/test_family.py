"""Each supported family, on a tiny random checkpoint written by transformers: our forward of
the played layer equals transformers' own (eager, output_attentions) to 1e-5, sink included;
the lift is exact; and --layer reaches a deeper layer as on GPT-2. The mechanisms on the scores
(Gemma 2's cap and scale, ALiBi, BLOOM's input norm) each change the maps, so leaving one out
fails these checks; what the adapter families add is checked on its own: SmolLM3's layer without
rotary, Granite's multiplied inputs, Mixtral's stored experts, and --verify through each one's own
base model."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from badapple.checkpoint import open_checkpoint
from badapple.errors import UserError
from badapple.head import attention_scores, attention_weights, load_head
from badapple.reachable import lift_factored, project_to_ball, project_to_space, reachable_space
from badapple.residual import LayerInput, reach_layer
from badapple.verify import model_through_layer, transformers_attention
from tests.conftest import FAMILY_CONFIGS, save_family_checkpoint

TOLERANCE = 1e-5
TOKENS = 20


CAUSAL = sorted(set(FAMILY_CONFIGS) - {"bert", "roberta"})


@pytest.fixture(scope="module", params=CAUSAL)
def family_checkpoint(request, tmp_path_factory) -> Path:
    return save_family_checkpoint(tmp_path_factory.mktemp(request.param), request.param)


@pytest.mark.parametrize("heads", [(0,), (1, 3), (5, 4, 7)])  # (5, 4): one key head, shared
def test_our_scores_are_transformers(family_checkpoint, heads):
    checkpoint = open_checkpoint(str(family_checkpoint))
    weights = load_head(checkpoint, heads, tokens=TOKENS)
    embeddings = torch.randn(2, TOKENS, checkpoint.shape.d_model)
    reference = transformers_attention(model_through_layer(checkpoint), embeddings, heads)
    with torch.no_grad():
        ours = attention_weights(attention_scores(embeddings, weights))
    assert (ours - reference).abs().max() < TOLERANCE


def test_lifted_rows_reproduce_the_solved_map(family_checkpoint):
    checkpoint = open_checkpoint(str(family_checkpoint))
    weights = load_head(checkpoint, (2, 3, 6), tokens=TOKENS)
    space = reachable_space(weights)
    whitened = project_to_space(torch.randn(2, TOKENS, space.dims), space)
    embeddings = lift_factored(whitened, space, weights).inputs_embeds()
    reference = transformers_attention(model_through_layer(checkpoint), embeddings, (2, 3, 6))
    with torch.no_grad():
        solved = attention_weights(attention_scores(embeddings, weights))
    assert (solved - reference).abs().max() < TOLERANCE


def test_a_deeper_layer_is_reached_exactly(family_checkpoint):
    checkpoint = open_checkpoint(str(family_checkpoint))
    if not checkpoint.family.deeper_layers:  # bloom: its input norm bounds the stream
        with pytest.raises(UserError, match="word_embeddings_layernorm.*use --layer 0"):
            open_checkpoint(str(family_checkpoint), layer=1)
        return
    weights = load_head(checkpoint, (1, 6), tokens=TOKENS, layer=1)
    space = reachable_space(weights)
    whitened = project_to_space(torch.randn(2, TOKENS, space.dims), space)
    reached = reach_layer(LayerInput(checkpoint, 1, "cpu"), whitened, space, weights)
    assert bool(reached.converged.all())
    reference = transformers_attention(
        model_through_layer(checkpoint, 1), reached.inputs, (1, 6), layer=1
    )
    with torch.no_grad():
        solved = lift_factored(whitened, space, weights).inputs_embeds()
        ours = attention_weights(attention_scores(solved, weights))
    assert (ours - reference).abs().max() < 1e-4


# --- bidirectional: bert, roberta ----------------------------------------------------------


@pytest.fixture(scope="module", params=["bert", "roberta"])
def bidirectional_checkpoint(request, tmp_path_factory) -> Path:
    return save_family_checkpoint(tmp_path_factory.mktemp(request.param), request.param)


@pytest.mark.parametrize("heads", [(0,), (2, 5, 7)])
def test_a_bidirectional_head_is_transformers(bidirectional_checkpoint, heads):
    checkpoint = open_checkpoint(str(bidirectional_checkpoint))
    weights = load_head(checkpoint, heads, tokens=TOKENS)
    assert not weights.causal
    embeddings = torch.randn(2, TOKENS, checkpoint.shape.d_model)
    reference = transformers_attention(model_through_layer(checkpoint), embeddings, heads)
    with torch.no_grad():
        ours = attention_weights(attention_scores(embeddings, weights), causal=False)
    assert (ours - reference).abs().max() < TOLERANCE
    assert reference[..., 3, 10].min() > 0  # the whole square: row 3 sees token 10


def test_a_bidirectional_lift_reproduces_the_solved_map(bidirectional_checkpoint):
    checkpoint = open_checkpoint(str(bidirectional_checkpoint))
    weights = load_head(checkpoint, (1, 6), tokens=TOKENS)
    space = reachable_space(weights)
    whitened = project_to_space(torch.randn(2, TOKENS, space.dims), space)
    embeddings = lift_factored(whitened, space, weights).inputs_embeds()
    reference = transformers_attention(model_through_layer(checkpoint), embeddings, (1, 6))
    with torch.no_grad():
        solved = attention_weights(attention_scores(embeddings, weights), causal=False)
    assert (solved - reference).abs().max() < TOLERANCE


def test_a_deeper_layer_of_a_post_ln_model_gets_one_line(bidirectional_checkpoint):
    with pytest.raises(UserError, match="normalises after each block, so only its layer 0"):
        open_checkpoint(str(bidirectional_checkpoint), layer=1)


@pytest.mark.parametrize(
    "model_type, channels, layout, heads",
    [
        ("llama", 1, "full", (0, 5)),  # A and B, of two key heads
        ("llama", 3, "half", (1, 4, 5)),  # 4 and 5 share a key head
        ("bert", 3, "full", (0, 2, 7)),  # bidirectional: a head a channel, the whole square
        ("gemma2", 3, "half", (1, 4, 5)),  # capped scores, their gradient by hand
        ("bloom", 1, "half", (5,)),  # ALiBi, and the lift through the input norm
        ("mpt", 1, "full", (2, 7)),  # ALiBi of its own
    ],
)
def test_full_frame_and_colour_play_on_another_family(
    tmp_path, model_type, channels, layout, heads
):
    """Real frames solved as optimize.py solves them (Look, the reduced solver), then the
    saved form checked through transformers: the maps are the solved ones."""
    from badapple.look import Look
    from badapple.solvers import METHOD_DEFAULTS, solve_frames
    from tests.test_residual import disc_frames

    checkpoint = open_checkpoint(str(save_family_checkpoint(tmp_path, model_type)))
    weights = load_head(checkpoint, heads, tokens=17)
    pictures = disc_frames(2, 16).expand(-1, channels, -1, -1).clone()
    if channels == 3:
        pictures[:, 1] = 1 - pictures[:, 1]
    look = Look(layout, "sink", 6.0, 0.0, None if channels == 3 else "gray", channels,
                weights.causal)  # fmt: skip
    settings = METHOD_DEFAULTS["reduced"]
    solution = solve_frames(
        "reduced", weights, look.aimed(pictures), [1, 2], settings, lambda _: None, {}
    )
    embeddings = solution.factored.inputs_embeds()
    reference = transformers_attention(model_through_layer(checkpoint), embeddings, heads)
    with torch.no_grad():
        ours = attention_weights(attention_scores(embeddings, weights), weights.causal)
    assert (ours - reference).abs().max() < 1e-4
    records = look.judge(weights, pictures, embeddings)
    assert max(record["mae"] for record in records) < 0.05


def test_a_sliding_window_shorter_than_the_frame_gets_one_line(tmp_path):
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.for_model(
        "mistral", vocab_size=16, sliding_window=8, **FAMILY_CONFIGS["mistral"]
    )
    AutoModel.from_config(config).save_pretrained(tmp_path)
    checkpoint = open_checkpoint(str(tmp_path))
    with pytest.raises(UserError, match="more than .* sliding window of 8: its heads would not"):
        load_head(checkpoint, (0,), tokens=17)
    assert load_head(checkpoint, (0,), tokens=8).heads == (0,)


# --- what the newer families add: a layer without positions, an input multiplier, stored
# experts, and --verify through each family's own model ---------------------------------------


@pytest.fixture(scope="module")
def smollm3_checkpoint(tmp_path_factory) -> Path:
    return save_family_checkpoint(tmp_path_factory.mktemp("smollm3"), "smollm3")


def test_a_smollm3_layer_without_rotary_has_no_positions_as_in_transformers(smollm3_checkpoint):
    """SmolLM3's layer 1 (no_rope_layers: 0) takes no rotary; the stream entering it, from
    random inputs through block 0, gives transformers' attention at that layer to 1e-5."""
    checkpoint = open_checkpoint(str(smollm3_checkpoint))
    rotary = load_head(checkpoint, (1, 6), tokens=TOKENS, layer=0)
    weights = load_head(checkpoint, (1, 6), tokens=TOKENS, layer=1)
    assert rotary.rotary_cos is not None and weights.rotary_cos is None
    embeddings = torch.randn(2, TOKENS, checkpoint.shape.d_model)
    reference = transformers_attention(
        model_through_layer(checkpoint, 1), embeddings, (1, 6), layer=1
    )
    with torch.no_grad():
        stream = LayerInput(checkpoint, 1, "cpu")(embeddings)  # [2, T, d]
        ours = attention_weights(attention_scores(stream, weights))
    assert (ours - reference).abs().max() < TOLERANCE


def test_granite_plays_the_inputs_its_model_multiplies(tmp_path):
    """GraniteModel multiplies inputs_embeds by embedding_multiplier (12) before layer 0: our
    layer 0 takes it into its norm's ε (0.5 here, large, so that it shows), and the same head
    read as a plain Llama's (ε as it is, 1/√hd) gives another map."""
    checkpoint = open_checkpoint(str(save_family_checkpoint(tmp_path, "granite")))
    weights = load_head(checkpoint, (2, 5), tokens=TOKENS)
    assert weights.ln_eps == pytest.approx(0.5 / 12**2) and weights.scale == 0.2
    embeddings = torch.randn(2, TOKENS, checkpoint.shape.d_model) * 0.2
    reference = transformers_attention(model_through_layer(checkpoint), embeddings, (2, 5))
    as_llama = replace(weights, ln_eps=0.5, scale=1 / weights.head_dim**0.5)
    with torch.no_grad():
        ours = attention_weights(attention_scores(embeddings, weights))
        plain = attention_weights(attention_scores(embeddings, as_llama))
    assert (ours - reference).abs().max() < TOLERANCE
    assert (plain - reference).abs().max() > 0.01


def test_mixtrals_stored_experts_load_as_transformers_loads_them(tmp_path):
    """A Mixtral checkpoint keeps its experts one by one (block_sparse_moe.experts.e.w1...), the
    model holds them stacked: the stream entering layer 1 through our loading of block 0 is
    the one of transformers' own from_pretrained, which converts them itself."""
    from safetensors import safe_open
    from transformers import AutoModel

    path = save_family_checkpoint(tmp_path, "mixtral")
    with safe_open(str(path / "model.safetensors"), framework="pt") as handle:
        assert "layers.0.block_sparse_moe.experts.3.w2.weight" in handle.keys()
    checkpoint = open_checkpoint(str(path))
    embeddings = torch.randn(2, TOKENS, checkpoint.shape.d_model)
    whole = AutoModel.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        expected = whole(inputs_embeds=embeddings, output_hidden_states=True).hidden_states[1]
    stream = LayerInput(checkpoint, 1, "cpu")(embeddings)
    assert (stream - expected).abs().max() < 1e-5


@pytest.fixture(scope="module")
def small_frames(tmp_path_factory) -> Path:
    """Four frames of 16 x 16 (17 tokens with the sink) of a real clip, as download.py leaves
    them."""
    from badapple.download import download
    from tests.media import make_clip

    work = tmp_path_factory.mktemp("small-frames")
    clip = make_clip(work / "clip.mp4", seconds=0.4, width=64, height=64, fps=10, audio=False)
    with pytest.warns(UserWarning, match="no audio"):
        download(input=str(clip), frames_dir=str(work / "frames"), fps=10, size=16)
    return work / "frames"


@pytest.mark.parametrize(
    "model_type, layer, base_model",
    [
        ("mixtral", 0, "MixtralModel"),
        ("mixtral", 1, "MixtralModel"),
        ("starcoder2", 0, "Starcoder2Model"),
        ("granite", 0, "GraniteModel"),
        ("granite", 1, "GraniteModel"),
        ("phi3", 0, "Phi3Model"),
        ("smollm3", 0, "SmolLM3Model"),
        ("smollm3", 1, "SmolLM3Model"),  # the layer without positions
        ("olmo2", 0, "Olmo2Model"),  # no norm before the attention, one over all heads after
        ("olmo2", 1, "Olmo2Model"),  # reached through a block that normalises its outputs
    ],
)
def test_verify_plays_through_the_familys_own_model(
    tmp_path, small_frames, model_type, layer, base_model
):
    """optimize(verify=...) on real frames: the saved embeddings, fed to transformers' own base
    model of the family, give our attention (to 1e-4) and the saved PNGs."""
    import shutil

    from badapple.optimize import optimize

    path = save_family_checkpoint(tmp_path / model_type, model_type)
    frames_dir = shutil.copytree(small_frames, tmp_path / "frames")
    metrics = optimize(
        model=str(path), frames_dir=str(frames_dir), layer=layer, head=5, steps=150,
        chunk_size=4, device="cpu", verify=2,
    )  # fmt: skip
    assert type(model_through_layer(open_checkpoint(str(path), layer), layer)).__name__ == (
        base_model
    )
    assert metrics["verify"]["layer"] == layer and len(metrics["verify"]["frames"]) == 2
    assert metrics["verify"]["max_abs_difference"] < 1e-4
    assert max(record["mae"] for record in metrics["frames"]) < 0.1  # the frames, not noise


# --- the mechanisms on the scores: gemma2, bloom, mpt --------------------------------------


@pytest.mark.parametrize(
    "model_type, left_out",
    [
        ("gemma2", dict(softcap=None)),
        ("gemma2", dict(scale=12**-0.5)),  # 1/√hd, where Gemma 2 takes query_pre_attn_scalar
        ("bloom", dict(score_bias=None)),
        ("bloom", dict(input_ln_weight=None, input_ln_bias=None)),
        ("mpt", dict(score_bias=None)),
        # OLMo 2's norm over all heads, taken as each head's own
        ("olmo2", dict(every_query_weight=None, every_key_weight=None)),
    ],
)
def test_each_mechanism_changes_the_maps(tmp_path, model_type, left_out):
    """What the tests above check is not the same maps by chance: without the mechanism our
    forward differs from transformers' far beyond the tolerance."""
    from dataclasses import replace

    checkpoint = open_checkpoint(str(save_family_checkpoint(tmp_path, model_type)))
    weights = load_head(checkpoint, (1, 4), tokens=TOKENS)
    embeddings = torch.randn(2, TOKENS, checkpoint.shape.d_model)
    reference = transformers_attention(model_through_layer(checkpoint), embeddings, (1, 4))
    with torch.no_grad():
        ours = attention_weights(attention_scores(embeddings, weights))
        without = attention_weights(attention_scores(embeddings, replace(weights, **left_out)))
    assert (ours - reference).abs().max() < TOLERANCE
    assert (without - reference).abs().max() > 100 * TOLERANCE


def test_gemma2_plays_a_sliding_layer_and_a_full_one_at_the_window(tmp_path):
    """Layer 0 slides, layer 1 does not (Gemma2Config's alternation); a frame of as many
    tokens as the window (257 of Gemma-2-2B's 4096 fit) is seen whole on both, its scores
    capped; one token more is refused on the sliding layer, not on the full one."""
    from transformers import AutoConfig, AutoModel

    shape = {**FAMILY_CONFIGS["gemma2"], "sliding_window": TOKENS}
    config = AutoConfig.for_model("gemma2", vocab_size=16, **shape)
    assert config.layer_types == ["sliding_attention", "full_attention"]
    torch.manual_seed(0)
    model = AutoModel.from_config(config)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if "q_proj.weight" in name or "k_proj.weight" in name:
                tensor.mul_(10.0)
    model.save_pretrained(tmp_path)
    checkpoint = open_checkpoint(str(tmp_path), layer=1)
    embeddings = torch.randn(2, TOKENS, checkpoint.shape.d_model)
    for layer in (0, 1):
        weights = load_head(checkpoint, (0, 3, 7), tokens=TOKENS, layer=layer)
        reference = transformers_attention(
            model_through_layer(checkpoint, layer), embeddings, (0, 3, 7), layer=layer
        )
        with torch.no_grad():
            rows = LayerInput(checkpoint, layer, "cpu")(embeddings) if layer else embeddings
            scores = attention_scores(rows, weights)
        assert scores.abs().max() < weights.softcap  # capped, and the cap reached for
        assert scores.abs().max() > weights.softcap / 2
        assert (attention_weights(scores) - reference).abs().max() < TOLERANCE
        assert reference[..., -1, 0].min() > 0  # the last token sees the sink
    with pytest.raises(UserError, match="sliding window of 20"):
        load_head(checkpoint, (0,), tokens=TOKENS + 1)
    # the full layer takes a longer frame, which layer 0 before it sees through its window
    longer = torch.randn(1, TOKENS + 5, checkpoint.shape.d_model)
    weights = load_head(checkpoint, (2,), tokens=TOKENS + 5, layer=1)
    reference = transformers_attention(model_through_layer(checkpoint, 1), longer, (2,), layer=1)
    with torch.no_grad():
        ours = attention_weights(
            attention_scores(LayerInput(checkpoint, 1, "cpu")(longer), weights)
        )
    assert (ours - reference).abs().max() < TOLERANCE


@pytest.mark.parametrize(
    "attention, named",
    [
        (dict(clip_qkv=6.0), "clip_qkv"),
        (dict(qk_ln=True), "qk_ln"),
        (dict(alibi=False), "alibi false"),
    ],
)
def test_an_mpt_setting_we_do_not_play_gets_one_line(tmp_path, attention, named):
    import json

    folder = save_family_checkpoint(tmp_path, "mpt")
    config = json.loads((folder / "config.json").read_text())
    config["attn_config"] = {**config["attn_config"], **attention}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match=f"this MPT sets {named}, which is not supported"):
        open_checkpoint(str(folder))


def test_a_row_bloom_s_input_norm_cannot_give_is_an_error(tmp_path):
    """The lift through BLOOM's input LayerNorm is exact where it exists; where the norm's
    weights are too small for a row (here a hundredth), no input gives it, and it says so."""
    from dataclasses import replace

    checkpoint = open_checkpoint(str(save_family_checkpoint(tmp_path, "bloom")))
    weights = load_head(checkpoint, (2,), tokens=TOKENS)
    space = reachable_space(weights)
    whitened = project_to_ball(torch.randn(1, TOKENS, space.dims) * 0.1, space.radius)
    lifted = lift_factored(whitened, space, weights).inputs_embeds()
    assert (lifted.var(dim=-1, unbiased=False) - (1 - weights.ln_eps)).abs().max() < 1e-4
    weak = replace(weights, input_ln_weight=weights.input_ln_weight / 100)
    with pytest.raises(UserError, match="cannot pass the model's input LayerNorm"):
        lift_factored(project_to_ball(whitened * 100, space.radius), space, weak)


@pytest.fixture(scope="module")
def clip_frames(tmp_path_factory, clip) -> Path:
    """The session's clip as download.py leaves it, 32x32 (33 tokens with the sink)."""
    from badapple.download import download
    from tests.scripts import FPS, SIZE

    frames_dir = tmp_path_factory.mktemp("scores-frames") / "frames"
    download(input=str(clip), frames_dir=str(frames_dir), fps=FPS, size=SIZE)
    return frames_dir


@pytest.mark.parametrize(
    "model_type, layer, render, base_model",
    [
        ("gemma2", 1, "sink", "Gemma2Model"),  # capped, layer 0 sliding before it
        ("bloom", 0, "sink", "BloomModel"),  # through the input norm
        ("bloom", 0, "zscore", "BloomModel"),  # ALiBi under the original's rendering too
        ("mpt", 1, "sink", "MptModel"),
    ],
)
def test_optimize_verifies_through_the_family_s_own_model(
    tmp_path, clip_frames, model_type, layer, render, base_model
):
    """optimize() solves 4 frames and --verify feeds the saved inputs_embeds to transformers'
    own base model of the family: its attention is ours, its rendering the saved PNGs."""
    import shutil

    from badapple.optimize import optimize

    model = save_family_checkpoint(tmp_path / model_type, model_type)
    assert type(model_through_layer(open_checkpoint(str(model)))).__name__ == base_model
    frames_dir = tmp_path / "frames"
    shutil.copytree(clip_frames, frames_dir)
    metrics = optimize(
        model=str(model), frames_dir=str(frames_dir), layer=layer, head=3, render=render,
        frames="1:4", steps=150, chunk_size=4, device="cpu", verify=2,
    )  # fmt: skip
    assert metrics["verify"]["layer"] == layer
    assert metrics["verify"]["max_abs_difference"] < 1e-4
    if render == "sink":  # a picture, not noise: the tiny heads show it roughly
        assert np.mean([record["mae"] for record in metrics["frames"]]) < 0.1
