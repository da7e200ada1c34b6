"""Library search: Annoy candidate recall and query time against exact search, build time, bytes per item.

    .venv/bin/python benchmarks/search.py [--sizes 10000 100000] [--dim 192] [--annoy-dims full 64 32]
        [--trees 10 50 100] [--over-fetch 10 50] [--queries 200] [--windows-per-file 7] [--json]
    .venv/bin/python benchmarks/search.py --sizes 1000000 --annoy-dims full 32 --trees 50 100
        # the 1M run: about 20 min and 8 GB of memory on 2 cores at d=192

A synthetic library of N window vectors is written to a temporary library folder through the product's
own path: `Library.scan` over tiny placeholder audio files whose `embed` function returns the synthetic
vectors, then `build_index`, then `LibraryIndex.search` (Annoy candidates, exact re-rank on the stored
float16 vectors, best window per file). Each file holds `--windows-per-file` windows (7: a 30 s stem
with 8 s windows every 4 s) stored as one-column windows (IndexSettings(window_columns=1,
hop_columns=1)), so the index holds exactly the generated vectors; everything after the window means
is the product's code as it runs.

Vectors: `--clusters` random centres (sound families), a centre per file near one of them, and the
file's windows near its centre, all unit length; `--decay` makes the spectrum anisotropic (axis i has
scale (i+1)^-decay, as learnt embeddings are: a few directions carry most of the variance; 0 is
isotropic, the hardest case for PCA). Queries are fresh files from the same process (the predicted
stem is never exactly in the library) with extra noise.

Figures, per library size:
- exact: brute-force cosine over every stored window vector (the float16 vectors the product
  re-ranks with, as a float32 copy in RAM), best window per file, top k: what the product's answer
  should be, and what the fastest exact search costs. p50/p95 ms per query.
- filtered: the product's exact path (`LibraryIndex.search` with a filter that allows everything,
  which ranks every window in Python), ms per query.
- per Annoy configuration (dimension searched: full or PCA; n_trees; over_fetch): build s (the whole
  `build_index`), Annoy bytes per window, cands (the windows Annoy proposes for re-ranking:
  max(over_fetch * k, 100)), recall@10 (fraction of the exact top-k (file, best window) pairs that
  the search returns), p50/p95 ms per query, speed-up over exact (p50), and "short": the fraction of
  queries answered with fewer than k files.
- bytes: per window on disk (float16 vectors, windows table, Annoy file of the default index), the
  serving process's heap per window (the windows table and file records, measured with tracemalloc;
  vectors and Annoy are memory-mapped), the SQLite row per file, and what one typical 30 s stem
  costs in all (its column embeddings, float16 (columns, rows, d), plus its windows and row).
"""

from __future__ import annotations

import argparse
import io
import math
import os
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import soundfile
from common import emit

from stemserver.index import Filters, IndexSettings, LibraryIndex, build_index, window_starts
from stemserver.library import Library
from stemserver.model import ModelConfig

K = 10
STEM_SECONDS = 30.0  # the "typical stem" the per-file figures describe
_INDEX_BASE = 1 << 15  # placeholder files carry their index in two int16 samples


# -- synthetic vectors ----------------------------------------------------------------------------


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@dataclass(frozen=True)
class SyntheticVectors:
    """Clustered unit vectors: cluster centre -> file centre -> windows. Deterministic per file index."""

    dim: int
    clusters: int = 256
    decay: float = 0.5  # axis i has scale (i + 1) ** -decay
    file_spread: float = 0.7  # a file's distance from its cluster centre (relative noise norm)
    window_spread: float = 0.3  # a window's distance from its file centre
    query_spread: float = 0.3  # extra noise on queries (the prediction's error)
    seed: int = 0

    @property
    def scales(self) -> np.ndarray:
        return (np.arange(1, self.dim + 1) ** -self.decay).astype(np.float32)

    @property
    def centres(self) -> np.ndarray:
        rng = np.random.default_rng((self.seed, 0))
        return unit(rng.standard_normal((self.clusters, self.dim), np.float32) * self.scales)

    def _directions(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return unit(rng.standard_normal((n, self.dim), np.float32) * self.scales)

    def _file(self, rng: np.random.Generator, centres: np.ndarray, windows: int) -> np.ndarray:
        centre = unit(centres[rng.integers(len(centres))] + self.file_spread * self._directions(rng, 1)[0])
        return unit(centre + self.window_spread * self._directions(rng, windows))

    def file_windows(self, index: int, windows: int, centres: np.ndarray) -> np.ndarray:
        """(windows, dim) unit vectors of library file `index` (pass `self.centres`, computed once)."""
        return self._file(np.random.default_rng((self.seed, 1, index)), centres, windows)

    def queries(self, n: int) -> np.ndarray:
        rng = np.random.default_rng((self.seed, 2))
        centres = self.centres
        fresh = np.concatenate([self._file(rng, centres, 1) for _ in range(n)])
        return unit(fresh + self.query_spread * self._directions(rng, n))


# -- a library on disk, through Library.scan ------------------------------------------------------


def placeholder_index(samples: np.ndarray) -> int:
    """The file index a placeholder file carries (see `write_library`)."""
    low, high = (int(round(float(s) * _INDEX_BASE)) for s in samples[:2])
    return low + high * _INDEX_BASE


def write_library(root: Path, n_files: int, embedding: Callable[[int], np.ndarray], fingerprint: str) -> float:
    """Fill the library at `root / "library"` with `n_files` files whose (columns, rows, d)
    embeddings are `embedding(i)`, through `Library.scan`: each file is a tiny WAV carrying its index
    `i`, so the scan's hashing, decoding, embedding store and SQLite rows are the product's own.
    Returns the scan's seconds."""
    source = root / "audio"
    source.mkdir(parents=True)
    for i in range(n_files):
        marker = np.array([i % _INDEX_BASE, i // _INDEX_BASE], np.int16)
        soundfile.write(source / f"{i:07d}.wav", marker, 16_000, subtype="PCM_16")
    with Library(root / "library", create=True) as library:
        report = library.scan([source], lambda samples: embedding(placeholder_index(samples)), fingerprint,
                              checkpoint_name="synthetic", progress=False)
    if report.failed or report.added != n_files:
        raise RuntimeError(f"synthetic library scan added {report.added} of {n_files} files: {report.failed[:3]}")
    return report.elapsed_s


# -- measurements ---------------------------------------------------------------------------------


def percentiles_ms(seconds: list[float]) -> tuple[float, float]:
    p50, p95 = np.percentile(np.asarray(seconds) * 1e3, [50, 95])
    return float(p50), float(p95)


class ExactSearch:
    """Brute-force cosine over every window (float32 in RAM), best window per file, top k."""

    def __init__(self, index: LibraryIndex, windows_per_file: int):
        self.vectors = np.asarray(index.vectors, dtype=np.float32)
        self.windows = index.windows
        self.shortlist = min(len(self.vectors), K * windows_per_file)  # always holds k distinct files

    def search(self, query: np.ndarray) -> list[tuple[int, int]]:
        scores = self.vectors @ query
        top = np.argpartition(-scores, self.shortlist - 1)[: self.shortlist]
        best: dict[int, tuple[int, int]] = {}
        for i in top[np.argsort(-scores[top])]:
            file_id, first = (int(v) for v in self.windows[i])
            best.setdefault(file_id, (file_id, first))
            if len(best) == K:
                break
        return list(best.values())


def timed_calls(fn: Callable[[np.ndarray], object], queries: np.ndarray, warm_up: int = 20) -> tuple[list, list]:
    """Results and seconds of fn(q) for each query, after calling it on the first `warm_up` queries."""
    for query in queries[:warm_up]:
        fn(query)
    results, seconds = [], []
    for query in queries:
        start = time.perf_counter()
        results.append(fn(query))
        seconds.append(time.perf_counter() - start)
    return results, seconds


def open_index(library_dir: Path, measure_heap: bool = False) -> tuple[LibraryIndex, int]:
    """The library's current index, and the Python heap bytes its loading allocated (when asked)."""
    if measure_heap:
        tracemalloc.start()
    with Library(library_dir) as library:
        index = LibraryIndex(library)
    heap = tracemalloc.get_traced_memory()[0] if measure_heap else 0
    tracemalloc.stop()
    return index, heap


def generation_bytes(library_dir: Path, index: LibraryIndex) -> dict[str, int]:
    folder = library_dir / "index" / index.info["folder"]
    return {name: (folder / name).stat().st_size for name in ("vectors.npy", "windows.npy", "annoy.ann", "pca.npz")
            if (folder / name).is_file()}


def stem_embedding_bytes(dim: int) -> tuple[int, int, int]:
    """Columns, windows and .npy bytes of a typical 30 s stem's column embeddings at width `dim`."""
    config = ModelConfig()
    columns = int(STEM_SECONDS / config.seconds_per_column)
    rows = config.front_end.n_mels // config.patch_size
    defaults = IndexSettings()
    windows = len(window_starts(columns, defaults.window_columns, defaults.hop_columns))
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((columns, rows, dim), np.float16))
    return columns, windows, buffer.getbuffer().nbytes


def run_size(n_windows: int, args: argparse.Namespace, workdir: Path) -> dict:
    vectors = SyntheticVectors(args.dim, args.clusters, args.decay, seed=args.seed)
    centres = vectors.centres
    per_file = args.windows_per_file
    n_files = math.ceil(n_windows / per_file)
    root = Path(tempfile.mkdtemp(prefix=f"search-{n_windows}-", dir=workdir))
    library_dir = root / "library"

    def embedding(i: int) -> np.ndarray:
        return vectors.file_windows(i, per_file, centres)[:, None, :]  # (columns, rows=1, d)

    scan_s = write_library(root, n_files, embedding, fingerprint=f"synthetic-{args.dim}")
    queries = vectors.queries(args.queries)
    result = {"windows": n_files * per_file, "files": n_files, "scan_s": scan_s, "configs": []}
    exact = None
    for annoy_dim, trees in [(d, t) for d in args.annoy_dims for t in args.trees]:
        settings = IndexSettings(window_columns=1, hop_columns=1, n_trees=trees, pca_dim=annoy_dim)
        with Library(library_dir) as library:
            info = build_index(library, settings, progress=False)
        index, heap = open_index(library_dir, measure_heap=exact is None)
        if exact is None:  # the first index: ground truth, exact timings, bytes
            exact = ExactSearch(index, per_file)
            truth, exact_s = timed_calls(exact.search, queries)
            unfiltered = Filters(min_duration_s=0.0)  # allows every file: the product's exact path
            _, filtered_s = timed_calls(partial(index.search, k=K, filters=unfiltered),
                                        queries[: args.filtered_queries], warm_up=1)
            result["exact_ms"] = percentiles_ms(exact_s)
            result["filtered_ms"] = percentiles_ms(filtered_s)
            result["bytes"] = {"generation": generation_bytes(library_dir, index), "heap": heap,
                               "sqlite": (library_dir / "library.sqlite").stat().st_size}
        annoy_bytes = generation_bytes(library_dir, index)["annoy.ann"]
        for over_fetch in args.over_fetch:
            hits, seconds = timed_calls(partial(index.search, k=K, over_fetch=over_fetch), queries)
            found = [{(h.file.id, h.window_start) for h in answer} for answer in hits]
            recall = np.mean([len(f & set(t)) / K for f, t in zip(found, truth)])
            p50, p95 = percentiles_ms(seconds)
            result["configs"].append({
                "annoy_dim": info["annoy_dim"], "trees": trees, "build_s": info["build_s"],
                "annoy_bytes_per_window": annoy_bytes / info["windows"], "over_fetch": over_fetch,
                "candidates": min(info["windows"], max(over_fetch * K, 100)), "recall": float(recall),
                "p50_ms": p50, "p95_ms": p95, "speedup": result["exact_ms"][0] / p50,
                "short": float(np.mean([len(h) < K for h in hits])),
            })
    return result


def run(args: argparse.Namespace) -> dict:
    columns, windows, npy = stem_embedding_bytes(args.dim)
    load_before = os.getloadavg()[0]
    result = {"dim": args.dim, "clusters": args.clusters, "decay": args.decay, "queries": args.queries, "k": K,
              "windows_per_file": args.windows_per_file,
              "stem": {"seconds": STEM_SECONDS, "columns": columns, "windows": windows, "embedding_bytes": npy},
              "sizes": []}
    with tempfile.TemporaryDirectory(prefix="stemserver-search-", dir=args.workdir) as workdir:
        for n in args.sizes:
            result["sizes"].append(run_size(n, args, Path(workdir)))
    result["cpus"], result["load_average"] = os.cpu_count(), [load_before, os.getloadavg()[0]]
    return result


def print_table(result: dict) -> None:
    print(f"d={result['dim']}, {result['clusters']} clusters, spectrum decay {result['decay']}, "
          f"{result['windows_per_file']} windows per file, {result['queries']} queries, k={result['k']}; "
          f"{result['cpus']} CPUs, load average {result['load_average'][0]:.1f} before, "
          f"{result['load_average'][1]:.1f} after")
    stem = result["stem"]
    for size in result["sizes"]:
        print(f"\n{size['windows']:,} windows in {size['files']:,} files (synthetic scan {size['scan_s']:.1f} s)")
        print(f"  exact brute force (numpy float32 in RAM): p50 {size['exact_ms'][0]:.2f} ms, "
              f"p95 {size['exact_ms'][1]:.2f} ms")
        print(f"  filtered path (LibraryIndex.search, allow-all filter): p50 {size['filtered_ms'][0]:.1f} ms, "
              f"p95 {size['filtered_ms'][1]:.1f} ms")
        print(f"  {'annoy d':>7} {'trees':>5} {'build s':>8} {'annoy B/win':>11} {'over_fetch':>10} "
              f"{'cands':>6} {'recall@10':>9} {'p50 ms':>7} {'p95 ms':>7} {'x exact':>7} {'short':>5}")
        for c in size["configs"]:
            print(f"  {c['annoy_dim']:7d} {c['trees']:5d} {c['build_s']:8.1f} {c['annoy_bytes_per_window']:11.0f} "
                  f"{c['over_fetch']:10d} {c['candidates']:6d} {c['recall']:9.3f} {c['p50_ms']:7.2f} "
                  f"{c['p95_ms']:7.2f} {c['speedup']:7.1f} {c['short']:5.2f}")
        bytes_, w, f = size["bytes"], size["windows"], size["files"]
        gen = bytes_["generation"]
        default = min(size["configs"], key=lambda c: (c["annoy_dim"] != result["dim"],
                                                       abs(c["trees"] - IndexSettings().n_trees)))
        annoy = default["annoy_bytes_per_window"]
        per_window = gen["vectors.npy"] / w + gen["windows.npy"] / w + annoy
        sqlite = bytes_["sqlite"] / f
        print(f"  bytes per window on disk: vectors {gen['vectors.npy'] / w:.0f} + windows {gen['windows.npy'] / w:.0f}"
              f" + Annoy {annoy:.0f} (d {default['annoy_dim']}, {default['trees']} trees) = {per_window:.0f}; "
              f"serving heap {bytes_['heap'] / w:.0f} B/window; SQLite {sqlite:.0f} B/file")
        total = stem["embedding_bytes"] + stem["windows"] * per_window + sqlite
        print(f"  a {stem['seconds']:.0f} s stem ({stem['columns']} columns, {stem['windows']} windows): embeddings "
              f"{stem['embedding_bytes'] / 1024:.0f} KiB + index {stem['windows'] * per_window / 1024:.1f} KiB + "
              f"row {sqlite:.0f} B = {total / 1024:.0f} KiB on disk")


def annoy_dim(text: str) -> int | None:
    return None if text == "full" else int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000], help="window vectors")
    parser.add_argument("--dim", type=int, default=192, help="192 tiny, 384 small, 768 base")
    parser.add_argument("--annoy-dims", nargs="+", type=annoy_dim, default=[None, 64, 32],
                        help="dimensions Annoy searches: full, or a PCA dimension")
    parser.add_argument("--trees", nargs="+", type=int, default=[10, 50, 100])
    parser.add_argument("--over-fetch", nargs="+", type=int, default=[10, 50])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--filtered-queries", type=int, default=5)
    parser.add_argument("--windows-per-file", type=int, default=7, help="7: a 30 s stem; 44: a 3 min one")
    parser.add_argument("--clusters", type=int, default=256)
    parser.add_argument("--decay", type=float, default=0.5, help="spectrum decay; 0 is isotropic")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="where the temporary libraries go (default: the system's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args)
    emit(result, args.json, print_table)


if __name__ == "__main__":
    main()
