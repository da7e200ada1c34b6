"""Train the key profile stemserver.estimate ships as "popular-trained", from the popular corpus's
train split (never its valid or test songs, which choose and measure it).

Each song's mix (the sum of its stems) gives the mean harmonic chroma the estimator sees
(estimate.harmonic_chroma), standardised. A key's score is the dot product of that chroma, rotated
to the key's tonic, with the weights of its mode; the weights (12 per mode) are fitted so the true
key scores highest of the 24 (a softmax over them, L2-regularised, plain gradient descent), then
scaled so that a score reads like a correlation (their mean norm is that of a standardised profile).
The printed weights go into estimate.TRAINED_PROFILES; benchmarks/music_accuracy.py measures them.

    python tools/learn_key_profiles.py /data/popular /data/cache/popular/splits.json [--songs N]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stemserver import audio
from stemserver.estimate import harmonic_chroma
from stemserver.music import major_or_minor, parse_key


def song_features(corpus: Path, songs: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(songs, 12) standardised mean harmonic chroma of each mix, and its key as tonic + 12 * minor."""
    features, keys = [], []
    for song in tqdm(songs, desc="songs", unit="song"):
        key = major_or_minor(parse_key(json.loads((corpus / song / "data.json").read_text())["key"]))
        stems = [audio.load(path, audio.SAMPLE_RATE, 600)[0] for path in (corpus / song).glob("*/*.flac")]
        length = max(len(s) for s in stems)
        chroma, _, _ = harmonic_chroma(sum(np.pad(s, (0, length - len(s))) for s in stems), audio.SAMPLE_RATE)
        features.append((chroma - chroma.mean()) / chroma.std())
        keys.append(key.tonic + 12 * (key.mode == "minor"))
    return np.array(features), np.array(keys)


def fit_weights(features: np.ndarray, keys: np.ndarray, l2: float = 1e-2, steps: int = 3000,
                rate: float = 0.5) -> np.ndarray:
    """(2, 12) weights, major then minor, maximising the softmax likelihood of the true key."""
    rotated = np.stack([np.roll(features, -tonic, axis=1) for tonic in range(12)], axis=1)  # (n, 12, 12)
    weights = np.zeros((2, 12))
    truth = np.eye(24)[keys]
    for _ in range(steps):
        scores = np.concatenate([rotated @ weights[0], rotated @ weights[1]], axis=1)
        p = np.exp(scores - scores.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        error = p - truth
        gradient = np.stack([np.einsum("nc,ncf->f", error[:, :12], rotated),
                             np.einsum("nc,ncf->f", error[:, 12:], rotated)]) / len(keys)
        weights -= rate * (gradient + l2 * weights)
    weights -= weights.mean(axis=1, keepdims=True)  # a constant adds the same to every key's score
    return weights / (np.linalg.norm(weights, axis=1).mean() / np.sqrt(12))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path, help="the popular corpus (<song>/data.json and stems)")
    parser.add_argument("splits", type=Path, help="the prepared cache's splits.json (its train songs are used)")
    parser.add_argument("--songs", type=int, help="train songs to read, spread over the split (default: all of them)")
    args = parser.parse_args()
    splits = json.loads(args.splits.read_text())["splits"]
    train = sorted(song for song, split in splits.items() if split == "train")
    songs = train if args.songs is None else train[:: max(1, len(train) // args.songs)][: args.songs]
    weights = fit_weights(*song_features(args.corpus, songs))
    for mode, row in zip(("major", "minor"), weights):
        print(f"{mode}: {np.round(row, 3).tolist()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
