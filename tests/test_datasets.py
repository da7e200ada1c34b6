"""Dataset readers on tiny MUSDB18-HQ, MoisesDB and folder trees written here with real audio."""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile

from stemserver_training.cache import build_cache
from stemserver_training.datasets import (
    DatasetError,
    DatasetWarning,
    Stem,
    Track,
    read_dataset,
    read_folder,
    read_moisesdb,
    read_musdb18,
)

RATE = 22050


def write_audio(path: Path, freq: float = 220.0, seconds: float = 0.3, channels: int = 2) -> Path:
    """A short real tone (stereo by default, as the datasets ship)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * RATE)) / RATE
    tone = 0.3 * np.sin(2 * np.pi * freq * t)
    soundfile.write(path, np.stack([tone] * channels, axis=1), RATE)
    return path


@contextmanager
def no_warnings():
    """Any DatasetWarning inside fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetWarning)
        yield


# --- MUSDB18-HQ ---------------------------------------------------------------------------------

def write_musdb(root: Path) -> None:
    for split, track in [("train", "Artist - Song"), ("train", "Actions - One Minute Smile"),
                         ("test", "Other Artist - Tune")]:
        for i, name in enumerate(["bass", "drums", "other", "vocals", "mixture"]):
            write_audio(root / split / track / f"{name}.wav", freq=110 * (i + 1))


def test_musdb18_reads_four_labelled_stems_and_the_official_splits(tmp_path):
    write_musdb(tmp_path)
    with no_warnings():
        tracks = {track.name: track for track in read_musdb18(tmp_path)}
    assert set(tracks) == {"Artist - Song", "Actions - One Minute Smile", "Other Artist - Tune"}
    song = tracks["Artist - Song"]
    assert [stem.name for stem in song.stems] == ["bass", "drums", "other", "vocals"]  # no mixture
    assert [stem.label_path for stem in song.stems] == [("bass",), ("drums",), ("other",), ("vocals",)]
    assert song.stems[0].sources == (tmp_path / "train" / "Artist - Song" / "bass.wav",)
    assert song.split == "train"
    assert tracks["Actions - One Minute Smile"].split == "valid"  # musdb's official validation subset
    assert tracks["Other Artist - Tune"].split == "test"


def test_musdb18_missing_stem_and_too_small_track_are_warned_and_skipped(tmp_path):
    write_musdb(tmp_path)
    missing = tmp_path / "train" / "Artist - Song" / "bass.wav"
    missing.unlink()
    write_audio(tmp_path / "test" / "Lonely - Vocals" / "vocals.wav")
    with pytest.warns(DatasetWarning) as caught:
        tracks = {track.name: track for track in read_musdb18(tmp_path)}
    messages = "\n".join(str(w.message) for w in caught)
    assert str(missing) in messages and "no such file" in messages
    assert "Lonely - Vocals" in messages and "needs 2" in messages
    assert [stem.name for stem in tracks["Artist - Song"].stems] == ["drums", "other", "vocals"]
    assert "Lonely - Vocals" not in tracks


# --- MoisesDB -----------------------------------------------------------------------------------

def moises_metadata(**extra) -> dict:
    return {
        "song": "A Song", "artist": "Someone", "genre": "rock", **extra,
        "stems": [
            {"stemName": "bass", "id": "s1", "tracks": [
                {"trackType": "bass synthesizer (moog etc)", "id": "b1", "extension": "wav", "has_bleed": False}]},
            {"stemName": "guitar", "id": "s2", "tracks": [
                {"trackType": "clean electric guitar", "id": "g1", "extension": "wav", "has_bleed": False},
                {"trackType": "distorted electric guitar", "id": "g2", "extension": "flac", "has_bleed": True}]},
            {"stemName": "bowed_strings", "id": "s3", "tracks": [
                {"trackType": "violin (solo)", "id": "v1", "extension": "wav", "has_bleed": False}]},
        ],
    }


def write_moises_track(track_dir: Path, metadata: dict) -> Path:
    track_dir.mkdir(parents=True, exist_ok=True)
    (track_dir / "data.json").write_text(json.dumps(metadata))
    for stem in metadata["stems"]:
        for i, source in enumerate(stem["tracks"]):
            write_audio(track_dir / stem["stemName"] / f"{source['id']}.{source['extension']}", freq=200 + 50 * i)
    return track_dir


def test_moisesdb_one_stem_per_source_with_label_paths(tmp_path):
    write_moises_track(tmp_path / "uuid-1", moises_metadata())
    with no_warnings():
        (track,) = read_moisesdb(tmp_path)
    assert track.name == "uuid-1" and track.split is None
    assert track.group == "Someone - A Song"  # versions of one song share a split
    assert {stem.name: stem.label_path for stem in track.stems} == {
        "bass/b1": ("bass", "synth bass"),
        "guitar/g1": ("guitar", "clean electric guitar"),
        "guitar/g2": ("guitar", "distorted electric guitar"),
        "bowed_strings/v1": ("bowed strings", "solo violin"),
    }
    guitar = next(stem for stem in track.stems if stem.name == "guitar/g2")
    assert guitar.sources == (tmp_path / "uuid-1" / "guitar" / "g2.flac",)


def test_moisesdb_sum_sources_gives_one_coarse_stem_per_stem_name(tmp_path):
    write_moises_track(tmp_path / "uuid-1", moises_metadata())
    (track,) = read_moisesdb(tmp_path, sum_sources=True)
    stems = {stem.name: stem for stem in track.stems}
    assert {name: stem.label_path for name, stem in stems.items()} == {
        "bass": ("bass",), "guitar": ("guitar",), "bowed_strings": ("bowed strings",)}
    assert stems["guitar"].sources == (tmp_path / "uuid-1" / "guitar" / "g1.wav",
                                       tmp_path / "uuid-1" / "guitar" / "g2.flac")


def test_moisesdb_with_the_provider_level_and_unknown_fields(tmp_path):
    metadata = moises_metadata(release="2.0", bpm=120)  # fields this reader does not know
    metadata["stems"][0]["loudness"] = -14.0
    metadata["stems"][0]["tracks"][0]["comment"] = {"nested": [1, 2]}
    write_moises_track(tmp_path / "provider-a" / "uuid-1", metadata)
    write_moises_track(tmp_path / "provider-b" / "uuid-2", moises_metadata())
    write_moises_track(tmp_path / ".partial" / "uuid-3", moises_metadata())  # hidden: not read
    with no_warnings():
        tracks = read_dataset("moisesdb", tmp_path)
    assert [track.name for track in tracks] == ["uuid-1", "uuid-2"]
    assert all(len(track.stems) == 4 for track in tracks)


def test_moisesdb_tempo_and_key_are_kept_where_stated_and_plausible(tmp_path):
    write_moises_track(tmp_path / "stated", moises_metadata(bpm=124.0, key="F# minor"))
    write_moises_track(tmp_path / "implausible", moises_metadata(bpm=4000, key="somewhere"))
    write_moises_track(tmp_path / "silent", moises_metadata())
    tracks = {track.name: track for track in read_moisesdb(tmp_path)}
    assert (tracks["stated"].tempo_bpm, tracks["stated"].key) == (124.0, "F# minor")
    assert (tracks["implausible"].tempo_bpm, tracks["implausible"].key) == (None, None)
    assert (tracks["silent"].tempo_bpm, tracks["silent"].key) == (None, None)
    dataset = build_cache(list(tracks.values()), tmp_path / "cache", progress=False)
    cached = {track.name: track for track in dataset.tracks}
    assert (cached["stated"].tempo_bpm, cached["stated"].key) == (124.0, "F# minor")
    assert (cached["silent"].tempo_bpm, cached["silent"].key) == (None, None)


def test_moisesdb_open_corpus_labels_outside_the_taxonomy(tmp_path):
    metadata = {"stems": [
        {"stemName": "reed", "id": "a", "tracks": [{"trackType": "clarinet", "id": "p0", "extension": "wav"}]},
        {"stemName": "drums", "id": "b", "tracks": [{"trackType": "drum kit", "id": "p9", "extension": "wav"}]},
        {"stemName": "synth_pad", "id": "c", "tracks": [{"trackType": "warm pad", "id": "p1", "extension": "wav"}]},
    ]}
    write_moises_track(tmp_path / "work-001-v0", metadata)
    (track,) = read_moisesdb(tmp_path)
    assert [stem.label_path for stem in track.stems] == [
        ("reed", "clarinet"), ("drums", "drum kit"), ("synth pad", "warm pad")]


def test_moisesdb_missing_source_file_is_warned_and_skipped(tmp_path):
    track_dir = write_moises_track(tmp_path / "uuid-1", moises_metadata())
    missing = track_dir / "guitar" / "g1.wav"
    missing.unlink()
    with pytest.warns(DatasetWarning, match="g1.wav: skipped stem, no such file .listed in .*data.json"):
        (track,) = read_moisesdb(tmp_path)
    assert [stem.name for stem in track.stems] == ["bass/b1", "guitar/g2", "bowed_strings/v1"]


def test_moisesdb_unreadable_or_malformed_metadata_is_warned_and_skipped(tmp_path):
    write_moises_track(tmp_path / "good", moises_metadata())
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "data.json").write_text('{"stems": [ not json')
    no_stems = tmp_path / "no-stems"
    no_stems.mkdir()
    (no_stems / "data.json").write_text('{"song": "x"}')
    malformed = moises_metadata()
    del malformed["stems"][1]["tracks"][0]["id"]  # one malformed stem entry
    write_moises_track(tmp_path / "partly", moises_metadata())
    (tmp_path / "partly" / "data.json").write_text(json.dumps(malformed))
    with pytest.warns(DatasetWarning) as caught:
        tracks = {track.name: track for track in read_moisesdb(tmp_path)}
    messages = "\n".join(str(w.message) for w in caught)
    assert f"{broken / 'data.json'}: skipped track" in messages
    assert f"{no_stems / 'data.json'}: skipped track" in messages and "KeyError" in messages
    assert f"{tmp_path / 'partly' / 'data.json'}: skipped a malformed stem entry" in messages
    assert set(tracks) == {"good", "partly"}
    assert [stem.name for stem in tracks["partly"].stems] == ["bass/b1", "bowed_strings/v1"]


def test_moisesdb_duplicate_track_ids_across_providers(tmp_path):
    write_moises_track(tmp_path / "a" / "uuid-1", moises_metadata())
    write_moises_track(tmp_path / "b" / "uuid-1", moises_metadata())
    with pytest.warns(DatasetWarning, match="same id"):
        tracks = read_moisesdb(tmp_path)
    assert len(tracks) == 1


# --- Folder layout ------------------------------------------------------------------------------

def test_folder_labels_from_labels_yaml_else_file_names(tmp_path):
    song = tmp_path / "my song"
    write_audio(song / "Bass Guitar.wav")
    write_audio(song / "drums.flac")
    write_audio(song / "01.wav")
    write_audio(song / "02.wav")
    write_audio(song / "click.wav")
    write_audio(song / "lead_vox.ogg")
    (song / "notes.txt").write_text("not audio")
    (song / "labels.yaml").write_text("drums.flac: [Drums, Drum Kit]\n02: keys\nlead_vox: []\nclick.wav:\n")
    with no_warnings():
        (track,) = read_folder(tmp_path)
    assert track.name == "my song"
    assert {stem.name: stem.label_path for stem in track.stems} == {
        "01": (),  # no letter in the name, nothing in labels.yaml
        "02": ("keys",),  # by stem name
        "click": (),  # empty value: unlabelled
        "Bass Guitar": ("bass guitar",),  # from the file name
        "drums": ("drums", "drum kit"),  # by file name
        "lead_vox": (),  # explicitly unlabelled
    }


def test_folder_bad_labels_yaml_and_duplicate_stem_names_are_warned(tmp_path):
    song = tmp_path / "song"
    write_audio(song / "bass.wav")
    write_audio(song / "bass.flac")
    write_audio(song / "keys.wav")
    (song / "labels.yaml").write_text("- just\n- a list\n")
    with pytest.warns(DatasetWarning) as caught:
        (track,) = read_folder(tmp_path)
    messages = "\n".join(str(w.message) for w in caught)
    assert f"{song / 'labels.yaml'}: ignored" in messages
    assert f"{song / 'bass.wav'}: skipped" in messages  # bass.flac sorts first and wins
    assert [(stem.name, stem.sources[0].name) for stem in track.stems] == [("bass", "bass.flac"), ("keys", "keys.wav")]


def test_corrupt_and_empty_files_are_reported_and_skipped_never_a_crash(tmp_path):
    song = tmp_path / "song"
    for name in ["bass", "drums", "keys"]:
        write_audio(song / f"{name}.wav")
    (song / "keys.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage that is not audio")
    (song / "empty.wav").write_bytes(b"")
    with pytest.warns(DatasetWarning, match="empty.wav: skipped stem, the file is empty"):
        tracks = read_folder(tmp_path)
    # The reader only lists files; decoding (in the cache) is where a corrupt one is found.
    with pytest.warns(DatasetWarning, match=r"skipped stem 'keys' of track 'song': .*keys\.wav"):
        prepared = build_cache(tracks, tmp_path / "cache", progress=False)
    assert [stem.name for stem in prepared.tracks[0].stems] == ["bass", "drums"]


# --- Whole-dataset errors -----------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["musdb18", "moisesdb", "folder"])
def test_missing_or_empty_root_is_a_clear_error(tmp_path, layout):
    with pytest.raises(DatasetError, match="no such dataset folder"):
        read_dataset(layout, tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="no usable track found; expected the"):
        read_dataset(layout, tmp_path)


def test_unknown_layout_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset layout 'medleydb'"):
        read_dataset("medleydb", tmp_path)


def test_tracks_and_stems_are_frozen():
    stem = Stem(name="bass", sources=(Path("bass.wav"),), label_path=("bass",))
    track = Track(name="t", stems=(stem, stem))
    with pytest.raises(AttributeError):
        track.name = "u"  # type: ignore[misc]
    assert hash(track) == hash(Track(name="t", stems=(stem, stem)))
