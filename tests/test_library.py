"""The sample library: scanning real files, incremental re-scans, resume, and the search index."""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import melody, tiny_config, tone

from stemserver.index import Filters, IndexSettings, LibraryIndex, build_index, window_starts
from stemserver.inference import StemEmbedding, mean_vector, stem_embedder
from stemserver.library import Library, LibraryError, find_audio_files
from stemserver.model import StemJEPA

FINGERPRINT = "a" * 64


class CountingEmbedder:
    """The real stem embedder, counting how many files it embeds."""

    def __init__(self, fail_after: int | None = None):
        torch.manual_seed(0)
        self.embed = stem_embedder(StemJEPA(tiny_config()).eval(), torch.device("cpu"))
        self.calls = 0
        self.fail_after = fail_after

    def __call__(self, samples: np.ndarray) -> StemEmbedding:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt  # the user pressing Ctrl-C mid-scan
        self.calls += 1
        return self.embed(samples)


@pytest.fixture
def sample_folder(tmp_path: Path) -> Path:
    root = tmp_path / "samples"
    (root / "Bass" / "Deep").mkdir(parents=True)
    (root / "Drums").mkdir()
    soundfile.write(root / "Bass" / "long line.flac", melody(180.0, seed=1), 16_000)  # 3 minutes
    soundfile.write(root / "Bass" / "Deep" / "sub.wav", tone(45.0, 10.0, 44_100), 44_100)
    soundfile.write(root / "Drums" / "loop.wav", melody(1.0, seed=2), 16_000)  # a 1 s loop
    soundfile.write(root / "Drums" / "hits.aiff", melody(6.0, seed=3), 16_000)
    (root / "Drums" / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(64))
    (root / "Drums" / "empty.wav").write_bytes(b"")
    (root / "Drums" / ".hidden.wav").write_bytes(b"not scanned")
    (root / "Drums" / "notes.txt").write_text("not audio")
    os.symlink(root, root / "Bass" / "link to root")  # a symlink loop
    return root


def scan(library: Library, root: Path, embedder) -> object:
    return library.scan([root], embedder, FINGERPRINT, "tiny.safetensors", progress=False)


def test_scan_indexes_readable_files_and_reports_the_rest(tmp_path: Path, sample_folder: Path):
    embedder = CountingEmbedder()
    with Library(tmp_path / "lib", create=True) as library:
        report = scan(library, sample_folder, embedder)
        records = {Path(r.path).name: r for r in library.files()}
        assert set(records) == {"long line.flac", "sub.wav", "loop.wav", "hits.aiff"}
        assert (report.added, embedder.calls) == (4, 4)
        assert {Path(f["path"]).name for f in report.failed} == {"corrupt.wav", "empty.wav"}
        assert any("empty" in f["error"] for f in report.failed)
        long_line = records["long line.flac"]
        assert long_line.duration_s == pytest.approx(180.0) and long_line.columns == 1125
        assert library.load_columns(long_line).shape == (1125, 5, 64)
        assert library.load_columns(long_line).dtype == np.float16
        assert (records["sub.wav"].sample_rate, records["sub.wav"].label) == (44_100, "deep")
        assert records["loop.wav"].columns == 6
        assert report.audio_seconds == pytest.approx(197.0, abs=0.01)


def test_find_audio_files_follows_no_symlink_loop_and_skips_hidden(sample_folder: Path):
    names = [p.name for p in find_audio_files([sample_folder])]
    assert sorted(names) == sorted(["long line.flac", "sub.wav", "corrupt.wav", "empty.wav", "hits.aiff", "loop.wav"])


def test_rescan_embeds_only_new_or_changed_files_and_drops_removed_ones(tmp_path: Path, sample_folder: Path):
    with Library(tmp_path / "lib", create=True) as library:
        scan(library, sample_folder, CountingEmbedder())
        soundfile.write(sample_folder / "Drums" / "new.wav", melody(3.0, seed=9), 16_000)
        soundfile.write(sample_folder / "Drums" / "hits.aiff", melody(6.0, seed=10), 16_000)  # changed
        (sample_folder / "Bass" / "Deep" / "sub.wav").unlink()
        old_hits_sha = next(r.sha256 for r in library.files() if r.path.endswith("hits.aiff"))
        embedder = CountingEmbedder()
        report = scan(library, sample_folder, embedder)
        assert (report.added, report.updated, report.removed, report.unchanged) == (1, 1, 1, 2)
        assert embedder.calls == 2
        assert not library.embedding_path(old_hits_sha).exists()  # the replaced embedding is deleted
        assert len(report.failed) == 2  # still reported, not retried while unchanged


def test_identical_content_is_embedded_once(tmp_path: Path, sample_folder: Path):
    with Library(tmp_path / "lib", create=True) as library:
        scan(library, sample_folder, CountingEmbedder())
        (sample_folder / "copy").mkdir()
        (sample_folder / "copy" / "same.wav").write_bytes((sample_folder / "Drums" / "loop.wav").read_bytes())
        embedder = CountingEmbedder()
        report = scan(library, sample_folder, embedder)
        assert (report.added, report.reused_embeddings, embedder.calls) == (1, 1, 0)
        library.remove([sample_folder / "copy" / "same.wav"])
        loop = next(r for r in library.files() if r.path.endswith("loop.wav"))
        assert library.embedding_path(loop.sha256).exists()  # still used by the original


def test_an_interrupted_scan_resumes_where_it_stopped(tmp_path: Path, sample_folder: Path):
    with Library(tmp_path / "lib", create=True) as library:
        with pytest.raises(KeyboardInterrupt):
            scan(library, sample_folder, CountingEmbedder(fail_after=2))
        assert len(library.files()) == 2
    with Library(tmp_path / "lib") as library:
        embedder = CountingEmbedder()
        report = scan(library, sample_folder, embedder)
        assert (report.added, report.unchanged, embedder.calls) == (2, 2, 2)
        assert library.verify() == []
        assert not list((tmp_path / "lib").rglob("*.tmp"))


def test_a_library_refuses_a_different_checkpoint(tmp_path: Path, sample_folder: Path):
    with Library(tmp_path / "lib", create=True) as library:
        scan(library, sample_folder, CountingEmbedder())
        with pytest.raises(LibraryError, match="built with checkpoint tiny.safetensors"):
            library.scan([sample_folder], CountingEmbedder(), "b" * 64, "other.safetensors", progress=False)


def test_missing_library_and_verify_problems(tmp_path: Path, sample_folder: Path):
    with pytest.raises(LibraryError, match="stemserver index"):
        Library(tmp_path / "nowhere")
    with Library(tmp_path / "lib", create=True) as library:
        scan(library, sample_folder, CountingEmbedder())
        record = library.files()[0]
        library.embedding_path(record.sha256).unlink()
        problems = library.verify()
        assert len(problems) == 1 and "missing or unreadable" in problems[0] and "library repair" in problems[0]


def test_window_starts_cover_every_column():
    assert window_starts(6, 50, 25) == [0]
    assert window_starts(50, 50, 25) == [0]
    assert window_starts(1125, 50, 25) == list(range(0, 1076, 25))  # 1075 = 43 * 25 ends exactly
    assert window_starts(62, 50, 25) == [0, 12]  # the last window is pulled back to end at the end


@pytest.fixture
def indexed_library(tmp_path: Path, sample_folder: Path) -> Library:
    library = Library(tmp_path / "lib", create=True)
    scan(library, sample_folder, CountingEmbedder())
    yield library
    library.close()


def brute_force(library: Library, query: np.ndarray, k: int) -> list[str]:
    """Best window cosine per file over every window of every file (each encoded alone), exactly."""
    best = {}
    for record in library.files():
        windows = library.load_windows(record, 25, len(window_starts(record.columns, 50, 25)))
        best[record.path] = float((windows @ query).max())
    return sorted(best, key=best.get, reverse=True)[:k]


def test_the_index_searches_the_windows_encoded_alone_and_cuts_them_at_another_hop(indexed_library: Library):
    info = build_index(indexed_library, progress=False)
    assert info["files_with_windows_encoded_alone"] == 4
    index = LibraryIndex(indexed_library)
    long_line = next(r for r in indexed_library.files() if r.path.endswith("long line.flac"))
    rows = np.flatnonzero(index.windows[:, 0] == long_line.id)
    stored = indexed_library.load_windows(long_line, 25, len(rows))
    np.testing.assert_allclose(np.asarray(index.vectors[rows], np.float32), stored, atol=2e-3)
    info = build_index(indexed_library, IndexSettings(hop_columns=10), progress=False)
    assert info["files_with_windows_encoded_alone"] == 0  # none was embedded at that hop
    index = LibraryIndex(indexed_library)
    rows = np.flatnonzero(index.windows[:, 0] == long_line.id)
    columns = indexed_library.load_columns(long_line)
    cut = np.stack([mean_vector(columns[first : first + 50]) for first in window_starts(len(columns), 50, 10)])
    np.testing.assert_allclose(np.asarray(index.vectors[rows], np.float32), cut, atol=2e-3)


@pytest.mark.parametrize("pca_dim", [None, 8])
def test_search_returns_the_exact_top_k(indexed_library: Library, pca_dim):
    info = build_index(indexed_library, IndexSettings(pca_dim=pca_dim), progress=False)
    assert info["windows"] == 44 + 2 + 1 + 1  # 3 min, 10 s, 6 s and 1 s files
    assert info["annoy_dim"] == (pca_dim or 64)
    index = LibraryIndex(indexed_library)
    rng = np.random.default_rng(0)
    for _ in range(10):
        query = rng.standard_normal(64).astype(np.float32)
        query /= np.linalg.norm(query)
        hits = index.search(query, k=3)
        assert [h.file.path for h in hits] == brute_force(indexed_library, query, 3)
        assert hits[0].score >= hits[1].score >= hits[2].score


def test_filters(indexed_library: Library, sample_folder: Path):
    build_index(indexed_library, progress=False)
    index = LibraryIndex(indexed_library)
    query = np.ones(64, np.float32) / 8.0
    names = lambda filters: sorted(Path(h.file.path).name for h in index.search(query, 10, filters))  # noqa: E731
    assert names(Filters()) == ["hits.aiff", "long line.flac", "loop.wav", "sub.wav"]
    assert names(Filters(folder=str(sample_folder / "Bass"))) == ["long line.flac", "sub.wav"]
    assert names(Filters(label="drums")) == ["hits.aiff", "loop.wav"]
    assert names(Filters(min_duration_s=5.0, max_duration_s=60.0)) == ["hits.aiff", "sub.wav"]
    assert names(Filters(exclude=(str(sample_folder / "Drums" / "loop.wav"),), label="drums")) == ["hits.aiff"]


def test_rebuilding_switches_atomically_while_searches_run(indexed_library: Library):
    build_index(indexed_library, progress=False)
    errors, stop = [], threading.Event()

    def search_forever():
        query = np.ones(64, np.float32) / 8.0
        while not stop.is_set():
            try:
                with Library(indexed_library.root) as library:
                    hits = LibraryIndex(library).search(query, 4)
                assert len(hits) == 4
            except Exception as e:  # anything at all is a failure of atomicity
                errors.append(e)

    threads = [threading.Thread(target=search_forever) for _ in range(2)]
    for thread in threads:
        thread.start()
    for _ in range(6):
        build_index(indexed_library, IndexSettings(n_trees=5), progress=False)
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == []
    generations = sorted(p.name for p in (indexed_library.root / "index").glob("gen-*"))
    assert generations == ["gen-6", "gen-7"]  # the current one and the one before it


def test_an_empty_library_has_no_index(tmp_path: Path):
    with Library(tmp_path / "lib", create=True) as library:
        with pytest.raises(LibraryError, match="no indexed files"):
            build_index(library, progress=False)
        with pytest.raises(LibraryError, match="no search index"):
            LibraryIndex(library)


def test_long_stems_with_many_windows_still_fill_the_top_k(indexed_library: Library):
    """Annoy's first 100 candidates can all be windows of a few long files; the search must ask for
    more until it has k distinct files."""
    build_index(indexed_library, IndexSettings(hop_columns=1), progress=False)  # 1,076 windows for 3 min
    index = LibraryIndex(indexed_library)
    query = indexed_library.load_columns(next(r for r in indexed_library.files() if r.columns == 1125))
    hits = index.search(mean_vector(query[500:550]), k=4, over_fetch=1)
    assert len(hits) == 4 and len({h.file.id for h in hits}) == 4


@pytest.fixture
def linked_folders(tmp_path: Path) -> tuple[Path, Path]:
    """A root with a symlink to a folder outside it, one to a folder inside it, and a loop."""
    root, outside = tmp_path / "root", tmp_path / "elsewhere"
    (root / "Bass").mkdir(parents=True)
    outside.mkdir()
    soundfile.write(root / "Bass" / "inside.wav", tone(55.0, 1.0, 16_000), 16_000)
    soundfile.write(outside / "outside.wav", tone(110.0, 1.0, 16_000), 16_000)
    os.symlink(outside, root / "link out")
    os.symlink(root / "Bass", root / "link in")
    os.symlink(root, root / "Bass" / "loop")
    return root, outside


def test_directory_symlinks_are_followed_only_inside_the_roots(linked_folders):
    root, outside = linked_folders
    assert [p.name for p in find_audio_files([root])] == ["inside.wav"]  # the loop is walked once, not round
    followed = sorted(p.name for p in find_audio_files([root], follow_symlinks=True))
    assert followed == ["inside.wav", "outside.wav"]
    assert sorted(p.name for p in find_audio_files([root, outside])) == ["inside.wav", "outside.wav"]


def test_a_symlink_to_the_whole_machine_is_not_walked(tmp_path: Path):
    """What `stemserver index /proc` did through /proc/<pid>/cwd: a link to / walked everything."""
    root = tmp_path / "root"
    root.mkdir()
    os.symlink("/", root / "cwd")
    soundfile.write(root / "mine.wav", tone(55.0, 1.0, 16_000), 16_000)
    assert [p.name for p in find_audio_files([root])] == ["mine.wav"]


@pytest.mark.parametrize("items", [1, 2, 10, 11, 500])  # one item, leaf roots (<= dim + 2 items), split trees
def test_the_annoy_file_check_passes_every_index_annoy_writes(tmp_path: Path, items: int):
    from annoy import AnnoyIndex

    from stemserver.annoy_file import annoy_file_problem

    rng = np.random.default_rng(items)
    annoy = AnnoyIndex(8, "angular")
    for i in range(items):
        annoy.add_item(i, rng.standard_normal(8))
    annoy.build(50, n_jobs=-1)  # threads allocate nodes concurrently, as build_index does
    annoy.save(str(tmp_path / "annoy.ann"))
    annoy.unload()
    assert annoy_file_problem(tmp_path / "annoy.ann", items, 8, thorough=True) is None
    assert "not a root" in annoy_file_problem(tmp_path / "annoy.ann", items + 1, 8)  # another item count
    assert "bytes" in annoy_file_problem(tmp_path / "annoy.ann", items, 9)  # another dimension


def test_a_model_output_that_is_not_finite_is_a_failure_not_a_stored_embedding(tmp_path: Path, sample_folder: Path):
    """Stored, it would be found damaged and embedded again by every scan."""
    embedder = CountingEmbedder()

    def nan_columns_for_the_loop_and_nan_windows_for_the_hits(samples: np.ndarray) -> StemEmbedding:
        embedded = embedder(samples)
        if len(samples) < 2 * 16_000:
            return replace(embedded, columns=embedded.columns * np.nan)
        if len(samples) < 7 * 16_000:
            return replace(embedded, windows=embedded.windows * np.nan)
        return embedded

    with Library(tmp_path / "lib", create=True) as library:
        report = scan(library, sample_folder, nan_columns_for_the_loop_and_nan_windows_for_the_hits)
        assert not {"loop.wav", "hits.aiff"} & {Path(r.path).name for r in library.files()}
        for name in ("loop.wav", "hits.aiff"):
            assert any(f["path"].endswith(name) and "not finite" in f["error"] for f in report.failed)
        calls = embedder.calls
        scan(library, sample_folder, nan_columns_for_the_loop_and_nan_windows_for_the_hits)
        assert embedder.calls == calls  # not retried while the file is unchanged
        assert library.damaged_embeddings() == {}


def test_a_bug_met_on_one_file_is_that_file_s_failure_and_the_scan_goes_on(tmp_path: Path, sample_folder: Path):
    """An exception nobody foresaw (here a numpy shape error from the model's path) fails that file alone;
    the file is retried at the next scan, since a newer stemserver may read it."""
    embedder = CountingEmbedder()
    attempts = []

    def fails_on_the_hits(samples: np.ndarray) -> StemEmbedding:
        if 5 * 16_000 < len(samples) < 7 * 16_000:
            attempts.append(len(samples))
            raise ValueError("all the input arrays must have same number of dimensions")
        return embedder(samples)

    with Library(tmp_path / "lib", create=True) as library:
        report = scan(library, sample_folder, fails_on_the_hits)
        assert {Path(r.path).name for r in library.files()} == {"long line.flac", "sub.wav", "loop.wav"}
        failure = next(f for f in report.failed if f["path"].endswith("hits.aiff"))
        assert "ValueError: all the input arrays" in failure["error"] and "report" in failure["error"]
        scan(library, sample_folder, fails_on_the_hits)
        assert len(attempts) == 2
        report = scan(library, sample_folder, embedder)  # the fixed stemserver
        assert "hits.aiff" in {Path(r.path).name for r in library.files()}
        assert not any(f["path"].endswith("hits.aiff") for f in report.failed)


def test_a_bug_met_estimating_one_file_s_tempo_and_key_leaves_that_file_without_them(
        tmp_path: Path, sample_folder: Path, monkeypatch: pytest.MonkeyPatch):
    """The upgrade of a library made before tempo and key were kept analyses every file again: one
    that meets an unforeseen error keeps its embedding and stays without facts, the others get theirs."""
    import stemserver.library as library_module

    with Library(tmp_path / "lib", create=True) as library:
        scan(library, sample_folder, CountingEmbedder())
        library._sql("DELETE FROM music")  # as a format-1 library is
        real = library_module.file_facts

        def fails_on_the_sub(path, *args, **kwargs):
            if Path(path).name == "sub.wav":
                raise IndexError("index 0 is out of bounds")
            return real(path, *args, **kwargs)

        monkeypatch.setattr(library_module, "file_facts", fails_on_the_sub)
        assert library.add_missing_music(progress=False) == len(library.files()) - 1
        assert [Path(p).name for p in library._without_music()] == ["sub.wav"]
        assert "sub.wav" in {Path(r.path).name for r in library.files()}


def test_an_embedding_of_another_shape_is_damaged_whichever_file_it_is(indexed_library: Library):
    first = indexed_library.files()[0]  # the odd one out is the first read: the others must not be blamed
    np.save(indexed_library.embedding_path(first.sha256), np.zeros((first.columns, 5, 32), np.float16))
    damaged = indexed_library.damaged_embeddings(thorough=False)
    assert list(damaged) == [first.path] and "(5, 64)" in damaged[first.path]
    report = scan(indexed_library, Path(first.path).parents[1], CountingEmbedder())
    assert [d["path"] for d in report.damaged] == [first.path] and report.added == 1
    assert indexed_library.damaged_embeddings() == {}


def test_the_library_keeps_the_folders_it_was_indexed_from_but_not_those_inside_them(tmp_path):
    (tmp_path / "Samples" / "Drums").mkdir(parents=True)
    (tmp_path / "Other").mkdir()
    with Library(tmp_path / "library", create=True) as library:
        for roots in ([tmp_path / "Samples" / "Drums"], [tmp_path / "Other", tmp_path / "Samples"], []):
            library.scan(roots, lambda samples: None, "f" * 64, "model.safetensors", progress=False)
        assert library.folders() == [tmp_path / "Other", tmp_path / "Samples"]


def test_a_re_index_and_a_repair_tile_loops_as_the_library_s_last_index_did(tmp_path: Path, identity_checkpoint: Path):
    """`--tile-loops` is an embedding option, not an index setting: the library records it, so that a
    client's re-index (which has no command line) and `library repair` embed short files the same way."""
    from stemserver.checkpoint import load_checkpoint
    from stemserver.config import Settings
    from stemserver.index import read_current
    from stemserver.indexing import IndexOptions, index_folders, options_built_with
    from stemserver.repair import repair

    loops = tmp_path / "loops"
    loops.mkdir()
    soundfile.write(loops / "a.wav", melody(1.0, seed=1), 16_000)
    settings = Settings(device="cpu", threads=1)
    index_folders([loops], tmp_path / "lib", identity_checkpoint, settings, IndexOptions(tile_loops=True),
                  progress=False)
    soundfile.write(loops / "b.wav", melody(1.0, seed=2), 16_000)
    model = load_checkpoint(identity_checkpoint).build_model()
    tiled, plain = (stem_embedder(model, torch.device("cpu"), tile_loops=tile) for tile in (True, False))
    samples = soundfile.read(loops / "b.wav", dtype="float32")[0]
    expected = tiled(samples).columns.astype(np.float16)  # as the library stores it
    assert not np.array_equal(expected, plain(samples).columns.astype(np.float16))  # the test tells them apart

    def stored_b() -> np.ndarray:
        with Library(tmp_path / "lib") as library:
            record = next(r for r in library.files() if r.path.endswith("b.wav"))
            return library.load_columns(record)

    with Library(tmp_path / "lib") as library:  # what the server's re-index does
        options = options_built_with(library, read_current(tmp_path / "lib" / "index"), model.config.seconds_per_column)
        folders = library.folders()
    assert options.tile_loops
    index_folders(folders, tmp_path / "lib", identity_checkpoint, settings, options, progress=False)
    np.testing.assert_array_equal(stored_b(), expected)
    with Library(tmp_path / "lib") as library:
        library.embedding_path(next(r for r in library.files() if r.path.endswith("b.wav")).sha256).unlink()
    assert any("embedded" in line and "again" in line for line in repair(tmp_path / "lib", identity_checkpoint,
                                                                         settings, progress=False))
    np.testing.assert_array_equal(stored_b(), expected)
