"""Reading a checkpoint of a supported family (family.py): a local directory in place, a hub
repository by byte ranges.

Layer 0's heads need ~37 MB of GPT-2 XL's 6.4 GB: `wpe`, `h.0.ln_1` and `h.0.attn.c_attn`, all
that layer 0's attention depends on (each family names its own: `Family.played_layer_tensors`);
a deeper layer L (--layer) needs blocks 0..L-1 whole besides, and its own norm and query/key
projections. A safetensors file says where
each tensor lies before any data:

    [8 bytes: header length N, little-endian u64][N bytes: JSON header][data]
    header = {"h.0.ln_1.bias": {"dtype": "F32", "shape": [1600], "data_offsets": [b, e]}, ...}

with offsets counted from the data's start (https://github.com/huggingface/safetensors), so we
read the header, then just those ranges. A sharded checkpoint adds model.safetensors.index.json,
which names the shard that holds each tensor.

- A local directory is read in place through `safe_open`; nothing is copied.
- A hub id is pinned to the repository's current commit. What the layer needs is fetched by
  ranged reads (`HfFileSystem`) and cached, as stored, in small safetensors files under
  `<HF hub cache>/badapple-layer0/models--<org>--<name>/`, each with the config and a SHA-256 of
  its tensors in its metadata: `<commit>.safetensors` holds layer 0's tensors (every run needs
  it), `<commit>.block<i>.safetensors` block i whole, `<commit>.attention<L>.safetensors` layer
  L's norm and projections. The cache is keyed by repository and commit, not by head: an entry
  holds all of c_attn (~31 MB for XL; a head's columns are not contiguous, so a range read
  fetches whole rows anyway), so every head, and --verify, reads from one entry, and every layer
  deeper than i shares block i's. Later runs, and HF_HUB_OFFLINE=1 runs, use the entries
  without the network.

No pickle is ever loaded: weights are read only as safetensors.
"""

import hashlib
import json
import math
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, NoReturn

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from badapple.errors import UserError
from badapple.family import Family, Shape, family_of

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"  # {"weight_map": {tensor name: shard file}}
HEADER_LENGTH_BYTES = 8  # the little-endian u64 before the JSON header
MAX_HEADER_BYTES = 100 * 2**20  # safetensors refuses longer headers too
FETCH_CHUNK_BYTES = 4 * 2**20  # one ranged read; the progress bar moves once per chunk
DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
CACHE_FOLDER = "badapple-layer0"  # inside the Hugging Face hub cache


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
    return _open_hub(model, layer, attention_layers)


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
    """Read the named tensors (plain GPT2Model names, e.g. 'wpe.weight'; one ending in "."
    stands for every tensor under it) as float32."""
    names = tensor_names(checkpoint, names)
    missing = [name for name in names if name not in checkpoint.tensor_files]
    if missing:
        raise UserError(f"{checkpoint.name} lacks {missing[0]}; {_incomplete(checkpoint.config)}")
    tensors = {}
    for name in names:
        file, stored_name = checkpoint.tensor_files[name]
        with safe_open(str(file), framework="pt") as handle:
            tensors[name] = handle.get_tensor(stored_name).to(torch.float32)
    return tensors


def _open_directory(model: str, local: Path) -> Checkpoint:
    config_path = local / "config.json"
    if not config_path.is_file():
        raise UserError(
            f"{model} has no config.json; pass a directory written by "
            "save_pretrained (config.json + *.safetensors) or a hub id"
        )
    config = _model_config(model, config_path.read_bytes(), str(config_path))
    prefixes = family_of(config.get("model_type"), model).name_prefixes
    files = sorted(local.glob("*.safetensors"))
    if not files:
        raise UserError(
            f"{model} has no *.safetensors file; save the model with "
            "save_pretrained(..., safe_serialization=True)"
        )
    tensor_files = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:  # reads the header only
            for stored_name in handle.keys():
                plain = _plain_name(stored_name, prefixes)
                tensor_files.setdefault(plain, (file, stored_name))
    return Checkpoint(name=model, config=config, tensor_files=tensor_files)


def _model_config(model: str, text: bytes | str, where: str) -> dict:
    """A config.json's contents, of a family we support (one line naming them otherwise)."""
    try:
        config = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{where} is not valid JSON ({error})") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    family_of(model_type, model).shape(config)  # its sizes are there
    return config


def _plain_name(stored: str, prefixes: tuple[str, ...]) -> str:
    """A stored tensor's name as the base model names it (a head model's prefix taken off)."""
    for prefix in prefixes:
        if stored.startswith(prefix):
            return stored.removeprefix(prefix)
    return stored


def _incomplete(config: dict) -> str:
    return f"it is not a complete {config.get('model_type', 'model')} checkpoint"


# --- the hub: pin, fetch by ranges, cache ------------------------------------------------------


def _open_hub(repo_id: str, layer: int, attention_layers: tuple[int, ...] = ()) -> Checkpoint:
    """What `layer` needs of a hub repository at its current commit, from the cache or fetched."""
    from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise UserError(
            f"--model {repo_id} is neither a local directory nor a hub id; check the path"
        ) from None
    if _hub_offline():
        return _from_newest_cache(
            repo_id, "HF_HUB_OFFLINE is set", layer, attention_layers, degraded=False
        )
    try:
        filesystem, root, revision = _locate_on_hub(repo_id)
    except RepositoryNotFoundError:  # also a gated or private repository we may not see
        raise UserError(
            f"cannot fetch {repo_id}: the Hugging Face hub has no such model (or it is gated "
            "or private); check the id, log in with `hf auth login`, or pass a local directory"
        ) from None
    except Exception as error:  # no network, a proxy, a timeout: all mean "the hub is away"
        why = f"the hub cannot be reached ({_first_line(error)})"
        return _from_newest_cache(repo_id, why, layer, attention_layers, degraded=True)

    # layer 0's entry, if cached, says what the model is (its family names the other entries,
    # and every entry is checked below)
    config = _cached_config(_cache_path(repo_id, revision))
    if config is None:
        try:
            config_text = filesystem.cat_file(f"{root}/config.json")
        except FileNotFoundError:
            raise UserError(
                f"cannot fetch {repo_id}: it has no config.json; pass a checkpoint of a "
                "supported family, such as openai-community/gpt2-xl"
            ) from None
        except Exception as error:  # the connection dropped or the hub refused the read
            raise _fetch_failed(repo_id, error) from None
        config = _model_config(repo_id, config_text, f"{repo_id}/config.json")
    for needed in (layer, *attention_layers):  # before a deeper layer's blocks are fetched
        check_layer(repo_id, config, needed)
    family = family_of(config.get("model_type"), repo_id)
    pieces = _cache_pieces(family, config, layer, attention_layers)
    files = {piece: _cache_path(repo_id, revision, piece) for piece in pieces}
    configs = {piece: _checked_cache(files[piece], pieces[piece]) for piece in pieces}
    missing = [piece for piece in pieces if configs[piece] is None]
    if missing:
        wanted = [name for piece in missing for name in pieces[piece]]
        try:
            tensors = fetch_tensors(
                filesystem, root, wanted, repo_id, _needed(layer), family.name_prefixes
            )
        except UserError:
            raise
        except Exception as error:
            raise _fetch_failed(repo_id, error) from None
        for piece in missing:
            held = {name: t for name, t in tensors.items() if wanted_tensor(name, pieces[piece])}
            _write_cache(files[piece], held, repo_id, revision, config)
    return _cached_checkpoint(repo_id, revision, files, config)


def _cache_pieces(
    family: Family, config: dict, layer: int, attention_layers: tuple[int, ...] = ()
) -> dict[str, tuple[str, ...]]:
    """The cache entries `layer` needs: a name for the file -> the tensors it holds.

    Every run needs layer 0's entry ("": the position table and layer 0's attention); a deeper
    layer adds one entry per whole block before it, which every deeper layer shares, and one
    for its own norm and projections. The atlas adds the last kind for each of
    `attention_layers`.
    """
    pieces = {"": family.played_layer_tensors(config, 0)}
    if layer > 0:
        blocks = {f"block{index}": (family.block_prefix(index),) for index in range(layer)}
        pieces.update(blocks)
    for index in sorted({layer, *attention_layers} - {0}):
        pieces[f"attention{index}"] = family.attention_tensors(config, index)
    return pieces


def _needed(layer: int) -> str:
    """What a fetch is for, on its progress bar."""
    return "layer 0" if layer == 0 else f"blocks 0..{layer - 1} and layer {layer}"


def wanted_tensor(name: str, wanted: tuple[str, ...] | list[str]) -> bool:
    """Whether `name` is one of `wanted`, or under one of its prefixes (names ending in ".")."""
    return any(name == want or (want.endswith(".") and name.startswith(want)) for want in wanted)


def _locate_on_hub(repo_id: str) -> tuple["AbstractFileSystem", str, str]:
    """(filesystem, root path pinned to the current commit, that commit); the only lookup."""
    from huggingface_hub import HfApi, HfFileSystem

    revision = HfApi().model_info(repo_id).sha
    return HfFileSystem(), f"{repo_id}@{revision}", revision


def _fetch_failed(repo_id: str, error: Exception) -> UserError:
    return UserError(
        f"fetching {repo_id} failed ({_first_line(error)}); check the network and run the "
        "same command again"
    )


def _hub_offline() -> bool:
    # Read at call time: huggingface_hub reads HF_HUB_OFFLINE once, when it is imported.
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}
    return flag or constants.HF_HUB_OFFLINE


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


class _Span(NamedTuple):
    """Where one tensor's bytes lie in a checkpoint file."""

    path: str
    stored_name: str
    dtype: torch.dtype
    shape: list[int]
    start: int  # from the start of the file
    count: int  # bytes


def fetch_tensors(
    filesystem: "AbstractFileSystem",
    root: str,
    names: tuple[str, ...] | list[str],
    label: str = "checkpoint",
    what: str = "layer 0",
    name_prefixes: tuple[str, ...] = ("transformer.",),
) -> dict[str, torch.Tensor]:
    """Read `names` (plain names; one ending in "." stands for every tensor under it) from the
    safetensors checkpoint under `root`, by byte ranges.

    `filesystem` is any fsspec filesystem (HfFileSystem, a local one in the tests); only the
    headers and the named tensors' bytes are read. Tensors keep their stored dtype. `what` the
    tensors are for names them on the progress bar; `name_prefixes`, what a head model's
    checkpoint puts before the plain names (the family's).
    """
    headers = {}  # file -> (its header entries, where its data starts)

    def header(path: str) -> tuple[dict, int]:
        if path not in headers:
            headers[path] = _read_header(filesystem, path)
        return headers[path]

    # One listing, whose errors are raised (exists() would answer False to a server error).
    sizes = {  # file name -> bytes
        entry["name"].rstrip("/").rsplit("/", 1)[-1]: entry.get("size") or 0
        for entry in filesystem.ls(root, detail=True)
    }
    single, index = f"{root}/{SINGLE_FILE}", f"{root}/{INDEX_FILE}"
    if SINGLE_FILE in sizes:
        file_of = dict.fromkeys(header(single)[0], single)  # stored name -> file
    elif INDEX_FILE in sizes:
        try:
            weight_map = json.loads(filesystem.cat_file(index))["weight_map"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
            raise UserError(
                f"{index} is damaged ({_first_line(error)}); pass a checkpoint saved with "
                "save_pretrained(safe_serialization=True)"
            ) from None
        file_of = {stored: f"{root}/{shard}" for stored, shard in weight_map.items()}
    else:
        raise UserError(
            f"{label} has no {SINGLE_FILE} or {INDEX_FILE}; pass a checkpoint saved as safetensors"
        )

    plain_names = []  # the prefixes expanded, each to the stored tensors under it
    for name in names:
        if not name.endswith("."):
            plain_names.append(name)
            continue
        plain_stored = {_plain_name(stored, name_prefixes) for stored in file_of}
        under = sorted(plain for plain in plain_stored if plain.startswith(name))
        if not under:
            raise UserError(f"{label} lacks {name}*; it is not a complete checkpoint")
        plain_names.extend(under)

    spans = {}  # plain name -> _Span
    for name in plain_names:
        stored = next((p + name for p in ("", *name_prefixes) if p + name in file_of), None)
        if stored is None:
            raise UserError(f"{label} lacks {name}; it is not a complete checkpoint")
        path = file_of[stored]
        entries, data_start = header(path)
        if stored not in entries:
            raise UserError(
                f"{path} lacks {stored} although {INDEX_FILE} names it; the checkpoint is damaged"
            )
        dtype, shape, begin, count = _entry(path, stored, entries[stored])
        spans[name] = _Span(path, stored, dtype, shape, data_start + begin, count)

    whole = sum(sizes.get(path.rsplit("/", 1)[-1], 0) for path in set(file_of.values()))
    total = sum(span.count for span in spans.values())
    tensors = {}
    with tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        desc=f"{label}: {what}, {total / 1e6:.1f} of {whole / 1e6:,.0f} MB",
    ) as bar:
        for path in sorted({span.path for span in spans.values()}):
            # cache_type="none": each read is exactly one ranged request, no read-ahead.
            with filesystem.open(path, "rb", cache_type="none") as file:
                in_file = [(name, span) for name, span in spans.items() if span.path == path]
                for name, span in sorted(in_file, key=lambda item: item[1].start):
                    data = _read_range(file, span, bar)
                    tensors[name] = torch.frombuffer(data, dtype=span.dtype).reshape(span.shape)
    return {name: tensors[name] for name in plain_names}


def _read_header(filesystem: "AbstractFileSystem", path: str) -> tuple[dict, int]:
    """A safetensors file's tensor entries and the offset of its first data byte."""
    with filesystem.open(path, "rb", cache_type="none") as file:
        prefix = file.read(HEADER_LENGTH_BYTES)
        if len(prefix) < HEADER_LENGTH_BYTES:
            _damaged(path, "shorter than a header")
        (length,) = struct.unpack("<Q", prefix)
        if length > MAX_HEADER_BYTES:
            _damaged(path, f"a header of {length} bytes")
        text = file.read(length)
    if len(text) < length:
        _damaged(path, "the header is cut short")
    try:
        entries = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        _damaged(path, f"its header is not JSON: {error}")
    if not isinstance(entries, dict):
        _damaged(path, "its header is not a JSON object")
    entries.pop("__metadata__", None)
    return entries, HEADER_LENGTH_BYTES + length


def _entry(path: str, stored: str, entry) -> tuple[torch.dtype, list[int], int, int]:
    """(dtype, shape, first byte after the header, byte count) of one header entry."""
    try:
        dtype_name, shape = entry["dtype"], [int(size) for size in entry["shape"]]
        begin, end = (int(offset) for offset in entry["data_offsets"])
    except (KeyError, TypeError, ValueError):
        _damaged(path, f"the entry of {stored} is malformed")
    if dtype_name not in DTYPES:
        raise UserError(
            f"{path} stores {stored} as {dtype_name}; only "
            f"{', '.join(DTYPES)} weights can be read, save the model in float32"
        )
    dtype = DTYPES[dtype_name]
    if not 0 <= begin <= end or end - begin != math.prod(shape) * dtype.itemsize:
        _damaged(path, f"{stored}'s offsets {begin}..{end} do not fit its shape {shape}")
    return dtype, shape, begin, end - begin


def _read_range(file, span: _Span, bar: tqdm) -> bytearray:
    """One tensor's bytes, read in chunks of FETCH_CHUNK_BYTES (one ranged request each)."""
    data = bytearray(span.count)
    file.seek(span.start)
    done = 0
    while done < span.count:
        chunk = file.read(min(FETCH_CHUNK_BYTES, span.count - done))
        if not chunk:
            _damaged(f"{span.path} ({span.stored_name})", "the file ends inside this tensor")
        data[done : done + len(chunk)] = chunk
        done += len(chunk)
        bar.update(len(chunk))
    return data


def _damaged(path: str, why: str) -> NoReturn:
    raise UserError(
        f"{path} is not a valid safetensors file ({why}); pass a checkpoint saved with "
        "save_pretrained(safe_serialization=True)"
    )


def cache_root() -> Path:
    """Where fetched layers live: a folder of the Hugging Face hub cache."""
    # HF_HUB_CACHE, else HF_HOME/hub, as huggingface_hub does, but read now, not at its import.
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        hub = Path(os.environ["HF_HUB_CACHE"])
    elif os.environ.get("HF_HOME"):
        hub = Path(os.environ["HF_HOME"]) / "hub"
    else:
        hub = Path(constants.HF_HUB_CACHE)
    return hub.expanduser() / CACHE_FOLDER


def _cache_folder(repo_id: str) -> Path:
    return cache_root() / ("models--" + repo_id.replace("/", "--"))


def _cache_path(repo_id: str, revision: str, piece: str = "") -> Path:
    """<commit>.safetensors for layer 0's entry, <commit>.<piece>.safetensors for the others."""
    return _cache_folder(repo_id) / f"{revision}{'.' + piece if piece else ''}.safetensors"


def _tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _write_cache(
    path: Path, tensors: dict[str, torch.Tensor], repo_id: str, revision: str, config: dict
) -> None:
    metadata = {
        "repo": repo_id,
        "revision": revision,
        "config": json.dumps(config),
        "sha256": _tensors_digest(tensors),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.part")  # two runs may fetch at once
    save_file(tensors, str(partial), metadata=metadata)
    partial.replace(path)


def _cached_config(path: Path) -> dict | None:
    """The config a cache entry's metadata records, read from its header alone (none: None);
    whether the entry is whole is `_checked_cache`'s to say."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            return json.loads((handle.metadata() or {})["config"])
    except Exception:  # absent, truncated or foreign: the Rust reader's errors have no base class
        return None


def _checked_cache(path: Path, wanted: tuple[str, ...]) -> dict | None:
    """The config of a cache entry that holds `wanted` with tensors matching their SHA-256;
    None if absent or bad (a bad one is deleted)."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        config = json.loads(metadata["config"])
        intact = metadata.get("sha256") == _tensors_digest(tensors)
    except Exception:  # a truncated or foreign file: the Rust reader's errors have no base class
        intact = False
    if intact and all(any(wanted_tensor(name, (want,)) for name in tensors) for want in wanted):
        return config
    warnings.warn(f"{path} was damaged and is deleted; it is fetched again online", stacklevel=3)
    path.unlink(missing_ok=True)
    return None


def _from_newest_cache(
    repo_id: str, why: str, layer: int, attention_layers: tuple[int, ...], degraded: bool
) -> Checkpoint:
    """The most recently fetched revision of `repo_id` that holds what `layer` needs, for when
    the hub cannot be asked.

    `degraded`: the hub was wanted but is away, so the cached commit may be out of date (warn).
    """
    folder = _cache_folder(repo_id)
    # layer 0's entries, one a commit (<commit>.safetensors; the others have a second dot)
    entries = [path for path in folder.glob("*.safetensors") if "." not in path.stem]
    for entry in sorted(entries, key=lambda path: path.stat().st_mtime, reverse=True):
        revision = entry.stem
        config = _cached_config(entry)
        if config is None:  # unreadable: reported and deleted
            _checked_cache(entry, ())
            continue
        for needed in (layer, *attention_layers):
            check_layer(repo_id, config, needed)
        family = family_of(config.get("model_type"), repo_id)
        pieces = _cache_pieces(family, config, layer, attention_layers)
        files = {piece: _cache_path(repo_id, revision, piece) for piece in pieces}
        configs = [_checked_cache(files[piece], pieces[piece]) for piece in pieces]
        if all(config is not None for config in configs):
            message = f"{why}: using {repo_id} at commit {revision[:12]}, cached in {folder}"
            if degraded:
                warnings.warn(message, stacklevel=3)
            else:
                print(message)
            return _cached_checkpoint(repo_id, revision, files, configs[0])
    raise UserError(
        f"cannot fetch {repo_id}: {why} and {folder} holds no copy of its {_needed(layer)}; "
        "run once with the network (HF_HUB_OFFLINE unset), or pass a local checkpoint directory"
    )


def _cached_checkpoint(
    repo_id: str, revision: str, files: dict[str, Path], config: dict
) -> Checkpoint:
    config = _model_config(repo_id, json.dumps(config), str(files[""]))
    # other layers' attention of this commit, cached by an earlier atlas or run: at hand for the
    # atlas and for naming a better display (their headers read, not checked: a damaged one
    # fails as it is read, as a file of a local directory would)
    others = _cache_folder(repo_id).glob(f"{revision}.attention*.safetensors")
    extra = [path for path in others if path not in files.values() and _cached_config(path)]
    tensor_files = {}
    for file in (*files.values(), *extra):
        with safe_open(str(file), framework="pt") as handle:  # reads the header only
            tensor_files.update({name: (file, name) for name in handle.keys()})
    return Checkpoint(name=repo_id, config=config, tensor_files=tensor_files, revision=revision)
