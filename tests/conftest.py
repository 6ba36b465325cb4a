"""Shared fixtures: small real GPT-2 checkpoints written with transformers' save_pretrained."""

from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model

from tests.media import make_clip
from tests.scripts import FPS, RUN, SECONDS, SIZE, assert_ok, run

# The tests' tensors are tiny: torch's threads would only wait on each other (on a busy 2-core
# machine a tiny solve took 26 s on two threads and 0.15 s on one).
torch.set_num_threads(1)

TINY = dict(
    n_layer=1,
    n_embd=64,
    n_head=4,
    n_positions=64,
    vocab_size=16,
    bos_token_id=0,
    eos_token_id=0,
    query_key_gain=10.0,
)
# Eight heads of 8: several heads' queries and keys (2·H·8 columns) stay independent in d=64.
TINY_EIGHT_HEADS = {**TINY, "n_head": 8, "n_positions": 320}
# Sixteen heads of 8 in d=128: the 6 heads of a full-frame colour run (96 columns) stay
# independent.
TINY_SIXTEEN_HEADS = {**TINY, "n_embd": 128, "n_head": 16}
# Four layers of TINY_SIXTEEN_HEADS, for the deeper layers (--layer): saved with their blocks'
# output projections scaled up (projection_gain), so each block moves the residual stream a lot.
TINY_DEEP = {**TINY_SIXTEEN_HEADS, "n_layer": 4, "projection_gain": 10.0}
# GPT-2 XL's layer shapes (d=1600, 25 heads of 64), one layer, a token table of 16 rows.
XL_SHAPED = dict(
    n_layer=1,
    n_embd=1600,
    n_head=25,
    n_positions=1024,
    vocab_size=16,
    bos_token_id=0,
    eos_token_id=0,
)


def save_checkpoint(
    directory: Path,
    seed: int = 0,
    model_class=GPT2Model,
    dtype=None,
    query_key_gain: float = 1.0,
    projection_gain: float = 1.0,
    **shape,
) -> Path:
    """A random GPT-2 of the given shape saved as config.json + model.safetensors.

    query_key_gain scales c_attn: transformers' init (std 0.02) gives a tiny model a head that
    can barely move its attention, where real GPT-2 heads reach logit ranges of tens of nats.
    projection_gain scales every block's output projections (attention's and the MLP's c_proj),
    and so the updates a block adds to the residual stream.
    """
    torch.manual_seed(seed)
    model = model_class(GPT2Config(**shape))
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if "ln_1" in name:  # default init leaves LayerNorm at 1/0; vary it so it matters
                tensor.add_(torch.randn_like(tensor) * 0.1)
            if "c_attn" in name:
                tensor.mul_(query_key_gain)
            if "c_proj" in name:
                tensor.mul_(projection_gain)
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(directory, safe_serialization=True)
    return directory


# A tiny random model of each family besides GPT-2, in d=64 with 8 query heads of 8 and two
# layers; grouped-query attention where the family has it (heads 4 and 5 share key head 2).
_TINY_FAMILY = dict(
    hidden_size=64,
    num_attention_heads=8,
    intermediate_size=128,
    num_hidden_layers=2,
    max_position_embeddings=128,
)
_LLAMA_LIKE = dict(**_TINY_FAMILY, num_key_value_heads=4)
FAMILY_CONFIGS = {
    "llama": dict(**_LLAMA_LIKE, rope_theta=10000.0),
    "mistral": dict(**_LLAMA_LIKE, rope_theta=1e6),
    "qwen2": dict(**_LLAMA_LIKE),  # q/k/v biases
    "gemma": dict(**{**_LLAMA_LIKE, "num_key_value_heads": 2}, head_dim=12),  # 8 x 12 > d
    # a norm after the projection; gemma3_text's layer 0 local (a sliding window, theta 10k),
    # layer 1 global (theta 1e6), scores scaled by query_pre_attn_scalar
    "qwen3": dict(**_LLAMA_LIKE, head_dim=8),
    # no norm before the attention; q_norm over all 8 heads' queries, k_norm over 4 key heads'
    "olmo2": dict(**_LLAMA_LIKE),
    "gemma3_text": dict(
        **{**_LLAMA_LIKE, "num_key_value_heads": 2},
        head_dim=12,
        query_pre_attn_scalar=20,
        layer_types=["sliding_attention", "full_attention"],
        sliding_window=64,
    ),
    # Pythia's rotary_pct: the first quarter of each head's dimensions rotate
    "gpt_neox": dict(**_TINY_FAMILY, rotary_pct=0.25),
    "gpt_neo": dict(  # its own names for the sizes
        hidden_size=64,
        num_heads=8,
        num_layers=2,
        attention_types=[[["global"], 2]],
        max_position_embeddings=128,
    ),
    "opt": dict(  # its own name for the MLP's width
        **{k: v for k, v in _TINY_FAMILY.items() if k != "intermediate_size"},
        ffn_dim=128,
        word_embed_proj_dim=64,
    ),
    "mixtral": dict(**_LLAMA_LIKE, num_local_experts=4, num_experts_per_tok=2, rope_theta=1e6),
    # layer 1 has no rotary (no_rope_layers: 1 where a layer uses it)
    "smollm3": dict(**_LLAMA_LIKE, no_rope_layers=[1, 0]),
    # a large ε, so layer 0's norm tells inputs from inputs times embedding_multiplier
    "granite": dict(
        **_LLAMA_LIKE,
        attention_multiplier=0.2,
        embedding_multiplier=12.0,
        residual_multiplier=0.22,
        rms_norm_eps=0.5,
    ),
    "starcoder2": dict(**_LLAMA_LIKE, use_bias=True),  # LayerNorm, q/k biases
    # Phi-4-mini's rotary: on the first 0.75 of each head's dimensions, scaled by longrope
    "phi3": dict(
        **_LLAMA_LIKE,
        partial_rotary_factor=0.75,
        rope_scaling=dict(
            rope_type="longrope",
            short_factor=[1.0, 1.5, 2.0],  # one a rotated pair: 8 · 0.75 / 2
            long_factor=[2.0, 3.0, 4.0],
            original_max_position_embeddings=64,
        ),
        original_max_position_embeddings=64,
    ),
    # A cap that bites (the weights scaled up below reach scores of tens), a scale of its own,
    # and layer 0 sliding: a window of 64 tokens, more than the tests' frames
    "gemma2": dict(
        **{**_LLAMA_LIKE, "num_key_value_heads": 2},
        head_dim=12,
        query_pre_attn_scalar=32,
        attn_logit_softcapping=5.0,
        sliding_window=64,
    ),
    "bloom": dict(hidden_size=64, n_head=8, n_layer=2),  # ALiBi, an input LayerNorm
    "mpt": dict(d_model=64, n_heads=8, n_layers=2, expansion_ratio=2, max_seq_len=128),
    "bert": dict(**_TINY_FAMILY),
    # two more table rows than the positions: RoBERTa's start at padding_idx + 1 = 2
    "roberta": dict(
        **{**_TINY_FAMILY, "max_position_embeddings": 130}, pad_token_id=1, type_vocab_size=1
    ),
}


def save_family_checkpoint(directory: Path, model_type: str, seed: int = 0) -> Path:
    """A random two-layer model of `model_type` saved with save_pretrained, its query and key
    weights scaled up and its norms varied, as save_checkpoint does for GPT-2."""
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.for_model(
        model_type,
        **{
            "vocab_size": 16,
            "bos_token_id": 0,
            "eos_token_id": 0,
            "pad_token_id": None,
            **FAMILY_CONFIGS[model_type],
        },
    )
    torch.manual_seed(seed)
    model = AutoModel.from_config(config)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if "norm" in name.lower() or ".ln_" in name:
                tensor.add_(torch.randn_like(tensor) * 0.1)
            if "q_norm" in name or "k_norm" in name:
                # a norm after the projection bounds every score by hd·|w_q||w_k|·scale: at
                # init's weight 1 (Gemma's 1 + 0) that is √hd, ~3 nats for these heads, under
                # the 6 from black to white; trained norms weigh more (atlas.py)
                tensor.add_(2.0)
            names = (
                "q_proj",
                "k_proj",
                "qkv_proj",
                "query_key_value",
                "self.query",
                "self.key",
                "Wqkv",
            )
            if any(part in name for part in names):
                if name.endswith("weight"):
                    tensor.mul_(10.0)
                else:
                    tensor.normal_()
    model.save_pretrained(directory, safe_serialization=True)
    return directory


def save_unsupported_checkpoint(directory: Path) -> Path:
    """A tiny random T5 (an encoder-decoder), saved as config.json + model.safetensors: a real
    checkpoint of a family we do not support."""
    from transformers import T5Config, T5Model

    config = T5Config(d_model=16, d_ff=32, num_layers=1, num_heads=2, vocab_size=16)
    T5Model(config).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("tiny-gpt2"), **TINY)


@pytest.fixture(scope="session")
def tiny_eight_heads_checkpoint(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("tiny-gpt2-8"), seed=3, **TINY_EIGHT_HEADS)


@pytest.fixture(scope="session")
def tiny_sixteen_heads_checkpoint(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("tiny-gpt2-16"), seed=4, **TINY_SIXTEEN_HEADS)


@pytest.fixture(scope="session")
def tiny_deep_checkpoint(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("tiny-gpt2-deep"), seed=5, **TINY_DEEP)


@pytest.fixture(scope="session")
def tiny_lm_checkpoint(tmp_path_factory) -> Path:
    """Saved from GPT2LMHeadModel, so every tensor name starts with 'transformer.'."""
    return save_checkpoint(
        tmp_path_factory.mktemp("tiny-gpt2-lm"), seed=1, model_class=GPT2LMHeadModel, **TINY
    )


@pytest.fixture(scope="session")
def xl_shaped_checkpoint(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("xl-shaped-gpt2"), seed=2, **XL_SHAPED)


@pytest.fixture(scope="session")
def smollm2_checkpoint(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct's real trained weights (fixtures/real_weights.py), its first two
    layers: a trained head's long, thin ellipsoid, which no random init gives."""
    from fixtures.real_weights import smollm2_checkpoint as build

    return build(tmp_path_factory.mktemp("smollm2-2-layers"), layers=2)


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "silhouettes.mp4", seconds=SECONDS)


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory, clip, tiny_checkpoint) -> Path:
    """download -> optimize -> assemble -> plot, once a session, on the tiny GPT-2; the tests
    inspect what it left, or work on a copy of its frames (test_end_to_end.fresh_copy)."""
    work = tmp_path_factory.mktemp("run")
    frames = work / "frames"
    assert_ok(
        run("download.py", "--input", clip, "--frames-dir", frames, "--size", SIZE, "--fps", FPS)
    )
    assert_ok(
        run(
            "optimize.py",
            "--model",
            tiny_checkpoint,
            "--frames-dir",
            frames,
            *RUN,
            "--verify",
            "3",
        )
    )
    assert_ok(run("assemble.py", "--frames-dir", frames, "--output", work / "video.mp4"))
    assert_ok(
        run(
            "assemble.py",
            "--frames-dir",
            frames,
            "--output",
            work / "both.mp4",
            "--side-by-side",
            "--scale",
            "2",
        )
    )
    assert_ok(run("plot.py", "--frames-dir", frames, "--out-dir", work / "plots"))
    return work
