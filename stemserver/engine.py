"""One query, end to end: a mix and an instrument name in, ranked stems with offsets out.

The CLI and the server answer queries through `Engine`, so there is exactly one place where a
query's steps and their order live; the model's part of them is stemserver.inference, which the
evaluation (it needs no library) and the library indexer call too:

    mix (last N s) -> log-mel -> encoder -> predictor(instrument) -> query vector + columns
        -> library candidates -> exact re-rank (+ how surely each file is the instrument asked, when
        the model has an instrument head, + whether it shares the mix's key and tempo) -> best offset
        of each of the top k

Offsets. `offset_s` is the position in the stem, in seconds, that lines up with the START of the
query window: start the stem at `offset_s` at the moment the query window began and the two play
in time. `offset_at_end_s` is the position that lines up with the END of the query window (for
live use: "play the stem from here, now"), the stem playing at `stretch` (1 when its tempo or the
mix's is unknown); for loops it wraps around the loop length.

Tempo and key. The mix's come from the client when it states them (a DAW knows its tempo), else
from the query's audio (stemserver.estimate); each stem's from the library (stemserver.library).
Each match then says how to make it fit (stretch, transpose, key relation: stemserver.music), and
where its offset falls in beats and bars of the mix; a stem in the mix's scale, or at its tempo
(or double or half), ranks higher by the `key_weight` and `tempo_weight` settings. `max_stretch`
and `key_compatible` filters need the mix's facts, so they are turned into excluded paths here,
per query.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from stemserver import audio, music
from stemserver.alignment import NotFinite, align_stems
from stemserver.checkpoint import Checkpoint, load_checkpoint
from stemserver.config import Settings
from stemserver.device import select_device, set_threads
from stemserver.errors import AudioError
from stemserver.estimate import estimate_facts
from stemserver.estimate import warm_up as warm_up_estimators
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
    score: float  # cosine between the prediction and the stem's best window, plus the bonus (Engine._bonus)
    offset_s: float  # stem position lining up with the start of the query window
    offset_at_end_s: float  # stem position lining up with the end of the query window
    alignment_score: float  # mean column cosine at that offset
    duration_s: float
    window_start_s: float  # start of the stem's best-matching window
    loop: bool  # shorter than the query window: offsets wrap around its length
    label: str
    sample_rate: int
    channels: int
    tempo_bpm: float | None = None
    key: str | None = None
    bars: int | None = None
    stretch: float | None = None  # playback rate that brings it to the mix's tempo (> 1: faster)
    transpose: int | None = None  # semitones that bring its scale onto the mix's
    key_relation: str | None = None  # same, relative, dominant, subdominant, clash
    offset_beats: float | None = None  # offset_s in beats of the mix (the stem playing at `stretch`)
    offset_bars: float | None = None  # ... and in bars of BEATS_PER_BAR beats


@dataclass
class QueryResult:
    instrument: str
    query_seconds: float
    matches: list[StemMatch]
    timings_ms: dict[str, float] = field(default_factory=dict)
    mix_tempo_bpm: float | None = None
    mix_tempo_source: str | None = None  # "client" or "estimated"
    mix_key: str | None = None
    mix_key_source: str | None = None

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
    tempo_bpm: float | None = None  # the mix's, when the client knows it
    key: str | None = None  # the mix's (music.parse_key reads it), when the client knows it


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
        # What the instrument head classifies over: the labels the model came with (a query for a name
        # outside them adds it), unit rows, and the head's inverse temperature.
        head = self.model.instrument
        classes = self.labels.embeddings.float().numpy()
        self._classes = (classes / np.maximum(np.linalg.norm(classes, axis=1, keepdims=True), 1e-12)
                         if head is not None else None)
        self._logit_scale = float(head.inverse_temperature().detach()) if head is not None else 0.0
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
                   seconds: float = QUERY_SECONDS, tempo_bpm: float | None = None,
                   key: str | None = None) -> QueryResult:
        start = time.perf_counter()
        samples, _ = audio.load(path, self.sample_rate, self.settings.max_audio_seconds)
        mono = self.prepare_query(samples, self.sample_rate, seconds, source=str(path))
        decode_ms = (time.perf_counter() - start) * 1e3
        result = self.query_batch([Query(mono, instrument, k, filters, tempo_bpm, key)])[0]
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
        mixes = [self._mix_facts(q) for q in queries]
        lap("music")
        with self._index_lock:
            index = self.index
        hits = [index.search(mean_vector(p), q.k, _music_filters(index, q.filters, mix),
                             bonus=self._bonus(index, t, mix))
                for p, q, t, mix in zip(predicted, queries, text.cpu().numpy(), mixes)]
        lap("search")
        matches = [self._align(index, p, h, mix) for p, h, mix in zip(predicted, hits, mixes)]
        lap("offsets")
        total = round(sum(timings.values()), 3)
        return [
            QueryResult(q.instrument, round(len(q.samples) / self.sample_rate, 3), m, {**timings, "total": total},
                        mix_tempo_bpm=mix.tempo_bpm, mix_tempo_source=mix.tempo_source, mix_key=mix.key,
                        mix_key_source=mix.key_source)
            for q, m, mix in zip(queries, matches, mixes)
        ]

    def _bonus(self, index: LibraryIndex, text: np.ndarray, mix: music.MusicFacts) -> np.ndarray | None:
        """Per file id, what is added to its compatibility cosine: how surely it is the instrument asked,
        and whether it is in the mix's key and tempo (the settings' weights); None when nothing is."""
        settings = self.settings
        parts = [index.instrument_scores(text, settings.instrument_weight, self._classes, self._logit_scale)
                 if self._classes is not None else None,
                 index.music_scores(mix, settings.key_weight, settings.tempo_weight)]
        parts = [part for part in parts if part is not None]
        return sum(parts[1:], parts[0]) if parts else None

    def _mix_facts(self, query: Query) -> music.MusicFacts:
        """The mix's tempo and key: the client's where stated, the audio's estimate for the rest."""
        stated_key = music.parse_key(query.key, bare_tonic=True) if query.key else None
        estimated = music.MusicFacts()
        if query.tempo_bpm is None or stated_key is None:
            estimated = estimate_facts(query.samples, self.sample_rate, loop_grid=False,
                                       tempo=query.tempo_bpm is None, key=stated_key is None)
        tempo, tempo_source = ((query.tempo_bpm, "client") if query.tempo_bpm is not None
                               else (estimated.tempo_bpm, "estimated" if estimated.tempo_bpm else None))
        key, key_source = ((music.key_name(stated_key), "client") if stated_key is not None
                           else (estimated.key, "estimated" if estimated.key else None))
        return music.MusicFacts(tempo_bpm=tempo, tempo_source=tempo_source, key=key, key_source=key_source)

    def _align(self, index: LibraryIndex, predicted: np.ndarray, hits: list[Hit],
               mix: music.MusicFacts) -> list[StemMatch]:
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
            fit = fit_to_mix(index.music.get(hit.file.path, music.MusicFacts()), mix, offset)
            at_end = offset + query_s * (fit["stretch"] or 1.0)
            at_end = at_end % hit.file.duration_s if loop else at_end
            matches.append(StemMatch(
                rank=rank, path=hit.file.path, score=round(hit.score, 5), offset_s=round(offset, 4),
                offset_at_end_s=round(at_end, 4), alignment_score=round(alignment.score, 5),
                duration_s=round(hit.file.duration_s, 4),
                window_start_s=round(hit.window_start * self.seconds_per_column, 4), loop=loop,
                label=hit.file.label, sample_rate=hit.file.sample_rate, channels=hit.file.channels, **fit,
            ))
        return matches

    def _warm_up(self) -> None:
        """One forward pass and one tempo and key estimate at start-up, so the first real query does not
        pay for lazy init."""
        warm_up_estimators(self.sample_rate)
        silence = torch.zeros(1, int(QUERY_SECONDS * self.sample_rate), device=self.device)
        with self._model_lock:
            query_columns(self.model, silence, torch.zeros(1, self.checkpoint.config.text_dim))

    def known_instruments(self) -> list[str]:
        return self.labels.known_labels


def fit_to_mix(stem: music.MusicFacts, mix: music.MusicFacts, offset_s: float) -> dict:
    """A stem's tempo and key, and what makes it fit the mix: the StemMatch fields from tempo_bpm on.
    None wherever the stem's or the mix's value is unknown."""
    fit = {"tempo_bpm": stem.tempo_bpm, "key": stem.key, "bars": stem.bars, "stretch": None, "transpose": None,
           "key_relation": None, "offset_beats": None, "offset_bars": None}
    if stem.tempo_bpm and mix.tempo_bpm:
        stretch = music.stretch_to(stem.tempo_bpm, mix.tempo_bpm)
        beats = music.beats_at(offset_s, stretch, mix.tempo_bpm)
        fit.update(stretch=round(stretch, 4), offset_beats=round(beats, 3),
                   offset_bars=round(beats / music.BEATS_PER_BAR, 3))
    stem_key, mix_key = music.parse_key(stem.key), music.parse_key(mix.key)
    if stem_key and mix_key:
        fit.update(transpose=music.transpose_to(stem_key, mix_key), key_relation=music.key_relation(stem_key, mix_key))
    return fit


def _music_filters(index: LibraryIndex, filters: Filters, mix: music.MusicFacts) -> Filters:
    """`filters` with max_stretch and key_compatible applied to this mix: the files they leave out are
    excluded by path (a file with no tempo or no key passes: a one-shot fits any tempo, drums any key)."""
    if filters.max_stretch is None and not filters.key_compatible:
        return filters
    excluded = []
    for record in index.files.values():
        stem = index.music.get(record.path)
        if stem is None:
            continue
        fit = fit_to_mix(stem, mix, 0.0)
        too_far = filters.max_stretch is not None and fit["stretch"] is not None \
            and abs(math.log(fit["stretch"])) > math.log(filters.max_stretch)
        if too_far or (filters.key_compatible and fit["key_relation"] == "clash"):
            excluded.append(record.path)
    return filters._replace(exclude=filters.exclude + tuple(excluded), max_stretch=None, key_compatible=False)
