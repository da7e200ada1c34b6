"""How much a model's representation depends on where a moment sits in the 8 s window.

    python tools/shift_robustness.py CHECKPOINT CACHE [--split test] [--tracks 8] [--stems 5] [--seed 0]

For up to `--stems` stems (of at least 12.5 s, active in the window) of the first `--tracks` tracks
of the split, an 8 s window is cut at a random sample. Printed, over those windows:

- pooled cosine at a 0.37 s shift: the search vector (stemserver.inference.mean_vector) of the
  window against that of the window 0.37 s later; 1 means the search embedding ignores the shift;
- placed within one column: the window's own columns (target encoder, as the library stores a
  stem; and the context encoder) aligned against the whole stem's stored columns by the product's
  offset search (stemserver.alignment.best_shift) land within one 160 ms column of where the
  window was cut;
- prediction placed within one column: the same with the predictor's columns for the mix of the
  track's other stems over the window, asked for the stem's fine label (what a query aligns).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from stemserver.alignment import best_shift
from stemserver.checkpoint import load_model
from stemserver.config import Settings
from stemserver.inference import encode_audio, mean_vector, query_columns, stem_representation
from stemserver_training.cache import open_cache

SHIFT_S = 0.37  # not a whole number of 160 ms columns


def columns(model, samples: np.ndarray, device: torch.device, target: bool) -> np.ndarray:
    return stem_representation(torch.from_numpy(encode_audio(model, samples, device, target=target))).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("cache", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--tracks", type=int, default=8)
    parser.add_argument("--stems", type=int, default=5, help="stems per track at most")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    checkpoint, model, device = load_model(args.checkpoint, Settings().override(threads=args.threads))
    labels = checkpoint.label_embedder()
    dataset = open_cache(args.cache).split(args.split)
    rate = dataset.sample_rate
    window, column, shift = round(8.0 * rate), model.config.patch_size * model.config.front_end.hop_length, \
        round(SHIFT_S * rate)
    rng = np.random.default_rng(args.seed)
    pooled, placed = [], {"target": [], "context": [], "prediction": []}
    for track in dataset.tracks[: args.tracks]:
        for stem in track.stems[: args.stems]:
            samples = stem.read(0, stem.num_samples)
            if len(samples) < window + shift + 4 * rate:
                continue
            start = int(rng.integers(0, len(samples) - window - shift))
            if np.abs(samples[start : start + window]).max() < 0.01:
                continue
            truth = start / column
            stored = {}  # the whole stem's columns per encoder: the target's serve the prediction too
            for kind in ("target", "context"):
                own = columns(model, samples[start : start + window], device, kind == "target")
                stored[kind] = columns(model, samples, device, kind == "target")
                placed[kind].append(abs(best_shift(own, stored[kind]).shift_columns - truth) <= 1)
                if kind == "target":
                    later = columns(model, samples[start + shift : start + shift + window], device, True)
                    pooled.append(float(mean_vector(own) @ mean_vector(later)))
            mix = np.sum([s.read(start, start + window) for s in track.stems if s is not stem], axis=0)
            text = labels.embed([stem.label_path[-1] if stem.label_path else "music"])
            predicted = query_columns(model, torch.from_numpy(mix[None].astype(np.float32)).to(device), text)[0]
            placed["prediction"].append(abs(best_shift(predicted, stored["target"]).shift_columns - truth) <= 1)
    if not pooled:
        raise SystemExit("no stem of those tracks is long enough (12.5 s) and active in its window")
    print(f"{args.checkpoint}: {len(pooled)} windows of {args.split}; pooled cosine at a {SHIFT_S} s shift "
          f"{np.mean(pooled):.3f}; placed within one column: target encoder {100 * np.mean(placed['target']):.1f} %, "
          f"context encoder {100 * np.mean(placed['context']):.1f} %, prediction "
          f"{100 * np.mean(placed['prediction']):.1f} %")


if __name__ == "__main__":
    main()
