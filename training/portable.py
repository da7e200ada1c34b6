"""Move a prepared cache to another machine in a fraction of its size: Ogg Opus shards.

A cache stores int16 PCM (32 kB per second of stem at 16 kHz). Training machines reached through a
narrow pipe (an upload limit, a slow link) are better served by Opus at high compression: about
4 kB/s at the default compression level 0.9, with a mean log-mel error of ~0.1 standard
deviations of the front end (measured on the open corpus). The packed cache trains a model; it
is not the cache to *evaluate* on, since the codec's artefacts are not in the audio a user plays.

    python -m stemserver_training.portable pack data/cache/corpus packed --max-shard-mb 60 --split train valid
    python -m stemserver_training.portable unpack packed/shard-* --into /scratch/cache

`pack` fills shards track by track up to `--max-shard-mb`, so each shard can travel on its own;
`unpack` decodes every shard it is given into one cache (the index then lists the tracks whose
stems all arrived) that `stemserver_training.cache.open_cache` and the trainer read as usual.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import soundfile

from stemserver.arguments import positive_float, positive_int
from stemserver.exits import EXIT_OK, run_main
from stemserver_training.cache import (
    AUDIO_DIR,
    CACHE_FORMAT,
    INDEX_FILE,
    SPLITS_FILE,
    CacheError,
    is_stored,
    read_json,
    store_stem,
    stored_stem,
    write_json,
)
from stemserver_training.datasets import SPLITS

SHARD_INDEX = "shard.json"
HEADROOM = 0.9  # each stem is encoded at this peak, so the codec's overshoot cannot clip


def pack(cache_dir: Path, out_dir: Path, *, splits: Sequence[str] = SPLITS, max_shard_bytes: int = 60 << 20,
         compression_level: float = 0.9, workers: int = 2) -> list[Path]:
    """Encode the tracks of `splits` into shards of at most `max_shard_bytes`; returns the shard folders."""
    index = read_json(cache_dir / INDEX_FILE, "build the cache first")
    split_of = read_json(cache_dir / SPLITS_FILE, "build the cache again")["splits"]
    tracks = [track for track in index["tracks"] if split_of[track["name"]] in splits]
    if not tracks:
        raise CacheError(f"{cache_dir}: no track in the splits {list(splits)}")
    staging = out_dir / "encoded"
    staging.mkdir(parents=True, exist_ok=True)
    jobs = [(cache_dir / AUDIO_DIR / stem["file"], staging / _opus_name(stem), stem, index["sample_rate"],
             compression_level) for track in tracks for stem in track["stems"]]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_encode, *zip(*jobs), chunksize=8))

    shards: list[Path] = []
    current: list[dict] = []
    size = 0
    for track in tracks:
        track_bytes = sum((staging / _opus_name(stem)).stat().st_size for stem in track["stems"])
        if track_bytes > max_shard_bytes:
            raise CacheError(f"track {track['name']!r} alone takes {track_bytes} bytes, over the shard size")
        if current and size + track_bytes > max_shard_bytes:
            shards.append(_write_shard(out_dir, len(shards), current, staging, index, split_of))
            current, size = [], 0
        current.append(track)
        size += track_bytes
    shards.append(_write_shard(out_dir, len(shards), current, staging, index, split_of))
    shutil.rmtree(staging)
    return shards


def unpack(shard_dirs: Sequence[Path], cache_dir: Path, *, workers: int = 2) -> int:
    """Decode `shard_dirs` into the cache at `cache_dir` (created, or added to after an earlier
    unpack); returns its track count."""
    audio_dir = cache_dir / AUDIO_DIR
    audio_dir.mkdir(parents=True, exist_ok=True)
    tracks, splits, sample_rate = {}, {}, None
    if (cache_dir / INDEX_FILE).is_file():
        index = read_json(cache_dir / INDEX_FILE, "unpack again into an empty folder")
        tracks, sample_rate = {track["name"]: track for track in index["tracks"]}, index["sample_rate"]
        splits = read_json(cache_dir / SPLITS_FILE, "unpack again into an empty folder")["splits"]
    found = False
    for shard in shard_dirs:
        if not (shard / SHARD_INDEX).is_file():
            continue
        found = True
        entry = read_json(shard / SHARD_INDEX, "pack it again")
        if sample_rate not in (None, entry["sample_rate"]):
            raise CacheError(f"{shard}: {entry['sample_rate']} Hz, the other shards {sample_rate} Hz")
        sample_rate = entry["sample_rate"]
        jobs = [(shard / _opus_name(stem), audio_dir, stem) for track in entry["tracks"] for stem in track["stems"]
                if not is_stored(audio_dir, _key(stem))]
        if jobs:
            with ProcessPoolExecutor(workers) as pool:
                list(pool.map(_decode, *zip(*jobs), chunksize=8))
        splits.update(entry["splits"])
        for track in entry["tracks"]:  # the decoded audio's own scale and peak, as store_stem recorded them
            tracks[track["name"]] = {**track, "stems": [{**stem, **stored_stem(audio_dir, _key(stem))}
                                                        for stem in track["stems"]]}
    if not found:
        raise CacheError(f"no shard found in {[str(s) for s in shard_dirs]} (each holds {SHARD_INDEX})")
    write_json(cache_dir / SPLITS_FILE, {"seed": None, "valid_fraction": None, "test_fraction": None, "splits": splits})
    write_json(cache_dir / INDEX_FILE,
               {"format": CACHE_FORMAT, "sample_rate": sample_rate, "tracks": list(tracks.values())})
    return len(tracks)


def _key(stem: dict) -> str:
    return stem["file"].removesuffix(".npy")


def _opus_name(stem: dict) -> str:
    return _key(stem) + ".opus"


def _gain(stem: dict) -> float:
    return HEADROOM / stem["peak"] if stem["peak"] > 0 else 1.0


def _encode(npy: Path, opus: Path, stem: dict, sample_rate: int, compression_level: float) -> None:
    samples = np.load(npy).astype(np.float32) * np.float32(stem["scale"] * _gain(stem))
    soundfile.write(opus, samples, sample_rate, format="OGG", subtype="OPUS", compression_level=compression_level)


def _decode(opus: Path, audio_dir: Path, stem: dict) -> None:
    """Decode to the stem's exact length and store it as build_cache does (its own int16 scale)."""
    decoded, _ = soundfile.read(opus, dtype="float32")
    samples = np.zeros(stem["num_samples"], dtype=np.float32)
    n = min(len(decoded), len(samples))
    samples[:n] = decoded[:n] / _gain(stem)
    store_stem(audio_dir, _key(stem), samples)


def _write_shard(out_dir: Path, number: int, tracks: list[dict], staging: Path, index: dict,
                 split_of: dict[str, str]) -> Path:
    shard = out_dir / f"shard-{number:03d}"
    shard.mkdir(parents=True, exist_ok=True)
    for track in tracks:
        for stem in track["stems"]:
            shutil.move(staging / _opus_name(stem), shard / _opus_name(stem))
    write_json(shard / SHARD_INDEX, {"sample_rate": index["sample_rate"], "tracks": tracks,
                                      "splits": {track["name"]: split_of[track["name"]] for track in tracks}})
    return shard


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stemserver_training.portable",
                                     description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    p = verbs.add_parser("pack", help="encode a cache into Opus shards")
    p.add_argument("cache_dir", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--split", nargs="+", default=list(SPLITS), choices=list(SPLITS),
                   help="splits to pack (default: all)")
    p.add_argument("--max-shard-mb", type=positive_float, default=60.0, help="shard size limit in MiB (default: 60)")
    p.add_argument("--compression-level", type=float, default=0.9, help="Opus compression, 0..1 (default: 0.9)")
    p.add_argument("--workers", type=positive_int, default=2)
    u = verbs.add_parser("unpack", help="decode shards into a cache")
    u.add_argument("shards", type=Path, nargs="+")
    u.add_argument("--into", type=Path, required=True, help="cache folder to create or add to")
    u.add_argument("--workers", type=positive_int, default=2)
    return run_main(_run, parser.parse_args(argv), "portable", errors=(CacheError,))


def _run(args: argparse.Namespace) -> int:
    if args.verb == "pack":
        shards = pack(args.cache_dir, args.out_dir, splits=args.split, max_shard_bytes=int(args.max_shard_mb * 2**20),
                      compression_level=args.compression_level, workers=args.workers)
        for shard in shards:
            print(f"{shard}\t{sum(f.stat().st_size for f in shard.iterdir()) / 2**20:.1f} MiB")
    else:
        print(f"{unpack(args.shards, args.into, workers=args.workers)} tracks in {args.into}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
