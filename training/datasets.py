"""Multitrack datasets: what a track and a stem are, and readers for the layouts we train on.

A dataset is a list of `Track`s; a track is a set of `Stem`s, each with its source file(s) and a
label path from coarse to fine (("guitar", "clean electric guitar"), ("bass",), or () when
unknown). Readers only list files and parse metadata: decoding happens once, in the preprocessing
cache (stemserver_training.cache), which is also where a corrupt file is found and skipped.

Readers are forgiving about individual files, strict about the whole: a missing stem file, an
unreadable data.json or a track left with fewer than two stems is a `DatasetWarning` naming the
file, and the rest of the dataset still loads (a dataset of thousands of tracks should not fail
because of one). A root that does not exist or holds no usable track is a `DatasetError`.

Layouts:
- MUSDB18-HQ: <root>/{train,test}/<track>/{bass,drums,other,vocals}.wav (mixture.wav ignored).
- MoisesDB (and the open corpus, which writes the same layout):
  <root>[/<provider>]/<track id>/data.json + <track id>/<stemName>/<source id>.<extension>.
- Folder: <root>/<track>/<stem>.<audio extension>, labels from an optional labels.yaml.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stemserver.errors import StemserverError
from stemserver.music import parse_key
from stemserver.vocabulary import MUSDB18_LABELS, moisesdb_label_path, normalize_label

SPLITS = ("train", "valid", "test")

MUSDB18_VALIDATION_TRACKS = frozenset({
    # The official validation subset of MUSDB18's train folder (musdb/configs/mus.yaml).
    "Actions - One Minute Smile", "Clara Berry And Wooldog - Waltz For My Victims",
    "Johnny Lokke - Promises & Lies", "Patrick Talbot - A Reason To Leave", "Triviul - Angelsaint",
    "Alexander Ross - Goodbye Bolero", "Fergessen - Nos Palpitants", "Leaf - Summerghost",
    "Skelpolu - Human Mistakes", "Young Griffo - Pennies", "ANiMAL - Rockshow",
    "James May - On The Line", "Meaxic - Take A Step", "Traffic Experiment - Sirens",
})

AUDIO_EXTENSIONS = frozenset({
    ".wav", ".wave", ".aif", ".aiff", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac",
    ".mp4", ".wma", ".caf", ".w64",
})
"""File extensions the folder reader treats as stems (stemserver.audio decodes all of them)."""

LABELS_FILE = "labels.yaml"
METADATA_FILE = "data.json"


class DatasetError(StemserverError):
    """A dataset cannot be used at all (no such root, no tracks, unknown layout)."""


class DatasetWarning(UserWarning):
    """One file or track of a dataset was skipped; the rest still loads."""


@dataclass(frozen=True)
class Stem:
    """One stem of a track: its source files (summed when several) and its label path."""

    name: str  # unique within its track
    sources: tuple[Path, ...]
    label_path: tuple[str, ...]  # normalised labels, coarse -> fine; () when unknown


@dataclass(frozen=True)
class Track:
    """A multitrack recording: stems that play together."""

    name: str  # unique within its dataset
    stems: tuple[Stem, ...]
    split: str | None = None  # the dataset's official split ("train", "valid", "test"), if any
    group: str | None = None
    """Tracks of one group always share a split: versions of one song (e.g. the open corpus's
    variants of one score) split apart would put the test set's music in training."""
    tempo_bpm: float | None = None  # where the dataset states it (data.json "bpm")
    key: str | None = None  # "F# minor", "D dorian" (data.json "key"), where the dataset states it


def read_dataset(layout: str, root: str | Path, **options: Any) -> list[Track]:
    """Read `root` with the reader for `layout` ("musdb18", "moisesdb" or "folder")."""
    readers = {"musdb18": read_musdb18, "moisesdb": read_moisesdb, "folder": read_folder}
    if layout not in readers:
        raise DatasetError(f"unknown dataset layout {layout!r}: expected one of {sorted(readers)}")
    return readers[layout](root, **options)


def read_musdb18(root: str | Path) -> list[Track]:
    """MUSDB18-HQ: four stems per track, labelled by their name; split from the folders.

    The 14 official validation tracks of the train folder get split "valid".
    """
    root = _existing_root(root)
    tracks = []
    for folder in ("train", "test"):
        if not (root / folder).is_dir():
            continue
        for track_dir in _subdirectories(root / folder):
            stems = []
            for name in sorted(MUSDB18_LABELS):
                path = track_dir / f"{name}.wav"
                if _usable_file(path):
                    stems.append(Stem(name=name, sources=(path,), label_path=(name,)))
            split = "valid" if folder == "train" and track_dir.name in MUSDB18_VALIDATION_TRACKS else folder
            tracks.append(Track(name=track_dir.name, stems=tuple(stems), split=split))
    return _checked(tracks, root, "MUSDB18-HQ (<root>/train/<track>/bass.wav ...)")


def read_moisesdb(root: str | Path, sum_sources: bool = False) -> list[Track]:
    """MoisesDB (with or without its provider level) and the open corpus.

    As the dataset intends, every source of data.json is its own stem, labelled
    moisesdb_label_path(stemName, trackType) and named "<stemName>/<source id>". With
    `sum_sources`, all sources of one stemName are summed into one stem labelled (category,), the
    coarser task of the MUSDB18-style evaluations. Tracks with the same artist and song share a
    split (`Track.group`). Fields data.json has beyond the ones read here are ignored, so metadata
    added by newer releases or the corpus builder never breaks reading. Hidden folders (such as
    the corpus builder's .partial/) are not read.
    """
    root = _existing_root(root)
    metadata_files = []
    for folder in _subdirectories(root):
        if (folder / METADATA_FILE).is_file():  # <root>/<track id>/data.json
            metadata_files.append(folder / METADATA_FILE)
        else:  # <root>/<provider>/<track id>/data.json
            metadata_files += [d / METADATA_FILE for d in _subdirectories(folder) if (d / METADATA_FILE).is_file()]
    tracks, seen = [], {}
    for metadata_file in metadata_files:
        track_dir = metadata_file.parent
        if track_dir.name in seen:
            _warn(f"{track_dir}: skipped, a track with the same id was already read from {seen[track_dir.name]}")
            continue
        seen[track_dir.name] = track_dir
        read = _moisesdb_sources(metadata_file)
        if read is not None:
            group, entries, tempo_bpm, key = read
            stems = _summed_by_stem_name(entries) if sum_sources else _one_stem_per_source(entries)
            tracks.append(Track(name=track_dir.name, stems=stems, group=group, tempo_bpm=tempo_bpm, key=key))
    return _checked(tracks, root, "MoisesDB (<root>/<track id>/data.json)")


def read_folder(root: str | Path) -> list[Track]:
    """Anyone's multitracks: one folder per track, one audio file per stem.

    A stem's label path comes from the track's labels.yaml (file name or stem name -> a label or
    a list of labels, coarse to fine; an empty value or list means unlabelled), else from the file name
    ("Bass Guitar.wav" -> ("bass guitar",)), else, for names without a letter ("01.wav"), ().
    """
    root = _existing_root(root)
    tracks = []
    for track_dir in _subdirectories(root):
        labels = _read_labels_file(track_dir / LABELS_FILE)
        stems, names = [], set()
        for path in sorted(track_dir.iterdir()):
            if path.suffix.lower() not in AUDIO_EXTENSIONS or path.name.startswith(".") or not _usable_file(path):
                continue
            if path.stem in names:
                _warn(f"{path}: skipped, another file of {track_dir} is already stem {path.stem!r}")
                continue
            names.add(path.stem)
            label_path = labels.get(path.name, labels.get(path.stem, _label_path_from_name(path.stem)))
            stems.append(Stem(name=path.stem, sources=(path,), label_path=label_path))
        tracks.append(Track(name=track_dir.name, stems=tuple(stems)))
    return _checked(tracks, root, "folder (<root>/<track>/<stem>.wav)")


@dataclass(frozen=True)
class _MoisesSource:
    stem_name: str
    track_type: str
    path: Path


def _moisesdb_sources(metadata_file: Path
                      ) -> tuple[str | None, list[_MoisesSource], float | None, str | None] | None:
    """The track's group ("artist - song"), every listed source whose file exists, and the tempo
    and key data.json states (the popular corpus does; None when absent or implausible); None when
    the data.json is unusable."""
    try:
        metadata = json.loads(metadata_file.read_text(encoding="utf-8"))
        stem_entries = metadata["stems"]
        if not isinstance(stem_entries, list):
            raise TypeError(f"'stems' is a {type(stem_entries).__name__}, not a list")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        _warn(f"{metadata_file}: skipped track, cannot read its stem list ({type(e).__name__}: {e})")
        return None
    sources = []
    for stem_entry in stem_entries:
        try:
            stem_name = str(stem_entry["stemName"])
            listed = [(str(source.get("trackType") or ""), f"{source['id']}.{source['extension']}")
                      for source in stem_entry["tracks"]]
        except (KeyError, TypeError, AttributeError) as e:
            _warn(f"{metadata_file}: skipped a malformed stem entry ({type(e).__name__}: {e}): {stem_entry!r:.200}")
            continue
        for track_type, file_name in listed:
            path = metadata_file.parent / stem_name / file_name
            if _usable_file(path, listed_in=metadata_file):
                sources.append(_MoisesSource(stem_name, track_type, path))
    song, artist = metadata.get("song"), metadata.get("artist")
    group = f"{artist or ''} - {song}" if isinstance(song, str) and song.strip() else None
    bpm, key = metadata.get("bpm"), metadata.get("key")
    tempo_bpm = float(bpm) if isinstance(bpm, (int, float)) and 20 <= bpm <= 400 else None
    return group, sources, tempo_bpm, key if isinstance(key, str) and parse_key(key) else None


def _one_stem_per_source(sources: Iterable[_MoisesSource]) -> tuple[Stem, ...]:
    stems = []
    for source in sources:
        label_path = _moisesdb_label_path(source)
        if label_path is not None:
            name = f"{source.stem_name}/{source.path.stem}"
            stems.append(Stem(name=name, sources=(source.path,), label_path=label_path))
    return tuple(stems)


def _summed_by_stem_name(sources: Iterable[_MoisesSource]) -> tuple[Stem, ...]:
    grouped: dict[str, list[_MoisesSource]] = {}
    for source in sources:
        grouped.setdefault(source.stem_name, []).append(source)
    stems = []
    for stem_name, group in grouped.items():
        label_path = _moisesdb_label_path(group[0])
        if label_path is not None:
            stems.append(Stem(name=stem_name, sources=tuple(s.path for s in group), label_path=label_path[:1]))
    return tuple(stems)


def _moisesdb_label_path(source: _MoisesSource) -> tuple[str, ...] | None:
    try:
        return tuple(moisesdb_label_path(source.stem_name, source.track_type))
    except ValueError as e:
        _warn(f"{source.path}: skipped, no usable stem name ({e})")
        return None


def _read_labels_file(path: Path) -> dict[str, tuple[str, ...]]:
    """labels.yaml as {file or stem name: label path}; {} (with a warning) when it is unusable."""
    if not path.exists():
        return {}
    try:
        # BaseLoader keeps every scalar a string: a key "02" stays "02", not the integer 2.
        mapping = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader) or {}
        if not isinstance(mapping, dict):
            raise TypeError(f"expected a mapping of file name -> labels, got a {type(mapping).__name__}")
        return {str(name): _label_path(value) for name, value in mapping.items()}
    except (OSError, UnicodeDecodeError, yaml.YAMLError, TypeError, ValueError) as e:
        _warn(f"{path}: ignored, labels come from the file names instead ({type(e).__name__}: {e})")
        return {}


def _label_path(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value] if value.strip() else []
    if not isinstance(value, list) or not all(isinstance(label, str) for label in value):
        raise TypeError(f"a label path is a string or a list of strings, got {value!r}")
    return tuple(normalize_label(label) for label in value)


def _label_path_from_name(name: str) -> tuple[str, ...]:
    return (normalize_label(name),) if any(c.isalpha() for c in name) else ()


def _existing_root(root: str | Path) -> Path:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: no such dataset folder")
    return root


def _subdirectories(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _usable_file(path: Path, listed_in: Path | None = None) -> bool:
    """True when `path` is a non-empty file; otherwise warn (naming it) and return False."""
    where = f" (listed in {listed_in})" if listed_in else ""
    if not path.is_file():
        _warn(f"{path}: skipped stem, no such file{where}")
        return False
    if path.stat().st_size == 0:
        _warn(f"{path}: skipped stem, the file is empty{where}")
        return False
    return True


def _checked(tracks: list[Track], root: Path, layout: str) -> list[Track]:
    """Drop (with a warning) tracks with fewer than two stems; an empty result is an error."""
    usable = []
    for track in tracks:
        if len(track.stems) < 2:
            _warn(f"{root}: skipped track {track.name!r}, it has {len(track.stems)} usable stem(s) and needs 2")
        else:
            usable.append(track)
    if not usable:
        raise DatasetError(f"{root}: no usable track found; expected the {layout} layout")
    return usable


def _warn(message: str) -> None:
    warnings.warn(message, DatasetWarning, stacklevel=2)
