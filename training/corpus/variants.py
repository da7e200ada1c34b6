"""One variant of a work: its instrumentation, tempo, transposition, bass and drums, all seeded.

A plan is everything needed to render a track, decided before any audio exists, so that a build
is reproducible from (seed, work id, variant) alone: the same three give the same programs, the
same notes and the same ids. The ids are uuid5 names of those three, so a rebuild or a resumed
build writes to the same folders and files. Each random decision draws from its own named stream,
so a `--seconds` build is the beginning of the full build's track, not another instrumentation.
"""

from __future__ import annotations

import random
import uuid
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

from stemserver.audio import MAX_DURATION_S
from stemserver.vocabulary import DRUM_KIT_LABEL_PATH, gm_label_path
from stemserver_training.corpus.drums import drum_part
from stemserver_training.corpus.instruments import (
    BASS_RANGE,
    choose_bass_program,
    choose_programs,
    playable_transpositions,
)
from stemserver_training.corpus.midi import DRUM_CHANNEL, Note
from stemserver_training.corpus.scores import Part, Score, ScoreNote

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/stemserver/corpus")
TEMPO_FACTORS = (0.85, 1.15)
TAIL_S = 2.0  # silence kept after the last note of a whole work, for release and reverb tails
MAX_SECONDS = MAX_DURATION_S - TAIL_S  # a whole-quartet file (Beethoven op. 132, 30+ min) is cut
# here, so every stem loads with stemserver.audio.load's default length limit
BASS_KEY, DRUMS_KEY = "bass", "drums"


@dataclass(frozen=True)
class StemPlan:
    key: str  # "part0", "part1"..., "bass" or "drums": names the stem within its track
    part: str  # the score's part name ("Soprano", "Viola"), or "bass" / "drums" for added stems
    program: int | None  # General MIDI program; None for the drum kit
    label_path: tuple[str, ...]  # (family, program) from stemserver.vocabulary
    notes: tuple[Note, ...]
    source_id: str
    lowest: int | None = None  # sounding range of a score part after transposition
    highest: int | None = None

    @property
    def channel(self) -> int:
        return DRUM_CHANNEL if self.program is None else 0

    @property
    def stem_name(self) -> str:
        """MoisesDB's folder name: the family label with spaces as underscores ("synth_pad")."""
        return self.label_path[0].replace(" ", "_")


@dataclass(frozen=True)
class TrackPlan:
    track_id: str
    work_id: str
    variant: int
    seed: int
    tempo_factor: float
    quarter_bpm: float  # the opening tempo, after the tempo factor
    beat_seconds: float  # one beat of the meter (a half note in 4/2) after the tempo factor
    transposition: int  # semitones
    duration: float  # seconds of audio in every stem
    truncated: bool  # cut to --seconds (or to MAX_SECONDS) rather than the whole work
    drum_pattern: str | None
    stems: tuple[StemPlan, ...]
    skipped: tuple[tuple[str, str, str], ...]  # (key, part name, reason) of parts left out


def track_id(work_id: str, variant: int, seed: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{seed}/{work_id}/{variant}"))


def plan_track(score: Score, variant: int, seed: int, seconds: float | None, bass: bool) -> TrackPlan:
    """Decide everything about one variant of `score` (its audio comes later, from render)."""
    name = f"{seed}/{score.work.work_id}/{variant}"
    rng = random.Random(name)  # the instrumentation; velocities and drums have their own streams
    tid = track_id(score.work.work_id, variant, seed)

    transposition = rng.choice(playable_transpositions([(p.lowest, p.highest) for p in score.parts]) or [0])
    tempo_factor = round(rng.uniform(*TEMPO_FACTORS), 3)
    to_seconds = _clock(score.tempos, tempo_factor)
    quarter_bpm = score.tempos[0][1] * tempo_factor
    score_end = to_seconds(score.end)
    limit = min(seconds or MAX_SECONDS, MAX_SECONDS)
    truncated = limit < score_end
    window = limit if truncated else score_end
    duration = window if truncated else score_end + TAIL_S

    def sounding(notes: list[ScoreNote], shift: int, key: str) -> tuple[Note, ...]:
        """Notes in seconds, cut to the window, with a loudness per part and a little per note."""
        dynamics = random.Random(f"{name}/{key}")
        loudness = dynamics.uniform(70, 100)
        velocities = [max(30, min(120, round(dynamics.gauss(loudness, 8)))) for _ in notes]
        return tuple(
            Note(start=to_seconds(n.start), end=min(to_seconds(n.end), window), pitch=n.pitch + shift,
                 velocity=velocity)
            for n, velocity in zip(notes, velocities) if to_seconds(n.start) < window
        )

    def source_id(key: str) -> str:
        return str(uuid.uuid5(NAMESPACE, f"{tid}/{key}"))

    ranges = [(p.lowest + transposition, p.highest + transposition) for p in score.parts]
    programs = choose_programs(ranges, rng)
    stems, skipped = [], []
    for index, (part, program, (lowest, highest)) in enumerate(zip(score.parts, programs, ranges)):
        key = f"part{index}"
        notes = sounding(list(part.notes), transposition, key)
        if not notes:
            skipped.append((key, part.name, f"no notes in the first {window:.1f} s"))
            continue
        stems.append(StemPlan(key=key, part=part.name, program=program, label_path=tuple(gm_label_path(program)),
                              notes=notes, source_id=source_id(key), lowest=lowest, highest=highest))

    if bass:
        program = choose_bass_program(rng)
        notes = sounding(_bass_line(score.parts, transposition), 0, BASS_KEY)
        if notes:
            stems.append(StemPlan(key=BASS_KEY, part="bass", program=program,
                                  label_path=tuple(gm_label_path(program)), notes=notes,
                                  source_id=source_id(BASS_KEY)))

    pattern, hits = drum_part(score.bars, random.Random(f"{name}/{DRUMS_KEY}"))
    drum_notes = tuple(Note(start=to_seconds(h.start), end=min(to_seconds(h.end), window), pitch=h.note,
                            velocity=h.velocity) for h in hits if to_seconds(h.start) < window)
    if drum_notes:
        stems.append(StemPlan(key=DRUMS_KEY, part="drums", program=None, label_path=tuple(DRUM_KIT_LABEL_PATH),
                              notes=drum_notes, source_id=source_id(DRUMS_KEY)))

    return TrackPlan(
        track_id=tid, work_id=score.work.work_id, variant=variant, seed=seed, tempo_factor=tempo_factor,
        quarter_bpm=round(quarter_bpm, 3), beat_seconds=round(score.bars[0].beat * 60.0 / quarter_bpm, 6),
        transposition=transposition, duration=round(duration, 6), truncated=truncated,
        drum_pattern=pattern if drum_notes else None, stems=tuple(stems), skipped=tuple(skipped),
    )


def _clock(tempos: tuple[tuple[float, float], ...], factor: float) -> Callable[[float], float]:
    """Score time (quarter lengths) -> seconds, through the score's tempo changes times `factor`."""
    starts = [start for start, _ in tempos]
    seconds_per_quarter = [60.0 / (bpm * factor) for _, bpm in tempos]
    elapsed = [0.0]
    for i in range(1, len(tempos)):
        elapsed.append(elapsed[-1] + (starts[i] - starts[i - 1]) * seconds_per_quarter[i - 1])

    def to_seconds(quarters: float) -> float:
        i = max(0, bisect_right(starts, quarters) - 1)
        return elapsed[i] + (quarters - starts[i]) * seconds_per_quarter[i]

    return to_seconds


def _bass_line(parts: tuple[Part, ...], transposition: int) -> list[ScoreNote]:
    """The lowest sounding note of the score at every moment, an octave down, folded into the bass
    guitar's range: a basso seguente, so the bass plays whenever the music does, even while the
    lowest part rests (a madrigal's bass entering late, a quartet's cello pausing).
    """
    notes = sorted((n for part in parts for n in part.notes), key=lambda n: (n.start, n.pitch))
    line: list[ScoreNote] = []
    sounding: list[ScoreNote] = []
    current = None
    index = 0
    for time in sorted({n.start for n in notes} | {n.end for n in notes}):  # every note start and end
        sounding = [n for n in sounding if n.end > time]
        while index < len(notes) and notes[index].start == time:
            sounding.append(notes[index])
            index += 1
        lowest = min(sounding, key=lambda n: n.pitch, default=None)
        if lowest is None or lowest is current:
            continue  # silence, or the same note still holds the bass
        if line and line[-1].end > time:
            line[-1] = ScoreNote(line[-1].start, time, line[-1].pitch)
        line.append(ScoreNote(time, lowest.end, _fold(lowest.pitch + transposition - 12)))
        current = lowest
    return line


def _fold(pitch: int) -> int:
    while pitch < BASS_RANGE[0]:
        pitch += 12
    while pitch > BASS_RANGE[1]:
        pitch -= 12
    return pitch
