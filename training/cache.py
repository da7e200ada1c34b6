"""The preprocessing cache: every stem decoded once to 16 kHz mono int16, read back memory-mapped.

Training reads thousands of random 8 s chunks per second; decoding and resampling FLAC/MP3 in that
loop would starve the GPU. `build_cache` decodes every stem once (summing multi-file stems) and
stores it as one .npy of int16 per stem, peak-normalised (the int16 range spans the stem's own
peak, recorded with it) so quiet stems keep their resolution and loud ones never clip.
`open_cache` maps those files read-only: opening is instant, pages load on demand, and the OS
shares them between DataLoader workers.

Layout of a cache directory:
    index.json            tracks -> stems (label path, file, length, scale, peak, sources)
    splits.json           track -> "train" | "valid" | "test", with the seed and fractions used
    audio/<key>.npy       int16 samples of one stem
    audio/<key>.json      its scale and peak (so an interrupted build resumes where it stopped)

A stem's key hashes its source paths, sizes and mtimes and the sample rate: an unchanged stem is
reused without decoding, a touched or modified one is decoded again, and a stem that is no longer
in the track list is dropped (its files deleted) on the next build. Every file is written to a
temporary name and renamed, so a crash never leaves a half-written index or stem behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import IO, Any

import numpy as np
from tqdm import tqdm

from stemserver import audio
from stemserver.errors import AudioError, StemserverError
from stemserver.files import atomic_path
from stemserver_training.datasets import SPLITS, DatasetWarning, Stem, Track

CACHE_FORMAT = 1  # bump when the stored representation changes: every stem is then decoded again
INDEX_FILE = "index.json"
SPLITS_FILE = "splits.json"
AUDIO_DIR = "audio"
INT16_MAX = 32767

log = logging.getLogger(__name__)


class CacheError(StemserverError):
    """A cache directory is missing, incomplete, or was built with other settings."""


@dataclass(frozen=True)
class PreparedStem:
    """A decoded stem in the cache: int16 samples on disk, float32 when read."""

    name: str
    label_path: tuple[str, ...]
    path: Path  # the .npy file
    num_samples: int
    scale: float  # float sample = int16 sample * scale
    peak: float  # max |x| of the decoded stem

    @property
    def audio(self) -> np.ndarray:
        """The int16 samples, memory-mapped (opened once per process, on first use).

        Mapping lazily keeps the dataclass small to pickle: DataLoader workers receive paths, not
        audio, and each maps the files itself.
        """
        return _memory_map(self.path)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) as float32; positions past the end of the stem read as zeros."""
        if not 0 <= start <= stop:
            raise ValueError(f"invalid sample range [{start}, {stop}) for stem {self.name!r}")
        out = np.zeros(stop - start, dtype=np.float32)
        end = min(stop, self.num_samples)
        if end > start:
            np.multiply(self.audio[start:end], np.float32(self.scale), out=out[: end - start], dtype=np.float32)
        return out


@dataclass(frozen=True)
class PreparedTrack:
    name: str
    split: str
    stems: tuple[PreparedStem, ...]
    tempo_bpm: float | None = None  # where the dataset states it
    key: str | None = None

    @property
    def num_samples(self) -> int:
        """The length of the longest stem (shorter stems read as zeros past their end)."""
        return max(stem.num_samples for stem in self.stems)


@dataclass(frozen=True)
class PreparedDataset:
    """A built cache: tracks with memory-mapped stems, label paths and their split."""

    cache_dir: Path
    sample_rate: int
    tracks: tuple[PreparedTrack, ...]

    def split(self, name: str) -> PreparedDataset:
        """Only the tracks of split `name` ("train", "valid" or "test")."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}: expected one of {SPLITS}")
        return replace(self, tracks=tuple(track for track in self.tracks if track.split == name))

    def without_labels(self, labels: Sequence[str]) -> PreparedDataset:
        """Drop every stem with one of `labels` at any level of its label path, then every track
        left with fewer than two stems (nothing to pair)."""
        drop = set(labels)
        tracks = []
        for track in self.tracks:
            stems = tuple(stem for stem in track.stems if not drop.intersection(stem.label_path))
            if len(stems) >= 2:
                tracks.append(replace(track, stems=stems))
        return replace(self, tracks=tuple(tracks))


def build_cache(
    tracks: Sequence[Track],
    cache_dir: str | Path,
    *,
    sample_rate: int = audio.SAMPLE_RATE,
    seed: int = 0,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    progress: bool = True,
) -> PreparedDataset:
    """Decode what changed, reuse what did not, assign splits, and open the result.

    Stems that fail to decode are reported (DatasetWarning) and skipped, and so are tracks left
    with fewer than two stems; the build fails only when nothing usable remains. Splits are drawn
    once (see `assign_split`) and stored: later builds keep every stored assignment, and asking
    for a different seed or fractions on an existing cache is an error rather than a silent
    re-split that would leak test tracks into training.
    """
    _check_fractions(valid_fraction, test_fraction)
    _check_unique_names(tracks)
    cache_dir = Path(cache_dir)
    audio_dir = cache_dir / AUDIO_DIR
    audio_dir.mkdir(parents=True, exist_ok=True)
    split_settings = {"seed": seed, "valid_fraction": valid_fraction, "test_fraction": test_fraction}
    stored_splits = _stored_splits(cache_dir, split_settings)

    keys = [[(stem, _stem_key(stem, sample_rate)) for stem in track.stems] for track in tracks]
    to_decode = {key: (track, stem) for track, stems in zip(tracks, keys) for stem, key in stems
                 if key and not is_stored(audio_dir, key)}
    failed = set()
    for key, (track, stem) in tqdm(to_decode.items(), desc="decoding stems", unit="stem", disable=not progress):
        try:
            store_stem(audio_dir, key, _decode_stem(stem.sources, sample_rate))
        except AudioError as e:
            _warn(f"skipped stem {stem.name!r} of track {track.name!r}: {e}")
            failed.add(key)
    log.info("cache %s: %d stems decoded (%d failed), %d reused",
             cache_dir, len(to_decode), len(failed), sum(map(len, keys)) - len(to_decode))

    index_tracks, splits = [], dict(stored_splits)  # a track that leaves and returns keeps its split
    for track, stems in zip(tracks, keys):
        entries = [_index_entry(audio_dir, stem, key) for stem, key in stems if key and key not in failed]
        if len(entries) < 2:
            _warn(f"skipped track {track.name!r}: {len(entries)} stem(s) could be decoded and it needs 2")
            continue
        music = {name: value for name, value in (("tempo_bpm", track.tempo_bpm), ("key", track.key)) if value}
        index_tracks.append({"name": track.name, "stems": entries, **music})
        if track.name not in splits:
            splits[track.name] = assign_split(track, seed, valid_fraction, test_fraction)
    if not index_tracks:
        raise CacheError(f"{cache_dir}: no track has two stems that could be decoded; nothing to train on")

    write_json(cache_dir / SPLITS_FILE, {**split_settings, "splits": splits})
    write_json(cache_dir / INDEX_FILE, {"format": CACHE_FORMAT, "sample_rate": sample_rate, "tracks": index_tracks})
    _delete_unreferenced(audio_dir, {stem["file"] for track in index_tracks for stem in track["stems"]})
    return open_cache(cache_dir)


def open_cache(cache_dir: str | Path) -> PreparedDataset:
    """Open a cache that `build_cache` wrote. Nothing is decoded and no audio is read here.

    Stems are memory-mapped on first read, so do not rebuild a cache that a running job reads:
    the rebuild deletes the files of stems it dropped or replaced.
    """
    cache_dir = Path(cache_dir).absolute()
    index = read_json(cache_dir / INDEX_FILE, "build it first (stemserver_training.cache.build_cache)")
    if index.get("format") != CACHE_FORMAT:
        raise CacheError(f"{cache_dir}: cache format {index.get('format')!r}, this code reads format "
                         f"{CACHE_FORMAT}; build it again")
    splits = read_json(cache_dir / SPLITS_FILE, "build the cache again")["splits"]
    tracks = []
    for track in index["tracks"]:
        if track["name"] not in splits:
            raise CacheError(f"{cache_dir / SPLITS_FILE}: track {track['name']!r} has no split; build the cache again")
        stems = []
        for stem in track["stems"]:
            path = cache_dir / AUDIO_DIR / stem["file"]
            if not path.is_file():
                raise CacheError(f"{path}: missing from the cache; build the cache again")
            stems.append(PreparedStem(name=stem["name"], label_path=tuple(stem["label_path"]), path=path,
                                      num_samples=stem["num_samples"], scale=stem["scale"], peak=stem["peak"]))
        tracks.append(PreparedTrack(name=track["name"], split=splits[track["name"]], stems=tuple(stems),
                                    tempo_bpm=track.get("tempo_bpm"), key=track.get("key")))
    return PreparedDataset(cache_dir=cache_dir, sample_rate=index["sample_rate"], tracks=tuple(tracks))


def assign_split(track: Track, seed: int, valid_fraction: float = 0.1, test_fraction: float = 0.1) -> str:
    """The track's split: its official one when the dataset has one, else drawn from its group
    (its name when it has none).

    The draw hashes (seed, group or name) to a number u in [0, 1): test when u < test_fraction,
    valid when u < test_fraction + valid_fraction, else train. It depends on nothing else, so a
    track keeps its split when others are added or removed, on any machine and Python version,
    and the tracks of one group (versions of one song) always land together.
    """
    _check_fractions(valid_fraction, test_fraction)
    if track.split is not None:
        return track.split
    digest = hashlib.sha256(f"{seed}\0{track.group or track.name}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < test_fraction:
        return "test"
    return "valid" if u < test_fraction + valid_fraction else "train"


def _check_fractions(valid_fraction: float, test_fraction: float) -> None:
    if not (0 <= valid_fraction and 0 <= test_fraction and valid_fraction + test_fraction < 1):
        raise ValueError(f"split fractions valid={valid_fraction}, test={test_fraction}: each must be >= 0 "
                         "and together < 1")


def _check_unique_names(tracks: Sequence[Track]) -> None:
    """Track names key the splits and stem names the index: a duplicate would silently merge two."""
    for name, count in Counter(track.name for track in tracks).items():
        if count > 1:
            raise ValueError(f"{count} tracks are named {name!r}: track names must be unique in a dataset")
    for track in tracks:
        for name, count in Counter(stem.name for stem in track.stems).items():
            if count > 1:
                raise ValueError(f"track {track.name!r} has {count} stems named {name!r}: stem names must be unique")


def _stem_key(stem: Stem, sample_rate: int) -> str | None:
    """Hash of what the decoded audio depends on; None (with a warning) when a source is gone."""
    sources = []
    for path in stem.sources:
        try:
            status = path.stat()
        except OSError as e:
            _warn(f"{path}: skipped stem {stem.name!r}, cannot read the source ({e.strerror})")
            return None
        sources.append([str(path.resolve()), status.st_size, status.st_mtime_ns])
    identity = {"format": CACHE_FORMAT, "sample_rate": sample_rate, "sources": sources}
    return hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:32]


def _decode_stem(sources: Sequence[Path], sample_rate: int) -> np.ndarray:
    """Decode every source to mono float32 at `sample_rate` and sum them (shorter ones padded)."""
    parts = [audio.load(path, sample_rate)[0] for path in sources]
    mix = np.zeros(max(len(part) for part in parts), dtype=np.float32)
    for part in parts:
        mix[: len(part)] += part
    return mix


def store_stem(audio_dir: Path, key: str, samples: np.ndarray) -> None:
    """int16 samples spanning the stem's own peak, then the sidecar that marks the stem done."""
    peak = float(np.max(np.abs(samples)))
    scale = (peak if peak > 0 else 1.0) / INT16_MAX
    quantised = np.clip(np.round(samples / scale), -INT16_MAX, INT16_MAX).astype(np.int16)
    _write_atomically(audio_dir / f"{key}.npy", lambda f: np.save(f, quantised))
    write_json(_sidecar(audio_dir, key), {"num_samples": len(quantised), "scale": scale, "peak": peak})


def _index_entry(audio_dir: Path, stem: Stem, key: str) -> dict[str, Any]:
    return {"name": stem.name, "label_path": list(stem.label_path), "file": f"{key}.npy",
            "sources": [str(path) for path in stem.sources], **stored_stem(audio_dir, key)}


def stored_stem(audio_dir: Path, key: str) -> dict[str, Any]:
    """What `store_stem` recorded of a stem: num_samples, scale and peak."""
    return json.loads(_sidecar(audio_dir, key).read_text())


def _sidecar(audio_dir: Path, key: str) -> Path:
    return audio_dir / f"{key}.json"


def is_stored(audio_dir: Path, key: str) -> bool:
    return _sidecar(audio_dir, key).is_file() and (audio_dir / f"{key}.npy").is_file()


def _stored_splits(cache_dir: Path, settings: dict[str, Any]) -> dict[str, str]:
    path = cache_dir / SPLITS_FILE
    if not path.exists():
        return {}
    stored = read_json(path, "delete it to split anew")
    stored_settings = {name: stored.get(name) for name in settings}
    if stored_settings != settings:
        raise CacheError(
            f"{path}: this cache was split with {stored_settings}, not {settings}; build with the same "
            "values, or delete splits.json to split anew (results on the old split are then not comparable)")
    return stored["splits"]


def _delete_unreferenced(audio_dir: Path, referenced_npy: set[str]) -> None:
    """Remove stems no longer in the index, and temporary files an interrupted build left."""
    keep = referenced_npy | {name.removesuffix(".npy") + ".json" for name in referenced_npy}
    for path in audio_dir.iterdir():
        if path.name not in keep:
            path.unlink()


def read_json(path: Path, remedy: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise CacheError(f"{path}: no such file; {remedy}") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CacheError(f"{path}: unreadable ({e}); {remedy}") from e


def write_json(path: Path, value: Any) -> None:
    _write_atomically(path, lambda f: f.write(json.dumps(value, indent=1).encode()))


def _write_atomically(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    with atomic_path(path) as temporary, open(temporary, "wb") as f:
        write(f)


@cache
def _memory_map(path: Path) -> np.ndarray:
    return np.load(path, mmap_mode="r")


def _warn(message: str) -> None:
    warnings.warn(message, DatasetWarning, stacklevel=2)
