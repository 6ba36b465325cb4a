"""Ranged reads of a safetensors checkpoint: its headers, where each tensor lies, and just
those bytes, from any fsspec filesystem (the hub's `HfFileSystem`; a local one in the tests).

A safetensors file says where each tensor lies before any data:

    [8 bytes: header length N, little-endian u64][N bytes: JSON header][data]
    header = {"h.0.ln_1.bias": {"dtype": "F32", "shape": [1600], "data_offsets": [b, e]}, ...}

with offsets counted from the data's start (https://github.com/huggingface/safetensors), so we
read the header, then just those ranges. A sharded checkpoint adds model.safetensors.index.json,
which names the shard that holds each tensor. hub.py fetches what the played layer needs this
way (~37 MB of GPT-2 XL's 6.4 GB for its layer 0).
"""

import json
import math
import struct
from typing import TYPE_CHECKING, NamedTuple, NoReturn

import torch
from tqdm import tqdm

from badapple.checkpoint import plain_name
from badapple.errors import UserError, first_line

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"  # {"weight_map": {tensor name: shard file}}
HEADER_LENGTH_BYTES = 8  # the little-endian u64 before the JSON header
MAX_HEADER_BYTES = 100 * 2**20  # safetensors refuses longer headers too
FETCH_CHUNK_BYTES = 4 * 2**20  # one ranged read; the progress bar moves once per chunk
DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


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
    what: str = "tensors",
    name_prefixes: tuple[str, ...] = (),
) -> dict[str, torch.Tensor]:
    """Read `names` (plain names; one ending in "." stands for every tensor under it) from the
    safetensors checkpoint under `root`, by byte ranges.

    `filesystem` is any fsspec filesystem (HfFileSystem, a local one in the tests); only the
    headers and the named tensors' bytes are read. Tensors keep their stored dtype. `label` (the
    checkpoint) and `what` the tensors are for (e.g. "layer 0") name them on the progress bar;
    `name_prefixes`, what a head model's checkpoint may put before the plain names (the family's
    `Family.name_prefixes`; none: the names as stored).
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
                f"{index} is damaged ({first_line(error)}); pass a checkpoint saved with "
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
        plain_stored = {plain_name(stored, name_prefixes) for stored in file_of}
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
