"""Indexing throughput: audio-seconds embedded per second (x realtime) through `Library.scan`, per model size.

    .venv/bin/python benchmarks/index.py [--sizes tiny small base] [--files 20] [--seconds 30]
        [--rate 44100] [--channels 2] [--device cpu] [--threads N] [--json]

Writes `--files` generated stems (decaying random notes over noise) of `--seconds` each, half WAV
(16-bit PCM) and half FLAC, at `--rate` Hz with `--channels` channels, as a producer's sample folder
holds them. For each model size (random-init weights: speed does not depend on them) a fresh library
scans the folder with `stem_embedder` (the target encoder over 8 s windows, what `stemserver index`
does), after one warm-up embedding outside the scan.

Figures, per size:
- x realtime: audio seconds indexed per wall-clock second of the whole `Library.scan` (find, hash,
  decode, resample, embed, write the embedding, commit the row).
- embed: seconds inside the `stem_embedder` function (front end + target encoder + per-patch
  standardisation), timed by wrapping it, and its own x realtime.
- decode: seconds of `audio.load` (decode, down-mix, resample to 16 kHz) on the same files, measured
  in a separate pass before the scans (WAV and FLAC separately; the files are in the page cache, as
  they are for the scan).
- rest: scan time minus embed minus decode (hashing, file walk, embedding writes, SQLite).
- cut x: the same scan with the columns alone (`stem_columns`, what indexing did before the search
  windows were encoded alone, `inference.window_vectors`): the scan time of the product's
  embedder over that one, in the same run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile
import torch
from common import emit

from stemserver import audio
from stemserver.device import select_device, set_threads
from stemserver.inference import stem_columns, stem_embedder
from stemserver.library import Library
from stemserver.model import ENCODER_PRESETS, ModelConfig, StemJEPA
from stemserver.window import QUERY_SECONDS

EXTENSIONS = ("wav", "flac")  # both 16-bit PCM
NOTE_S = 2.0  # a note decays to -70 dB in 2 s


def write_stems(folder: Path, files: int, seconds: float, rate: int, channels: int, seed: int = 0) -> list[Path]:
    """`files` stems alternating WAV and FLAC: decaying random notes over a little noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(int(NOTE_S * rate)) / rate
    paths = []
    for i in range(files):
        signal = 0.01 * rng.standard_normal((n, channels))
        for onset in rng.integers(0, n, int(3 * seconds)):
            note = np.sin(2 * np.pi * 55 * 2 ** (rng.integers(0, 48) / 12) * t) * np.exp(-4 * t)
            end = min(n, onset + len(t))
            signal[onset:end] += 0.15 * note[: end - onset, None] * rng.uniform(0.3, 1.0, channels)
        path = folder / f"stem-{i:03d}.{EXTENSIONS[i % len(EXTENSIONS)]}"
        soundfile.write(path, np.clip(signal, -1, 1), rate, subtype="PCM_16")
        paths.append(path)
    return paths


def decode_seconds(paths: list[Path]) -> dict[str, float]:
    """Seconds `audio.load` takes on the files, per extension, after one untimed pass."""
    for path in paths:
        audio.load(path)
    spent: dict[str, float] = {}
    for path in paths:
        start = time.perf_counter()
        audio.load(path)
        extension = path.suffix.lstrip(".")
        spent[extension] = spent.get(extension, 0.0) + time.perf_counter() - start
    return spent


class TimedEmbedder:
    """Wraps an embed function and adds up the seconds spent inside it."""

    def __init__(self, embed: Callable[[np.ndarray], np.ndarray]):
        self.embed = embed
        self.seconds = 0.0

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        result = self.embed(samples)
        self.seconds += time.perf_counter() - start
        return result


def run_size(size: str, folder: Path, workdir: Path, device: torch.device, decode_s: float) -> dict:
    torch.manual_seed(0)
    model = StemJEPA(ModelConfig.preset(size)).to(device).eval()
    embed = TimedEmbedder(stem_embedder(model, device))
    embed.embed(np.zeros(int(QUERY_SECONDS * audio.SAMPLE_RATE), np.float32))  # warm-up, not counted
    with Library(workdir / f"library-{size}", create=True) as library:
        report = library.scan([folder], embed, fingerprint=f"benchmark-{size}", checkpoint_name=size, progress=False)
    with Library(workdir / f"library-{size}-cut", create=True) as library:
        cut = library.scan([folder], lambda samples: stem_columns(model, samples, device),
                           fingerprint=f"benchmark-{size}", checkpoint_name=size, progress=False)
    if report.failed or cut.failed:
        raise RuntimeError(f"the scan failed on {(report.failed or cut.failed)[:3]}")
    return {
        "cut_scan_s": cut.elapsed_s, "windows_alone_cost": report.elapsed_s / cut.elapsed_s,
        "size": size, "files": report.added, "audio_s": report.audio_seconds, "scan_s": report.elapsed_s,
        "x_realtime": report.audio_seconds / report.elapsed_s, "embed_s": embed.seconds,
        "embed_x_realtime": report.audio_seconds / embed.seconds, "decode_s": decode_s,
        "rest_s": report.elapsed_s - embed.seconds - decode_s,
    }


def run(args: argparse.Namespace) -> dict:
    device = select_device(args.device)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="stemserver-index-", dir=args.workdir) as workdir:
        folder = Path(workdir) / "stems"
        folder.mkdir()
        paths = write_stems(folder, args.files, args.seconds, args.rate, args.channels)
        decode = decode_seconds(paths)
        rows = [run_size(size, folder, Path(workdir), device, sum(decode.values())) for size in args.sizes]
    audio_per_format = {ext: args.seconds * sum(p.suffix == f".{ext}" for p in paths) for ext in decode}
    return {
        "device": str(device), "threads": torch.get_num_threads(), "files": args.files, "seconds": args.seconds,
        "rate": args.rate, "channels": args.channels, "cpus": os.cpu_count(),
        "load_average": [load_before, os.getloadavg()[0]],
        "decode_x_realtime": {ext: audio_per_format[ext] / s for ext, s in decode.items()}, "rows": rows,
    }


def print_table(result: dict) -> None:
    decode = ", ".join(f"{ext} {x:.0f}x" for ext, x in result["decode_x_realtime"].items())
    print(f"device {result['device']}, {result['threads']} threads; {result['files']} files of "
          f"{result['seconds']:.0f} s at {result['rate']} Hz, {result['channels']} channels; "
          f"decode + resample alone: {decode} realtime; {result['cpus']} CPUs, load average "
          f"{result['load_average'][0]:.1f} before, {result['load_average'][1]:.1f} after")
    print(f"{'size':6} {'audio s':>8} {'scan s':>7} {'x realtime':>10} {'embed s':>8} {'embed x rt':>10} "
          f"{'decode s':>8} {'rest s':>7} {'embed %':>7} {'cut s':>7} {'cut x':>6}")
    for r in result["rows"]:
        print(f"{r['size']:6} {r['audio_s']:8.0f} {r['scan_s']:7.1f} {r['x_realtime']:10.1f} {r['embed_s']:8.1f} "
              f"{r['embed_x_realtime']:10.1f} {r['decode_s']:8.2f} {r['rest_s']:7.2f} "
              f"{100 * r['embed_s'] / r['scan_s']:7.1f} {r['cut_scan_s']:7.1f} {r['windows_alone_cost']:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(ENCODER_PRESETS), choices=list(ENCODER_PRESETS))
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=int, default=44_100)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--workdir", type=Path, help="where the generated stems and libraries go")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    set_threads(args.threads)
    result = run(args)
    emit(result, args.json, print_table)


if __name__ == "__main__":
    main()
