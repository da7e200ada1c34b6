"""The search index over a library: one vector per window, Annoy for candidates, exact re-rank.

A long file is searchable at every position: its columns are cut into overlapping windows (8 s,
hop 4 s by default), each searched by the mean of its patches (unit length). Files shorter than a
window are one window (loops).

Annoy indexes are static, so every rebuild writes a new generation folder
(`LIBRARY/index/gen-N/`: window vectors, window -> file table, the Annoy file, optional PCA) and
then replaces `LIBRARY/index/current.json` in one rename. A running server keeps using the
generation it loaded until it reloads; it never sees a half-written index. Annoy can search a
lower dimension (PCA fitted on the library, stored with the generation); candidates are always
re-ranked by exact cosine on the full vectors.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from annoy import AnnoyIndex
from tqdm import tqdm

from stemserver.files import atomic_path
from stemserver.inference import mean_vector
from stemserver.library import FileRecord, Library, LibraryError, load_columns

WINDOW_COLUMNS = 50  # 8 s of 160 ms columns, the training window
HOP_COLUMNS = 25  # 4 s


@dataclass(frozen=True)
class IndexSettings:
    window_columns: int = WINDOW_COLUMNS
    hop_columns: int = HOP_COLUMNS
    n_trees: int = 50
    pca_dim: int | None = None  # None: Annoy searches the full vectors


@dataclass(frozen=True)
class Filters:
    folder: str | None = None  # only files under this folder
    min_duration_s: float | None = None
    max_duration_s: float | None = None
    label: str | None = None  # case-insensitive substring of the file's path
    exclude: tuple[str, ...] = ()  # paths never to return

    def active(self) -> bool:
        return any(v not in (None, ()) for v in asdict(self).values())

    def allowed_ids(self, records: Iterable[FileRecord]) -> np.ndarray:
        """Ids of the records these filters let through."""
        folder = None if self.folder is None else str(Path(self.folder).expanduser().absolute()).rstrip("/") + "/"
        label = None if self.label is None else self.label.lower()
        excluded = set(self.exclude)
        return np.fromiter(
            (r.id for r in records
             if (folder is None or r.path.startswith(folder))
             and (self.min_duration_s is None or r.duration_s >= self.min_duration_s)
             and (self.max_duration_s is None or r.duration_s <= self.max_duration_s)
             and (label is None or label in r.path.lower())
             and r.path not in excluded),
            dtype=np.int64,
        )


def window_starts(columns: int, window: int, hop: int) -> list[int]:
    """Start columns of the windows covering `columns`; the last window ends at the last column."""
    if columns <= window:
        return [0]
    starts = list(range(0, columns - window + 1, hop))
    if starts[-1] != columns - window:
        starts.append(columns - window)
    return starts


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
    vectors = np.empty((len(owners), library.load_columns(records[0]).shape[-1]), np.float32)
    row = 0
    for record in tqdm(records, desc="window vectors", unit="file", disable=not progress or None):
        columns = library.load_columns(record)
        for first in window_starts(record.columns, settings.window_columns, settings.hop_columns):
            vectors[row] = mean_vector(columns[first : first + settings.window_columns])
            row += 1
    index_root = library.root / "index"
    previous = read_current(index_root)
    generation = (previous["generation"] + 1) if previous else 1
    folder = index_root / f"gen-{generation}"
    if folder.exists():
        shutil.rmtree(folder)  # leftover of a build that died before switching
    folder.mkdir(parents=True)
    np.save(folder / "vectors.npy", vectors.astype(np.float16))
    np.save(folder / "windows.npy", owners)
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
        "build_s": round(time.perf_counter() - start, 3), "settings": asdict(settings),
        "checkpoint_sha256": library.meta("checkpoint_sha256"),
    }
    (folder / "info.json").write_text(json.dumps(info, indent=2))
    with atomic_path(index_root / "current.json") as tmp:
        tmp.write_text(json.dumps(info, indent=2))
    for old in index_root.glob("gen-*"):  # keep the one a running server may still have open
        if old.name not in (folder.name, previous and previous["folder"]):
            shutil.rmtree(old, ignore_errors=True)
    return info


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
    return json.loads(path.read_text()) if path.is_file() else None


@dataclass(frozen=True)
class Hit:
    file: FileRecord
    window_start: int  # first column of the best window
    score: float  # exact cosine of the query with that window


class LibraryIndex:
    """A loaded index generation, read-only and safe to share between threads."""

    def __init__(self, library: Library):
        info = read_current(library.root / "index")
        if info is None:
            raise LibraryError(f"the library at {library.root} has no search index: run `stemserver index` on it")
        folder = library.root / "index" / info["folder"]
        self.info = info
        self.root = library.root
        try:
            self.vectors = np.load(folder / "vectors.npy", mmap_mode="r")
            self.windows = np.load(folder / "windows.npy")
            self.annoy = AnnoyIndex(info["annoy_dim"], "angular")
            self.annoy.load(str(folder / "annoy.ann"))  # memory-mapped
            pca = np.load(folder / "pca.npz") if (folder / "pca.npz").is_file() else None
        except (OSError, ValueError) as e:
            raise LibraryError(f"the search index in {folder} is damaged ({e}): run `stemserver index` again") from e
        self.pca = (pca["mean"], pca["components"]) if pca is not None else None
        self.files = {record.id: record for record in library.files()}
        missing = set(np.unique(self.windows[:, 0]).tolist()) - set(self.files)
        if missing:
            raise LibraryError(f"the search index in {folder} is older than the library: run `stemserver index` again")

    def __len__(self) -> int:
        return len(self.vectors)

    def columns(self, record: FileRecord) -> np.ndarray:
        return load_columns(self.root, record)

    def search(self, query: np.ndarray, k: int, filters: Filters = Filters(), over_fetch: int = 10) -> list[Hit]:
        """The k best files for a unit query vector, each with its best window.

        Without filters, Annoy proposes `over_fetch * k` windows, re-ranked exactly; when they
        belong to fewer than k files (long stems have many windows each), it is asked for four
        times more until k files are found. With filters, the allowed windows are ranked exactly."""
        if filters.active():
            allowed = np.isin(self.windows[:, 0], filters.allowed_ids(self.files.values()))
            return self._best_per_file(np.flatnonzero(allowed), query, k)
        wanted = min(len(self.vectors), max(over_fetch * k, 100))
        searched = project(query[None], *self.pca)[0] if self.pca else query
        while True:
            candidates = np.asarray(self.annoy.get_nns_by_vector(searched, wanted, search_k=-1), dtype=np.int64)
            hits = self._best_per_file(candidates, query, k)
            if len(hits) == k or wanted >= len(self.vectors):
                return hits
            wanted = min(len(self.vectors), wanted * 4)

    def _best_per_file(self, candidates: np.ndarray, query: np.ndarray, k: int) -> list[Hit]:
        """Exact cosine re-rank of candidate windows; the best window of each of the top k files."""
        if len(candidates) == 0:
            return []
        scores = np.asarray(self.vectors[candidates], dtype=np.float32) @ query.astype(np.float32)
        best: dict[int, Hit] = {}
        for i in np.argsort(-scores):
            file_id, first = (int(v) for v in self.windows[candidates[i]])
            if file_id not in best:
                best[file_id] = Hit(self.files[file_id], first, float(scores[i]))
                if len(best) == k:
                    break
        return list(best.values())
