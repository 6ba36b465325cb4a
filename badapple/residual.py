"""The residual stream entering a deeper layer, and the inputs that put chosen rows there.

Layer L >= 1 of a pre-LN model (GPT-2, Llama and the other causal families of family.py) does
not see its inputs x but the residual stream entering block L,

    h_L(x) = x + P + r(x),    r(x): the updates of blocks 0..L-1, attention and MLP,

(P the position table, or 0 where the positions rotate the queries and keys)
through its ln_1. So the layer is solved as layer 0 is, on its own ln_1 and projections with no
position table (head.py, reachable.py): rows E whose LayerNorm gives the wanted queries and keys.
Then we want inputs with h_L(x) = a·E for a scale a; `reachable.lift_factored(..., scale=a)`
makes rows a·E that the LayerNorm still takes to the same queries and keys. Each block sees the
stream through its own LayerNorm, so its update is bounded whatever the stream's scale and
changes by only ~1/a of a change of the stream: for a large a the fixed point

    x ← x + (a·E - h_L(x))        (that is, x = a·E - wpe - r(x))

contracts, each step shrinking the error by ~ (the size of the blocks' updates) / a (a model that
multiplies its inputs by m first, Granite, steps 1/m of the miss). r must come
from the model's own causal forward (`LayerInput`: transformers' base model of the family,
blocks 0..L-1);
the blocks run without the causal mask give another r.

The scale and the number of steps are chosen here, per frame: `reach_layer` starts at a = 10^4
and retries a frame whose error does not at least halve in a step at ten times the scale. A
frame is done when its error, the largest ‖h_L(x)ᵢ - a·Eᵢ‖ / ‖a·Eᵢ‖ of its rows, is at float
precision (CONVERGED_ERROR); one that gets there at no scale is reported as not converged.
"""

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from badapple.checkpoint import Checkpoint, read_tensors, wanted_tensor
from badapple.errors import UserError
from badapple.head import HeadWeights
from badapple.reachable import ReachableSpace, lift_factored

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# Tried in turn, per frame. The larger the scale, the fewer the steps: on GPT-2-small-shaped
# random models (layers 6 and 11) a = 10 took 9-11 forwards, 100 took 4-7, 10^4 took 2-3, and
# float32 keeps its relative precision at any scale.
SCALES = (1e4, 1e5, 1e6)
MIN_GAIN = 2.0  # a step must divide the error by this much, or the scale is too small
MAX_STEPS_PER_SCALE = 40
# float32 carries ~6e-8 of each number: the error stops falling a little above that
CONVERGED_ERROR = 2e-6
CPU_FRAMES_PER_FORWARD = 8


def transformers_model(
    checkpoint: Checkpoint, whole_blocks: int, attention: str, played_layer: int | None = None
) -> "PreTrainedModel":
    """transformers' own base model of the checkpoint's family (GPT2Model, LlamaModel ...), in
    eval mode, with the checkpoint's position table and blocks 0..whole_blocks-1, and with
    `played_layer` (= whole_blocks) one block more, of which only the norm and projections its
    attention needs must be there: a hub checkpoint's cache holds only those, and the rest of
    the block does not change its attention. `attention` "eager" gives attention weights out,
    "sdpa" is faster. Without a played layer the final norm is left out: the model then gives
    the residual stream entering block `whole_blocks`."""
    # Imported here: transformers takes seconds to import, and only deeper layers and --verify
    # need it.
    from transformers import AutoConfig, AutoModel

    family = checkpoint.family
    blocks = whole_blocks + (played_layer is not None)
    config = AutoConfig.for_model(**checkpoint.config)
    # inputs_embeds replace the token embedding, so the token table shrinks to the rows up to
    # the padding token's (RoBERTa numbers its positions from it).
    padding = getattr(config, "pad_token_id", None)
    config.num_hidden_layers, config.vocab_size = blocks, (padding or 0) + 1
    config.bos_token_id = config.eos_token_id = None
    config._attn_implementation = attention
    if attention == "sdpa" and not _supports_sdpa(config):  # GPT-Neo's has only eager
        config._attn_implementation = "eager"
    # float32 whatever the weights are stored in (a config may say bfloat16): the reference
    model = AutoModel.from_config(config, dtype=torch.float32).eval()
    if played_layer is None:  # the stream after the last block is what is wanted
        owner_path, _, attribute = family.final_norm.rpartition(".")
        owner = model.get_submodule(owner_path) if owner_path else model
        setattr(owner, attribute, torch.nn.Identity())
    table = {family.position_table} if family.position_table else set()
    wanted = (*(family.block_prefix(index) for index in range(whole_blocks)), *table)
    needed = (
        set(family.attention_tensors(checkpoint.config, played_layer))
        if played_layer is not None
        else set()
    )
    token_table = model.get_input_embeddings().weight
    parameters = {
        name for name, parameter in model.named_parameters() if parameter is not token_table
    }
    # As the checkpoint stores them: the needed ones and every tensor of the wanted blocks must be
    # there (read_tensors says so), the model's others may. family.as_modules turns them into
    # the modules' names and forms (Mixtral's experts, stored one by one, stacked).
    stored = sorted(
        {*needed, *wanted, *(name for name in parameters if name in checkpoint.tensor_files)}
    )
    tensors = family.as_modules(read_tensors(checkpoint, stored))
    model.load_state_dict(
        {name: tensor for name, tensor in tensors.items() if name in parameters}, strict=False
    )
    unloaded = sorted(
        name
        for name in parameters - tensors.keys()
        if name in needed or wanted_tensor(name, wanted)
    )
    if unloaded:  # a layout of the blocks we do not know: their weights would be random
        raise UserError(f"{checkpoint.name} lacks {unloaded[0]} in the form transformers holds it")
    return model


def _supports_sdpa(config) -> bool:
    from transformers import AutoModel

    return bool(getattr(AutoModel._model_mapping[type(config)], "_supports_sdpa", False))


class LayerInput:
    """h_L: inputs_embeds [B, T, d] -> the residual stream entering block `layer` [B, T, d], by
    transformers' own causal forward through blocks 0..layer-1."""

    def __init__(self, checkpoint: Checkpoint, layer: int, device: torch.device | str):
        self.layer, self.device, self.checkpoint = layer, torch.device(device), checkpoint

    @functools.cached_property
    def model(self) -> "PreTrainedModel":
        # Built at the first forward: a run that finds every frame solved and drawn needs no
        # blocks (5.8 GB of them for GPT-2 XL's last layer), nor transformers' import.
        return transformers_model(self.checkpoint, self.layer, attention="sdpa").to(self.device)

    @torch.no_grad()
    def __call__(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        # A CPU runs a forward fastest a few frames at a time: GPT-2-small's 11 blocks took
        # 0.14 s a frame in batches of 2 to 8 and 0.235 s in one of 48 (cache, not FLOPs).
        step = CPU_FRAMES_PER_FORWARD if self.device.type == "cpu" else len(inputs_embeds)
        parts = [
            self.model(inputs_embeds=inputs_embeds[first : first + step]).last_hidden_state
            for first in range(0, len(inputs_embeds), max(step, 1))
        ]
        return torch.cat(parts) if parts else inputs_embeds.clone()


@dataclass(frozen=True)
class Reached:
    """Inputs for each frame of a batch, and what they put in front of the played layer."""

    inputs: torch.Tensor  # [B, T, d] the inputs_embeds to feed the model
    rows: torch.Tensor  # [B, T, d] h_L(inputs): the residual stream the layer sees
    error: torch.Tensor  # [B] the largest relative error of a row: ‖h_L(x)ᵢ - a·Eᵢ‖ / ‖a·Eᵢ‖
    steps: torch.Tensor  # [B] int64: forwards through blocks 0..L-1, every scale counted
    scale: torch.Tensor  # [B] the a it converged at (the last tried, if it did not)

    @property
    def converged(self) -> torch.Tensor:  # [B] bool
        return self.error <= CONVERGED_ERROR


def reach_layer(
    layer_input: LayerInput,
    whitened: torch.Tensor,
    space: ReachableSpace,
    weights: HeadWeights,
) -> Reached:
    """Inputs whose residual stream entering the layer has the queries and keys of `whitened`
    ([B, T, (H+G)·hd], in `space`, the played layer's): the fixed point of the module's docstring,
    all frames of the batch in one forward per step, each frame at its own scale."""
    batch = whitened.shape[0]
    device = whitened.device

    def aimed(frames: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:  # [n, T, d]
        return torch.stack(
            [
                lift_factored(
                    whitened[frame : frame + 1], space, weights, float(scale)
                ).inputs_embeds()[0]
                for frame, scale in zip(frames.tolist(), scales.tolist(), strict=True)
            ]
        )

    # The model multiplies its inputs by m before block 0 (Granite's embedding_multiplier): a
    # change of the inputs moves the stream m times as far, so each step moves them 1/m of the
    # miss (the whole of it would overshoot, and diverge for m > 2).
    checkpoint = layer_input.checkpoint
    multiplier = checkpoint.family.input_multiplier(checkpoint.config)
    scale_index = torch.zeros(batch, dtype=torch.int64)
    scales = torch.tensor(SCALES, dtype=torch.float32)
    target = aimed(torch.arange(batch), scales[scale_index])  # a·E [B, T, d]
    inputs = target / multiplier  # the first step subtracts wpe and r
    error = torch.full((batch,), float("inf"), device=device)
    steps_at_scale = torch.zeros(batch, dtype=torch.int64)
    steps = torch.zeros(batch, dtype=torch.int64)
    best_error = torch.full((batch,), float("inf"), device=device)
    best_inputs, best_rows = inputs.clone(), torch.zeros_like(inputs)
    best_scale = scales[scale_index].clone()
    done = torch.zeros(batch, dtype=torch.bool)
    while not done.all():
        active = (~done).nonzero()[:, 0]  # [n]
        rows = layer_input(inputs[active])  # h_L(x) [n, T, d]
        miss = (rows - target[active]).norm(dim=-1) / target[active].norm(dim=-1)  # [n, T]
        new_error = miss.amax(dim=-1)  # [n]
        steps[active] += 1
        steps_at_scale[active] += 1
        better = new_error < best_error[active]
        kept = active[better.cpu()]
        best_error[kept] = new_error[better]
        best_inputs[kept], best_rows[kept] = inputs[kept], rows[better]
        best_scale[kept] = scales[scale_index[kept]]
        converged = (new_error <= CONVERGED_ERROR).cpu()  # [n] bool, as the rest below
        stalled = (new_error * MIN_GAIN > error[active]).cpu() | (
            steps_at_scale[active] >= MAX_STEPS_PER_SCALE
        )
        contracting = ~stalled & ~converged
        error[active] = new_error
        done[active[converged]] = True
        retry = active[stalled & ~converged]  # at the next scale, or given up after the last
        scale_index[retry] += 1
        done[retry[scale_index[retry] >= len(SCALES)]] = True
        retry = retry[scale_index[retry] < len(SCALES)]
        stepping = active[contracting]
        # x ← x + (a·E - h_L(x)) for the frames still contracting
        inputs[stepping] += (target[stepping] - rows[contracting.to(rows.device)]) / multiplier
        if len(retry):  # start again from a·E at the next scale
            target[retry] = aimed(retry, scales[scale_index[retry]])
            inputs[retry] = target[retry] / multiplier
            error[retry] = float("inf")
            steps_at_scale[retry] = 0
    return Reached(
        inputs=best_inputs,
        rows=best_rows,
        error=best_error,
        steps=steps,
        scale=best_scale,
    )
