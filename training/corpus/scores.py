"""Multi-part works of the music21 corpus, reduced to what rendering needs.

Choosing works reads only music21's metadata cache (the part counts are stored there), so listing
the ~1,900 eligible works takes a couple of seconds instead of parsing 15,000 files. A work is
parsed later, in a worker, where a score that turns out to have fewer than three parts with notes
is skipped with a reason.

Everything here is in score time (quarter lengths); tempo and transposition belong to a variant.
"""

from __future__ import annotations

import fnmatch
import random
from dataclasses import dataclass
from pathlib import PurePosixPath

MIN_PARTS = 3
DEFAULT_BEATS_PER_MINUTE = 80.0
"""Tempo of a score without a metronome mark, in its own beat unit (half notes in 4/2, dotted
quarters in 6/8), so that Palestrina's 4/2 and Bach's 4/4 both move at a natural pace."""
QUARTER_BPM_RANGE = (30.0, 300.0)  # metronome marks are clamped into it (a few are typos)

# The composer of each single-composer folder, spelled one way: the files' own metadata often
# names none (most Bach chorales), spells one composer five ways (Beethoven), or names the poet
# (some Monteverdi madrigals). Other folders use the file's composer, else "Anonymous".
FOLDER_COMPOSERS = {
    "bach": "Johann Sebastian Bach",
    "beethoven": "Ludwig van Beethoven",
    "corelli": "Arcangelo Corelli",
    "handel": "George Frideric Handel",
    "haydn": "Joseph Haydn",
    "monteverdi": "Claudio Monteverdi",
    "mozart": "Wolfgang Amadeus Mozart",
    "palestrina": "Giovanni Pierluigi da Palestrina",
    "schubert": "Franz Schubert",
    "schumann_clara": "Clara Schumann",
    "schumann_robert": "Robert Schumann",
    "weber": "Carl Maria von Weber",
}

# When one score is in the corpus in several encodings (bach/bwv277.krn and .mxl), the first of
# these is kept, so the same music is not two works (which could land in two splits).
ENCODING_PREFERENCE = (".mxl", ".musicxml", ".xml", ".krn", ".abc")


class IneligibleWork(Exception):
    """This work cannot become a multitrack (too few parts with notes, unreadable score)."""


@dataclass(frozen=True)
class Work:
    """One piece of the music21 corpus, as its metadata describes it (nothing parsed yet)."""

    work_id: str  # corpus path, plus "#N" for piece N of a multi-piece file: stable across builds
    path: str
    number: str | None
    composer: str
    title: str
    parts: int
    notes: int  # notes in the score per the metadata: a measure of how long it takes to render


@dataclass(frozen=True)
class ScoreNote:
    start: float  # quarter lengths from the start of the score
    end: float
    pitch: int  # MIDI note number


@dataclass(frozen=True)
class Part:
    name: str
    notes: tuple[ScoreNote, ...]

    @property
    def lowest(self) -> int:
        return min(n.pitch for n in self.notes)

    @property
    def highest(self) -> int:
        return max(n.pitch for n in self.notes)


@dataclass(frozen=True)
class Bar:
    """One measure: where it starts, how long it really is, and its meter's beat grid."""

    start: float  # quarter lengths
    length: float  # actual length (a pickup bar is shorter than beats * beat)
    beat: float  # quarter lengths per beat
    beats: int  # beats in a full bar
    subdivisions: int  # 2 in simple meters, 3 in compound ones

    @property
    def partial(self) -> bool:
        return self.length < self.beats * self.beat - 1e-6


@dataclass(frozen=True)
class Score:
    work: Work
    parts: tuple[Part, ...]
    bars: tuple[Bar, ...]
    tempos: tuple[tuple[float, float], ...]  # (start in quarter lengths, quarter notes a minute), from 0
    tempo_marked: bool  # False: the score has no metronome mark and plays at the default tempo
    meter: str  # first time signature, e.g. "4/4"

    @property
    def end(self) -> float:
        return max(n.end for part in self.parts for n in part.notes)


def eligible_works(min_parts: int = MIN_PARTS) -> list[Work]:
    """Every work of music21's core corpus whose metadata lists at least `min_parts` parts, sorted."""
    from music21 import corpus

    def enough(parts) -> bool:
        return parts is not None and int(parts) >= min_parts

    bundle = corpus.corpora.CoreCorpus().metadataBundle.search(enough, "numberOfParts")
    encodings: dict[tuple[str, str | None], list[Work]] = {}
    for work in map(_work, bundle):
        encodings.setdefault((str(PurePosixPath(work.path).with_suffix("")), work.number), []).append(work)
    works = [min(same, key=_encoding_rank) for same in encodings.values()]
    return sorted(works, key=lambda w: w.work_id)


def _encoding_rank(work: Work) -> int:
    suffix = PurePosixPath(work.path).suffix.lower()
    return ENCODING_PREFERENCE.index(suffix) if suffix in ENCODING_PREFERENCE else len(ENCODING_PREFERENCE)


def select_works(works: list[Work], pattern: str | None, limit: int | None, seed: int) -> list[Work]:
    """Filter by a glob on work ids (e.g. "bach/*"), then take `limit` works in a seeded order.

    The order is shuffled so a small build samples every composer rather than the first 20 Bach
    chorales in file-name order; the full build is the same set either way.
    """
    if pattern:
        works = [w for w in works if fnmatch.fnmatchcase(w.work_id, pattern)]
    works = list(works)
    random.Random(f"corpus-order/{seed}").shuffle(works)
    return works[:limit] if limit is not None else works


def load_score(work: Work) -> Score:
    """Parse the work and extract its parts, bars and tempo (raises IneligibleWork)."""
    from music21 import corpus

    try:
        score = corpus.parse(work.path, number=int(work.number) if work.number else None)
    except Exception as e:  # music21 raises many types for malformed files
        raise IneligibleWork(f"music21 cannot parse it: {type(e).__name__}: {e}") from e
    all_parts = list(score.parts)
    parts, marks = [], []
    for index, part in enumerate(all_parts):
        notes, part_marks = _read_part(part)
        marks += part_marks
        if notes:
            parts.append(Part(name=(part.partName or f"part {index + 1}").strip(), notes=notes))
    if len(parts) < MIN_PARTS:
        raise IneligibleWork(f"only {len(parts)} of its {len(all_parts)} parts have pitched notes")
    end = max(n.end for part in parts for n in part.notes)
    bars = _bars(all_parts[0], end)
    return Score(work=work, parts=tuple(parts), bars=bars, tempos=_tempos(marks, bars[0].beat),
                 tempo_marked=bool(marks), meter=_first_meter(score))


def _work(entry) -> Work:
    metadata = entry.metadata
    path = PurePosixPath(entry.sourcePath)
    number = str(entry.number) if entry.number else None
    composer = metadata.composer.splitlines()[0].strip() if metadata.composer else ""
    return Work(
        work_id=str(path) + (f"#{number}" if number else ""),
        path=str(path),
        number=number,
        composer=FOLDER_COMPOSERS.get(path.parts[0]) or composer or "Anonymous",
        title=_title(metadata, path, number),
        parts=int(metadata.numberOfParts),
        notes=int(metadata.noteCount or 0),
    )


def _title(metadata, path: PurePosixPath, number: str | None) -> str:
    """Movement and title joined ('Credo: Et iterum'); the file name when both are missing or are file names."""
    names = []
    for value in (metadata.movementName, metadata.title):
        value = " ".join(str(value).split()) if value else ""
        if value and PurePosixPath(value).suffix.lower() not in {".mxl", ".xml", ".krn", ".abc", ".mid"}:
            if value not in names:
                names.append(value)
    if names:
        return ": ".join(names)
    return f"{path.stem} #{number}" if number else path.stem


def _read_part(part) -> tuple[tuple[ScoreNote, ...], list[tuple[float, float]]]:
    """The part's notes (ties merged) and its metronome marks as (offset, quarter BPM)."""
    from music21 import tempo

    flat = part.stripTies().flatten()
    marks = [(float(mark.offset), float(mark.getQuarterBPM()))
             for mark in flat.getElementsByClass(tempo.MetronomeMark) if mark.getQuarterBPM()]
    notes = []
    for element in flat.getElementsByClass(("Note", "Chord")):
        length = float(element.quarterLength)
        if length <= 0:  # grace notes have no duration of their own
            continue
        start = float(element.offset)
        notes.extend(ScoreNote(start, start + length, p.midi) for p in element.pitches)
    notes.sort(key=lambda n: (n.start, n.pitch))
    return tuple(notes), marks


def _bars(part, end: float) -> tuple[Bar, ...]:
    """The measures of the first part with the meter in force at each (4/4 when none is written)."""
    from music21 import meter

    signature = None
    bars = []
    for measure in part.getElementsByClass("Measure"):
        if measure.timeSignature is not None:
            signature = measure.timeSignature
        signature = signature or meter.TimeSignature("4/4")
        length = float(measure.duration.quarterLength)
        if length > 0:
            bars.append(_bar(float(measure.offset), length, signature))
    if not bars:  # a score without measures: a plain 4/4 grid
        common = meter.TimeSignature("4/4")
        bars = [_bar(start * 4.0, 4.0, common) for start in range(int(end // 4) + 1)]
    return tuple(bars)


def _bar(start: float, length: float, signature) -> Bar:
    beat = float(signature.beatDuration.quarterLength)
    if signature.beatDivisionCount in (2, 3):
        subdivisions = signature.beatDivisionCount
    else:  # e.g. 3/8 is one dotted-quarter beat that music21 does not divide
        subdivisions = 3 if signature.beatDuration.dots else 2
    return Bar(start=start, length=length, beat=beat, beats=max(1, int(signature.beatCount)),
               subdivisions=subdivisions)


def _tempos(marks: list[tuple[float, float]], beat: float) -> tuple[tuple[float, float], ...]:
    """The tempo map from every part's marks: one per offset (the first part's wins), from 0.

    Multi-movement files change tempo many times (Beethoven op. 74 opens with a Poco Adagio at
    35 quarters a minute and goes on Allegro): holding the first mark would play it for hours.
    """
    low, high = QUARTER_BPM_RANGE
    tempos: dict[float, float] = {}
    for offset, bpm in marks:
        tempos.setdefault(offset, min(high, max(low, bpm)))
    if 0.0 not in tempos:
        tempos[0.0] = DEFAULT_BEATS_PER_MINUTE * beat
    changes: list[tuple[float, float]] = []
    for offset, bpm in sorted(tempos.items()):
        if not changes or changes[-1][1] != bpm:
            changes.append((offset, bpm))
    return tuple(changes)


def _first_meter(score) -> str:
    from music21 import meter

    for signature in score.recurse().getElementsByClass(meter.TimeSignature):
        return signature.ratioString
    return "4/4"
