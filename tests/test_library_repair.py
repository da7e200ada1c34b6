"""A damaged library, as a user meets it: real files broken on disk, the real CLI in a subprocess (a
segfault shows as a negative return code), and `stemserver library repair` bringing `query` back."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import melody

from stemserver.files import sha256_file
from stemserver.library import Library

pytestmark = pytest.mark.slow  # the whole file: subprocesses, rendering or training (README: test tiers)

ENV = {**os.environ, "STEMSERVER_CONFIG": ""}  # never read the developer's own config
NODE_BYTES = 4 * (3 + 64)  # one Annoy node of the tiny model's 64 dimensions


def stemserver(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stemserver", *args], capture_output=True, text=True, timeout=300,
                          env=ENV)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, identity_checkpoint: Path) -> dict:
    """Three 20 s stems indexed through the CLI with a short hop: 117 windows, more than one Annoy
    leaf holds (66), so the trees have split nodes that a damaged file can send outside the file."""
    root = tmp_path_factory.mktemp("pristine")
    samples = root / "samples"
    samples.mkdir()
    for seed in range(3):
        soundfile.write(samples / f"line{seed}.flac", melody(20.0, seed), 16_000)
    soundfile.write(root / "mix.wav", melody(20.0, 1)[16_000 * 4 : 16_000 * 13], 16_000)
    library = root / "library"
    indexed = stemserver("index", str(samples), "--library", str(library), "--checkpoint", str(identity_checkpoint),
                         "--device", "cpu", "--threads", "1", "--hop", "0.32", "--json")
    assert indexed.returncode == 0, indexed.stderr
    assert json.loads(indexed.stdout)["index"]["windows"] == 117
    return {"samples": samples, "library": library, "mix": root / "mix.wav", "checkpoint": identity_checkpoint}


@pytest.fixture
def lib(pristine: dict, tmp_path: Path) -> dict:
    """A private copy of the pristine library to damage, with the commands to run on it."""
    library = tmp_path / "library"
    shutil.copytree(pristine["library"], library)
    common = ["--library", str(library), "--checkpoint", str(pristine["checkpoint"]), "--device", "cpu",
              "--threads", "1"]
    audio = {p: sha256_file(p) for p in pristine["samples"].iterdir()}
    return {**pristine, "library": library, "common": common, "audio": audio,
            "generation": library / "index" / "gen-1"}


def query(lib: dict) -> subprocess.CompletedProcess:
    return stemserver("query", str(lib["mix"]), "-i", "bass", "-k", "3", *lib["common"], "--json")


def verify(lib: dict) -> subprocess.CompletedProcess:
    return stemserver("library", "verify", "--library", str(lib["library"]))


def assert_refused(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 1, (result.returncode, result.stderr)  # a crash would be negative (a signal)
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr + result.stdout


def assert_repaired(lib: dict, *said: str) -> str:
    """Run `library repair`; check it said each of `said`, and that the library answers and verifies. Its output."""
    repaired = stemserver("library", "repair", *lib["common"])
    assert repaired.returncode == 0, repaired.stderr
    for words in said:
        assert words in repaired.stdout, repaired.stdout
    answered = query(lib)
    assert answered.returncode == 0, answered.stderr
    matches = json.loads(answered.stdout)["matches"]
    assert len(matches) == 3 and Path(matches[0]["path"]).name == "line1.flac"
    checked = verify(lib)
    assert checked.returncode == 0 and checked.stdout.startswith("ok: 3 files"), checked.stdout
    return repaired.stdout
    assert {p: sha256_file(p) for p in lib["samples"].iterdir()} == lib["audio"]  # the audio is never touched


def test_a_sound_library_has_nothing_to_repair(lib: dict):
    assert verify(lib).returncode == 0
    assert_repaired(lib, "nothing to repair")


def overwrite_tree_nodes(path: Path) -> None:
    """0x7f over every tree node but the last root: its children then lead to nodes whose children
    lie ~2 GB past the end of the file, where Annoy reads and dies."""
    data = bytearray(path.read_bytes())
    nodes = len(data) // NODE_BYTES
    data[120 * NODE_BYTES : (nodes - 1) * NODE_BYTES] = b"\x7f" * ((nodes - 121) * NODE_BYTES)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [
    pytest.param(overwrite_tree_nodes, id="overwritten"),
    pytest.param(lambda p: os.truncate(p, p.stat().st_size - 100), id="truncated"),
    pytest.param(lambda p: os.truncate(p, p.stat().st_size - 5 * NODE_BYTES), id="truncated-at-a-node"),
])
def test_a_damaged_annoy_file_is_refused_with_the_repair_not_a_segfault(lib: dict, damage):
    damage(lib["generation"] / "annoy.ann")
    assert_refused(query(lib), "search index", "damaged", "annoy.ann", "stemserver library repair")
    assert_refused(verify(lib), "annoy.ann", "library repair")
    assert_repaired(lib, "rebuilt the search index: generation 2, 117 windows")  # the hop of the last build


def test_a_server_refuses_a_damaged_index_at_start(lib: dict):
    overwrite_tree_nodes(lib["generation"] / "annoy.ann")
    served = subprocess.run([sys.executable, "-m", "stemserver", "serve", *lib["common"], "--osc-port", "0",
                             "--ws-port", "0"], capture_output=True, text=True, timeout=300, env=ENV)
    assert_refused(served, "annoy.ann", "damaged", "library repair")


def test_a_running_engine_refuses_a_damaged_generation_on_reload_and_keeps_its_own(lib: dict):
    from stemserver.config import Settings, TextSettings
    from stemserver.engine import Engine
    from stemserver.index import IndexSettings, build_index
    from stemserver.library import Library, LibraryError

    engine = Engine(lib["checkpoint"], lib["library"], Settings(device="cpu", threads=1,
                                                                text=TextSettings(backend="none")))
    with Library(lib["library"]) as library:
        build_index(library, IndexSettings(hop_columns=2), progress=False)
    overwrite_tree_nodes(lib["library"] / "index" / "gen-2" / "annoy.ann")
    with pytest.raises(LibraryError, match="gen-2 is damaged"):
        engine.reload()  # in this process: a segfault here would end the test run
    assert engine.index.info["generation"] == 1
    assert len(engine.query_file(lib["mix"], "bass", k=3).matches) == 3


def test_a_database_with_damaged_pages_is_rebuilt_from_the_index_records(lib: dict):
    database = lib["library"] / "library.sqlite"
    with sqlite3.connect(database) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the main file, as after a clean exit
    data = bytearray(database.read_bytes())
    data[4096:] = np.random.default_rng(0).integers(0, 256, len(data) - 4096, dtype=np.uint8).tobytes()
    database.write_bytes(bytes(data))
    assert_refused(query(lib), "library.sqlite is damaged", "malformed", "stemserver library repair")
    assert_refused(verify(lib), "library.sqlite is damaged")
    assert_refused(stemserver("index", str(lib["samples"]), *lib["common"]), "library.sqlite is damaged")
    assert_repaired(lib, "rebuilt library.sqlite", "3 from index generation 1", "rebuilt the search index",
                    "added the tempo and key of 3 file(s)")
    assert (lib["library"] / "library.sqlite.damaged").is_file()
    with Library(lib["library"]) as library:
        assert len(library.music()) == 3  # the rows were lost with the pages: analysed again


def test_a_database_that_lost_one_page_keeps_the_rows_of_the_others(lib: dict, tmp_path: Path):
    """Rows still readable in the damaged file are kept (they may be newer than the index's records)."""
    database = lib["library"] / "library.sqlite"
    with sqlite3.connect(database) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = {name: page for name, page in db.execute("SELECT name, rootpage FROM sqlite_master")}
    data = bytearray(database.read_bytes())
    page = pages["failures"] - 1  # the (empty) failures table: the files rows survive
    data[page * 4096 : (page + 1) * 4096] = b"\xff" * 4096
    database.write_bytes(bytes(data))
    shutil.rmtree(lib["library"] / "index" / "gen-1")  # no other source of records
    (lib["library"] / "index" / "current.json").unlink()
    assert_refused(verify(lib), "library.sqlite is damaged")
    said = assert_repaired(lib, "3 file record(s) read from the damaged database",
                           "rebuilt the search index: generation 1")
    assert "added the tempo and key" not in said  # the music rows were readable: kept, not analysed again
    with Library(lib["library"]) as library:
        assert len(library.music()) == 3


@pytest.mark.parametrize("empty", [True, False], ids=["0-bytes", "deleted"])
def test_an_empty_or_deleted_database_is_not_an_empty_library(lib: dict, empty: bool):
    database = lib["library"] / "library.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    if empty:
        database.write_bytes(b"")
    said = "library.sqlite holds no library (0 bytes)" if empty else "library.sqlite is missing"
    assert_refused(verify(lib), said, "library repair")
    assert_refused(query(lib), said)
    assert_repaired(lib, "3 from index generation 1")


def test_a_garbage_current_json_is_rebuilt_by_repair_or_by_index(lib: dict):
    current = lib["library"] / "index" / "current.json"
    current.write_text("{garbage")
    assert_refused(query(lib), "current.json is damaged", "library repair")
    assert_refused(verify(lib), "current.json is damaged")
    stats = stemserver("library", "stats", "--library", str(lib["library"]))
    assert stats.returncode == 0 and "current.json is damaged" in stats.stdout
    assert_repaired(lib, "rebuilt the search index: generation 2")

    current.write_text(json.dumps([1, 2]))  # valid JSON, not an index description
    indexed = stemserver("index", str(lib["samples"]), *lib["common"], "--json")
    assert indexed.returncode == 0, indexed.stderr
    assert json.loads(indexed.stdout)["index"]["generation"] == 3  # after every generation on disk
    assert query(lib).returncode == 0


def garble(path: Path) -> None:
    """Random bytes over the data of a .npy, its header intact: float16 NaN and Inf among them."""
    data = bytearray(path.read_bytes())
    data[128:] = np.random.default_rng(1).integers(0, 256, len(data) - 128, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [
    pytest.param(garble, id="garbled"),
    pytest.param(lambda p: os.truncate(p, p.stat().st_size // 2), id="truncated"),
])
def test_a_damaged_embedding_is_embedded_again_by_index_and_by_repair(lib: dict, damage):
    embedding = sorted((lib["library"] / "embeddings").rglob("*.npy"))[0]
    damage(embedding)
    assert_refused(verify(lib), "its embedding", "library repair")
    indexed = stemserver("index", str(lib["samples"]), *lib["common"])
    assert indexed.returncode == 0, indexed.stderr
    assert "embedded again" in indexed.stdout and "1 added, 0 updated, 2 unchanged" in indexed.stdout
    assert verify(lib).returncode == 0  # the index built on it holds no NaN: verify checks every stored float
    again = stemserver("index", str(lib["samples"]), *lib["common"])
    assert "0 added, 0 updated, 3 unchanged" in again.stdout  # no loop of "verify, then re-index"

    damage(embedding)
    assert_repaired(lib, "embedded 1 file(s) again whose embedding was damaged", "rebuilt the search index")


def test_repair_with_another_checkpoint_forgets_what_it_cannot_embed(lib: dict, tmp_path: Path):
    from conftest import make_checkpoint

    make_checkpoint(tmp_path / "other.safetensors", seed=5)
    garble(sorted((lib["library"] / "embeddings").rglob("*.npy"))[0])
    repaired = stemserver("library", "repair", "--library", str(lib["library"]), "--checkpoint",
                          str(tmp_path / "other.safetensors"), "--device", "cpu")
    assert repaired.returncode == 0, repaired.stderr
    assert "forgot 1 file(s)" in repaired.stdout and "identity.safetensors" in repaired.stdout
    checked = verify(lib)
    assert checked.returncode == 0 and checked.stdout.startswith("ok: 2 files")
