"""Reading checkpoints: in place (checkpoint.py), by byte ranges (ranged_reads.py), and from the
hub and its cache (hub.py); nothing reaches the network.

A hub id is served from a checkpoint the test writes: `hub._locate_on_hub` (the one lookup that
needs the hub) is replaced by a local fsspec filesystem that counts the bytes it hands out.
"""

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fsspec.implementations.local import LocalFileSystem
from huggingface_hub.errors import RepositoryNotFoundError
from safetensors import safe_open
from transformers import GPT2Config, GPT2Model
from transformers.initialization import no_init_weights

import badapple.hub as hub_module
from badapple.atlas import measure_atlas
from badapple.checkpoint import attention_layers_at_hand, open_checkpoint, read_tensors
from badapple.errors import UserError
from badapple.family import GPT2
from badapple.head import attention_scores, attention_weights, load_head
from badapple.ranged_reads import INDEX_FILE, fetch_tensors
from badapple.residual import LayerInput
from badapple.verify import model_through_layer, transformers_attention
from tests.conftest import TINY, save_checkpoint, save_unsupported_checkpoint

REPO = "someone/gpt2-test"
# All that layer 0 of a GPT-2 reads: wpe, h.0.ln_1, h.0.attn.c_attn
ATTENTION_TENSORS = GPT2.played_layer_tensors({}, 0)


def attention_tensors(layer: int) -> tuple[str, ...]:
    return GPT2.attention_tensors({}, layer)


REVISION = "0123456789abcdef0123456789abcdef01234567"  # a made-up commit sha
# GPT-2 XL's layer shapes and full token table; 14 of its 48 layers make a 2.05 GB file.
XL_FULL_VOCAB = dict(n_layer=14, n_embd=1600, n_head=25, n_positions=1024, vocab_size=50257)
PEAK_MEMORY_LIMIT = 2**30  # bytes, of the process that loads; the checkpoint is twice that
LOAD_MEMORY_LIMIT = 200 * 2**20  # bytes the load may add to a process that imported torch


class CountingFileSystem(LocalFileSystem):
    """The local filesystem, counting the bytes its open files hand out."""

    cachable = False  # fsspec would otherwise hand every test one shared instance (and count)

    def __init__(self):
        super().__init__()
        self.bytes_read = 0

    def _open(self, path, mode="rb", **kwargs):
        file = super()._open(path, mode, **kwargs)
        read = file.read

        def counted_read(*args, **read_kwargs):
            data = read(*args, **read_kwargs)
            self.bytes_read += len(data)
            return data

        file.read = counted_read
        return file


@pytest.fixture(autouse=True)
def offline_with_own_cache(monkeypatch, tmp_path):
    """Every test runs offline unless it fakes the hub, with a hub cache of its own."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))


@pytest.fixture
def fake_hub(monkeypatch):
    """serve(directory): hub ids resolve to `directory` at REVISION, read by counted ranges."""
    filesystem = CountingFileSystem()

    def serve(directory: Path) -> CountingFileSystem:
        monkeypatch.delenv("HF_HUB_OFFLINE")
        monkeypatch.setattr(
            hub_module,
            "_locate_on_hub",
            lambda repo_id: (filesystem, str(directory), REVISION),
        )
        return filesystem

    return serve


@pytest.fixture(scope="session")
def xl_full_vocab_checkpoint(tmp_path_factory):
    """A 2.05 GB save_pretrained GPT-2 XL-shaped checkpoint; deleted after the session."""
    directory = tmp_path_factory.mktemp("xl-full-vocab")
    torch.manual_seed(3)
    with no_init_weights():  # random init of 0.5 B weights is slow; only layer 0's are read
        model = GPT2Model(GPT2Config(**XL_FULL_VOCAB))
    with torch.no_grad():
        for name in ATTENTION_TENSORS:
            model.get_parameter(name).normal_()
    model.save_pretrained(directory)
    del model
    yield directory
    shutil.rmtree(directory)


def stored_tensors(directory: Path) -> dict[str, torch.Tensor]:
    """ATTENTION_TENSORS as safe_open reads them, in their stored dtype."""
    checkpoint = open_checkpoint(str(directory))
    tensors = {}
    for name in ATTENTION_TENSORS:
        file, stored_name = checkpoint.tensor_files[name]
        with safe_open(str(file), framework="pt") as handle:
            tensors[name] = handle.get_tensor(stored_name)
    return tensors


@pytest.mark.slow  # its fixture writes a 2 GB checkpoint
def test_ranged_reads_of_a_2gb_checkpoint_fetch_only_layer_0(xl_full_vocab_checkpoint):
    filesystem = CountingFileSystem()
    fetched = fetch_tensors(filesystem, str(xl_full_vocab_checkpoint), ATTENTION_TENSORS)
    expected = stored_tensors(xl_full_vocab_checkpoint)
    for name in ATTENTION_TENSORS:
        assert torch.equal(fetched[name], expected[name])
    file_size = (xl_full_vocab_checkpoint / "model.safetensors").stat().st_size
    tensor_bytes = sum(t.numel() * t.element_size() for t in fetched.values())
    print(
        f"read {filesystem.bytes_read:,} of {file_size:,} bytes "
        f"({filesystem.bytes_read / file_size:.2%}); the tensors are {tensor_bytes:,}"
    )
    assert filesystem.bytes_read < 0.05 * file_size
    assert filesystem.bytes_read < tensor_bytes + 100_000  # the tensors and the header only


def save_tiny(directory: Path, dtype: torch.dtype, max_shard_size: str | None) -> Path:
    """TINY saved in `dtype`, in shards of at most `max_shard_size` when given."""
    if max_shard_size is None:
        return save_checkpoint(directory, dtype=dtype, **TINY)
    torch.manual_seed(0)
    shape = {key: value for key, value in TINY.items() if key != "query_key_gain"}
    GPT2Model(GPT2Config(**shape)).to(dtype).save_pretrained(
        directory, max_shard_size=max_shard_size
    )
    assert (directory / INDEX_FILE).is_file()
    return directory


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("max_shard_size", [None, "20KB"])
def test_ranged_reads_equal_safe_open(tmp_path, dtype, max_shard_size):
    directory = save_tiny(tmp_path, dtype, max_shard_size)
    fetched = fetch_tensors(CountingFileSystem(), str(directory), ATTENTION_TENSORS)
    for name, expected in stored_tensors(directory).items():
        assert fetched[name].dtype == dtype and torch.equal(fetched[name], expected)


def test_ranged_reads_find_prefixed_names(tiny_lm_checkpoint):
    fetched = fetch_tensors(
        CountingFileSystem(),
        str(tiny_lm_checkpoint),
        ATTENTION_TENSORS,
        name_prefixes=GPT2.name_prefixes,
    )
    for name, expected in stored_tensors(tiny_lm_checkpoint).items():
        assert torch.equal(fetched[name], expected)


def test_a_hub_id_is_fetched_once_then_read_from_the_cache(
    tiny_lm_checkpoint, fake_hub, monkeypatch, tmp_path
):
    filesystem = fake_hub(tiny_lm_checkpoint)
    first = open_checkpoint(REPO)
    fetched = filesystem.bytes_read
    cache_file = first.tensor_files["wpe.weight"][0]
    assert first.revision == REVISION and cache_file.is_relative_to(tmp_path / "hub-cache")
    assert fetched > 0
    local = open_checkpoint(str(tiny_lm_checkpoint))
    ours, theirs = read_tensors(first, ATTENTION_TENSORS), read_tensors(local, ATTENTION_TENSORS)
    assert all(torch.equal(ours[name], theirs[name]) for name in ATTENTION_TENSORS)

    open_checkpoint(REPO)  # the same commit again: the cache, and not one byte fetched
    assert filesystem.bytes_read == fetched

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_module, "_locate_on_hub", pytest.fail)
    offline = open_checkpoint(REPO)
    assert filesystem.bytes_read == fetched and offline.revision == REVISION
    for heads in [(0,), (3, 1)]:  # the cache holds every head
        cached, direct = load_head(offline, heads, tokens=16), load_head(local, heads, tokens=16)
        assert torch.equal(cached.query_key_weight, direct.query_key_weight)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_on_the_hub_is_cached_as_stored(tmp_path, fake_hub, dtype):
    directory = save_tiny(tmp_path / "checkpoint", dtype, max_shard_size="20KB")
    fake_hub(directory)
    checkpoint = open_checkpoint(REPO)
    cache_file = checkpoint.tensor_files["wpe.weight"][0]
    with safe_open(str(cache_file), framework="pt") as handle:
        assert handle.get_tensor("wpe.weight").dtype == dtype
    assert load_head(checkpoint, (1,), tokens=8).query_key_weight.dtype == torch.float32
    assert open_checkpoint(REPO).revision == REVISION  # its SHA-256 checks out


def test_verify_reads_the_cached_layer(tiny_checkpoint, fake_hub):
    fake_hub(tiny_checkpoint)
    embeddings = torch.randn(2, 16, TINY["n_embd"])
    from_hub = transformers_attention(
        model_through_layer(open_checkpoint(REPO)), embeddings, (0, 2)
    )
    local = model_through_layer(open_checkpoint(str(tiny_checkpoint)))
    assert (from_hub - transformers_attention(local, embeddings, (0, 2))).abs().max() < 1e-6


def test_a_deeper_layer_fetches_the_blocks_before_it_and_its_own_attention(
    tiny_deep_checkpoint, fake_hub, monkeypatch
):
    filesystem = fake_hub(tiny_deep_checkpoint)
    local = open_checkpoint(str(tiny_deep_checkpoint))
    checkpoint = open_checkpoint(REPO, layer=2)
    # the position table, blocks 0 and 1 whole, layer 2's ln_1 and c_attn: nothing of block 3
    before = [name for name in local.tensor_files if name.startswith(("h.0.", "h.1."))]
    expected = {"wpe.weight", *before, *attention_tensors(2)}
    assert set(checkpoint.tensor_files) >= expected
    assert not any(
        name.startswith(("h.3.", "h.2.mlp", "h.2.ln_2")) for name in checkpoint.tensor_files
    )
    ours = read_tensors(checkpoint, sorted(expected))
    theirs = read_tensors(local, sorted(expected))
    assert all(torch.equal(ours[name], theirs[name]) for name in expected)
    file = tiny_deep_checkpoint / "model.safetensors"
    (header_length,) = struct.unpack("<Q", file.read_bytes()[:8])
    wanted_bytes = sum(tensor.nbytes for tensor in theirs.values())
    # layer 0's attention is fetched again, for the entry every run shares
    layer_0_bytes = sum(theirs[name].nbytes for name in attention_tensors(0))
    config_bytes = (tiny_deep_checkpoint / "config.json").stat().st_size
    fetched = filesystem.bytes_read
    assert fetched <= 8 + header_length + config_bytes + wanted_bytes + layer_0_bytes
    assert fetched < 0.7 * file.stat().st_size

    embeddings = torch.randn(2, 12, 128)
    from_hub = transformers_attention(model_through_layer(checkpoint, 2), embeddings, (1, 7), 2)
    direct = transformers_attention(model_through_layer(local, 2), embeddings, (1, 7), 2)
    assert (from_hub - direct).abs().max() < 1e-6

    open_checkpoint(REPO, layer=1)  # block 0 is cached: only layer 1's attention is fetched
    layer_1_bytes = sum(theirs[name].nbytes for name in attention_tensors(1))
    assert filesystem.bytes_read - fetched <= 8 + header_length + layer_1_bytes

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_module, "_locate_on_hub", pytest.fail)
    assert open_checkpoint(REPO, layer=2).revision == REVISION
    with pytest.raises(UserError, match="holds no copy of its blocks 0..2 and layer 3"):
        open_checkpoint(REPO, layer=3)


def test_a_layer_the_hub_model_lacks_is_refused_before_any_weight_is_fetched(
    tiny_deep_checkpoint, fake_hub
):
    filesystem = fake_hub(tiny_deep_checkpoint)
    with pytest.raises(UserError, match="--layer 4 is out of range: .* has 4 layers; pick"):
        open_checkpoint(REPO, layer=4)
    assert filesystem.bytes_read == (tiny_deep_checkpoint / "config.json").stat().st_size


def test_a_damaged_cache_entry_is_fetched_again(tiny_checkpoint, fake_hub):
    filesystem = fake_hub(tiny_checkpoint)
    cache_file = open_checkpoint(REPO).tensor_files["wpe.weight"][0]
    fetched = filesystem.bytes_read
    with cache_file.open("r+b") as file:
        file.seek(-100, os.SEEK_END)
        file.write(bytes(100))
    with pytest.warns(UserWarning, match="damaged"):
        again = open_checkpoint(REPO)
    assert filesystem.bytes_read > fetched
    expected = read_tensors(open_checkpoint(str(tiny_checkpoint)), ["wpe.weight"])["wpe.weight"]
    assert torch.equal(read_tensors(again, ["wpe.weight"])["wpe.weight"], expected)


def test_a_cache_of_the_former_name_is_moved_and_read_without_a_fetch(
    tiny_checkpoint, fake_hub, monkeypatch, tmp_path
):
    """A user's cache from when the folder was badapple-layer0: moved once to the new name, and
    read as it is, online (nothing fetched again) and offline."""
    filesystem = fake_hub(tiny_checkpoint)
    hub_cache = tmp_path / "hub-cache"
    cache_file = open_checkpoint(REPO).tensor_files["wpe.weight"][0]
    assert cache_file.is_relative_to(hub_cache / hub_module.CACHE_FOLDER)
    fetched = filesystem.bytes_read
    former = hub_cache / hub_module.FORMER_CACHE_FOLDER
    (hub_cache / hub_module.CACHE_FOLDER).rename(former)  # as an earlier version left it

    again = open_checkpoint(REPO)
    assert filesystem.bytes_read == fetched  # from the moved cache, not one byte fetched
    assert again.tensor_files["wpe.weight"][0] == cache_file
    assert not former.exists()

    (hub_cache / hub_module.CACHE_FOLDER).rename(former)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_module, "_locate_on_hub", pytest.fail)
    offline = open_checkpoint(REPO)
    assert offline.revision == REVISION and offline.tensor_files["wpe.weight"][0] == cache_file
    expected = read_tensors(open_checkpoint(str(tiny_checkpoint)), ["wpe.weight"])["wpe.weight"]
    assert torch.equal(read_tensors(offline, ["wpe.weight"])["wpe.weight"], expected)


def test_an_unreachable_hub_falls_back_to_the_cache(tiny_checkpoint, fake_hub, monkeypatch):
    fake_hub(tiny_checkpoint)
    open_checkpoint(REPO)

    def no_network(repo_id):
        raise ConnectionError("Failed to resolve 'huggingface.co'")

    monkeypatch.setattr(hub_module, "_locate_on_hub", no_network)
    with pytest.warns(UserWarning, match="cannot be reached.*cached"):
        assert open_checkpoint(REPO).revision == REVISION


def test_an_unreachable_hub_id_says_so():
    with pytest.raises(UserError, match="cannot fetch .*HF_HUB_OFFLINE is set"):
        open_checkpoint("no-such-user/no-such-gpt2-checkpoint")


def test_an_unknown_repo_says_so(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")

    def not_found(repo_id):
        # The real error wants an HTTP response; the message is all we need of it.
        error = RepositoryNotFoundError.__new__(RepositoryNotFoundError)
        Exception.__init__(error, "404 Client Error")
        raise error

    monkeypatch.setattr(hub_module, "_locate_on_hub", not_found)
    with pytest.raises(UserError, match="has no such model"):
        open_checkpoint(REPO)


def test_a_path_that_is_no_directory_is_not_sent_to_the_hub():
    with pytest.raises(UserError, match="neither a local directory nor a hub id"):
        open_checkpoint("./no/such/checkpoint")


def test_a_unsupported_checkpoint_is_refused(tmp_path):
    with pytest.raises(UserError, match="t5 checkpoint, which is not supported"):
        open_checkpoint(str(save_unsupported_checkpoint(tmp_path)))


def test_an_unsupported_family_on_the_hub_is_refused_before_any_weight_is_fetched(
    tmp_path, fake_hub
):
    filesystem = fake_hub(save_unsupported_checkpoint(tmp_path / "t5"))
    with pytest.raises(UserError, match="t5 checkpoint, which is not supported"):
        open_checkpoint(REPO)
    assert filesystem.bytes_read == (tmp_path / "t5" / "config.json").stat().st_size


def test_an_empty_directory_is_refused(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        open_checkpoint(str(tmp_path))


def test_a_config_without_weights_is_refused(tmp_path, fake_hub):
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "gpt2", "n_embd": 8, "n_head": 2})
    )
    with pytest.raises(UserError, match="no \\*.safetensors"):
        open_checkpoint(str(tmp_path))
    fake_hub(tmp_path)
    with pytest.raises(UserError, match="has no model.safetensors or"):
        open_checkpoint(REPO)


def cut_inside_wpe(data: bytes) -> bytes:
    header_length = int.from_bytes(data[:8], "little")
    begin, _ = json.loads(data[8 : 8 + header_length])["wpe.weight"]["data_offsets"]
    return data[: 8 + header_length + begin + 10]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda data: data[:5], "shorter than a header"),
        (lambda data: (10**9).to_bytes(8, "little") + data[8:], "a header of 1000000000 bytes"),
        (lambda data: data[:8] + b"[" + data[9:], "not JSON"),
        (cut_inside_wpe, "the file ends inside this tensor"),
    ],
)
def test_a_damaged_file_is_named(tmp_path, damage, message):
    file = save_checkpoint(tmp_path, **TINY) / "model.safetensors"
    file.write_bytes(damage(file.read_bytes()))
    with pytest.raises(UserError, match=f"model.safetensors.* is not a valid .*{message}"):
        fetch_tensors(CountingFileSystem(), str(tmp_path), ATTENTION_TENSORS)


def header_longer_than_the_file(data: bytes) -> bytes:
    return (len(data) + 1000).to_bytes(8, "little") + data[8:]


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # a download cut short
        lambda data: data[:8] + b"[" + data[9:],  # a header that is not JSON
        header_longer_than_the_file,
    ],
    ids=["truncated", "broken header", "header longer than the file"],
)
def test_a_damaged_local_checkpoint_is_named(tmp_path, damage):
    """safe_open's own error (a SafetensorError, no file name) becomes one line naming the
    file and the fix, whether it comes as the directory is opened or as a tensor is read."""
    file = save_checkpoint(tmp_path, **TINY) / "model.safetensors"
    file.write_bytes(damage(file.read_bytes()))
    with pytest.raises(UserError) as caught:
        read_tensors(open_checkpoint(str(tmp_path)), ATTENTION_TENSORS)
    message = str(caught.value)
    assert message.startswith(f"{file} is damaged (")
    assert message.endswith("; download the checkpoint again") and "\n" not in message


def test_a_missing_tensor_is_named(tiny_checkpoint):
    with pytest.raises(UserError, match="lacks h.1.ln_1.weight"):
        fetch_tensors(CountingFileSystem(), str(tiny_checkpoint), ["h.1.ln_1.weight"])


# Run in a fresh interpreter, whose peak RSS is the load's. VmHWM, not getrusage's ru_maxrss:
# a child's ru_maxrss starts at the RSS of the process that forked it (pytest's, here ~1 GB).
PEAK_MEMORY_CHILD = """
import re, sys
import badapple.checkpoint as checkpoint
import badapple.hub as hub
from badapple.head import attention_scores, attention_weights, load_head
from badapple.residual import LayerInput

directory, way = sys.argv[1:]
if way == "hub":  # ranged reads of the local file, as a hub id, into the cache
    from fsspec.implementations.local import LocalFileSystem

    root = directory
    hub._locate_on_hub = lambda repo_id: (LocalFileSystem(), root, "0" * 40)
    directory = "someone/gpt2-xl-shaped"
if way != "import":
    load_head(checkpoint.open_checkpoint(directory), (0,), tokens=1024)
status = open("/proc/self/status").read()
print(int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) * 1024)
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's VmHWM")
def test_a_2gb_checkpoint_loads_in_well_under_1gb(xl_full_vocab_checkpoint, tmp_path):
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub-cache")}
    env.pop("HF_HUB_OFFLINE")
    peaks = {}
    for way in ("import", "local", "hub"):
        result = subprocess.run(
            [sys.executable, "-c", PEAK_MEMORY_CHILD, str(xl_full_vocab_checkpoint), way],
            env=env,
            cwd=Path(__file__).parents[1],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        peaks[way] = int(result.stdout.split()[-1])
    print("peak RSS, MB: " + ", ".join(f"{way} {peak / 1e6:.0f}" for way, peak in peaks.items()))
    for way in ("local", "hub"):
        assert peaks[way] < PEAK_MEMORY_LIMIT
        # Importing torch is most of it (~0.6 GB); the load adds its 37 MB of tensors and copies.
        assert peaks[way] - peaks["import"] < LOAD_MEMORY_LIMIT


def test_a_llama_on_the_hub_is_fetched_by_ranges_in_bfloat16(tmp_path, fake_hub):
    """Saved from LlamaForCausalLM (names under "model."), stored in bfloat16: what layer 1
    needs is fetched, and transformers' LlamaModel on the cache gives our attention."""
    from transformers import AutoConfig, LlamaForCausalLM

    from tests.conftest import FAMILY_CONFIGS

    config = AutoConfig.for_model("llama", vocab_size=16, **FAMILY_CONFIGS["llama"])
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(tmp_path / "llama")
    filesystem = fake_hub(tmp_path / "llama")
    checkpoint = open_checkpoint(REPO, layer=1)
    assert checkpoint.family.model_types[0] == "llama"
    assert "layers.0.mlp.down_proj.weight" in checkpoint.tensor_files  # block 0 whole
    assert "layers.1.mlp.down_proj.weight" not in checkpoint.tensor_files
    assert "lm_head.weight" not in checkpoint.tensor_files
    file_bytes = (tmp_path / "llama" / "model.safetensors").stat().st_size
    assert filesystem.bytes_read < 0.8 * file_bytes
    weights = load_head(checkpoint, (4, 5), tokens=12, layer=1)
    assert weights.query_key_weight.dtype == torch.float32
    embeddings = torch.randn(2, 12, 64)
    rows = LayerInput(checkpoint, 1, "cpu")(embeddings)
    reference = transformers_attention(model_through_layer(checkpoint, 1), embeddings, (4, 5), 1)
    ours = attention_weights(attention_scores(rows, weights))
    assert (ours - reference).abs().max() < 1e-5


def test_the_atlas_of_a_hub_model_fetches_each_layers_attention_only(
    tiny_deep_checkpoint, fake_hub, monkeypatch
):
    """--layer best on a hub model: every layer's ln_1 and c_attn, no block's MLP, fetched once;
    then the attention at hand (cached) is found again offline, and names a better layer."""
    filesystem = fake_hub(tiny_deep_checkpoint)
    local = open_checkpoint(str(tiny_deep_checkpoint))
    checkpoint = open_checkpoint(REPO, 0, attention_layers=(0, 1, 2, 3))
    assert attention_layers_at_hand(checkpoint) == [0, 1, 2, 3]
    assert not any(".mlp." in name or "ln_2" in name for name in checkpoint.tensor_files)
    every_attention = [name for layer in range(4) for name in attention_tensors(layer)]
    theirs = read_tensors(local, every_attention)
    file = tiny_deep_checkpoint / "model.safetensors"
    (header_length,) = struct.unpack("<Q", file.read_bytes()[:8])
    table = read_tensors(local, ["wpe.weight"])["wpe.weight"].nbytes
    config_bytes = (tiny_deep_checkpoint / "config.json").stat().st_size
    wanted = sum(tensor.nbytes for tensor in theirs.values()) + table
    assert filesystem.bytes_read <= 8 + header_length + config_bytes + wanted
    torch.testing.assert_close(
        measure_atlas(checkpoint, [0, 1, 2, 3]).spans, measure_atlas(local, [0, 1, 2, 3]).spans
    )
    # offline, a plain layer-0 run finds the other layers' attention in the cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_module, "_locate_on_hub", pytest.fail)
    assert attention_layers_at_hand(open_checkpoint(REPO)) == [0, 1, 2, 3]
