"""A checkpoint of a supported family (family.py): its config and where each tensor lies, opened
from a local directory in place or from a hub id (hub.py), and its tensors read.

Only the played layer's few tensors are ever read (each family names them:
`Family.played_layer_tensors`; ~37 MB of GPT-2 XL's 6.4 GB at layer 0), and a deeper layer L
(--layer) needs blocks 0..L-1 whole besides. A local directory written by save_pretrained is
read in place through `safe_open`, which maps the file and reads just those tensors; nothing is
copied. A hub id gets the same `Checkpoint`, whose files are hub.py's cache of those tensors,
fetched by byte ranges (ranged_reads.py).

No pickle is ever loaded: weights are read only as safetensors.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from badapple.errors import UserError, first_line
from badapple.family import Family, Shape, family_of


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint of a supported family: its config and which local safetensors file holds
    each tensor, by its plain name (the base model's, e.g. 'h.0.ln_1.weight').

    For a hub id the files are our cache of what the played layer needs, so only the tensors
    of the family's `played_layer_tensors` are there.
    """

    name: str  # as the user gave it: a hub id or a local directory
    config: dict
    tensor_files: dict[str, tuple[Path, str]]  # plain name -> (file, name stored in the file)
    revision: str | None = None  # the hub commit the tensors come from; None for a directory

    @property
    def family(self) -> Family:
        return family_of(self.config.get("model_type"), self.name)

    @property
    def shape(self) -> Shape:
        return self.family.shape(self.config)


def open_checkpoint(
    model: str, layer: int = 0, attention_layers: tuple[int, ...] = ()
) -> Checkpoint:
    """A local directory as it is, or what a hub id's `layer` needs (`played_layer_tensors`,
    fetched by ranges once, then cached), with the norm and query/key weights of
    `attention_layers` too (the display atlas, atlas.py: ~31 MB a layer of GPT-2 XL, not its
    blocks). Another layer's attention already cached for the same commit comes along."""
    local = Path(model).expanduser()
    if local.is_dir():
        checkpoint = _open_directory(model, local)
        check_layer(checkpoint.name, checkpoint.config, layer)
        return checkpoint
    if local.exists():
        raise UserError(f"--model {model} is a file; pass a checkpoint directory or a hub id")
    from badapple.hub import open_hub  # here, not above: hub.py builds on this module

    return open_hub(model, layer, attention_layers)


def attention_layers_at_hand(checkpoint: Checkpoint) -> list[int]:
    """The layers whose norm and query/key weights the checkpoint holds: every layer of a local
    directory, the fetched or cached ones of a hub model."""
    family, config = checkpoint.family, checkpoint.config
    return [
        layer
        for layer in range(checkpoint.shape.layers)
        if all(
            any(wanted_tensor(name, (want,)) for name in checkpoint.tensor_files)
            for want in family.attention_tensors(config, layer)
        )
    ]


def check_layer(name: str, config: dict, layer: int) -> None:
    """Refuse a layer the model does not have, or cannot play, before any weight is read."""
    family = family_of(config.get("model_type"), name)
    layers = family.shape(config).layers
    if layer > 0 and not family.deeper_layers:
        why = family.deeper_refused or "normalises after each block"
        raise UserError(
            f"--layer {layer}: {name} is a {config['model_type']} model, which {why}, so only "
            "its layer 0 can be played exactly; use --layer 0"
        )
    if not 0 <= layer < layers:
        raise UserError(
            f"--layer {layer} is out of range: {name} has {layers} layer"
            f"{'s' if layers > 1 else ''}; pick one of 0..{layers - 1}"
        )


def tensor_names(checkpoint: Checkpoint, wanted: tuple[str, ...] | list[str]) -> list[str]:
    """`wanted` with each name ending in "." replaced by the checkpoint's tensors under it."""
    names = []
    for name in wanted:
        if not name.endswith("."):
            names.append(name)
            continue
        under = sorted(plain for plain in checkpoint.tensor_files if plain.startswith(name))
        if not under:
            raise UserError(f"{checkpoint.name} lacks {name}*; {_incomplete(checkpoint.config)}")
        names.extend(under)
    return names


def read_tensors(checkpoint: Checkpoint, names: list[str]) -> dict[str, torch.Tensor]:
    """Read the named tensors (plain names, as the family's base model has them, e.g.
    'wpe.weight'; one ending in "." stands for every tensor under it) as float32."""
    names = tensor_names(checkpoint, names)
    missing = [name for name in names if name not in checkpoint.tensor_files]
    if missing:
        raise UserError(f"{checkpoint.name} lacks {missing[0]}; {_incomplete(checkpoint.config)}")
    tensors = {}
    for name in names:
        file, stored_name = checkpoint.tensor_files[name]
        try:
            with safe_open(str(file), framework="pt") as handle:
                tensors[name] = handle.get_tensor(stored_name).to(torch.float32)
        except SafetensorError as error:
            raise damaged_file(file, error, checkpoint.revision is not None) from None
    return tensors


def wanted_tensor(name: str, wanted: tuple[str, ...] | list[str]) -> bool:
    """Whether `name` is one of `wanted`, or under one of its prefixes (names ending in ".")."""
    return any(name == want or (want.endswith(".") and name.startswith(want)) for want in wanted)


def damaged_file(file: Path, error: SafetensorError, cached: bool = False) -> UserError:
    """One line for a safetensors file safe_open cannot read (truncated, a broken header): the
    Rust reader's own error names neither the file nor what to do."""
    fix = (
        "delete it and run the same command again to fetch it again"
        if cached
        else "download the checkpoint again"
    )
    return UserError(f"{file} is damaged ({first_line(error)}); {fix}")


def _open_directory(model: str, local: Path) -> Checkpoint:
    config_path = local / "config.json"
    if not config_path.is_file():
        raise UserError(
            f"{model} has no config.json; pass a directory written by "
            "save_pretrained (config.json + *.safetensors) or a hub id"
        )
    config = model_config(model, config_path.read_bytes(), str(config_path))
    prefixes = family_of(config.get("model_type"), model).name_prefixes
    files = sorted(local.glob("*.safetensors"))
    if not files:
        raise UserError(
            f"{model} has no *.safetensors file; save the model with "
            "save_pretrained(..., safe_serialization=True)"
        )
    tensor_files = {}
    for file in files:
        try:
            with safe_open(str(file), framework="pt") as handle:  # reads the header only
                stored_names = list(handle.keys())
        except SafetensorError as error:
            raise damaged_file(file, error) from None
        for stored_name in stored_names:
            tensor_files.setdefault(plain_name(stored_name, prefixes), (file, stored_name))
    return Checkpoint(name=model, config=config, tensor_files=tensor_files)


def model_config(model: str, text: bytes | str, where: str) -> dict:
    """A config.json's contents, of a family we support (one line naming them otherwise)."""
    try:
        config = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{where} is not valid JSON ({error})") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    family_of(model_type, model).shape(config)  # its sizes are there
    return config


def plain_name(stored: str, prefixes: tuple[str, ...]) -> str:
    """A stored tensor's name as the base model names it (a head model's prefix taken off)."""
    for prefix in prefixes:
        if stored.startswith(prefix):
            return stored.removeprefix(prefix)
    return stored


def _incomplete(config: dict) -> str:
    return f"it is not a complete {config.get('model_type', 'model')} checkpoint"
