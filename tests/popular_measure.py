"""Measurements of a popular corpus's audio, for its quality tests: bar levels, drum tempo, bass
pitch and key, each from the rendered stems alone (the ground truth only says where to look)."""

from __future__ import annotations

import json
from pathlib import Path

import librosa
import numpy as np
import soundfile

from stemserver_training.corpus.popular.arrange import arrange_song

HARMONIC_ROLES = ("bass", "chords", "arp", "lead", "vocal")
# Albrecht & Shanahan's key profiles (C major, C minor; Music Perception 31, 2013): on 48 songs of
# this corpus they found the key 32 times with log chroma, Krumhansl & Kessler's 29, Temperley's 22.
MAJOR = np.array([0.238, 0.006, 0.111, 0.006, 0.137, 0.094, 0.016, 0.214, 0.009, 0.080, 0.008, 0.081])
MINOR = np.array([0.220, 0.006, 0.104, 0.123, 0.019, 0.103, 0.012, 0.214, 0.062, 0.022, 0.061, 0.052])
MINOR_THIRD_MODES = ("minor", "dorian", "phrygian")


def manifest(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]


def songs(root: Path) -> list[dict]:
    return [r for r in manifest(root) if r["type"] == "track"]


def stem_path(root: Path, record: dict, stem: dict) -> Path:
    return root / record["track_id"] / stem["stem_name"] / f"{stem['id']}.flac"


def load_stems(root: Path, record: dict) -> dict[str, np.ndarray]:
    """The song's stems by part name, as float64."""
    return {s["part"]: soundfile.read(stem_path(root, record, s), dtype="float64")[0] for s in record["stems"]}


def db(x: np.ndarray) -> float:
    return float(20 * np.log10(max(float(np.sqrt(np.mean(x ** 2))) if x.size else 0.0, 1e-12)))


def bar_levels(record: dict, stem: dict, audio: np.ndarray, rate: int, rest_after: int = 2) -> tuple[list, list]:
    """(RMS dB of each bar the stem's part plays, RMS dB of each bar at least `rest_after` bars
    after its last note: a bar of rest that no tail of reverb or delay still reaches)."""
    bar = record["meter"] * 60.0 / record["bpm"] * rate
    playing = set(stem["bars_playing"])
    levels = [db(audio[round(b * bar): round((b + 1) * bar)]) for b in range(record["bars"])]
    on = [levels[b] for b in sorted(playing)]
    off = [levels[b] for b in range(record["bars"])
           if not playing & set(range(b - rest_after, b + 1))]
    return on, off


HOP = 160  # 10 ms at 16 kHz


def onset_autocorrelation(record: dict, stems: dict[str, np.ndarray], rate: int) -> np.ndarray:
    """The autocorrelation of the drum stems' summed onset strength (librosa's spectral flux),
    one value per HOP samples of lag."""
    drums = sum(stems[s["part"]] for s in record["stems"] if s["role"] == "drums")
    envelope = librosa.onset.onset_strength(y=drums.astype(np.float32), sr=rate, hop_length=HOP)
    envelope = envelope - envelope.mean()
    return np.correlate(envelope, envelope, mode="full")[len(envelope) - 1:]


def _at(acf: np.ndarray, lag: float) -> float:
    """The autocorrelation at a fractional lag (linear interpolation)."""
    return float(np.interp(lag, np.arange(len(acf)), acf))


def drum_tempo(acf: np.ndarray, rate: int) -> float:
    """BPM of the strongest periodicity between 60 and 200 BPM, refined with a parabola through the peak."""
    frames_per_s = rate / HOP
    lags = np.arange(len(acf))
    usable = (lags >= frames_per_s * 60 / 200) & (lags <= frames_per_s * 60 / 60)
    lag = int(lags[usable][np.argmax(acf[usable])])
    a, b, c = acf[lag - 1], acf[lag], acf[lag + 1]
    offset = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c else 0.0
    return 60.0 * frames_per_s / (lag + offset)


def beat_contrast(acf: np.ndarray, bpm: float, rate: int, detune: float = 0.06) -> float:
    """How much more the onsets repeat at the beat of `bpm` than at tempi `detune` away (a ratio;
    above 1 when `bpm` is the drums' tempo)."""
    beat = rate / HOP * 60.0 / bpm
    return _at(acf, beat) / max(_at(acf, beat * (1 - detune)), _at(acf, beat * (1 + detune)), 1e-12)


def estimate_key(record: dict, stems: dict[str, np.ndarray], rate: int) -> tuple[int, str]:
    """(tonic, "major" | "minor") of the harmonic stems' sum: its STFT chroma, log-compressed (so
    a loud sustained chord does not outweigh the rest), against the 24 rotations of the profiles."""
    harmonic = sum(stems[s["part"]] for s in record["stems"] if s["role"] in HARMONIC_ROLES)
    chroma = librosa.feature.chroma_stft(y=harmonic.astype(np.float32), sr=rate, n_fft=4096, hop_length=1024)
    profile = np.log1p(10 * chroma).sum(axis=1)
    scores = {(tonic, mode): np.corrcoef(profile, np.roll(template, tonic))[0, 1]
              for tonic in range(12) for mode, template in (("major", MAJOR), ("minor", MINOR))}
    return max(scores, key=scores.get)


def manifest_key(record: dict) -> tuple[int, str]:
    return record["tonic"], "minor" if record["mode"] in MINOR_THIRD_MODES else "major"


def part_notes(record: dict, name: str) -> tuple[list, float]:
    """(notes, seconds per beat) of one part as arranged: the song arranged again from the
    manifest's arguments, which reproduce it exactly."""
    song = arrange_song(**record["arrange"])
    (part,) = [p for p in song.parts if p.name == name]
    return part.notes, 60.0 / song.bpm


def bass_pitches(record: dict, notes, spb: float, audio: np.ndarray, rate: int) -> list[tuple[float, float]]:
    """(written Hz, measured Hz) of every bass note long enough to measure (YIN over its middle,
    the median), glides left out."""
    pairs = []
    for note in notes:
        start, end = note.start * spb + 0.06, min(note.start * spb + note.length * spb, note.start * spb + 0.5)
        if note.glide_to is not None or end - start < 0.12:
            continue
        segment = audio[round(start * rate): round(end * rate)].astype(np.float32)
        if db(segment) < -50:
            continue
        f0 = librosa.yin(segment, fmin=32, fmax=600, sr=rate, frame_length=1024, hop_length=256)
        pairs.append((float(librosa.midi_to_hz(note.pitch)), float(np.median(f0))))
    return pairs
