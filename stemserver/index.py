"""The search index over a library: one vector per window, Annoy for candidates, exact re-rank.

A long file is searchable at every position: overlapping windows (8 s, hop 4 s by default), each
searched by the mean of its patches (unit length), each encoded alone as a query window is (the
indexer stores them, stemserver.inference.window_vectors); for a file embedded before that, or at
another hop, they are cut from its columns. Files shorter than a window are one window (loops).

Annoy indexes are static, so every rebuild writes a new generation folder
(`LIBRARY/index/gen-N/`: window vectors, window -> file table, the Annoy file, optional PCA) and
then replaces `LIBRARY/index/current.json` in one rename. A running server keeps using the
generation it loaded until it reloads; it never sees a half-written index. Annoy can search a
lower dimension (PCA fitted on the library, stored with the generation); candidates are always
re-ranked by exact cosine on the full vectors.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from annoy import AnnoyIndex
from tqdm import tqdm

from stemserver import music
from stemserver.alignment import Centring, stem_centring
from stemserver.annoy_file import annoy_file_problem
from stemserver.columns import CentringWriter, ColumnCache, StoredCentring, read_columns
from stemserver.files import atomic_path
from stemserver.inference import mean_vector
from stemserver.library import (
    GARBLED,
    DamagedEmbeddings,
    FileRecord,
    Library,
    LibraryError,
    damaged_embedding,
    repair_advice,
)
from stemserver.music import MusicFacts
from stemserver.selection import Filters
from stemserver.window import HOP_COLUMNS, WINDOW_COLUMNS, window_starts

RECORDS = "files.json"
INSTRUMENTS = "instruments.npz"  # the files' instrument vectors (ids, vectors), when the model has a head
INSTRUMENT_CANDIDATES = 50  # files best matching the instrument asked, searched beside Annoy's candidates
COLUMN_CACHE_BYTES = 16 << 20  # float32 columns of the stems aligned last: about 22 stems of 30 s (see docs/library.md)


@dataclass(frozen=True)
class IndexSettings:
    window_columns: int = WINDOW_COLUMNS
    hop_columns: int = HOP_COLUMNS
    n_trees: int = 50
    pca_dim: int | None = None  # None: Annoy searches the full vectors


def build_index(library: Library, settings: IndexSettings = IndexSettings(), progress: bool = True) -> dict:
    """Write a new index generation from the library's embeddings and switch to it atomically."""
    start = time.perf_counter()
    records = library.files()
    if not records:
        raise LibraryError(f"the library at {library.root} has no indexed files: run `stemserver index FOLDER` first")
    # The window count is known from the records, so the vectors are written into one array
    # instead of being gathered and copied (a 1M-window library otherwise peaks at ~4 copies).
    owners = np.asarray([(record.id, first) for record in records
                         for first in window_starts(record.columns, settings.window_columns, settings.hop_columns)],
                        dtype=np.int64)
    damaged = library.damaged_embeddings(thorough=False)  # headers and shapes; the values are checked below
    sound = [record for record in records if record.path not in damaged]
    if not sound:
        raise DamagedEmbeddings(damaged, library.root)
    first = library.load_columns(sound[0])
    vectors = np.empty((len(owners), first.shape[-1]), np.float32)
    index_root = library.root / "index"
    try:
        previous = read_current(index_root)
    except LibraryError:  # a damaged current.json is what this build replaces
        previous = None
    generation = max([previous["generation"] if previous else 0, *_generations(index_root)]) + 1
    folder = index_root / f"gen-{generation}"
    if folder.exists():
        shutil.rmtree(folder)  # leftover of a build that died before switching
    folder.mkdir(parents=True)
    centring = CentringWriter(folder, sound, math.prod(first.shape[1:]))
    row = encoded_alone = 0
    for record in tqdm(records, desc="window vectors", unit="file", disable=not progress or None):
        starts = window_starts(record.columns, settings.window_columns, settings.hop_columns)
        if record.path not in damaged:
            columns = library.load_columns(record)
            alone = library.load_windows(record, settings.hop_columns, len(starts)) \
                if settings.window_columns == WINDOW_COLUMNS else None
            if alone is not None:
                vectors[row : row + len(starts)] = alone
                encoded_alone += 1
            else:
                with np.errstate(invalid="ignore", over="ignore"):  # garbled values are found just below
                    for i, first_column in enumerate(starts):
                        vectors[row + i] = mean_vector(columns[first_column : first_column + settings.window_columns])
            if np.isfinite(vectors[row : row + len(starts)]).all():  # a NaN anywhere reaches some window's mean
                centring.add(record, columns)
            else:
                damaged[record.path] = GARBLED
        row += len(starts)
    if damaged:
        shutil.rmtree(folder)
        raise DamagedEmbeddings(damaged, library.root)
    centring.close()
    instruments = [(record.id, library.load_instrument(record)) for record in records]
    instruments = [(file_id, vector) for file_id, vector in instruments if vector is not None]
    if instruments:
        np.savez(folder / INSTRUMENTS, ids=np.asarray([i for i, _ in instruments], np.int64),
                 vectors=np.stack([v for _, v in instruments]).astype(np.float16))
    np.save(folder / "vectors.npy", vectors.astype(np.float16))
    np.save(folder / "windows.npy", owners)
    # The file records this generation was built from: what `library repair` rebuilds a lost database from.
    (folder / RECORDS).write_text(json.dumps([asdict(record) for record in records]))
    searched = vectors
    if settings.pca_dim is not None and settings.pca_dim < vectors.shape[1]:
        mean, components = fit_pca(vectors, settings.pca_dim)
        np.savez(folder / "pca.npz", mean=mean, components=components)
        searched = project(vectors, mean, components)
    annoy = AnnoyIndex(searched.shape[1], "angular")
    for i, vector in enumerate(searched):
        annoy.add_item(i, vector)
    annoy.build(settings.n_trees, n_jobs=-1)
    annoy.save(str(folder / "annoy.ann"))
    annoy.unload()
    info = {
        "generation": generation, "folder": folder.name, "files": len(records), "windows": len(vectors),
        "dim": int(vectors.shape[1]), "annoy_dim": int(searched.shape[1]), "built_at": time.time(),
        "files_with_windows_encoded_alone": encoded_alone, "files_with_an_instrument": len(instruments),
        "build_s": round(time.perf_counter() - start, 3), "settings": asdict(settings),
        "annoy_bytes": (folder / "annoy.ann").stat().st_size,
        "checkpoint_sha256": library.meta("checkpoint_sha256"), "checkpoint_name": library.meta("checkpoint_name"),
    }
    (folder / "info.json").write_text(json.dumps(info, indent=2))
    with atomic_path(index_root / "current.json") as tmp:
        tmp.write_text(json.dumps(info, indent=2))
    # Keep the one a running server may still have open (the newest other one if current.json was damaged).
    kept = previous["folder"] if previous else f"gen-{max(_generations(index_root) - {generation}, default=0)}"
    for old in index_root.glob("gen-*"):
        if old.name not in (folder.name, kept):
            shutil.rmtree(old, ignore_errors=True)
    return info


def _load_instruments(path: Path, files: int) -> np.ndarray | None:
    """The generation's instrument vectors as a dense float32 (max file id + 1, text_dim) matrix,
    zero rows for files without one; None when it has none."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as stored:
            ids, vectors = stored["ids"], stored["vectors"].astype(np.float32)
    except (OSError, KeyError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"{path.name} is unreadable ({type(e).__name__}: {e})") from e
    if ids.ndim != 1 or vectors.ndim != 2 or len(ids) != len(vectors) or (ids.size and ids.max() >= files):
        raise ValueError(f"{path.name} holds {ids.shape} ids and {vectors.shape} vectors for {files} file ids")
    dense = np.zeros((files, vectors.shape[1]), np.float32)
    dense[ids] = vectors
    return dense


def _generations(index_root: Path) -> set[int]:
    """Numbers of the generation folders on disk."""
    return {int(p.name[4:]) for p in index_root.glob("gen-*") if p.name[4:].isdigit()}


def fit_pca(vectors: np.ndarray, dim: int, max_samples: int = 50_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and top `dim` principal directions (dim, D) of a sample of the vectors."""
    rng = np.random.default_rng(seed)
    sample = vectors if len(vectors) <= max_samples else vectors[rng.choice(len(vectors), max_samples, replace=False)]
    mean = sample.mean(axis=0)
    _, _, vt = np.linalg.svd(sample - mean, full_matrices=False)
    return mean.astype(np.float32), vt[:dim].astype(np.float32)


def project(vectors: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    reduced = (vectors - mean) @ components.T
    return reduced / np.maximum(np.linalg.norm(reduced, axis=-1, keepdims=True), 1e-12)


def read_current(index_root: Path) -> dict | None:
    """The live generation's info (LIBRARY/index/current.json), or None when no index was built."""
    path = index_root / "current.json"
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
        valid = isinstance(info, dict) and info.get("folder") == f"gen-{info.get('generation')}" and all(
            isinstance(info.get(key), int) and info[key] >= 1 for key in ("generation", "windows", "dim", "annoy_dim"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        valid, info = False, e
    if not valid:
        raise LibraryError(f"{path} is damaged (not the index description stemserver writes). "
                           f"{repair_advice(index_root.parent)}")
    return info


def _damaged(folder: Path, why: str) -> LibraryError:
    return LibraryError(f"the search index in {folder} is damaged ({why}). Rebuild it with "
                        f"`stemserver library repair --library {folder.parent.parent}` (or `stemserver index`).")


@dataclass(frozen=True)
class Hit:
    file: FileRecord
    window_start: int  # first column of the best window
    score: float  # exact cosine of the query with that window


class LibraryIndex:
    """A loaded index generation, read-only and safe to share between threads."""

    def __init__(self, library: Library, column_cache_bytes: int = COLUMN_CACHE_BYTES):
        self.column_cache = ColumnCache(column_cache_bytes)
        info = read_current(library.root / "index")
        if info is None:
            raise LibraryError(f"the library at {library.root} has no search index: run `stemserver index` on it")
        folder = library.root / "index" / info["folder"]
        self.info = info
        self.root = library.root
        self.files = {record.id: record for record in library.files()}
        self.music = library.music()  # path -> MusicFacts
        self.folders = library.folders()  # the audio folders it was built from
        self.paths = frozenset(record.path for record in self.files.values())
        self._normaliser: tuple | None = None  # _class_normaliser's, for the last classes asked
        self._music: tuple[np.ndarray, np.ndarray] | None = None  # _music_arrays', made on first use
        try:
            self.vectors = np.load(folder / "vectors.npy", mmap_mode="r")
            self.windows = np.load(folder / "windows.npy")
            pca = np.load(folder / "pca.npz") if (folder / "pca.npz").is_file() else None
            self.pca = (pca["mean"], pca["components"]) if pca is not None else None
            self.instruments = _load_instruments(folder / INSTRUMENTS, len(self.files) and max(self.files) + 1)
            # The window rows ordered by file and their files, for _windows_of.
            order = np.argsort(self.windows[:, 0], kind="stable")
            self._rows_by_file = (order, self.windows[order, 0])
            self.centring = StoredCentring.load(folder)
        except (OSError, ValueError, KeyError) as e:
            raise _damaged(folder, str(e)) from e
        problem = self._problem(folder, thorough=False)
        if problem:
            raise _damaged(folder, problem)
        if set(np.unique(self.windows[:, 0]).tolist()) - set(self.files):
            raise LibraryError(f"the search index in {folder} is older than the library (files were removed since): "
                               f"rebuild it with `stemserver library repair --library {self.root}` "
                               "or `stemserver index`")
        self.annoy = AnnoyIndex(info["annoy_dim"], "angular")
        try:
            self.annoy.load(str(folder / "annoy.ann"))  # memory-mapped
        except OSError as e:
            raise _damaged(folder, str(e)) from e
        probe = self.annoy.get_nns_by_item(0, 2)
        if not probe or not all(0 <= i < len(self.vectors) for i in probe):
            raise _damaged(folder, f"a probe search returned {probe}")

    def _problem(self, folder: Path, thorough: bool) -> str | None:
        """What is inconsistent in this generation's files, or None; Annoy has not opened them yet."""
        info, windows = self.info, self.windows
        if self.vectors.shape != (info["windows"], info["dim"]) or windows.shape != (info["windows"], 2):
            return (f"vectors {self.vectors.shape} and windows {windows.shape} do not match the "
                    f"{info['windows']} windows of {info['dim']} dimensions in current.json")
        if self.pca is not None and self.pca[1].shape != (info["annoy_dim"], info["dim"]):
            return f"the PCA projection has shape {self.pca[1].shape}"
        if thorough and not np.isfinite(self.vectors).all():
            return "vectors.npy holds NaN or infinite values"
        problem = self.centring.problem(thorough) if self.centring is not None else None
        if problem:
            return problem
        annoy_bytes = (folder / "annoy.ann").stat().st_size if (folder / "annoy.ann").is_file() else 0
        if info.get("annoy_bytes", annoy_bytes) != annoy_bytes:
            return f"annoy.ann is {annoy_bytes} bytes, not the {info['annoy_bytes']} it was built with (truncated?)"
        return annoy_file_problem(folder / "annoy.ann", info["windows"], info["annoy_dim"], thorough)

    def __len__(self) -> int:
        return len(self.vectors)

    def problems(self) -> list[str]:
        """A thorough check of the loaded generation (every stored float too), for `library verify`."""
        problem = self._problem(self.root / "index" / self.info["folder"], thorough=True)
        return [str(_damaged(self.root / "index" / self.info["folder"], problem))] if problem else []

    def candidate_columns(self, records: list[FileRecord], patch: tuple[int, ...]
                          ) -> list[tuple[torch.Tensor, Centring]]:
        """Each record's columns, float32 (columns, prod(patch)), and centring: from the column
        cache, or read, with the centring stored in the generation (computed here for one it lacks)."""
        found = []
        for record in records:
            entry = self.column_cache.get(record.sha256)
            if entry is None:
                rows = read_columns(self.root, record, patch)
                stored = self.centring.get(record) if self.centring is not None else None
                entry = (rows, stored if stored is not None else stem_centring(rows))
                self.column_cache.put(record.sha256, *entry)
            found.append(entry)
        return found

    def damaged(self, record: FileRecord) -> LibraryError:
        """The error for an embedding whose values turned out NaN or infinite at query time."""
        return damaged_embedding(self.root, record, "it holds NaN or infinite values: garbled since it was indexed")

    def instrument_scores(self, text: np.ndarray, weight: float, classes: np.ndarray, logit_scale: float
                          ) -> np.ndarray | None:
        """Per file id, `weight` times the log-probability that the file is the instrument asked, as the
        instrument head was trained to classify: a softmax of `logit_scale` times the cosines between its
        instrument vector and the unit text embeddings of the model's labels (`classes`), with the name
        asked among them. None when the generation has no instrument vectors (a model without an
        instrument head) or the weight is 0. A file without a vector scores every class 0: -log(classes).

        A log-probability, not the cosine alone: a stem that is clearly something else gets a large
        penalty, one that is clearly what was asked none, whatever the spread of its cosines (on the
        popular valid split, instrument precision@10 86 % against 75 % for the cosine)."""
        if self.instruments is None or weight == 0:
            return None
        text = np.asarray(text, np.float32)
        text = text / max(float(np.linalg.norm(text)), 1e-12)
        others = self._class_normaliser(classes, logit_scale)
        asked = logit_scale * (self.instruments @ text)
        known = float((classes @ text).max(initial=-1.0)) > 1 - 1e-5  # the name is one of the classes
        return weight * (asked - (others if known else np.logaddexp(others, asked)))

    def _class_normaliser(self, classes: np.ndarray, logit_scale: float) -> np.ndarray:
        """Per file id, the log-sum-exp of its logits over `classes`: the same for every query of a
        generation, so it is computed once (a matrix product over every file and class)."""
        key = (id(classes), logit_scale)
        cached = self._normaliser
        if cached is None or cached[0] != key:
            logits = logit_scale * (self.instruments @ classes.T)
            cached = self._normaliser = (key, np.logaddexp.reduce(logits, axis=1), classes)
        return cached[1]

    def music_scores(self, mix: MusicFacts, key_weight: float, tempo_weight: float) -> np.ndarray | None:
        """Per file id, `key_weight` when its key is the mix's or the relative (the same scale) and
        `tempo_weight` when its tempo is within 4 % of the mix's or at double or half time; 0 where the
        file's or the mix's value is unknown (drums have no key, a one-shot no tempo). None when
        neither counts."""
        parents, tempi = self._music_arrays()
        scores = np.zeros(len(parents), np.float32)
        mix_key = music.parse_key(mix.key)
        if key_weight and mix_key is not None:
            scores += key_weight * (parents == mix_key.parent)
        if tempo_weight and mix.tempo_bpm:
            scores += tempo_weight * music.tempi_agree(tempi, mix.tempo_bpm)
        return scores if scores.any() else None

    def _music_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Per file id, the parent scale of its key (-1: none) and its tempo (NaN: none)."""
        if self._music is None:
            size = len(self.files) and max(self.files) + 1
            parents, tempi = np.full(size, -1, np.int64), np.full(size, np.nan)
            for file_id, record in self.files.items():
                facts = self.music.get(record.path)
                key = music.parse_key(facts.key) if facts else None
                parents[file_id] = -1 if key is None else key.parent
                tempi[file_id] = facts.tempo_bpm if facts and facts.tempo_bpm else np.nan
            self._music = (parents, tempi)
        return self._music

    def search(self, query: np.ndarray, k: int, filters: Filters = Filters(), over_fetch: int = 10,
               bonus: np.ndarray | None = None) -> list[Hit]:
        """The k best files for a unit query vector, each with its best window.

        Without filters, Annoy proposes `over_fetch * k` windows, re-ranked exactly; when they
        belong to fewer than k files (long stems have many windows each), it is asked for four
        times more until k files are found. With filters, the allowed windows are ranked exactly.
        `bonus` (per file id: `instrument_scores` plus `music_scores`) is added to each window's cosine,
        and every window of the INSTRUMENT_CANDIDATES files (at least k) with the largest bonus is a
        candidate too: the instrument asked for can bring back a file Annoy did not propose."""
        if filters.active():
            allowed = np.isin(self.windows[:, 0], np.asarray(filters.allowed_ids(self.files.values()), np.int64))
            return self._best_per_file(np.flatnonzero(allowed), query, k, bonus)
        wanted = min(len(self.vectors), max(over_fetch * k, 100))
        searched = project(query[None], *self.pca)[0] if self.pca else query
        favoured = np.empty(0, np.int64)
        if bonus is not None:
            favoured = self._windows_of(np.argsort(-bonus)[: max(INSTRUMENT_CANDIDATES, k)])
        while True:
            candidates = np.asarray(self.annoy.get_nns_by_vector(searched, wanted, search_k=-1), dtype=np.int64)
            hits = self._best_per_file(np.union1d(candidates, favoured), query, k, bonus)
            if len(hits) == k or wanted >= len(self.vectors):
                return hits
            wanted = min(len(self.vectors), wanted * 4)

    def _windows_of(self, file_ids: np.ndarray) -> np.ndarray:
        """The window rows of these files, from the ordering of the rows by file made at load (not a
        pass over every window per query: this runs on every query with a bonus)."""
        order, owners = self._rows_by_file
        first, last = np.searchsorted(owners, file_ids, "left"), np.searchsorted(owners, file_ids, "right")
        return np.concatenate([order[a:b] for a, b in zip(first, last)] + [np.empty(0, np.int64)])

    def _best_per_file(self, candidates: np.ndarray, query: np.ndarray, k: int,
                       bonus: np.ndarray | None = None) -> list[Hit]:
        """Exact cosine re-rank of candidate windows (plus each one's file's bonus); the best
        window of each of the top k files."""
        if len(candidates) == 0:
            return []
        scores = np.asarray(self.vectors[candidates], dtype=np.float32) @ query.astype(np.float32)
        if bonus is not None:
            scores += bonus[self.windows[candidates, 0]]
        best: dict[int, Hit] = {}
        for i in np.argsort(-scores):
            file_id, first = (int(v) for v in self.windows[candidates[i]])
            if file_id not in best:
                best[file_id] = Hit(self.files[file_id], first, float(scores[i]))
                if len(best) == k:
                    break
        return list(best.values())
