"""End-to-end query latency through `Engine`, next to the bare encoder + predictor forward, per model size.

    .venv/bin/python benchmarks/query.py [--sizes default tiny small base] [--windows 10000] [--queries 30]
        [--batch 8] [--device cpu] [--threads N] [--json]

For each model size: a random-init checkpoint (timing does not depend on the weights; `default` is
the bundled default model itself, stemserver/assets/default-model.safetensors), a temporary
library of 30 s stems whose column embeddings have the real shape (187 columns x 5 rows x d, float16,
clustered; `--windows` 8 s windows in all, 7 per stem), written through `Library.scan` and indexed
with the default `build_index` settings, and an `Engine` on them. Each query is 8 s of a 44.1 kHz
stereo mix (as a client sends it) and the instrument "bass", k=10, no filters.

Figures, per size (median and 95th percentile over `--queries` queries, after warm-up):
- forward: `model.predict(model.encode(waveform), text)` on the same 8 s (front end, encoder,
  predictor), measured in the same loop as the end-to-end queries, alternating with them.
- end to end: `Engine.prepare_query` (down-mix, resample) + `Engine.query` (text, model, Annoy
  search, exact re-rank, best offset of each of the k stems), three ways, since the index keeps
  the columns of recently aligned stems in a cache: "cold" empties the cache before each query
  (every stem is read from its file: the figure to compare with code before the cache), "warm"
  repeats that query at once (every stem cached), "sequence" runs the queries one after the other
  from an empty cache (the hit rate it reaches is printed; it depends on the synthetic library),
  and "stated" is "cold" with the mix's tempo and key stated by the client (as REAPER states its
  project's tempo, and the user's key), so the engine estimates neither from the audio (its
  `music` stage, most of a CPU query's time otherwise).
- ratio: end-to-end p50 / forward p50 (1 means search and offsets cost nothing).
- the engine's own `timings_ms` (per stage, averaged over the queries), plus "prepare" measured here.
- batched: `--batch` queries at once through `Engine.query_batch` (one forward pass) against the
  same queries one by one through `Engine.query`, ms per query (median of `--repeats`).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import torch
from common import emit  # noqa: E402

from stemserver.checkpoint import Checkpoint, load_checkpoint
from stemserver.config import Settings, TextSettings
from stemserver.defaults import default_model_path
from stemserver.device import inference
from stemserver.engine import Engine, Query
from stemserver.files import sha256_file
from stemserver.index import IndexSettings, build_index, window_starts
from stemserver.library import DATABASE, Library
from stemserver.model import ENCODER_PRESETS, ModelConfig, StemJEPA
from stemserver.text import LabelEmbedder
from stemserver.window import QUERY_SECONDS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search import SyntheticVectors, percentiles_ms, write_library  # noqa: E402

MIX_RATE = 44_100
STEM_SECONDS = 30.0
INSTRUMENT = "bass"
TEXT_DIM = 384  # MiniLM's; the label cache is random, as the weights are
DEFAULT = "default"
STATED_BPM, STATED_KEY = 120.0, "A minor"  # the "stated" run's client tempo and key


def write_checkpoint(path: Path, size: str, seed: int = 0) -> ModelConfig:
    """A random-init checkpoint of the given size, with a small label cache (no text model needed)."""
    torch.manual_seed(seed)
    config = ModelConfig.preset(size, text_dim=TEXT_DIM)
    labels = [INSTRUMENT, "drums", "vocals", "guitar"]
    embeddings = torch.nn.functional.normalize(torch.randn(len(labels), TEXT_DIM), dim=-1)
    cache = LabelEmbedder(labels, embeddings, {"backend": "random", "dim": TEXT_DIM})
    Checkpoint.from_model(StemJEPA(config), cache, info={"benchmark": "query"}).save(path)
    return config


def stem_columns_like(config: ModelConfig, vectors: SyntheticVectors, centres: np.ndarray, index: int) -> np.ndarray:
    """Stand-in column embeddings of library stem `index`: (columns, rows, d), each patch standardised
    over its features like `stem_columns`, around a clustered per-file direction."""
    columns = int(STEM_SECONDS / config.seconds_per_column)
    rows = config.front_end.n_mels // config.patch_size
    direction = vectors.file_windows(index, 1, centres)[0] * math.sqrt(config.embed_dim)
    rng = np.random.default_rng((vectors.seed, 3, index))
    patches = direction + rng.standard_normal((columns, rows, config.embed_dim), np.float32)
    patches -= patches.mean(axis=-1, keepdims=True)
    return patches / patches.std(axis=-1, keepdims=True)


def set_durations(library_dir: Path, seconds: float) -> None:
    """Give the library's records the duration their columns stand for: `write_library`'s placeholder
    audio files last 2 samples, and a stem shorter than the query is aligned as a loop of that
    length (a gather modulo a 0.0008-column period), not as the 30 s stem it stands for."""
    with closing(sqlite3.connect(library_dir / DATABASE)) as db, db:
        db.execute("UPDATE files SET duration_s = ?", (seconds,))


def mixes(n: int, seed: int) -> list[np.ndarray]:
    """`n` different 8 s stereo mixes at 44.1 kHz: decaying random notes over a little noise."""
    rng = np.random.default_rng(seed)
    length = int(QUERY_SECONDS * MIX_RATE)
    t = np.arange(2 * MIX_RATE) / MIX_RATE  # a note decays to -70 dB in 2 s
    out = []
    for _ in range(n):
        mix = 0.01 * rng.standard_normal((length, 2))
        for onset in rng.integers(0, length, 24):
            note = np.sin(2 * np.pi * 55 * 2 ** (rng.integers(0, 48) / 12) * t) * np.exp(-4 * t)
            end = min(length, onset + len(t))
            mix[onset:end] += 0.2 * note[: end - onset, None] * rng.uniform(0.3, 1.0, 2)
        out.append(mix.astype(np.float32))
    return out


def run_size(size: str, args: argparse.Namespace, root: Path) -> dict:
    """Checkpoint, library and engine of one size in `root`, and that size's figures."""
    checkpoint = root / f"{size}.safetensors"
    if size == DEFAULT:
        shutil.copyfile(default_model_path(), checkpoint)
        config = load_checkpoint(checkpoint).config
    else:
        config = write_checkpoint(checkpoint, size)
    vectors = SyntheticVectors(config.embed_dim, seed=args.seed)
    centres = vectors.centres
    defaults = IndexSettings()
    columns = int(STEM_SECONDS / config.seconds_per_column)
    per_file = len(window_starts(columns, defaults.window_columns, defaults.hop_columns))
    n_files = math.ceil(args.windows / per_file)
    write_library(root, n_files, lambda i: stem_columns_like(config, vectors, centres, i), sha256_file(checkpoint))
    set_durations(root / "library", STEM_SECONDS)
    with Library(root / "library") as library:
        info = build_index(library, defaults, progress=False)
    settings = Settings(device=args.device, threads=args.threads, text=TextSettings(backend="none"))
    engine = Engine(checkpoint, root / "library", settings)
    text = engine.labels.embed([INSTRUMENT]).to(engine.device)

    def forward(samples: np.ndarray) -> None:
        waveform = torch.from_numpy(samples)[None].to(engine.device)
        with inference(engine.device):
            engine.model.predict(engine.model.encode(waveform), text)
        if engine.device.type == "cuda":
            torch.cuda.synchronize(engine.device)

    def end_to_end(mix: np.ndarray, cold: bool = False, stated: bool = False) -> tuple[float, dict]:
        if cold:
            engine.index.column_cache.clear()
        start = time.perf_counter()
        samples = engine.prepare_query(mix, MIX_RATE, QUERY_SECONDS)
        music = {"tempo_bpm": STATED_BPM, "key": STATED_KEY} if stated else {}
        timings = engine.query(Query(samples, INSTRUMENT, k=10, **music)).timings_ms
        return time.perf_counter() - start, timings

    raw = mixes(args.queries, args.seed)
    prepared = [engine.prepare_query(m, MIX_RATE, QUERY_SECONDS) for m in raw]
    for mix, samples in list(zip(raw, prepared))[:3]:  # warm-up
        forward(samples)
        end_to_end(mix)
    forward_s, prepare_s, runs = [], [], {"cold": [], "warm": [], "stated": [], "sequence": []}
    for mix, samples in zip(raw, prepared):
        start = time.perf_counter()
        forward(samples)
        forward_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        engine.prepare_query(mix, MIX_RATE, QUERY_SECONDS)
        prepare_s.append(time.perf_counter() - start)
        runs["cold"].append(end_to_end(mix, cold=True))
        runs["warm"].append(end_to_end(mix))  # the same query again: every stem in the column cache
        runs["stated"].append(end_to_end(mix, cold=True, stated=True))
    cache = engine.index.column_cache
    cache.clear()
    cache.hits = cache.misses = 0
    runs["sequence"] = [end_to_end(mix) for mix in raw]
    hit_rate = cache.hits / max(1, cache.hits + cache.misses)
    breakdown = {run: {"prepare": statistics.fmean(prepare_s) * 1e3,
                       **{name: statistics.fmean(t[name] for _, t in results) for name in results[0][1]}}
                 for run, results in runs.items()}
    batch = [Query(samples, INSTRUMENT, k=10) for samples in prepared[: args.batch]]
    batched, single = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        engine.query_batch(batch)
        batched.append((time.perf_counter() - start) / len(batch))
        start = time.perf_counter()
        for query in batch:
            engine.query(query)
        single.append((time.perf_counter() - start) / len(batch))
    forward_ms = percentiles_ms(forward_s)
    e2e_ms = {run: percentiles_ms([seconds for seconds, _ in results]) for run, results in runs.items()}
    return {
        "size": size, "embed_dim": config.embed_dim, "files": n_files, "windows": info["windows"],
        "forward_ms": forward_ms, "end_to_end_ms": e2e_ms,
        "ratio": {run: ms[0] / forward_ms[0] for run, ms in e2e_ms.items()},
        "sequence_cache_hit_rate": hit_rate, "breakdown_ms": breakdown, "batch": len(batch),
        "batched_ms_per_query": statistics.median(batched) * 1e3,
        "single_ms_per_query": statistics.median(single) * 1e3,
    }


def run(args: argparse.Namespace) -> dict:
    load_before = os.getloadavg()[0]
    rows = []
    for size in args.sizes:  # one folder at a time: a base-size library is about 2 GB
        with tempfile.TemporaryDirectory(prefix=f"stemserver-query-{size}-", dir=args.workdir) as root:
            rows.append(run_size(size, args, Path(root)))
    return {"device": args.device, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "cpus": os.cpu_count(), "load_average": [load_before, os.getloadavg()[0]], "queries": args.queries,
            "rows": rows}


def print_table(result: dict) -> None:
    print(f"device {result['device']}, {result['threads']} threads, torch {result['torch']}; "
          f"{result['queries']} queries of {QUERY_SECONDS:.0f} s, k=10; {result['cpus']} CPUs, load average "
          f"{result['load_average'][0]:.1f} before, {result['load_average'][1]:.1f} after")
    print(f"{'size':6} {'windows':>8} {'forward p50':>11} {'p95':>7} {'run':>8} {'e2e p50':>8} {'p95':>7} "
          f"{'e2e/fwd':>7}")
    for r in result["rows"]:
        for run, (p50, p95) in r["end_to_end_ms"].items():
            print(f"{r['size']:6} {r['windows']:8d} {r['forward_ms'][0]:11.1f} {r['forward_ms'][1]:7.1f} {run:>8} "
                  f"{p50:8.1f} {p95:7.1f} {r['ratio'][run]:7.2f}")
        print(f"  sequence: column cache hit rate {r['sequence_cache_hit_rate']:.0%}; batch of {r['batch']}: "
              f"{r['batched_ms_per_query']:.1f} ms/q batched, {r['single_ms_per_query']:.1f} ms/q one by one "
              f"(speed-up {r['single_ms_per_query'] / r['batched_ms_per_query']:.2f})")
    print("\nmean ms per query by stage (prepare measured here, the rest from the engine's timings_ms):")
    first = result["rows"][0]["breakdown_ms"]
    names = list(first[next(iter(first))])
    print(f"{'size':6} {'run':>8} " + " ".join(f"{name:>9}" for name in names))
    for r in result["rows"]:
        for run, stages in r["breakdown_ms"].items():
            print(f"{r['size']:6} {run:>8} " + " ".join(f"{stages[name]:9.2f}" for name in names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=[DEFAULT, *ENCODER_PRESETS], choices=[DEFAULT, *ENCODER_PRESETS],
                        help="'default': the bundled default model; the others: random weights of that preset")
    parser.add_argument("--windows", type=int, default=10_000, help="8 s windows in the library (7 per 30 s stem)")
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: one per core)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="where the temporary libraries go (default: the system's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args)
    emit(result, args.json, print_table)


if __name__ == "__main__":
    main()
