"""The checkpoint bundle: exact round trip, and a clear error for every kind of bad file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import make_checkpoint, tiny_config
from safetensors.torch import save_file

from stemserver.checkpoint import Checkpoint, load_checkpoint
from stemserver.errors import CheckpointError, UnknownLabelError
from stemserver.model import StemJEPA


def test_save_then_load_is_bit_exact(tmp_path: Path):
    path = tmp_path / "model.safetensors"
    saved = make_checkpoint(path, tiny_config(conditioning="concat"))
    loaded = load_checkpoint(path)
    assert loaded.config == saved.config
    assert loaded.text_backend == saved.text_backend
    assert loaded.labels == saved.labels and loaded.info == saved.info
    assert torch.equal(loaded.label_embeddings, saved.label_embeddings)
    assert loaded.state.keys() == saved.state.keys()
    for name, tensor in saved.state.items():
        assert loaded.state[name].dtype == tensor.dtype
        assert torch.equal(loaded.state[name], tensor), name
    assert {k.split(".")[0] for k in loaded.state} == {"encoder", "target_encoder", "predictor"}


def test_a_loaded_model_computes_exactly_what_the_saved_one_did(tmp_path: Path):
    path = tmp_path / "model.safetensors"
    saved = make_checkpoint(path)
    original, restored = saved.build_model(), load_checkpoint(path).build_model()
    x, text = torch.randn(2, 16000) * 0.1, torch.randn(2, 384)
    with torch.no_grad():
        assert torch.equal(original.predict(original.encode(x), text), restored.predict(restored.encode(x), text))
        assert torch.equal(original.encode(x, target=True), restored.encode(x, target=True))


def test_half_precision_weights_round_trip_too(tmp_path: Path):
    saved = make_checkpoint(tmp_path / "full.safetensors")
    half = Checkpoint(saved.config, {k: v.half() for k, v in saved.state.items()}, saved.text_backend,
                      saved.labels, saved.label_embeddings)
    half.save(tmp_path / "half.safetensors")
    loaded = load_checkpoint(tmp_path / "half.safetensors")
    assert all(v.dtype == torch.float16 and torch.equal(v, half.state[k]) for k, v in loaded.state.items())
    assert (tmp_path / "half.safetensors").stat().st_size < 0.6 * (tmp_path / "full.safetensors").stat().st_size


def test_with_dtype_halves_the_file_and_the_model_rebuilds_in_float32(tmp_path: Path):
    saved = make_checkpoint(tmp_path / "full.safetensors")
    saved.with_dtype(torch.float16).save(tmp_path / "half.safetensors")
    half = load_checkpoint(tmp_path / "half.safetensors")
    assert half.info["weights_dtype"] == "float16" and half.label_embeddings.dtype == torch.float32
    full_model, half_model = saved.build_model(), half.build_model()
    assert all(p.dtype == torch.float32 for p in half_model.parameters())
    x = torch.randn(2, 16_000 * 2)
    with torch.no_grad():
        a, b = full_model.encode(x), half_model.encode(x)
    assert torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1)).min() > 0.999


def test_saving_is_atomic_and_leaves_no_temporary_files(tmp_path: Path):
    path = tmp_path / "model.safetensors"
    make_checkpoint(path, seed=1)
    first = path.read_bytes()
    make_checkpoint(path, seed=2)
    assert path.read_bytes() != first
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def _rewrite(path: Path, edit) -> None:
    """Load the raw tensors and metadata of a checkpoint, edit them, save them back."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        metadata, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    edit(metadata, tensors)
    save_file(tensors, str(path), metadata=metadata)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "not a readable checkpoint"),
        (lambda p: p.write_bytes(b"\x00" * 64), "not a readable checkpoint"),
        (lambda p: p.write_text("not a model"), "not a readable checkpoint"),
        (lambda p: torch.save({"x": torch.zeros(1)}, p), "not a readable checkpoint"),
        (lambda p: save_file({"x": torch.zeros(1)}, str(p)), "not a stemserver checkpoint"),
        (lambda p: _rewrite(p, lambda m, t: m.update(format_version="99")), "format version 99"),
        (lambda p: _rewrite(p, lambda m, t: m.update(model_config="{broken")), "damaged metadata"),
        (lambda p: _rewrite(p, lambda m, t: m.update(labels=json.dumps(["bass"]))), "label_embeddings has shape"),
        (lambda p: _rewrite(p, lambda m, t: t.pop("label_embeddings")), "no label_embeddings"),
        (lambda p: _rewrite(p, lambda m, t: t.update(extra=torch.zeros(1))), "not part of the model"),
        (lambda p: _rewrite(p, lambda m, t: t["encoder.norm.weight"].fill_(float("nan"))), "NaN"),
        (lambda p: _rewrite(p, lambda m, t: t.pop("predictor.norm.bias")), "do not fit"),
    ],
    ids=["truncated", "zeros", "text", "pickle", "foreign-safetensors", "newer-version", "bad-json",
         "label-mismatch", "no-labels", "extra-tensor", "nan-weights", "missing-weight"],
)
def test_bad_files_give_a_clear_error(tmp_path: Path, damage, message):
    path = tmp_path / "model.safetensors"
    make_checkpoint(path)
    damage(path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path).build_model()


def test_a_missing_file_says_how_to_pass_one(tmp_path: Path):
    with pytest.raises(CheckpointError, match="--checkpoint"):
        load_checkpoint(tmp_path / "absent.safetensors")


@pytest.mark.slow
def test_the_label_cache_serves_known_labels_and_embeds_new_ones_with_the_real_text_model(tmp_path: Path):
    pytest.importorskip("sentence_transformers")
    from stemserver.config import TextSettings
    from stemserver.text import LabelEmbedder, MiniLMText

    minilm = MiniLMText()
    model = StemJEPA(tiny_config())
    Checkpoint.from_model(model, LabelEmbedder.build(minilm, ["bass", "Drums"])).save(tmp_path / "m.safetensors")
    loaded = load_checkpoint(tmp_path / "m.safetensors")
    assert loaded.text_backend["backend"] == "minilm" and loaded.labels == ["bass", "drums"]

    served = loaded.label_embedder(TextSettings(backend="auto"))
    torch.testing.assert_close(served.embed(["nylon guitar"]), minilm.embed(["nylon guitar"]))
    assert "nylon guitar" in served.known_labels

    cached_only = loaded.label_embedder(TextSettings(backend="none"))
    torch.testing.assert_close(cached_only.embed(["bass"]), minilm.embed(["bass"]))
    with pytest.raises(UnknownLabelError, match="'bass'"):
        cached_only.embed(["basss"])


def test_a_label_cache_of_the_wrong_width_is_refused():
    from stemserver.text import LabelEmbedder

    cache = LabelEmbedder(["bass"], torch.ones(1, 8), {"backend": "test", "dim": 8})
    with pytest.raises(ValueError, match="8-d"):
        Checkpoint.from_model(StemJEPA(tiny_config()), cache)
