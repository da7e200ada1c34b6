"""Build the demo library that ships with stemserver (stemserver/assets/demo/) from the open corpus.

    python tools/make_demo_library.py CORPUS... (--track ID... | --cache DIR [--split test] --tracks N...)
                                      [--out DIR] [--seconds S] [--codec opus|vorbis]
                                      [--compression-level L] [--budget-mb MB] [--any-licence]

Each CORPUS is a folder written by `stemserver corpus build`, classical (music21 scores) or
`--style popular` (songs of stemserver's own generator), in MoisesDB layout with its manifest.jsonl.
The tracks are named with --track, or chosen from one split of a cache prepared from those corpora
(its splits.json; by default the held-out test split, songs and works the model never trained on):
N tracks of distinct works of each CORPUS (`--tracks N` for every corpus, or one count per CORPUS
in their order) with 3 stems or more besides sound effects, the first in the cache's order but each
genre (popular) or composer (classical) once before any twice, taken in turn from each corpus; the
first track (of the first CORPUS, where one has them) whose bass and drums both sound in the last 8 s
of its excerpt leads (the first query asks for its bass). Only tracks whose every sound may ship with
stemserver are taken: the project's own synthesisers (MIT) and the MIT, CC0 and public-domain
soundfonts and drum kits (docs/corpus.md lists each source's licence); `--any-licence` lifts that.

Every stem of a track that sounds in the first S seconds is encoded, mono at the corpus's 16 kHz,
to Ogg Opus (or Vorbis), and so is one mix of them with ONE part left out, the part a new user is
asked to find first (the first query `stemserver serve` prints asks for the first mix's part):

    OUT/stems/<family>/<work>-<instrument>.opus   the folder names the instrument family, as in a
                                                  sample library (<work>: the song id, or the
                                                  classical work and variant)
    OUT/mixes/<work>.opus                         the sum of the track's other stems, to query with
    OUT/demo.json                                 every file's kind, track, path, work, instrument
                                                  labels, source and licence

The part left out is a clearly audible one in the mix's last 8 s (the window a query reads), the only
stem of its family in the track, drawn from the families a producer asks for (bass, drums, piano,
guitar, leads, strings...) in turn, so that the mixes ask for different families. A mix entry has
`missing` (that stem's path, labels and family), `contains` (the paths of the stems summed into it),
`labels` (the coarse labels of those stems) and `gain` (the mix is gain x their sum: 1, or less where
the sum would peak over 0.99).

The shipped demo was built from the mixed corpus of docs/corpus.md (popular: `--limit 500`, whole
songs; classical: `--limit 240 --seconds 30`; `stemserver prepare moisesdb CORPUS_ROOT CACHE`) with

    python tools/make_demo_library.py CORPUS_ROOT/popular CORPUS_ROOT/classical --cache CACHE \
        --tracks 10 6 --seconds 30

The folder is written beside OUT and replaces it only once complete, within the size budget and
within 100 stems (a query returns at most 100, and the demo checks rank the whole pool); otherwise
the build stops, says what to change, and leaves OUT as it was. Exit codes: 0 ok, 1 an error the
message explains, 2 wrong usage.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from stemserver import audio
from stemserver.defaults import BUNDLED_DEMO
from stemserver.demo import MANIFEST, MIXES, STEMS
from stemserver.errors import StemserverError
from stemserver.server.protocol import MAX_K
from stemserver.window import QUERY_SECONDS
from stemserver_training.cache import open_cache
from stemserver_training.corpus import layout
from stemserver_training.datasets import SPLITS, Track, read_moisesdb

SOUNDFONT = "FluidR3_GM.sf2"
CLASSICAL_SOURCE = ("music21 corpus score (a public-domain work), rendered with FluidSynth and the FluidR3_GM "
                    "soundfont")
CLASSICAL_LICENCE = "MIT"  # FluidR3_GM's; the scores are public domain
GENERATOR = ("a song arranged, rendered, produced and mixed by stemserver's popular-music generator "
             "(stemserver_training.corpus.popular, MIT)")
SOURCE = ("stemserver's open corpus (docs/corpus.md): music21 scores rendered with FluidSynth and the FluidR3_GM "
          "soundfont, and songs of stemserver's popular-music generator; each file names its own source and licence")
SHAREABLE = frozenset({"MIT", "CC0", "public domain"})  # licences that may ship inside an MIT package
CODECS = {"opus": ("OPUS", ".opus"), "vorbis": ("VORBIS", ".ogg")}  # soundfile subtype, file extension
# about 36 and 45 kbit/s for mono 16 kHz: the 100-stem limit, not the size budget, bounds the demo, so the budget
# goes to the cymbals and drums of popular songs (0.9 made about 26 kbit/s of a popular mix)
COMPRESSION = {"opus": 0.85, "vorbis": 0.6}
BUDGET_MB = 20.0
MAX_STEMS = MAX_K  # benchmarks/retrieval.py --demo and the outside demo check ask for the whole pool at once
MIX_PEAK = 0.99  # a mix louder than this is scaled down to it, never clipped
SILENT_DB = -50.0  # a stem whose peak in the excerpt is this far under the track's loudest is left out
AUDIBLE_DB = -20.0  # a part left out of the mix has at least this RMS, relative to all stems, in the query window
MIN_STEMS = 3  # a track chosen from a split has this many stems besides sound effects: its mix keeps two or more
# The families a first query asks for, in the order they are first asked (then in turn, least asked first).
ASKED = ("bass", "drums", "piano", "guitar", "synth lead", "strings", "brass", "reed", "organ", "pipe",
         "chromatic percussion")


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


@dataclass(frozen=True)
class Corpus:
    """One corpus folder: its manifest records and its tracks, by track id."""

    root: Path
    records: dict[str, dict]
    tracks: dict[str, Track]

    @classmethod
    def open(cls, root: Path) -> Corpus:
        records = layout.read_manifest(root)
        if not records:
            raise DemoError(f"{root} has no {layout.MANIFEST}: is it a folder written by `stemserver corpus build`?")
        return cls(root, records, {track.name: track for track in read_moisesdb(root)})


@dataclass(frozen=True)
class _Stem:
    name: str  # the corpus stem's name, "<stemName>/<source id>"
    family: str  # the folder under stems/
    labels: tuple[str, ...]
    samples: np.ndarray
    source: str
    licence: str


def select_tracks(corpora: list[Corpus], track_ids: list[str] | None, cache: Path | None, split: str,
                  counts: list[int] | None, any_licence: bool = False, seconds: float | None = None) -> list[str]:
    """The tracks to ship: the ones named, in their order; or `counts[i]` tracks of distinct works of
    corpora[i] in `split` of `cache` (in the cache's order, each genre or composer once before any
    twice), taken in turn from each corpus, led by the first (of the first corpus if it can) whose bass
    and drums sound in the query window of its first `seconds`."""
    if track_ids:
        for name in track_ids:
            corpus = _corpus_of(corpora, name)
            if not any_licence and (refused := _unshareable(corpus.records[name])):
                raise DemoError(f"track {name} plays {refused}, which may not ship with stemserver: choose another "
                                "track, or pass --any-licence for a demo kept to yourself")
        return list(dict.fromkeys(track_ids))
    in_split = [track.name for track in open_cache(cache).tracks if track.split == split]
    chosen = []
    for corpus, count in zip(corpora, counts):
        usable, works, refused = [], set(), 0
        for name in in_split:
            record = corpus.records.get(name)
            if record is None or record.get("type") != "track" or \
                    sum(_family(stem) != "sound effects" for stem in record.get("stems", ())) < MIN_STEMS:
                continue
            if not any_licence and _unshareable(record):
                refused += 1
                continue
            if _work(record) not in works:
                usable.append(name)
                works.add(_work(record))
        if len(usable) < count:
            left_out = (f" ({refused} more left out for their licences: --any-licence takes them)" if refused else "")
            raise DemoError(f"the {split} split of {cache} has {len(usable)} track(s) of distinct works with "
                            f"{MIN_STEMS} stems or more besides sound effects from {corpus.root}{left_out}; {count} "
                            "were asked for: ask for fewer with --tracks")
        chosen.append(_varied(usable, count, corpus.records))
    order = [taken[turn] for turn in range(max(counts)) for taken in chosen if turn < len(taken)]
    # The printed first query sends the first mix and asks for its bass (ASKED's first): lead with a track whose
    # bass and drums both sound in the window a query reads, so that the mix it sends has a groove; the first
    # CORPUS's tracks are tried first.
    def grooves(name: str) -> bool:
        corpus = _corpus_of(corpora, name)
        return _grooves(_load_stems(corpus.tracks[name], corpus.records[name], seconds)[0])

    lead = next((name for taken in chosen for name in taken if grooves(name)), order[0])
    return [lead, *(name for name in order if name != lead)]


def _varied(names: list[str], count: int, records: dict[str, dict]) -> list[str]:
    """The first `count` of `names`, taking each genre (popular) or composer (classical) once before any twice."""
    taken, times, level = [], Counter(), 1
    while len(taken) < count:
        for name in names:
            kind = records[name].get("genre") or records[name].get("composer")
            if len(taken) < count and name not in taken and times[kind] < level:
                taken.append(name)
                times[kind] += 1
        level += 1
    return taken


def _family(stem: dict) -> str:
    """A manifest stem's coarse label ("sound effects"), or its stem name."""
    return stem["label_path"][0] if stem.get("label_path") else stem.get("stem_name", "").replace("_", " ")


def build(corpora: list[Corpus], out: Path, track_ids: list[str], encoding: Encoding, budget_bytes: int,
          max_stems: int = MAX_STEMS) -> dict:
    """Write the demo folder for `track_ids`; returns its manifest."""
    partial = out.parent / f".{out.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    manifest = {"source": SOURCE, "licences": [], "sample_rate": audio.SAMPLE_RATE, "codec": encoding.codec,
                "compression_level": encoding.compression_level, "files": [], "left_out": []}
    total, taken, asked = 0, set(), Counter()
    try:
        for done, name in enumerate(track_ids):
            corpus = _corpus_of(corpora, name)
            if name not in corpus.tracks or not layout.is_complete(corpus.root / name):
                raise DemoError(f"track {name} is not complete in {corpus.root}: wait for the corpus build to "
                                "finish it")
            entries, left_out = _write_track(partial, corpus.tracks[name], corpus.records[name], encoding, taken,
                                             asked)
            manifest["files"] += entries
            manifest["left_out"] += left_out
            total += sum(entry["bytes"] for entry in entries)
            if total > budget_bytes:
                raise DemoError(f"the demo is over its {budget_bytes / 1e6:g} MB budget after {done + 1} of "
                                f"{len(track_ids)} tracks ({total / 1e6:.1f} MB): ship fewer tracks, shorter ones "
                                "(--seconds) or compress more (--compression-level)")
            stems = sum(entry["kind"] == "stem" for entry in manifest["files"])
            if stems > max_stems:
                raise DemoError(f"the demo would hold {stems} stems after {done + 1} of {len(track_ids)} tracks, over "
                                f"{max_stems}: a query returns at most {max_stems} stems and the demo checks rank the "
                                "whole pool in one query; ship fewer tracks (--tracks)")
        manifest["licences"] = sorted({entry["licence"] for entry in manifest["files"] if entry["kind"] == "stem"})
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


def _write_track(folder: Path, track: Track, record: dict, encoding: Encoding, taken: set[str],
                 asked: Counter) -> tuple[list[dict], list[dict]]:
    """Encode the stems of one track that sound in the excerpt and their mix without one of them (under
    names not in `taken`; `asked` counts the families left out so far); returns their manifest entries
    and the stems left out as silent."""
    popular = record.get("style") == "popular"
    if popular:
        base = _slug(record["track_id"])
        about = {"style": "popular", "work": record["track_id"],
                 "title": f"{record['genre']} song, {record['bpm']:g} BPM, {record['key']}",
                 "genre": record["genre"], "bpm": record["bpm"], "key": record["key"]}
    else:
        work = _slug(re.sub(r"\.\w+$", "", record["work_id"]))
        base = f"{work}-v{record['variant']}"
        about = {"style": "classical", "work": record["work_id"], "title": record["title"],
                 "composer": record["composer"], "variant": record["variant"]}
    about["track"] = track.name
    stems, left_out = _load_stems(track, record, encoding.seconds)
    missing = stems[_part_left_out(stems, asked)]
    asked[_coarse(missing)] += 1

    entries, paths = [], {}
    for s in stems:
        instrument = _slug(s.labels[-1] if s.labels else s.family)
        path, size = encoding.write(folder, _unique(f"{STEMS}/{s.family}/{base}-{instrument}", taken), s.samples)
        paths[s.name] = path
        entries.append({"path": path, "kind": "stem", **about, "stem": s.name, "labels": list(s.labels),
                        "source": s.source, "licence": s.licence,
                        "seconds": round(len(s.samples) / audio.SAMPLE_RATE, 3), "bytes": size})
    mixed = [s for s in stems if s is not missing]
    mix = np.zeros(max(len(s.samples) for s in mixed), np.float32)
    for s in mixed:
        mix[: len(s.samples)] += s.samples
    peak = float(np.abs(mix).max())
    gain = MIX_PEAK / peak if peak > MIX_PEAK else 1.0
    path, size = encoding.write(folder, _unique(f"{MIXES}/{base}", taken), mix * gain)
    sounds = list(dict.fromkeys(s.source for s in mixed))
    entries.insert(0, {
        "path": path, "kind": "mix", **about, "stem": None,
        "labels": sorted({s.labels[0] for s in mixed if s.labels}),
        "missing": {"path": paths[missing.name], "labels": list(missing.labels), "family": missing.family},
        "contains": [paths[s.name] for s in mixed], "gain": round(gain, 6),
        "source": sounds[0] if len(sounds) == 1 else _mix_source(sounds),
        "licence": "; ".join(sorted({s.licence for s in mixed})),
        "seconds": round(len(mix) / audio.SAMPLE_RATE, 3), "bytes": size})
    return entries, left_out


def _load_stems(track: Track, record: dict, seconds: float | None) -> tuple[list[_Stem], list[dict]]:
    """The stems of one track that sound in its first `seconds`, and those left out as silent there."""
    stems, left_out = [], []
    for stem in track.stems:
        samples, _ = audio.load(stem.sources[0])
        samples = samples[: int(seconds * audio.SAMPLE_RATE)] if seconds else samples
        source, licence = _stem_source(record, stem.sources[0].stem)
        stems.append(_Stem(stem.name, _slug(stem.name.split("/")[0]), stem.label_path, samples, source, licence))
    loudest = max(float(np.abs(s.samples).max(initial=0.0)) for s in stems)
    for s in list(stems):
        if float(np.abs(s.samples).max(initial=0.0)) <= loudest * 10 ** (SILENT_DB / 20):
            stems.remove(s)
            left_out.append({"track": track.name, "stem": s.name, "reason": "silent in the excerpt"})
    if len(stems) < 2:
        raise DemoError(f"track {track.name} has {len(stems)} stem(s) that sound in its first {seconds:g} s: a mix "
                        "without one part needs two; choose another track")
    return stems, left_out


def _part_left_out(stems: list[_Stem], asked: Counter) -> int:
    """The stem to leave out of the mix: audible in the query window, the only one of its family, of
    the families a producer asks for, the least asked so far first (then in ASKED's order)."""
    levels = _window_levels(stems)
    families = Counter(s.family for s in stems)
    audible = [i for i in range(len(stems)) if _audible(levels, i)]
    candidates = [i for i in audible if _coarse(stems[i]) in ASKED and families[stems[i].family] == 1] or \
        [i for i in audible if _coarse(stems[i]) in ASKED] or audible or list(range(len(stems)))
    return min(candidates, key=lambda i: (asked[_coarse(stems[i])],
                                          ASKED.index(_coarse(stems[i])) if _coarse(stems[i]) in ASKED else len(ASKED),
                                          -levels[i]))


def _grooves(stems: list[_Stem]) -> bool:
    """True when a bass and drums both sound clearly in the query window."""
    levels = _window_levels(stems)
    return {"bass", "drums"} <= {_coarse(s) for i, s in enumerate(stems) if _audible(levels, i)}


def _window_levels(stems: list[_Stem]) -> list[float]:
    """Each stem's RMS in the last QUERY_SECONDS (the window a query reads), then that of all of them."""
    window = int(QUERY_SECONDS * audio.SAMPLE_RATE)
    length = max(len(s.samples) for s in stems)
    tail = [np.pad(s.samples, (0, length - len(s.samples)))[-window:] for s in stems]
    return [_rms(t) for t in tail] + [_rms(np.sum(tail, axis=0))]


def _audible(levels: list[float], i: int) -> bool:
    return levels[i] >= levels[-1] * 10 ** (AUDIBLE_DB / 20)


def _coarse(stem: _Stem) -> str:
    return stem.labels[0] if stem.labels else stem.family


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0


def _stem_source(record: dict, source_id: str) -> tuple[str, str]:
    """Where one stem's sound comes from, and its licence."""
    if record.get("style") != "popular":
        return CLASSICAL_SOURCE, CLASSICAL_LICENCE
    stem = next((s for s in record["stems"] if s.get("id") == source_id), None)
    if stem is None:
        raise DemoError(f"stem {source_id} of track {record['track_id']} is not in the corpus's {layout.MANIFEST}: "
                        "rebuild that track")
    timbre = stem.get("timbre") or {}
    kind, name, licence = timbre.get("kind"), timbre.get("name"), timbre.get("licence")
    if kind == "synth":
        return f"{GENERATOR}, played by its own {name} synthesiser", "MIT"
    what = {"soundfont": f"the {name} soundfont", "drumkit": f"the Hydrogen drum kit {name}"}.get(kind)
    if what is None or not licence:
        raise DemoError(f"stem {source_id} of track {record['track_id']} has no known source or licence in the "
                        f"corpus's {layout.MANIFEST} ({timbre!r}): the demo cannot say what it ships")
    package = " ".join(str(part) for part in ("Debian", timbre.get("package"), timbre.get("version")) if part)
    return f"{GENERATOR}, played with {what} ({package}, {licence})", licence


def _mix_source(sounds: list[str]) -> str:
    """One source line for a mix of popular stems: the generator once, then every sound it played."""
    played = [re.sub(rf"^{re.escape(GENERATOR)}, ", "", sound) for sound in sounds]
    return f"{GENERATOR}; {'; '.join(played)}"


def _corpus_of(corpora: list[Corpus], name: str) -> Corpus:
    for corpus in corpora:
        record = corpus.records.get(name)
        if record is not None and record.get("type") == "track":
            if record.get("style") != "popular" and Path(record.get("soundfont", "")).name != SOUNDFONT:
                raise DemoError(f"track {name} was rendered with {record.get('soundfont')!r}, not {SOUNDFONT}: the "
                                "demo's licence line would be wrong; rebuild the corpus with FluidR3_GM or check that "
                                "soundfont's licence and change CLASSICAL_SOURCE")
            return corpus
    roots = ", ".join(str(corpus.root) for corpus in corpora)
    raise DemoError(f"track {name} has no track record in the {layout.MANIFEST} of {roots}: is it a track of these "
                    "corpora, and has the build finished it?")


def _work(record: dict) -> str:
    """What tracks of one piece share: a classical work's variants are one work, each song its own."""
    return record["track_id"] if record.get("style") == "popular" else record["work_id"]


def _unshareable(record: dict) -> str | None:
    """The sounds of a track whose licence keeps them out of a demo that ships with stemserver, or None."""
    if record.get("style") != "popular":
        return None
    refused = sorted({f"{stem['timbre'].get('name')} ({stem['timbre'].get('licence') or 'unknown licence'})"
                      for stem in record.get("stems", ()) if (stem.get("timbre") or {}).get("kind") != "synth"
                      and stem["timbre"].get("licence") not in SHAREABLE})
    return ", ".join(refused) or None


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
    parser.add_argument("corpus", type=Path, nargs="+", metavar="CORPUS",
                        help="a folder built by `stemserver corpus build` (classical or --style popular)")
    parser.add_argument("--track", action="append", metavar="ID", help="a track id to ship (repeat for several)")
    parser.add_argument("--cache", type=Path, metavar="DIR", help="a cache prepared from the corpora, whose "
                        "splits.json chooses the tracks (with --tracks)")
    parser.add_argument("--split", choices=SPLITS, default="test", help="the split to take tracks from (default: "
                        "test, held out from stemserver_training)")
    parser.add_argument("--tracks", type=int, nargs="+", metavar="N",
                        help="ship the first N tracks of distinct works of the split from each CORPUS: one N for "
                        "all, or one per CORPUS")
    parser.add_argument("--out", type=Path, default=BUNDLED_DEMO, help=f"output folder (default: {BUNDLED_DEMO})")
    parser.add_argument("--seconds", type=float, metavar="S", help="keep only the first S seconds of each track "
                        "(default: whole tracks)")
    parser.add_argument("--codec", choices=sorted(CODECS), default="opus", help="Ogg codec (default: opus)")
    parser.add_argument("--compression-level", type=float, metavar="L", help="libsndfile's compression level, 0 "
                        "(largest, best) to 1 (smallest); default: " +
                        ", ".join(f"{codec} {level}" for codec, level in COMPRESSION.items()))
    parser.add_argument("--budget-mb", type=float, default=BUDGET_MB, metavar="MB",
                        help=f"largest total size allowed, in MB (default: {BUDGET_MB:g})")
    parser.add_argument("--any-licence", action="store_true", help="also ship tracks that play GPL or CC-BY(-SA) "
                        "sounds (default: only MIT, CC0 and public-domain ones, which may ship with stemserver)")
    args = parser.parse_args(argv)
    if bool(args.track) == (args.cache is not None):
        parser.error("name the tracks with --track, or choose them with --cache DIR --tracks N (not both)")
    if args.cache is not None:
        if not args.tracks or min(args.tracks) < 1:
            parser.error("--cache needs --tracks N (N >= 1)")
        if len(args.tracks) not in (1, len(args.corpus)):
            parser.error(f"--tracks takes one count, or one per CORPUS ({len(args.corpus)}), not {len(args.tracks)}")
        args.tracks = args.tracks * len(args.corpus) if len(args.tracks) == 1 else args.tracks
    elif args.tracks:
        parser.error("--tracks goes with --cache")
    if args.compression_level is not None and not 0 <= args.compression_level <= 1:
        parser.error("--compression-level must be between 0 and 1")
    if args.seconds is not None and args.seconds <= 0:
        parser.error("--seconds must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    level = COMPRESSION[args.codec] if args.compression_level is None else args.compression_level
    try:
        corpora = [Corpus.open(root) for root in args.corpus]
        track_ids = select_tracks(corpora, args.track, args.cache, args.split, args.tracks, args.any_licence,
                                  args.seconds)
        manifest = build(corpora, args.out, track_ids, Encoding(args.codec, level, args.seconds),
                         int(args.budget_mb * 1e6))
    except StemserverError as e:
        print(f"make_demo_library: error: {e}", file=sys.stderr)
        return 1
    files = manifest["files"]
    total = sum(f["bytes"] for f in files) + (args.out / MANIFEST).stat().st_size
    print(f"{args.out}: {len(track_ids)} track(s), {sum(f['kind'] == 'stem' for f in files)} stems and "
          f"{sum(f['kind'] == 'mix' for f in files)} mixes, {total / 1e6:.2f} MB of a {args.budget_mb:g} MB budget; "
          f"licences: {', '.join(manifest['licences'])}")
    for f in files:
        if f["kind"] == "mix":
            print(f"  {f['title']} ({f['style']}, {f['work']}): {', '.join(f['labels'])}; left out: "
                  f"{f['missing']['family']} ({f['missing']['path']})")
    for f in manifest["left_out"]:
        print(f"  not shipped: {f['stem']} of {f['track']} ({f['reason']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
