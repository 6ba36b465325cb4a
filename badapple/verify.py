"""Verification: feed saved embeddings to transformers' own model and compare its attention.

This is the independent check that the embeddings are real inputs of the model: transformers
builds its own base model of the family (GPT2Model, LlamaModel, BertModel ...) with
blocks 0..L from the checkpoint's config and weights and runs its own eager attention, and the
played layer L's head-h attention weights must equal the ones our reduced forward computes from
the same embeddings (and their rendering must be the saved PNG).
"""

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from badapple.checkpoint import Checkpoint
from badapple.chunks import saved_inputs_embeds
from badapple.errors import UserError
from badapple.head import HeadWeights, attention_scores, attention_weights
from badapple.residual import LayerInput, transformers_model
from badapple.storage import FramesDir, read_rgb_png

if TYPE_CHECKING:
    from transformers import PreTrainedModel

TOLERANCE = 1e-4  # largest allowed difference of attention weights (each in [0, 1])
# A saved PNG must be the rendering of transformers' attention: mean |difference| under one
# 8-bit gray level (float noise of 1e-6 moves a pixel across a rounding edge now and then).
PNG_TOLERANCE_LEVELS = 1.0


def model_through_layer(checkpoint: Checkpoint, layer: int = 0) -> "PreTrainedModel":
    """transformers' own base model of the family, blocks 0..layer, carrying the checkpoint's
    weights, with its reference (eager) attention, which gives the attention weights out."""
    return transformers_model(checkpoint, layer, attention="eager", played_layer=layer)


@torch.no_grad()
def transformers_attention(
    model: "PreTrainedModel", embeddings: torch.Tensor, heads: tuple[int, ...], layer: int = 0
) -> torch.Tensor:
    """Layer `layer`'s attention weights of `heads`: [B, T, d] -> [B, H, T, T]."""
    outputs = model(inputs_embeds=embeddings, output_attentions=True)
    return outputs.attentions[layer][:, list(heads)]


def verify_frames(
    folder: FramesDir,
    checkpoint: Checkpoint,
    weights: HeadWeights,
    picture: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    held: dict[int, Path],
    wanted: range,
    count: int,
    layer_input: LayerInput | None = None,
) -> dict:
    """Check `count` saved frames, spread over `wanted`, through transformers' own base model of
    the family (`model_through_layer`: GPT2Model, LlamaModel ...): every head of the run from one
    forward pass of the saved embeddings (sink token included). Its
    attention must match ours (`weights`' forward, on the residual stream `layer_input` gives
    for a deeper layer), and its rendering (`picture`: maps -> (picture, PNG pixels)) must be the
    saved PNG. Raise on a mismatch; return what was checked."""
    done = [frame for frame in wanted if frame in held]
    spread = np.linspace(0, len(done) - 1, min(count, len(done))).round().astype(int)
    chosen = [done[i] for i in spread]
    layer = layer_input.layer if layer_input else 0
    model = model_through_layer(checkpoint, layer)
    cpu_weights = weights.to("cpu")
    worst, worst_png, worst_frame = 0.0, 0.0, chosen[0] if chosen else None
    for _, frames, embeddings in saved_inputs_embeds(held, chosen):  # [k, T', d]
        for frame, embedding in zip(frames, embeddings[:, None], strict=True):  # [1, T', d]
            reference = transformers_attention(model, embedding, weights.heads, layer)
            with torch.no_grad():  # [1, H, T', T'] both
                rows = (
                    layer_input(embedding.to(layer_input.device)).cpu()
                    if layer_input
                    else embedding
                )
                ours = attention_weights(attention_scores(rows, cpu_weights), weights.causal)
            worst = max(worst, float((reference - ours).abs().max()))
            _, pixels = picture(reference[0].numpy())  # [T, T, 3] uint8
            saved_pixels = read_rgb_png(folder.output_png(frame))
            png_difference = float(np.abs(pixels.astype(np.float64) - saved_pixels).mean())
            if png_difference >= worst_png:
                worst_png, worst_frame = png_difference, frame
    heads = ", ".join(map(str, weights.heads))
    print(
        f"verify: {len(chosen)} frames through transformers' {type(model).__name__}, "
        f"layer {layer} "
        f"head{'s' if len(weights.heads) > 1 else ''} {heads}: "
        f"max |attention difference| = {worst:.2e} (tolerance {TOLERANCE:g}); "
        f"PNGs differ from its rendering by at most {worst_png:.3f} gray levels on average "
        f"(tolerance {PNG_TOLERANCE_LEVELS:g})"
    )
    if worst > TOLERANCE:
        raise UserError(
            f"verification failed: transformers' attention differs by {worst:.2e} "
            f"> {TOLERANCE:g}; the saved embeddings do not reproduce the maps"
        )
    if worst_png >= PNG_TOLERANCE_LEVELS:
        raise UserError(
            f"verification failed: {folder.output_png(worst_frame)} differs from the rendering "
            f"of its embeddings by {worst_png:.2f} gray levels on average; rerun optimize.py "
            "--force to redo it"
        )
    return {
        "frames": chosen,
        "layer": layer,
        "heads": list(weights.heads),
        "max_abs_difference": worst,
        "tolerance": TOLERANCE,
        "max_png_difference_levels": worst_png,
        "png_tolerance_levels": PNG_TOLERANCE_LEVELS,
    }
