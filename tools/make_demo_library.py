"""Build the demo library that ships with stemserver (stemserver/assets/demo/) from the open corpus.

    python tools/make_demo_library.py CORPUS (--track ID... | --cache DIR [--split test] --tracks N)
                                      [--out DIR] [--seconds S] [--codec opus|vorbis]
                                      [--compression-level L] [--budget-mb MB]

CORPUS is a folder written by `stemserver corpus build` (MoisesDB layout, with its manifest.jsonl).
The tracks are named with --track, or are the first N tracks of distinct works in one split of a
cache prepared from that corpus (its splits.json; by default the held-out test split, works the
model never trained on). Every stem of each track, and their mix (the stems summed), is encoded,
mono at the corpus's 16 kHz, to Ogg Opus (or Vorbis):

    OUT/stems/<stem name>/<work>-v<variant>-<instrument>.opus   the folder names the instrument, as
                                                                in a sample library
    OUT/mixes/<work>-v<variant>.opus                            the stems summed, to query with
    OUT/demo.json                                               every file's work, track, stem,
                                                                instrument labels, source and licence

The folder is written beside OUT and replaces it only once complete and within the size budget;
over the budget the build stops, says what to change, and leaves OUT as it was. Exit codes: 0 ok,
1 an error the message explains, 2 wrong usage.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from stemserver import audio
from stemserver.defaults import BUNDLED_DEMO
from stemserver.demo import MANIFEST, MIXES, STEMS
from stemserver.errors import StemserverError
from stemserver_training.cache import open_cache
from stemserver_training.corpus import layout
from stemserver_training.datasets import SPLITS, Track, read_moisesdb

SOUNDFONT = "FluidR3_GM.sf2"
SOURCE = ("music21 corpus score (a public-domain work), rendered with FluidSynth and the FluidR3_GM soundfont; "
          "MIT licence")
CODECS = {"opus": ("OPUS", ".opus"), "vorbis": ("VORBIS", ".ogg")}  # soundfile subtype, file extension
COMPRESSION = {"opus": 0.9, "vorbis": 0.6}  # about 31 and 45 kbit/s for mono 16 kHz
BUDGET_MB = 20.0
MIX_PEAK = 0.99  # a mix louder than this is scaled down to it, never clipped


class DemoError(StemserverError):
    """The demo library cannot be built as asked."""


@dataclass(frozen=True)
class Encoding:
    codec: str
    compression_level: float
    seconds: float | None  # keep only the first S seconds of each track

    def write(self, folder: Path, name: str, samples: np.ndarray) -> tuple[str, int]:
        """Encode `samples` to folder/name plus the codec's extension; returns that path relative to
        `folder` and the file's size."""
        subtype, extension = CODECS[self.codec]
        path = folder / f"{name}{extension}"
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, samples, audio.SAMPLE_RATE, format="OGG", subtype=subtype,
                        compression_level=self.compression_level)
        return path.relative_to(folder).as_posix(), path.stat().st_size


def select_tracks(records: dict[str, dict], track_ids: list[str] | None, cache: Path | None, split: str,
                  count: int | None) -> list[str]:
    """The tracks to ship: the ones named, or the first `count` of distinct works in `split` of `cache`."""
    if track_ids:
        for name in track_ids:
            _record(records, name)
        return list(dict.fromkeys(track_ids))
    chosen, works = [], set()
    in_split = [track.name for track in open_cache(cache).tracks if track.split == split]
    for name in in_split:
        work = _record(records, name)["work_id"]
        if work not in works:
            chosen.append(name)
            works.add(work)
        if len(chosen) == count:
            return chosen
    raise DemoError(f"the {split} split of {cache} has {len(in_split)} track(s) of {len(works)} distinct work(s); "
                    f"{count} were asked for: ask for fewer with --tracks")


def build(corpus: Path, out: Path, track_ids: list[str], encoding: Encoding, budget_bytes: int) -> dict:
    """Write the demo folder for `track_ids`; returns its manifest."""
    records = layout.read_manifest(corpus)
    wanted = set(track_ids)
    tracks = {track.name: track for track in read_moisesdb(corpus) if track.name in wanted}
    partial = out.parent / f".{out.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    manifest = {"source": SOURCE, "sample_rate": audio.SAMPLE_RATE, "codec": encoding.codec,
                "compression_level": encoding.compression_level, "files": []}
    total, taken = 0, set()
    try:
        for done, name in enumerate(track_ids):
            if name not in tracks or not layout.is_complete(corpus / name):
                raise DemoError(f"track {name} is not complete in {corpus}: wait for the corpus build to finish it")
            for entry in _write_track(partial, tracks[name], _record(records, name), encoding, taken):
                manifest["files"].append(entry)
                total += entry["bytes"]
            if total > budget_bytes:
                raise DemoError(f"the demo is over its {budget_bytes / 1e6:g} MB budget after {done + 1} of "
                                f"{len(track_ids)} tracks ({total / 1e6:.1f} MB): ship fewer tracks, shorter ones "
                                "(--seconds) or compress more (--compression-level)")
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        if total + (partial / MANIFEST).stat().st_size > budget_bytes:
            raise DemoError(f"the demo is over its {budget_bytes / 1e6:g} MB budget with its manifest: ship fewer "
                            "tracks")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    previous = out.parent / f".{out.name}.previous"
    if out.exists():
        out.rename(previous)
    partial.rename(out)
    shutil.rmtree(previous, ignore_errors=True)
    return manifest


def _write_track(folder: Path, track: Track, record: dict, encoding: Encoding, taken: set[str]) -> list[dict]:
    """Encode the stems of one track and their mix (under names not in `taken`); returns their manifest entries."""
    work = _slug(re.sub(r"\.\w+$", "", record["work_id"]))
    base = f"{work}-v{record['variant']}"
    about = {"work": record["work_id"], "title": record["title"], "composer": record["composer"],
             "track": track.name, "variant": record["variant"], "source": SOURCE}
    entries, mix = [], np.zeros(0, np.float32)
    for stem in track.stems:
        samples, _ = audio.load(stem.sources[0])
        samples = samples[: int(encoding.seconds * audio.SAMPLE_RATE)] if encoding.seconds else samples
        mix = _summed(mix, samples)
        stem_name = stem.name.split("/")[0]
        instrument = _slug(stem.label_path[-1] if stem.label_path else stem_name)
        name = _unique(f"{STEMS}/{_slug(stem_name)}/{base}-{instrument}", taken)
        path, size = encoding.write(folder, name, samples)
        entries.append({"path": path, "kind": "stem", **about, "stem": stem.name,
                        "labels": list(stem.label_path), "seconds": round(len(samples) / audio.SAMPLE_RATE, 3),
                        "bytes": size})
    peak = float(np.abs(mix).max())
    mix = mix * (MIX_PEAK / peak) if peak > MIX_PEAK else mix
    path, size = encoding.write(folder, _unique(f"{MIXES}/{base}", taken), mix)
    labels = sorted({stem.label_path[0] for stem in track.stems if stem.label_path})
    entries.insert(0, {"path": path, "kind": "mix", **about, "stem": None,
                       "labels": labels, "seconds": round(len(mix) / audio.SAMPLE_RATE, 3), "bytes": size})
    return entries


def _record(records: dict[str, dict], name: str) -> dict:
    record = records.get(name)
    if record is None or record.get("type") != "track":
        raise DemoError(f"track {name} has no track record in the corpus's {layout.MANIFEST}: is it a track of "
                        "this corpus, and has the build finished it?")
    if Path(record.get("soundfont", "")).name != SOUNDFONT:
        raise DemoError(f"track {name} was rendered with {record.get('soundfont')!r}, not {SOUNDFONT}: the demo's "
                        "licence line would be wrong; rebuild the corpus with FluidR3_GM or check that soundfont's "
                        "licence and change SOURCE")
    return record


def _summed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The sum of two signals, as long as the longer one (a track's stems are equally long in the corpus)."""
    out = np.zeros(max(len(a), len(b)), np.float32)
    out[: len(a)] += a
    out[: len(b)] += b
    return out


def _slug(text: str) -> str:
    """A file name part: lower-case letters and digits joined by '-' ("bach/bwv66.6" -> "bach-bwv66-6")."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def _unique(name: str, taken: set[str]) -> str:
    """`name`, or `name-2`, `name-3`... when two files would get the same name."""
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    taken.add(candidate)
    return candidate


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Build stemserver's demo library from the open corpus.")
    parser.add_argument("corpus", type=Path, metavar="CORPUS", help="a folder built by `stemserver corpus build`")
    parser.add_argument("--track", action="append", metavar="ID", help="a track id to ship (repeat for several)")
    parser.add_argument("--cache", type=Path, metavar="DIR", help="a cache prepared from CORPUS, whose splits.json "
                        "chooses the tracks (with --tracks)")
    parser.add_argument("--split", choices=SPLITS, default="test", help="the split to take tracks from (default: "
                        "test, held out from stemserver_training)")
    parser.add_argument("--tracks", type=int, metavar="N",
                        help="ship the first N tracks of distinct works of the split")
    parser.add_argument("--out", type=Path, default=BUNDLED_DEMO, help=f"output folder (default: {BUNDLED_DEMO})")
    parser.add_argument("--seconds", type=float, metavar="S", help="keep only the first S seconds of each track "
                        "(default: whole tracks)")
    parser.add_argument("--codec", choices=sorted(CODECS), default="opus", help="Ogg codec (default: opus)")
    parser.add_argument("--compression-level", type=float, metavar="L", help="libsndfile's compression level, 0 "
                        "(largest, best) to 1 (smallest); default: " +
                        ", ".join(f"{codec} {level}" for codec, level in COMPRESSION.items()))
    parser.add_argument("--budget-mb", type=float, default=BUDGET_MB, metavar="MB",
                        help=f"largest total size allowed, in MB (default: {BUDGET_MB:g})")
    args = parser.parse_args(argv)
    if bool(args.track) == (args.cache is not None):
        parser.error("name the tracks with --track, or choose them with --cache DIR --tracks N (not both)")
    if args.cache is not None and (args.tracks is None or args.tracks < 1):
        parser.error("--cache needs --tracks N (N >= 1)")
    if args.compression_level is not None and not 0 <= args.compression_level <= 1:
        parser.error("--compression-level must be between 0 and 1")
    if args.seconds is not None and args.seconds <= 0:
        parser.error("--seconds must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    level = COMPRESSION[args.codec] if args.compression_level is None else args.compression_level
    try:
        track_ids = select_tracks(layout.read_manifest(args.corpus), args.track, args.cache, args.split, args.tracks)
        manifest = build(args.corpus, args.out, track_ids, Encoding(args.codec, level, args.seconds),
                         int(args.budget_mb * 1e6))
    except StemserverError as e:
        print(f"make_demo_library: error: {e}", file=sys.stderr)
        return 1
    files = manifest["files"]
    total = sum(f["bytes"] for f in files) + (args.out / MANIFEST).stat().st_size
    print(f"{args.out}: {len(track_ids)} track(s), {sum(f['kind'] == 'stem' for f in files)} stems and "
          f"{sum(f['kind'] == 'mix' for f in files)} mixes, {total / 1e6:.2f} MB of a {args.budget_mb:g} MB budget")
    for f in files:
        if f["kind"] == "mix":
            print(f"  {f['composer']}, {f['title']} ({f['work']}, variant {f['variant']}): {', '.join(f['labels'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
