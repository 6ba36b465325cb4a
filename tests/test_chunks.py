"""badapple.chunks: the record of what is solved, in both forms, read back by one reader."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from badapple import chunks
from badapple.checkpoint import open_checkpoint
from badapple.chunks import (
    chunk_info,
    next_chunk_path,
    read_inputs_embeds,
    target_digest,
    write_chunk,
)
from badapple.head import load_head
from badapple.reachable import Factored, lift_factored, project_to_ball, reachable_space

SETTINGS = {"model": "gpt2", "model_commit": "abc123", "render": "sink", "heads": [0]}


def test_full_embeddings_come_back_as_they_were(tmp_path):
    path = tmp_path / "chunk_00001.safetensors"
    embeddings = torch.randn(2, 5, 16)
    write_chunk(path, [7, 3], embeddings, SETTINGS, seconds_per_frame=0.25)
    frames, read = read_inputs_embeds(path)
    assert frames.tolist() == [7, 3] and torch.equal(read, embeddings)
    info = chunk_info(path)
    assert (info.frames, info.settings, info.seconds_per_frame) == ([7, 3], SETTINGS, 0.25)


def test_the_compact_form_is_exact_and_its_metadata_is_json(tmp_path, tiny_checkpoint):
    weights = load_head(open_checkpoint(str(tiny_checkpoint)), (1,), tokens=9)
    space = reachable_space(weights)
    whitened = project_to_ball(torch.randn(3, 9, space.dims), space.radius)
    factored = lift_factored(whitened, space, weights)  # [3, 9, 33], [33, 64], [9, 64]
    assert factored.coefficients.shape == (3, 9, space.dims + 1)
    path = tmp_path / "chunk_00002.safetensors"
    write_chunk(path, [1, 2, 3], factored, SETTINGS, seconds_per_frame=0.1)
    _, read = read_inputs_embeds(path)
    assert torch.equal(read, factored.inputs_embeds())  # what the solver renders, bit for bit
    with safe_open(str(path), framework="pt") as chunk:
        assert set(chunk.keys()) == {"frames", "coefficients", "basis", "offset"}
        assert json.loads(chunk.metadata()["badapple"])["settings"] == SETTINGS
        # 33 numbers a token instead of 64; basis and offset once a chunk
        assert chunk.get_slice("coefficients").get_shape() == [3, 9, 33]
        assert chunk.get_slice("basis").get_shape() == [33, 64]


@pytest.mark.parametrize("damage", ["truncated", "no metadata", "missing"])
def test_a_damaged_or_foreign_chunk_says_none(tmp_path, damage):
    path = tmp_path / "chunk_00001.safetensors"
    write_chunk(path, [1], torch.zeros(1, 4, 8), SETTINGS, seconds_per_frame=0.1)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:-1])
    elif damage == "no metadata":  # an older version's file: embeddings without settings
        from safetensors.torch import save_file

        save_file({"frames": torch.tensor([1]), "embeddings": torch.zeros(1, 4, 8)}, str(path))
    else:
        path.unlink()
    assert chunk_info(path) is None


def test_a_ctrl_c_while_a_chunk_is_read_is_not_taken_for_damage(tmp_path, monkeypatch):
    """An interrupt that Python wrapped on its way out (a RuntimeError caused by it, as CI saw
    in PIL) goes on up, rather than have resume delete a whole chunk as damaged."""
    path = tmp_path / "chunk_00001.safetensors"
    write_chunk(path, [1], torch.zeros(1, 4, 8), SETTINGS, seconds_per_frame=0.1)

    def interrupted(*args, **kwargs):
        raise RuntimeError("wrapped") from KeyboardInterrupt()

    monkeypatch.setattr(chunks, "safe_open", interrupted)
    with pytest.raises(RuntimeError, match="wrapped"):
        chunk_info(path)

    def damaged(*args, **kwargs):
        raise RuntimeError("a reader's own error")

    monkeypatch.setattr(chunks, "safe_open", damaged)
    assert chunk_info(path) is None  # a RuntimeError of its own is still damage


def test_target_digests_come_back_with_their_frames(tmp_path):
    targets = np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32)  # [n, C, T, T]
    digests = [target_digest(target) for target in targets]
    path = tmp_path / "chunk_00001.safetensors"
    write_chunk(path, [7, 3], torch.zeros(2, 4, 8), SETTINGS, 0.1, None, digests)
    assert chunk_info(path).target_digests == {7: digests[0], 3: digests[1]}
    _, read = read_inputs_embeds(path)  # the reader of the embeddings does not mind them
    assert read.shape == (2, 4, 8)
    # one gray level of one pixel is another target
    edited = targets[0].copy()
    edited[0, 2, 3] += 1 / 255
    assert target_digest(edited) != digests[0] and target_digest(targets[0]) == digests[0]


def test_a_chunk_from_before_digests_has_none(tmp_path):
    """A file written before target digests were kept is read as before, with no digests: its
    frames are trusted (resume.changed_targets)."""
    path = tmp_path / "chunk_00001.safetensors"
    write_chunk(path, [1, 2], torch.zeros(2, 4, 8), SETTINGS, seconds_per_frame=0.1)
    with safe_open(str(path), framework="pt") as chunk:
        assert set(chunk.keys()) == {"frames", "embeddings"}
    info = chunk_info(path)
    assert (info.frames, info.settings, info.target_digests) == ([1, 2], SETTINGS, None)


def test_digests_that_do_not_match_the_frames_are_damage(tmp_path):
    from safetensors.torch import save

    path = tmp_path / "chunk_00001.safetensors"
    tensors = {
        "frames": torch.tensor([1, 2]),
        "embeddings": torch.zeros(2, 4, 8),
        "target_digests": torch.tensor([5]),  # one digest for two frames
    }
    record = json.dumps({"settings": SETTINGS, "seconds_per_frame": 0.1})
    path.write_bytes(save(tensors, metadata={"badapple": record}))
    assert chunk_info(path) is None


def test_chunk_names_count_up(tmp_path):
    assert next_chunk_path(tmp_path).name == "chunk_00001.safetensors"
    (tmp_path / "chunk_00009.safetensors").touch()
    (tmp_path / "notes.safetensors").touch()
    assert next_chunk_path(tmp_path).name == "chunk_00010.safetensors"


def test_factored_inputs_embeds_is_coefficients_times_basis_plus_offset():
    factored = Factored(torch.ones(1, 2, 3), torch.eye(3, 4), torch.full((2, 4), 0.5))
    assert torch.equal(factored.inputs_embeds()[0, 0], torch.tensor([1.5, 1.5, 1.5, 0.5]))
