"""The Hugging Face hub: a repository pinned to its current commit, what the played layer needs
fetched from it by ranges (ranged_reads.py), and our cache of those pieces, which later runs and
offline runs read without the network.

A hub id is pinned to the repository's current commit. What the layer needs is fetched by
ranged reads (`HfFileSystem`) and cached, as stored, in small safetensors files under
`<HF hub cache>/badapple-layers/models--<org>--<name>/`, each with the config and a SHA-256 of
its tensors in its metadata: `<commit>.safetensors` holds layer 0's tensors (the position table
and layer 0's attention: every run needs it), `<commit>.block<i>.safetensors` block i whole,
`<commit>.attention<L>.safetensors` layer L's norm and projections. The cache is keyed by
repository and commit, not by head: an entry holds a layer's whole query/key projection (~31 MB
for GPT-2 XL's c_attn; a head's columns are not contiguous, so a range read fetches whole rows
anyway), so every head, and --verify, reads from one entry, and every layer deeper than i shares
block i's. Later runs, and HF_HUB_OFFLINE=1 runs, use the entries without the network. The
cache folder was `badapple-layer0` when it held layer 0 alone; a cache of that name is moved to
the new one once (`cache_root`).
"""

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from badapple.checkpoint import Checkpoint, check_layer, model_config, wanted_tensor
from badapple.errors import UserError, first_line
from badapple.family import Family, family_of
from badapple.ranged_reads import fetch_tensors

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

CACHE_FOLDER = "badapple-layers"  # inside the Hugging Face hub cache: any layer's pieces
# The folder's name before it held any layer but 0: a cache of that name is moved once.
FORMER_CACHE_FOLDER = "badapple-layer0"


def open_hub(repo_id: str, layer: int, attention_layers: tuple[int, ...] = ()) -> Checkpoint:
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
        why = f"the hub cannot be reached ({first_line(error)})"
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
        config = model_config(repo_id, config_text, f"{repo_id}/config.json")
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


def _locate_on_hub(repo_id: str) -> tuple["AbstractFileSystem", str, str]:
    """(filesystem, root path pinned to the current commit, that commit); the only lookup."""
    from huggingface_hub import HfApi, HfFileSystem

    revision = HfApi().model_info(repo_id).sha
    return HfFileSystem(), f"{repo_id}@{revision}", revision


def _fetch_failed(repo_id: str, error: Exception) -> UserError:
    return UserError(
        f"fetching {repo_id} failed ({first_line(error)}); check the network and run the "
        "same command again"
    )


def _hub_offline() -> bool:
    # Read at call time: huggingface_hub reads HF_HUB_OFFLINE once, when it is imported.
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}
    return flag or constants.HF_HUB_OFFLINE


def cache_root() -> Path:
    """Where fetched pieces of checkpoints live: a folder of the Hugging Face hub cache (the
    former folder moved there first, where only it exists)."""
    # HF_HUB_CACHE, else HF_HOME/hub, as huggingface_hub does, but read now, not at its import.
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        hub = Path(os.environ["HF_HUB_CACHE"])
    elif os.environ.get("HF_HOME"):
        hub = Path(os.environ["HF_HOME"]) / "hub"
    else:
        hub = Path(constants.HF_HUB_CACHE)
    root, former = hub.expanduser() / CACHE_FOLDER, hub.expanduser() / FORMER_CACHE_FOLDER
    if former.is_dir() and not root.exists():
        # A cache from before any layer was cached keeps working, with nothing fetched again.
        try:
            os.replace(former, root)
        except OSError:  # another run moved it first, or the hub cache is read-only
            return root if root.is_dir() else former
    return root


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
    config = model_config(repo_id, json.dumps(config), str(files[""]))
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
