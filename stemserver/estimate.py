"""Tempo and key from the audio, where a file states neither (stemserver.tags), and for every mix.

Tempo: librosa's onset strength (spectral flux on a mel spectrogram, 8 ms hops; 16 ms for a mix) and its
autocorrelation, summed at each lag's first four multiples (a comb: the beat's multiples are
periods too, a dotted or triplet period's are not) and weighted by a log-normal prior around 120
BPM (as librosa.feature.tempo weights it, Ellis 2007); the peak is refined between lags, so a
loop's 124 BPM is not read as 125. A file whose length is a whole number of 4-beat bars at a tempo
within 2 % of that estimate is a loop: the length gives its tempo exactly, and its bar count. A
file of at most 16 s (up to 4 bars at 60 BPM: too short for a reliable estimate, or none at all
under 2 s) is read as a loop when its circular autocorrelation is periodic at one of the tempi its
length allows (`loop_tempo`). The confidence is the comb at the beat lag (0..1); below
MIN_TEMPO_CONFIDENCE, or for audio shorter than MIN_TEMPO_SECONDS (a one-shot), there is no tempo.

Key: the mean chroma of the harmonic part of the constant-Q spectrum (librosa's median-filter
separation takes the drums out), log-compressed (CHROMA_COMPRESSION), scored against the 24
rotations of a key profile: by default one trained on the popular corpus's train split
(TRAINED_PROFILES), with Temperley's (2001) and
Krumhansl and Kessler's probe-tone profiles (correlations) as the published ones the benchmark
compares. The confidence is the best key's score; below MIN_KEY_CONFIDENCE, with a chroma flatter
than MAX_CHROMA_FLATNESS, or with less than MIN_HARMONIC_SHARE of the spectrum harmonic and a score
under CLEAR_KEY_CONFIDENCE (drums, noise, effects: on the popular corpus, 90 % of drum stems hold
less than 0.25, every mix more than 0.25), there is no key.

`TEMPO_METHODS` and `KEY_PROFILES` name the estimators `benchmarks/music_accuracy.py` compares.
librosa (ISC licence) is imported on first use: its first call in a process compiles and loads
code for about two seconds, which `warm_up` pays at an engine's start instead of its first query.
Every query without a stated key pays for the chroma, so two of librosa's steps are made cheaper with
results kept bit for bit: its constant-Q filter bank is built once per process instead of once per call
(`_keep_filter_banks`), and the harmonic-percussive medians partition sliding windows instead of
calling scipy's median filter (`harmonic_part`). On 8 s at 16 kHz, 2 cores: the chroma 31 ms, from 90.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import maximum_filter1d

from stemserver.music import BEATS_PER_BAR, Key, MusicFacts, key_name
from stemserver.tags import stated_facts

KEY_HOP = 1024
HPSS_KERNEL, HPSS_MARGIN = 31, 2.0  # librosa's default median length; a margin that leaves out what is unclear
# The key's chroma is of log(1 + 100 x / max x): a quiet chord tone counts beside the loudest note. On the
# popular valid split (52 songs, profiles refitted on all 408 train songs): MIREX 0.662 against 0.538 on
# 8 s queries, 0.746 against 0.748 on whole songs (benchmarks/music_accuracy.py --split valid).
CHROMA_COMPRESSION = 100.0
# Onset frames: 8 ms for library files (a lag step is 1.6 % of a beat at 120 BPM; on the test split's
# stems, Acc2 71 % against 67 % with 16 ms), 16 ms for a query's mix (on the valid split's 8 s
# queries, Acc2 82.5 % against 77.5 % with 8 ms, equal on whole songs, in half the time: every
# query pays it). Peaks are refined between lags either way.
FILE_HOP, MIX_HOP = 128, 256
MIN_TEMPO_SECONDS = 2.0
MIN_KEY_SECONDS = 1.0
MIN_TEMPO_CONFIDENCE = 0.15
MIN_KEY_CONFIDENCE = 0.4
MAX_CHROMA_FLATNESS = 0.95  # drums and noise: every pitch class about as strong as the others
MIN_HARMONIC_SHARE = 0.25  # drums, effects, a click: most of the spectrum is percussive...
CLEAR_KEY_CONFIDENCE = 0.7  # ... unless the key is this clear (a plucked or struck instrument)
MIN_BPM, MAX_BPM = 50.0, 220.0
PRIOR_BPM, PRIOR_OCTAVES = 120.0, 1.0
COMB_MULTIPLES = (1, 2, 3, 4)
LOOP_TOLERANCE = 0.02
LOOP_BARS = (1, 2, 4, 8, 16)
MAX_LOOP_SECONDS = 64.0  # 16 bars at 60 BPM: anything longer is a track, whatever its length
MAX_SHORT_LOOP_SECONDS = 16.0  # up to 4 bars at 60 BPM: read as a loop even when the estimate disagrees
MIN_LOOP_SECONDS = 1.0
MAX_ANALYSED_SECONDS = 120.0
TEMPO_METHODS = ("autocorrelation", "librosa-tempo")
KEY_PROFILES = {
    "krumhansl": (np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88]),
                  np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])),
    "temperley": (np.array([5.0, 2.0, 3.5, 2.0, 4.5, 4.0, 2.0, 4.5, 2.0, 3.5, 1.5, 4.0]),
                  np.array([5.0, 2.0, 3.5, 4.5, 2.0, 4.0, 2.0, 4.5, 3.5, 2.0, 1.5, 4.0])),
}
# Trained on all 408 songs of the popular corpus's train split (tools/learn_key_profiles.py): weights on the
# standardised chroma, one per pitch class above the tonic, chosen so the true key scores highest of
# the 24 (a softmax over them); scaled so the scores read like the correlations above. Chosen as the
# default on the valid split (whole songs: MIREX 0.746 against Krumhansl's 0.663 and Temperley's 0.552; 8 s
# queries: 0.662 against 0.527 and 0.410).
TRAINED_PROFILES = {
    "popular-trained": (np.array([2.103, -1.005, 0.199, -1.035, 0.899, 0.297, -0.838, 0.762, -0.451, 0.027, -1.058,
                                  0.101]),
                        np.array([2.29, -1.475, -0.114, 1.624, -1.338, -0.171, -0.203, 1.171, -0.559, -0.41, -0.431,
                                  -0.385])),
}
KEY_PROFILES.update(TRAINED_PROFILES)
DEFAULT_KEY_PROFILE = "popular-trained"


def file_facts(path: str | Path, samples: np.ndarray | Callable[[], np.ndarray], sample_rate: int,
               duration_s: float) -> MusicFacts:
    """A library file's facts: what its tags and name state (stemserver.tags), the audio estimate for
    the rest. `samples` may be a function that decodes them, called only when the audio is needed. A
    stated tempo that the file's length divides into whole bars gives its bar count."""
    stated = stated_facts(path)
    estimated = MusicFacts()
    if stated.tempo_bpm is None or stated.key is None:
        estimated = estimate_facts(samples() if callable(samples) else samples, sample_rate,
                                   tempo=stated.tempo_bpm is None, key=stated.key is None)
    if stated.tempo_bpm is not None:
        tempo, bars = stated, stated.bars or whole_bars(duration_s, stated.tempo_bpm)
    else:
        tempo, bars = estimated, estimated.bars
    key = stated if stated.key is not None else estimated
    return MusicFacts(tempo_bpm=tempo.tempo_bpm, tempo_confidence=tempo.tempo_confidence,
                      tempo_source=tempo.tempo_source, key=key.key, key_confidence=key.key_confidence,
                      key_source=key.key_source, bars=bars)


def whole_bars(duration_s: float, bpm: float, tolerance: float = 0.01) -> int | None:
    """The bar count when `duration_s` is a whole number of bars at `bpm` (within `tolerance`)."""
    bars = duration_s * bpm / 60.0 / BEATS_PER_BAR
    return round(bars) if round(bars) >= 1 and abs(bars / round(bars) - 1) <= tolerance else None


def estimate_facts(samples: np.ndarray, sample_rate: int, loop_grid: bool = True,
                   tempo_method: str = "autocorrelation", key_profile: str = DEFAULT_KEY_PROFILE,
                   tempo: bool = True, key: bool = True) -> MusicFacts:
    """Tempo (with bars, for a loop, when `loop_grid`) and key of mono `samples`; None where the audio
    has none (see the module's thresholds), or where `tempo` or `key` is False (a tag or the client
    states it: not estimating a key saves most of the time). A mix is not a loop: its queries pass
    loop_grid=False (and get MIX_HOP onset frames, a file FILE_HOP)."""
    _check_tempo_method(tempo_method)
    duration_s = len(samples) / sample_rate
    samples = _finite_mono(samples)[: int(MAX_ANALYSED_SECONDS * sample_rate)]
    hop = FILE_HOP if loop_grid else MIX_HOP
    audible = _has_audio(samples, sample_rate, MIN_LOOP_SECONDS)
    envelope = onset_envelope(samples, sample_rate, hop) if tempo and audible else None
    bpm, tempo_confidence, bars = None, 0.0, None
    if envelope is not None and _has_audio(samples, sample_rate, MIN_TEMPO_SECONDS):
        bpm, tempo_confidence = _tempo(envelope, sample_rate, hop, tempo_method)
    if bpm is not None and loop_grid and duration_s <= MAX_LOOP_SECONDS:
        bpm, bars = snap_to_loop(duration_s, bpm)
    if bars is None and envelope is not None and loop_grid and duration_s <= MAX_SHORT_LOOP_SECONDS:
        grid = loop_tempo(envelope, duration_s)
        if grid is not None:
            bpm, bars, tempo_confidence = grid
    found, key_confidence = estimate_key(samples, sample_rate, key_profile) if key else (None, 0.0)
    return MusicFacts(
        tempo_bpm=None if bpm is None else round(bpm, 2), tempo_source=None if bpm is None else "audio",
        tempo_confidence=None if bpm is None else round(tempo_confidence, 3), bars=bars,
        key=None if found is None else key_name(found), key_source=None if found is None else "audio",
        key_confidence=None if found is None else round(key_confidence, 3),
    )


def estimate_tempo(samples: np.ndarray, sample_rate: int, method: str = "autocorrelation", hop: int = FILE_HOP
                   ) -> tuple[float | None, float]:
    """(BPM or None, confidence 0..1), from onset frames `hop` samples apart."""
    _check_tempo_method(method)
    if not _has_audio(samples, sample_rate, MIN_TEMPO_SECONDS):
        return None, 0.0
    return _tempo(onset_envelope(samples, sample_rate, hop), sample_rate, hop, method)


def _check_tempo_method(method: str) -> None:
    if method not in TEMPO_METHODS:
        raise ValueError(f"tempo method {method!r}; known: {', '.join(TEMPO_METHODS)}")


def _has_audio(samples: np.ndarray, sample_rate: int, seconds: float) -> bool:
    """At least `seconds` of samples, not all zero."""
    return len(samples) >= seconds * sample_rate and bool(np.any(samples))


def _tempo(envelope: np.ndarray, sample_rate: int, hop: int, method: str) -> tuple[float | None, float]:
    """estimate_tempo from an onset envelope already made."""
    correlation = _autocorrelation(envelope)
    comb = _comb(correlation)
    frame_rate = sample_rate / hop
    if method == "librosa-tempo":
        librosa = _librosa()
        bpm = float(librosa.feature.tempo(onset_envelope=envelope, sr=sample_rate, hop_length=hop)[0])
    else:
        bpm = _weighted_peak(correlation, comb, frame_rate)
    if bpm is None:
        return None, 0.0
    lag = int(round(60.0 * frame_rate / bpm))
    confidence = float(np.clip(comb[lag], 0.0, 1.0)) if lag < len(comb) else 0.0
    return (bpm, confidence) if confidence >= MIN_TEMPO_CONFIDENCE else (None, confidence)


def onset_envelope(samples: np.ndarray, sample_rate: int, hop: int = FILE_HOP) -> np.ndarray:
    return _librosa().onset.onset_strength(y=samples.astype(np.float32), sr=sample_rate, hop_length=hop)


def _autocorrelation(envelope: np.ndarray) -> np.ndarray:
    """The envelope's autocorrelation, its loudest 1 % clipped and its mean removed, 1 at lag 0 (0
    everywhere for a flat one)."""
    x = _pulse(envelope)
    spectrum = np.fft.rfft(x, 2 * len(x))
    correlation = np.fft.irfft(spectrum * np.conj(spectrum))[: len(x)]
    # unbiased: each lag is the mean over the frames it overlaps, so long lags are not penalised
    correlation /= np.arange(len(x), 0, -1)
    return correlation / correlation[0] if correlation[0] > 0 else np.zeros_like(correlation)


def _pulse(envelope: np.ndarray) -> np.ndarray:
    """The onset envelope as its autocorrelations read it: the loudest 1 % clipped (one loud hit must
    not stand for the rhythm), the mean removed."""
    x = np.minimum(envelope, np.percentile(envelope, 99))
    return x - x.mean()


def _prior(bpm):
    """The log-normal tempo prior around PRIOR_BPM (a number or an array of them)."""
    return np.exp(-0.5 * (np.log2(bpm / PRIOR_BPM) / PRIOR_OCTAVES) ** 2)


def _grid_tempi(duration_s: float):
    """(BPM, bars) at which `duration_s` is a whole number LOOP_BARS of 4-beat bars, within the range."""
    for bars in LOOP_BARS:
        bpm = 60.0 * bars * BEATS_PER_BAR / duration_s
        if MIN_BPM <= bpm <= MAX_BPM:
            yield bpm, bars


def _comb(correlation: np.ndarray) -> np.ndarray:
    """At each lag, the mean autocorrelation at its first COMB_MULTIPLES multiples: a beat period's
    multiples are periods too; a dotted or triplet period's mostly are not. The k-th multiple of a
    whole lag may miss a sharp peak by k/2 lags: each is read as the largest within that."""
    lags = np.arange(len(correlation), dtype=np.float64)
    positive = np.maximum(correlation, 0)
    return np.mean([np.interp(lags * k, lags, maximum_filter1d(positive, size=k + 1 + k % 2), right=0.0)
                    for k in COMB_MULTIPLES], axis=0)


def _weighted_peak(correlation: np.ndarray, comb: np.ndarray, frame_rate: float) -> float | None:
    """The BPM of the comb's highest peak under the log-normal tempo prior, interpolated between lags
    (a parabola through the autocorrelation's peak and its neighbours)."""
    lags = np.arange(len(correlation), dtype=np.float64)
    usable = (lags >= 60.0 * frame_rate / MAX_BPM) & (lags <= 60.0 * frame_rate / MIN_BPM) & (lags < len(lags) / 2)
    if usable.sum() < 3:
        return None
    weighted = np.where(usable, comb * _prior(60.0 * frame_rate / np.maximum(lags, 1)), -1)
    peak = int(np.argmax(weighted))
    if weighted[peak] <= 0:
        return None
    lag = float(peak)
    if 0 < peak < len(correlation) - 1:
        left, centre, right = correlation[peak - 1:peak + 2]
        bend = left - 2 * centre + right
        if bend < 0:
            lag += float(np.clip(0.5 * (left - right) / bend, -0.5, 0.5))
    return float(60.0 * frame_rate / lag)


def loop_tempo(envelope: np.ndarray, duration_s: float) -> tuple[float, int, float] | None:
    """A short file read as a loop, from its onset envelope: of the tempi at which its length is a whole
    number of 4-beat bars (LOOP_BARS), the one whose beat lag the comb of its circular autocorrelation
    (a loop wraps around) scores highest under the prior; (BPM, bars, confidence), or None when none
    is periodic (a one-shot: one hit, nothing at any beat lag)."""
    x = _pulse(envelope)
    spectrum = np.fft.rfft(x)
    circular = np.fft.irfft(spectrum * np.conj(spectrum), len(x))
    if circular[0] <= 0:
        return None
    positive = np.maximum(circular / circular[0], 0)
    frames, best = len(x), None
    for bpm, bars in _grid_tempi(duration_s):
        lag = frames / (bars * BEATS_PER_BAR)
        # the loop's whole length is a multiple of every beat lag: it says nothing, so it is not counted
        multiples = [k for k in COMB_MULTIPLES if k * lag < frames - 1]
        comb = float(np.mean([maximum_filter1d(positive, size=k + 1 + k % 2, mode="wrap")[int(round(k * lag))]
                              for k in multiples]))
        if best is None or comb * _prior(bpm) > best[0]:
            best = (comb * _prior(bpm), bpm, bars, comb)
    if best is None or best[3] < MIN_TEMPO_CONFIDENCE:
        return None
    return best[1], best[2], min(best[3], 1.0)


def snap_to_loop(duration_s: float, bpm: float) -> tuple[float, int | None]:
    """A loop's exact tempo and bar count, when `duration_s` is a whole number of bars at a tempo within
    LOOP_TOLERANCE of `bpm` or of its double or half (the one nearest PRIOR_BPM, as for the estimate:
    a bar at 62 BPM and two at 124 are the same loop); otherwise (bpm, None)."""
    fits = [(_prior(grid_bpm), grid_bpm, bars) for grid_bpm, bars in _grid_tempi(duration_s)
            if any(abs(grid_bpm * factor / bpm - 1) <= LOOP_TOLERANCE for factor in (1.0, 2.0, 0.5))]
    if not fits:
        return bpm, None
    _, grid_bpm, bars = max(fits)
    return grid_bpm, bars


def estimate_key(samples: np.ndarray, sample_rate: int, profile: str = DEFAULT_KEY_PROFILE
                 ) -> tuple[Key | None, float]:
    """(the best-scoring major or minor key or None, its score: the correlation of the chroma with a
    published profile, or a trained profile's weighted sum on the same scale)."""
    if profile not in KEY_PROFILES:
        raise ValueError(f"key profile {profile!r}; known: {', '.join(KEY_PROFILES)}")
    if not _has_audio(samples, sample_rate, MIN_KEY_SECONDS):
        return None, 0.0
    chroma, flatness, harmonic_share = harmonic_chroma(samples, sample_rate)
    if not np.all(np.isfinite(chroma)) or chroma.std() == 0:
        return None, 0.0
    best, best_r = None, -np.inf
    standard = (chroma - chroma.mean()) / chroma.std()
    for mode, weights in zip(("major", "minor"), _key_weights(profile)):
        for tonic in range(12):
            r = float(np.dot(np.roll(standard, -tonic), weights) / 12)
            if r > best_r:
                best, best_r = Key(tonic, mode), r
    percussive = harmonic_share < MIN_HARMONIC_SHARE and best_r < CLEAR_KEY_CONFIDENCE
    tonal = best_r >= MIN_KEY_CONFIDENCE and flatness < MAX_CHROMA_FLATNESS and not percussive
    return (best, best_r) if tonal else (None, best_r)


def _key_weights(profile: str) -> tuple[np.ndarray, np.ndarray]:
    """Weights whose dot product with the standardised chroma, over 12, is the Pearson correlation with
    a published profile (its standardised values), or a trained profile's score (its weights as they are)."""
    if profile in TRAINED_PROFILES:
        return TRAINED_PROFILES[profile]
    return tuple((p - p.mean()) / p.std() for p in KEY_PROFILES[profile])


def harmonic_chroma(samples: np.ndarray, sample_rate: int) -> tuple[np.ndarray, float, float]:
    """The mean chroma (12,) of the harmonic part of the constant-Q spectrum, log-compressed (what a key is
    scored on), the flatness of the same chroma uncompressed (drums and noise: about 1), and the share of the
    spectrum the harmonic part holds."""
    librosa = _librosa()
    with warnings.catch_warnings():  # its lowest octaves, decimated, are shorter than their FFT: expected
        warnings.filterwarnings("ignore", message="n_fft=.* is too large", category=UserWarning)
        spectrum = np.abs(librosa.cqt(samples.astype(np.float32), sr=sample_rate, hop_length=KEY_HOP, n_bins=252,
                                      bins_per_octave=36))
    harmonic = harmonic_part(spectrum)
    raw = librosa.feature.chroma_cqt(C=harmonic, sr=sample_rate, hop_length=KEY_HOP, bins_per_octave=36).mean(axis=1)
    compressed = np.log1p(CHROMA_COMPRESSION * harmonic / max(float(harmonic.max()), 1e-12))
    chroma = librosa.feature.chroma_cqt(C=compressed, sr=sample_rate, hop_length=KEY_HOP, bins_per_octave=36)
    flatness = float(np.exp(np.log(raw + 1e-9).mean()) / (raw.mean() + 1e-9))
    return chroma.mean(axis=1), flatness, float(harmonic.sum() / max(spectrum.sum(), 1e-12))


def harmonic_part(spectrum: np.ndarray, kernel: int = HPSS_KERNEL, margin: float = HPSS_MARGIN) -> np.ndarray:
    """The harmonic part of a magnitude spectrum (frequency x time): `librosa.decompose.hpss(spectrum,
    kernel_size=kernel, margin=margin)[0]` bit for bit, in about a third of its time. Each median is an
    element of its sorted window, so a partition of the windows finds the one scipy's median filter does
    (scipy's "reflect" edges are numpy's "symmetric", except where a window is longer than the spectrum:
    there librosa's own is used)."""
    if min(spectrum.shape[-2:]) < kernel:
        return _librosa().decompose.hpss(spectrum, kernel_size=kernel, margin=margin)[0]
    half = kernel // 2

    def median_along(axis: int) -> np.ndarray:
        padding = [(0, 0)] * spectrum.ndim
        padding[axis] = (half, half)
        windows = sliding_window_view(np.pad(spectrum, padding, mode="symmetric"), kernel, axis=axis)
        return np.partition(windows, half, axis=-1)[..., half]

    across_time, across_frequency = median_along(-1), median_along(-2)
    mask = _librosa().util.softmask(across_time, across_frequency * margin, power=2.0, split_zeros=False)
    return spectrum * mask


def _librosa():
    """librosa, its constant-Q filter bank kept in memory once built. librosa builds it again on every
    call (its own cache is on disk, and off unless LIBROSA_CACHE_DIR is set before it is imported):
    80 % of the constant-Q transform of a query's 8 s, the same filters every time."""
    import librosa
    from librosa.core import constantq

    build = getattr(constantq, "__vqt_filter_fft", None)
    if build is not None and not hasattr(build, "kept"):
        constantq.__vqt_filter_fft = _keep_filter_banks(build)
    return librosa


def _keep_filter_banks(build: Callable, most: int = 64) -> Callable:
    """`build` (librosa's constant-Q filter FFT) remembering its results by argument; each call gets a
    copy, since librosa scales the bank it is given in place."""
    kept: dict = {}

    def part(value):
        return ("array", value.dtype.str, value.shape, value.tobytes()) if isinstance(value, np.ndarray) else value

    def filter_fft(*args, **kwargs):
        try:
            key = (tuple(map(part, args)), tuple(sorted((name, part(v)) for name, v in kwargs.items())))
            hash(key)
        except TypeError:  # an argument that is no value (a window function): built every time
            return build(*args, **kwargs)
        if key not in kept:
            if len(kept) >= most:
                kept.clear()
            kept[key] = build(*args, **kwargs)
        basis, n_fft, lengths = kept[key]
        return basis.copy(), n_fft, lengths.copy()

    filter_fft.kept, filter_fft.build = kept, build
    return filter_fft


def warm_up(sample_rate: int) -> None:
    """Run both estimators once on 3 s of noise (librosa's first call in a process is slow)."""
    noise = np.random.default_rng(0).standard_normal(sample_rate * 3).astype(np.float32) * 0.1
    estimate_facts(noise, sample_rate)


def _finite_mono(samples: np.ndarray) -> np.ndarray:
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim > 1:
        samples = samples.mean(axis=-1)
    return np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)
