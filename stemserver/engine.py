"""One query, end to end: a mix and an instrument name in, ranked stems with offsets out.

The CLI and the server answer queries through `Engine`, so there is exactly one place where a
query's steps and their order live; the model's part of them is stemserver.inference, which the
evaluation (it needs no library) and the library indexer call too:

    mix (last N s) -> log-mel -> encoder -> predictor(instrument) -> query vector + columns
        -> library candidates -> exact re-rank (+ how well each file's predicted instrument matches
        the name asked, when the model has an instrument head) -> best offset of each of the top k

Offsets. `offset_s` is the position in the stem, in seconds, that lines up with the START of the
query window: start the stem at `offset_s` at the moment the query window began and the two play
in time. `offset_at_end_s` is the position that lines up with the END of the query window (for
live use: "play the stem from here, now"); for loops it wraps around the loop length.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from stemserver import audio
from stemserver.alignment import NotFinite, align_stems
from stemserver.checkpoint import Checkpoint, load_checkpoint
from stemserver.config import Settings
from stemserver.device import select_device, set_threads
from stemserver.errors import AudioError
from stemserver.files import sha256_file
from stemserver.index import Filters, Hit, LibraryIndex
from stemserver.inference import mean_vector, query_columns
from stemserver.library import Library
from stemserver.window import QUERY_SECONDS

MIN_QUERY_S = 2.0
SILENCE_PEAK = 1e-4  # about -80 dBFS


@dataclass
class StemMatch:
    rank: int
    path: str
    score: float  # cosine between the prediction and the stem's best window, plus the instrument match (see search)
    offset_s: float  # stem position lining up with the start of the query window
    offset_at_end_s: float  # stem position lining up with the end of the query window
    alignment_score: float  # mean column cosine at that offset
    duration_s: float
    window_start_s: float  # start of the stem's best-matching window
    loop: bool  # shorter than the query window: offsets wrap around its length
    label: str
    sample_rate: int
    channels: int


@dataclass
class QueryResult:
    instrument: str
    query_seconds: float
    matches: list[StemMatch]
    timings_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def add_decode_time(self, milliseconds: float) -> None:
        """Count the time spent decoding and preparing the query's audio, before the engine saw it, as
        the first stage: `total` is the server's whole time for the query."""
        decode = round(milliseconds, 3)
        total = round(self.timings_ms.get("total", 0.0) + decode, 3)
        self.timings_ms = {"decode": decode, **self.timings_ms, "total": total}


@dataclass(frozen=True)
class Query:
    samples: np.ndarray  # mono float32 at the model's rate (see `prepare_query`)
    instrument: str
    k: int = 10
    filters: Filters = Filters()


class Engine:
    """The model (loaded once), its label cache and a library index. Thread-safe.

    `preload_text` starts loading the text model in the background (a long-running server wants
    it; a one-shot query does not), so no query for a name outside the label cache waits for the
    whole load."""

    def __init__(self, checkpoint_path: str | Path, library_dir: str | Path, settings: Settings = Settings(),
                 preload_text: bool = False):
        set_threads(settings.threads)
        self.device = select_device(settings.device)
        self.settings = settings
        self.checkpoint_path = Path(checkpoint_path)
        self.checkpoint: Checkpoint = load_checkpoint(self.checkpoint_path)
        self.fingerprint = sha256_file(self.checkpoint_path)
        self.model = self.checkpoint.build_model(self.device)
        self.labels = self.checkpoint.label_embedder(settings.text, device=str(self.device))
        self.text_loading = self.labels.load_in_background() if preload_text else None
        self.library_dir = Path(library_dir).expanduser()
        self._index_lock = threading.Lock()
        self._model_lock = threading.Lock()
        self.index = self._load_index()
        self.sample_rate = self.checkpoint.config.front_end.sample_rate
        self.seconds_per_column = self.checkpoint.config.seconds_per_column
        self._warm_up()

    # -- library ------------------------------------------------------------------------------

    def _load_index(self) -> LibraryIndex:
        with Library(self.library_dir) as library:
            library.check_model(self.fingerprint)
            return LibraryIndex(library)

    def reload(self) -> dict:
        """Switch to the library's current index generation (after `stemserver index`)."""
        index = self._load_index()
        with self._index_lock:
            self.index = index
        return index.info

    # -- queries ------------------------------------------------------------------------------

    def prepare_query(
        self, samples: np.ndarray, sample_rate: int, seconds: float = QUERY_SECONDS, source: str = "mix"
    ) -> np.ndarray:
        """Validated mono samples of the last `seconds` of a mix (any rate, mono or stereo)."""
        mono = audio.prepare(samples, sample_rate, self.sample_rate, source=source)
        mono = mono[-int(seconds * self.sample_rate):]
        if len(mono) < MIN_QUERY_S * self.sample_rate:
            raise AudioError(f"{source}: {len(mono) / self.sample_rate:.2f} s of audio; a query needs at least "
                             f"{MIN_QUERY_S:.0f} s ({QUERY_SECONDS:g} s works best)")
        if np.abs(mono).max() < SILENCE_PEAK:
            raise AudioError(f"{source}: the audio is silent; send the mix while it plays")
        return mono

    def query_file(self, path: str | Path, instrument: str, k: int = 10, filters: Filters = Filters(),
                   seconds: float = QUERY_SECONDS) -> QueryResult:
        start = time.perf_counter()
        samples, _ = audio.load(path, self.sample_rate, self.settings.max_audio_seconds)
        mono = self.prepare_query(samples, self.sample_rate, seconds, source=str(path))
        decode_ms = (time.perf_counter() - start) * 1e3
        result = self.query_batch([Query(mono, instrument, k, filters)])[0]
        result.add_decode_time(decode_ms)
        return result

    def query(self, query: Query) -> QueryResult:
        return self.query_batch([query])[0]

    def query_batch(self, queries: list[Query]) -> list[QueryResult]:
        """Answer several queries; those of equal length share one forward pass."""
        results: list[QueryResult | None] = [None] * len(queries)
        by_length: dict[int, list[int]] = {}
        for i, q in enumerate(queries):
            by_length.setdefault(len(q.samples), []).append(i)
        for members in by_length.values():
            group = [queries[i] for i in members]
            for i, result in zip(members, self._answer_group(group)):
                results[i] = result
        return results

    def _answer_group(self, queries: list[Query]) -> list[QueryResult]:
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[name] = round((now - clock) * 1e3 / len(queries), 3)  # per query
            clock = now

        text = self.labels.embed([q.instrument for q in queries]).to(self.device)
        lap("text")
        waveforms = torch.from_numpy(np.stack([q.samples for q in queries])).to(self.device)
        with self._model_lock:
            predicted = query_columns(self.model, waveforms, text, on_stage=lap)  # (B, cols, rows, d)
        with self._index_lock:
            index = self.index
        weight = self.settings.instrument_weight
        hits = [index.search(mean_vector(p), q.k, q.filters, bonus=index.instrument_scores(t, weight))
                for p, q, t in zip(predicted, queries, text.cpu().numpy())]
        lap("search")
        matches = [self._align(index, p, h) for p, h in zip(predicted, hits)]
        lap("offsets")
        total = round(sum(timings.values()), 3)
        return [
            QueryResult(q.instrument, round(len(q.samples) / self.sample_rate, 3), m, {**timings, "total": total})
            for q, m in zip(queries, matches)
        ]

    def _align(self, index: LibraryIndex, predicted: np.ndarray, hits: list[Hit]) -> list[StemMatch]:
        matches = []
        query_s = len(predicted) * self.seconds_per_column
        loops = [hit.file.duration_s < query_s for hit in hits]
        periods = [hit.file.duration_s / self.seconds_per_column if loop else None for hit, loop in zip(hits, loops)]
        records = [hit.file for hit in hits]
        stems = index.candidate_columns(records, predicted.shape[1:])
        try:
            alignments = align_stems(predicted, [rows for rows, _ in stems], periods, [c for _, c in stems])
        except NotFinite as e:
            raise index.damaged(records[e.stems[0]]) from e
        for rank, (hit, loop, alignment) in enumerate(zip(hits, loops, alignments), start=1):
            offset = alignment.shift_columns * self.seconds_per_column
            at_end = (offset + query_s) % hit.file.duration_s if loop else offset + query_s
            matches.append(StemMatch(
                rank=rank, path=hit.file.path, score=round(hit.score, 5), offset_s=round(offset, 4),
                offset_at_end_s=round(at_end, 4), alignment_score=round(alignment.score, 5),
                duration_s=round(hit.file.duration_s, 4),
                window_start_s=round(hit.window_start * self.seconds_per_column, 4), loop=loop,
                label=hit.file.label, sample_rate=hit.file.sample_rate, channels=hit.file.channels,
            ))
        return matches

    def _warm_up(self) -> None:
        """One forward pass at start-up, so the first real query does not pay for lazy init."""
        silence = torch.zeros(1, int(QUERY_SECONDS * self.sample_rate), device=self.device)
        with self._model_lock:
            query_columns(self.model, silence, torch.zeros(1, self.checkpoint.config.text_dim))

    def known_instruments(self) -> list[str]:
        return self.labels.known_labels
