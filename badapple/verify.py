"""Verification: feed saved embeddings to transformers' own GPT-2 and compare its attention.

This is the independent check that the embeddings are real GPT-2 inputs: transformers builds
layer 0 from the checkpoint's config and weights, runs its own eager attention, and its head-h
attention weights must equal the ones our reduced forward computed from the same embeddings.
"""

from typing import TYPE_CHECKING

import torch

from badapple.checkpoint import ATTENTION_TENSORS, Checkpoint, read_tensors

if TYPE_CHECKING:
    from transformers import GPT2Model

TOLERANCE = 1e-4  # largest allowed difference of attention weights (each in [0, 1])
# A saved PNG must be the rendering of transformers' attention: mean |difference| under one
# 8-bit gray level (float noise of 1e-6 moves a pixel across a rounding edge now and then).
PNG_TOLERANCE_LEVELS = 1.0


def one_layer_gpt2(checkpoint: Checkpoint) -> "GPT2Model":
    """transformers' GPT2Model with only layer 0, carrying the checkpoint's weights."""
    # Imported here: transformers takes seconds to import and only --verify needs it.
    from transformers import GPT2Config, GPT2Model

    # inputs_embeds replace the token embedding, so the token table shrinks to one row.
    config = GPT2Config.from_dict(
        {
            **checkpoint.config,
            "n_layer": 1,
            "vocab_size": 1,
            "bos_token_id": None,
            "eos_token_id": None,
        }
    )
    config._attn_implementation = "eager"  # the reference implementation, with attention out
    model = GPT2Model(config).eval()
    names = [name for name in model.state_dict() if name.startswith(("h.0.", "wpe.", "ln_f."))]
    # The rest of layer 0 does not change its attention: a hub checkpoint's cache holds only these.
    required = set(ATTENTION_TENSORS)
    stored = [name for name in names if name in required or name in checkpoint.tensor_files]
    model.load_state_dict(read_tensors(checkpoint, stored), strict=False)
    return model


@torch.no_grad()
def transformers_attention(
    model: "GPT2Model", embeddings: torch.Tensor, heads: tuple[int, ...]
) -> torch.Tensor:
    """Layer-0 attention weights of `heads`: [B, T, d] -> [B, H, T, T]."""
    outputs = model(inputs_embeds=embeddings, output_attentions=True)
    return outputs.attentions[0][:, list(heads)]
