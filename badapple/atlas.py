"""The display atlas: how well each head of each layer can show a picture, from its weights alone.

A head shows a pixel by moving its score, the logit of a query against a key, to a level set
by the target: black sits `--contrast` nats (6) under the sink, gray at ln p, white at the sink.
What it can reach is the ellipsoid of reachable.py: a row's normalised input z (‖z‖² = d, any
direction) gives the head's query and key

    q = z A_q + c_q,   k = z A_k + c_k,   A = diag(γ) W (centred under a LayerNorm)  [d, hd]

and their score q·k·scale. Along the j-th singular direction of A_q a query moves by up to
√d σ_j; a key likewise. How far a score can move along a *typical* direction of the head is then

    span = √d gm(σ(A_q)) · √d gm(σ(A_k)) · scale    (nats; gm: the geometric mean)

the geometric mean rather than the largest σ because a picture asks every row for its own
pattern: a few long directions (trained heads have some 40-100× the rest) cannot place 256
independent rows, the typical direction has to. Random init makes the ellipsoid round (~17
nats a direction for GPT-2 XL's shape); training makes it long and thin (SmolLM2-135M's layer-0
heads span 0.7-1.4 nats, its deeper ones 50-165), and a head of under a few nats cannot move a
score the 6 nats between black and white in most directions: its white figures come out
speckled. Rotary positions rotate q and k (orthogonal maps), so they change no σ. A norm after
the projection (Qwen3, Gemma 3) takes each query to w ⊙ v, ‖v‖² = hd, in any direction the
ellipsoid reaches (all of them, without biases): its span is √hd gm(|w_q|) · √hd gm(|w_k|) · scale,
whatever the projection's σ, the same for every head of a layer (the norm's weight is shared).
OLMo 2 normalises every head's queries together: a head may take the whole of a row's energy
(|q| up to √(heads·hd) |w|), but then no other direction of that row is free, and a picture
asks every row for its own query and key; at an even share a head's query is w ⊙ v, ‖v‖² = hd,
as above, so its span is the same formula with the head's own slice of the weights.

ALiBi (BLOOM, MPT) adds slope_h · j to every score on key j, inputs or not: across a frame of T
tokens a ramp of slope_h·(T - 1) nats that the head's own scores must undo before they show
anything (BLOOM-560m's head 0: 181 nats over 257 tokens, its head 15: 1). What is left of the
span is span - slope_h·(T - 1), at least 0: a steep head is a weak display however wide it is.

A cap (Gemma 2's attn_logit_softcapping: scores become cap·tanh(s/cap)) bounds every score to
±cap, so a span of S nats along a direction shows as cap·tanh(S/cap): the same for S well under
the cap (Gemma 2's is 50 nats, eight times the 6 of black to white), never more than the cap.

The measure is absolute, so it judges a display on its own (`WEAK_SPAN_NATS`), and it takes a
few milliseconds a layer: one Gram matrix and log-determinant per head, no solve.
"""

import math
from dataclasses import dataclass

import torch

from badapple.checkpoint import Checkpoint, read_tensors
from badapple.head import HeadWeights

# Under this span a display is weak: it cannot move a typical score by the 6 nats from black to
# white (the default --contrast) with room to spare. Measured on SmolLM2-135M (real weights):
# its layer-0 heads span 0.7-1.4 nats and play at mae 0.016-0.038; its deeper ones span 50+ and
# play at ~0.003 and under (README: The display atlas).
WEAK_SPAN_NATS = 6.0
# A deeper display wins over a shallower one only if it plays clearly better: by more than this
# mae on the survey frames (reaching it costs a forward through every block before it).
LAYER_MARGIN_MAE = 0.001


def display_spans(
    attention: dict, heads: int, score_bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Each head's span in nats, [heads], from a layer's norm and query/key weights (the fields
    family.py's `attention` reads, for heads 0..heads-1: `query_key_weight` [d, (H + G)·hd] is
    every head's query columns, then every key head's), less ALiBi's ramp across the frame where
    `score_bias` [heads, T] gives one."""
    weight = attention["query_key_weight"].double()  # [d, (H + G)·hd]
    d_model, columns = weight.shape
    key_of_head = torch.tensor(attention["key_of_head"])  # [H]
    blocks = heads + int(key_of_head.max()) + 1  # H + G
    head_dim = columns // blocks
    scaled = attention["ln_weight"].double()[:, None] * weight  # A = diag(γ) W
    if attention["norm"] == "layer":  # z is centred: only the centred columns act
        scaled = scaled - scaled.mean(dim=0, keepdim=True)
    per_block = scaled.reshape(d_model, blocks, head_dim).permute(1, 0, 2)  # [H + G, d, hd]
    gram = per_block.mT @ per_block  # [H + G, hd, hd]: σ² are its eigenvalues
    # log gm(σ) = mean(log σ²) / 2; a dead direction (σ = 0) would give -inf: floor it
    log_gm = torch.linalg.eigvalsh(gram).clamp_min(1e-30).log().mean(dim=-1) / 2  # [H + G]
    log_span = log_gm[:heads] + log_gm[heads + key_of_head] + math.log(d_model)
    if attention.get("query_norm") is not None:
        # normalised after the projection: whatever the ellipsoid's σ, a query is w ⊙ v with
        # ‖v‖² = hd, any direction, so it moves by up to √hd |w_j| along dimension j; a norm
        # over all heads (OLMo 2) gives each head its own weights [heads, 1, hd]
        query_log_gm = _log_geometric_mean(attention["query_norm"])  # [] or [H]
        key_log_gm = _log_geometric_mean(attention["key_norm"])  # [] or [G]
        if key_log_gm.dim():
            key_log_gm = key_log_gm[key_of_head]
        log_span = (query_log_gm + key_log_gm + math.log(head_dim)).expand(heads).clone()
    span = log_span.exp() * attention["scale"]  # [H]
    cap = attention.get("softcap")
    if cap is not None:  # a score shows capped: ±S nats before the cap are ±cap·tanh(S/cap)
        span = cap * torch.tanh(span / cap)
    if score_bias is not None:  # what ALiBi's ramp across the frame leaves of it
        ramp = (score_bias[:, -1] - score_bias[:, 0]).abs().double()  # slope·(T - 1) [H]
        span = (span - ramp).clamp(min=0)
    return span.float()


def _log_geometric_mean(norm_weight: torch.Tensor) -> torch.Tensor:
    """log gm(|w|) of a norm's weight after the projection: [hd] -> [], [heads, 1, hd] -> [heads]
    (a dead dimension, w = 0, floored rather than -inf)."""
    logs = norm_weight.double().abs().clamp_min(1e-30).log()
    return logs.mean() if logs.dim() == 1 else logs.flatten(1).mean(dim=1)


def played_spans(weights: HeadWeights) -> torch.Tensor:
    """Each played head's span [H], `display_spans` of a HeadWeights: how far its scores move
    as its rows cross the reachable ball (reachable.py), before any cap or ALiBi ramp, which is
    what a solver's step moves."""
    weights = weights.to("cpu")  # float64 below: an Apple GPU has none
    names = ("query_key_weight", "ln_weight", "norm", "key_of_head", "scale")
    attention = {name: getattr(weights, name) for name in names}
    attention.update(query_norm=weights.query_norm, key_norm=weights.key_norm)
    return display_spans(attention, len(weights.heads))


@dataclass(frozen=True)
class Atlas:
    """Every display of a model: layers × heads of their span (nats), where measured."""

    spans: torch.Tensor  # [layers, heads] nats; NaN for a layer not measured

    @property
    def heads(self) -> int:
        return self.spans.shape[1]

    def ranked(self) -> list[tuple[int, int, float]]:
        """(layer, head, span) of the measured heads, widest first."""
        found = [
            (layer, head, float(self.spans[layer, head]))
            for layer in self.measured_layers()
            for head in range(self.heads)
        ]
        return sorted(found, key=lambda display: -display[2])

    def span(self, layer: int, head: int) -> float:
        return float(self.spans[layer, head])

    def measured_layers(self) -> list[int]:
        return [layer for layer in range(len(self.spans)) if not self.spans[layer].isnan().all()]

    def as_json(self, survey: list[dict]) -> dict:
        """metrics.json's "display_atlas": spans (null where not measured), the weak line, and
        the surveyed displays with their span and mae."""
        spans = [
            [None if math.isnan(s) else round(s, 4) for s in row] for row in self.spans.tolist()
        ]
        return {"span_nats": spans, "weak_span_nats": WEAK_SPAN_NATS, "survey": survey}


def measure_atlas(checkpoint: Checkpoint, layers: list[int], tokens: int = 257) -> Atlas:
    """The spans of every head of `layers` (the others NaN), each layer's norm and query/key
    weights read from `checkpoint` (which must hold them: `open_checkpoint(attention_layers=)`),
    for frames of `tokens` tokens (the default: 256 rows and the sink; only ALiBi's ramp
    depends on it)."""
    shape, family = checkpoint.shape, checkpoint.family
    spans = torch.full((shape.layers, shape.heads), math.nan)
    every_head = tuple(range(shape.heads))
    bias = family.score_bias(checkpoint.config, tokens) if family.score_bias else None
    for layer in layers:
        attention = family.attention(
            checkpoint.config, lambda names: read_tensors(checkpoint, names), every_head, layer
        )
        spans[layer] = display_spans(attention, shape.heads, bias)
    return Atlas(spans=spans)
