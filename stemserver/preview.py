"""A preview: the mix with a found stem laid in where the query placed it, at the mix's tempo and key.

The timing is a query result's (stemserver.engine): `offset_s` is the stem position, in the stem's own
unstretched seconds, that lines up with the START of the query window, the last `seconds` of the mix.
At mix time t the stem therefore plays its position offset_s + (t - window_start) * stretch, before
the window start too when the mix is longer than the window. A stem shorter than the window is a
loop (as the engine decides: shorter than the whole 160 ms columns of the window) and repeats over the
whole mix.

Time-stretch and pitch-shift are Rubber Band's, through Spotify's pedalboard (GPL-3.0; the optional
extra `stemserver[preview]`, imported only when a preview is stretched): `stretch` > 1 plays the stem
faster, as a result's `stretch`, pedalboard's `stretch_factor` and a DAW's playrate. The render keeps
the mix's sample rate and channels (a mono stem plays in every channel, a stem of another channel
count is down-mixed to mono first), and is scaled down only when the sum would clip (a peak over 1),
to a peak of exactly 1.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import soundfile
import soxr

from stemserver import audio
from stemserver.errors import AudioError, StemserverError
from stemserver.files import atomic_path
from stemserver.window import QUERY_SECONDS, WINDOW_COLUMNS

MIN_STRETCH, MAX_STRETCH = 0.25, 4.0
MAX_TRANSPOSE = 12
MAX_STEM_GAIN_DB = 24.0
CONTEXT_S = 0.25  # of the stem on either side of what sounds, so Rubber Band's edges fall outside the mix
PREVIEW_GLOB = "preview-*.wav"
SECONDS_PER_COLUMN = QUERY_SECONDS / WINDOW_COLUMNS  # the query's time step: it sees whole columns of its window


def check_settings(offset_s: float, stretch: float, transpose: int, seconds: float, stem_gain_db: float) -> None:
    """Refuse values no query result gives, saying which ones do (before any audio is decoded)."""
    if not _finite(offset_s) or offset_s < 0:
        raise StemserverError(f"offset must be a stem position of at least 0 s (a result's offset_s), got {offset_s}")
    if not _finite(stretch) or not MIN_STRETCH <= stretch <= MAX_STRETCH:
        raise StemserverError(f"stretch must be a playback rate from {MIN_STRETCH:g} to {MAX_STRETCH:g} (a result's "
                              f"stretch; 1 plays the stem as it is), got {stretch}")
    if isinstance(transpose, bool) or not isinstance(transpose, (int, np.integer)) or abs(transpose) > MAX_TRANSPOSE:
        raise StemserverError(f"transpose must be whole semitones from -{MAX_TRANSPOSE} to {MAX_TRANSPOSE} (a result's "
                              f"transpose), got {transpose!r}")
    if not _finite(seconds) or seconds <= 0:
        raise StemserverError(f"seconds must be the query window in seconds, more than 0, got {seconds}")
    if not _finite(stem_gain_db) or stem_gain_db > MAX_STEM_GAIN_DB:
        raise StemserverError(f"stem gain must be a finite number of dB, at most {MAX_STEM_GAIN_DB:g}, "
                              f"got {stem_gain_db}")


def render_preview(mix: np.ndarray, stem: np.ndarray, sample_rate: int, offset_s: float = 0.0, stretch: float = 1.0,
                   transpose: int = 0, seconds: float = QUERY_SECONDS, stem_gain_db: float = 0.0) -> np.ndarray:
    """The mix, (frames,) or (frames, channels), with the stem laid in, both at `sample_rate`: float32
    (frames, channels), the mix's length and channels. See the module's docs for the timing."""
    return _render(mix, stem, sample_rate, offset_s, stretch, transpose, seconds, stem_gain_db)[0]


def preview_file(mix_path: str | Path, stem_path: str | Path, out_path: str | Path, offset_s: float = 0.0,
                 stretch: float = 1.0, transpose: int = 0, seconds: float = QUERY_SECONDS, stem_gain_db: float = 0.0,
                 max_duration_s: float = audio.MAX_DURATION_S) -> dict:
    """Render the preview of two audio files into a 32-bit float WAV at `out_path` (written whole or not
    at all), at the mix's rate; returns what was written, JSON-ready."""
    check_settings(offset_s, stretch, transpose, seconds, stem_gain_db)
    _wav_path(out_path)  # before the mix is decoded
    mix, rate = audio.decode(mix_path, max_duration_s)
    return preview_audio(mix, rate, stem_path, out_path, offset_s, stretch, transpose, seconds, stem_gain_db,
                         max_duration_s, mix_source=str(mix_path))


def preview_audio(mix: np.ndarray, rate: int, stem_path: str | Path, out_path: str | Path, offset_s: float = 0.0,
                  stretch: float = 1.0, transpose: int = 0, seconds: float = QUERY_SECONDS, stem_gain_db: float = 0.0,
                  max_duration_s: float = audio.MAX_DURATION_S, mix_source: str = "mix") -> dict:
    """`preview_file` for a mix already in memory, (frames, channels) float at `rate` (a client sent it)."""
    out_path = _wav_path(out_path)
    check_settings(offset_s, stretch, transpose, seconds, stem_gain_db)
    stem, stem_rate = audio.decode(stem_path, max_duration_s)
    _check_finite(stem, str(stem_path))  # before resampling, which would spread a NaN over the whole file
    if stem_rate != rate:
        stem = soxr.resample(stem, stem_rate, rate, quality="HQ")
    rendered, scale, placement = _render(mix, stem, rate, offset_s, stretch, transpose, seconds, stem_gain_db,
                                         mix_source=mix_source, stem_source=str(stem_path))
    with atomic_path(out_path) as tmp:
        soundfile.write(tmp, rendered, rate, subtype="FLOAT", format="WAV")
    return {"path": str(out_path), "duration_s": round(len(rendered) / rate, 4), "sample_rate": rate,
            "channels": rendered.shape[1], **placement, "gain_db": round(20 * math.log10(scale), 2)}


def _wav_path(out_path: str | Path) -> Path:
    out_path = Path(out_path).expanduser().absolute()
    if out_path.suffix.lower() != ".wav":
        raise StemserverError(f"{out_path}: a preview is a WAV file; name it NAME.wav")
    return out_path


def prune_previews(folder: Path, keep: int) -> None:
    """Delete all but the newest `keep` previews in `folder` (only files named like previews)."""
    previews = sorted(folder.glob(PREVIEW_GLOB), key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)
    for old in previews[keep:]:
        try:
            os.unlink(old)
        except FileNotFoundError:  # another render pruned it first
            pass


def _render(mix: np.ndarray, stem: np.ndarray, sample_rate: int, offset_s: float, stretch: float, transpose: int,
            seconds: float, stem_gain_db: float, mix_source: str = "mix",
            stem_source: str = "stem") -> tuple[np.ndarray, float, dict]:
    """The render, the factor it was scaled by to keep from clipping (1 when it was not), and where the stem went."""
    check_settings(offset_s, stretch, transpose, seconds, stem_gain_db)
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise AudioError(f"invalid sample rate {sample_rate!r}")
    mix, stem = _frames(mix, mix_source), _frames(stem, stem_source)
    window = min(len(mix), int(seconds * sample_rate))  # the engine's window: the last `seconds`, or the whole mix
    window_start_s = (len(mix) - window) / sample_rate
    stem_s = len(stem) / sample_rate
    loop = stem_s < math.floor(window / sample_rate / SECONDS_PER_COLUMN + 1e-9) * SECONDS_PER_COLUMN  # as the engine
    if loop:
        offset_s %= stem_s
    elif offset_s > stem_s:
        raise StemserverError(f"{stem_source}: offset {offset_s:g} s is beyond the stem's end ({stem_s:.3f} s); "
                              "use the offset_s of a query result for this stem")
    channels = stem if stem.shape[1] in (1, mix.shape[1]) else stem.mean(axis=1, keepdims=True)
    layer = _stem_layer(channels, sample_rate, len(mix), window_start_s, offset_s, stretch, transpose, loop)
    out = mix + layer * np.float32(10 ** (stem_gain_db / 20))  # a mono layer broadcasts to every channel
    peak = float(np.abs(out).max())
    scale = 1.0 / peak if peak > 1.0 else 1.0
    if scale != 1.0:
        out *= np.float32(scale)
    return out.astype(np.float32, copy=False), scale, {"window_start_s": round(window_start_s, 4), "loop": loop}


def _stem_layer(stem: np.ndarray, rate: int, frames: int, window_start_s: float, offset_s: float, stretch: float,
                transpose: int, loop: bool) -> np.ndarray:
    """The stem as it sounds over the mix's `frames`: (frames, the stem's channels).

    Only the part of the stem that sounds is stretched (with CONTEXT_S either side); a loop is tiled
    first and stretched whole, so its repeats join without Rubber Band's edges and without drift."""
    first = (offset_s - window_start_s * stretch) * rate  # the stem position (frames) at mix frame 0
    last = first + frames * stretch
    context = int(CONTEXT_S * rate)
    if loop:
        period = len(stem)
        source_start = math.floor((first - context) / period) * period
        repeats = math.ceil((last + context - source_start) / period)
        source = np.tile(stem, (repeats, 1))
    else:
        source_start = max(0, math.floor(first) - context)
        source = stem[source_start : max(source_start, min(len(stem), math.ceil(last) + context))]
    layer = np.zeros((frames, stem.shape[1]), np.float32)
    if len(source) == 0:
        return layer
    stretched = _stretch(source, rate, stretch, transpose)
    place = round(window_start_s * rate + (source_start - offset_s * rate) / stretch)  # mix frame of source[0]
    begin, end = max(0, place), min(frames, place + len(stretched))
    if begin < end:
        layer[begin:end] = stretched[begin - place : end - place]
    return layer


def _stretch(samples: np.ndarray, rate: int, stretch: float, transpose: int) -> np.ndarray:
    """Rubber Band's time-stretch and pitch-shift of (frames, channels); untouched when there is nothing to do."""
    if stretch == 1.0 and transpose == 0:
        return samples
    try:
        import pedalboard
    except ImportError as e:
        raise StemserverError("stretching or transposing a preview needs pedalboard (Rubber Band): "
                              "pip install 'stemserver[preview]'") from e
    planar = np.ascontiguousarray(samples.T, dtype=np.float32)
    # Rubber Band's R2 engine with mixed transients: its timing holds over a whole mix and its pitch is
    # exact. benchmarks/preview_timing.py (clicks 0.7 s apart over 40 s at 44.1 kHz, tones at 220 and
    # 440 Hz): pedalboard's default R3 engine drifts up to 3.0 ms per second, 76 ms off within 40 s;
    # R2 drifts 0.08 ms/s, at worst 17.8 ms off for a result's stretch (0.71 to 1.41, transpose 0 or
    # 5); R2's default crisp transients put steady tones up to 53 cents off, mixed ones 0.0.
    out = pedalboard.time_stretch(planar, float(rate), stretch_factor=float(stretch),
                                  pitch_shift_in_semitones=float(transpose), high_quality=False,
                                  transient_mode="mixed")
    return out.T


def _frames(samples: np.ndarray, source: str) -> np.ndarray:
    """Validated float32 (frames, channels)."""
    samples = np.asarray(samples)
    if samples.ndim == 1:
        samples = samples[:, None]
    if samples.ndim != 2 or not np.issubdtype(samples.dtype, np.floating):
        raise AudioError(f"{source}: expected float samples shaped (n,) or (n, channels), got {samples.dtype} "
                         f"{samples.shape}")
    if samples.shape[0] == 0 or samples.shape[1] == 0:
        raise AudioError(f"{source}: contains no samples")
    _check_finite(samples, source)
    return samples.astype(np.float32, copy=False)


def _check_finite(samples: np.ndarray, source: str) -> None:
    bad = int(np.count_nonzero(~np.isfinite(samples)))
    if bad:
        raise AudioError(f"{source}: contains {bad} NaN or infinite samples; the file is corrupt (export it again)")


def _finite(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(value)
