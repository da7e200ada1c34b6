"""arrange_song: a whole popular-music arrangement from a seed, and song_record, its ground truth.

Everything random comes from one random.Random seeded with (seed, index), in a fixed order, so a
song is a pure function of its arguments. The draws: the genre (unless given), the groove (and so
the meter), tempo, swing, progressions and mode, tonic, length and form, which parts the song has,
where each plays, their styles and voices (synth parameters included), the notes, and last the
humanisation (swing is a fixed time warp; timing and velocity get Gaussian jitter).
"""

from __future__ import annotations

import random

from stemserver_training.corpus.popular.bass import write_bass
from stemserver_training.corpus.popular.drums import drum_slots, write_drums
from stemserver_training.corpus.popular.fx import write_fx
from stemserver_training.corpus.popular.genres import GENRES, PROGRESSIONS, Genre
from stemserver_training.corpus.popular.grooves import meter_of
from stemserver_training.corpus.popular.harmony import write_chords
from stemserver_training.corpus.popular.melody import write_lead
from stemserver_training.corpus.popular.plan import Context, plan_chords, plan_form, plan_plays
from stemserver_training.corpus.popular.score import Note, Part, Song
from stemserver_training.corpus.popular.theory import bar_symbol, key_name, uses_sharps
from stemserver_training.corpus.popular.timbres import FX, PERCUSSION_KITS, PIECE_LABELS, SYNTH_PIECES, choose

DRUM_SLOTS = ("kick", "snare", "clap", "hats", "perc")
ROLE_OF_SLOT = {"keys": "chords", "guitar": "chords", "pad": "chords", "stab": "chords", "arp": "arp",
                "pluck": "arp", "lead": "lead", "vocal": "vocal"}
FX_CHANCE = 0.6
OWN_KIT = 0.6  # that a separate drum piece comes from the song's kit
VELOCITY_SD = 6.0
DEFAULT_BARS = (16, 24, 32)


def _slug(genre: str) -> str:
    return genre.replace(" & ", "-and-").replace(" ", "-")


def swing_warp(t: float, swing: float, unit: float) -> float:
    """Swung time: each pair of `unit`-long steps keeps its length, its off-beat moves later by
    swing/3 of a step (1 = triplet swing); times in between move in proportion."""
    pair, into = divmod(t, 2 * unit)
    moved = unit * (1 + swing / 3)
    if into < unit:
        into = into * moved / unit
    else:
        into = moved + (into - unit) * (2 * unit - moved) / unit
    return pair * 2 * unit + into


def humanise(notes: list[Note], genre: Genre, swing: float, ctx: Context) -> list[Note]:
    rng, jitter = ctx.rng, ctx.ms(genre.timing_ms)
    out = []
    for n in notes:
        start = swing_warp(n.start, swing, genre.swing_unit)
        end = swing_warp(n.start + n.length, swing, genre.swing_unit)
        start = max(0.0, start + rng.gauss(0.0, jitter))
        velocity = max(1, min(127, round(n.velocity + rng.gauss(0.0, VELOCITY_SD))))
        out.append(Note(round(start, 5), round(max(0.02, end - start), 5), n.pitch, velocity, n.glide_to))
    return out


def _song_slots(genre: Genre, groove: str, rng: random.Random) -> tuple[set[str], bool]:
    """The slots a song has, and whether its drums are one kit (True) or separate pieces."""
    slots = set()
    kit = rng.random() >= genre.split
    if rng.random() < genre.drums:
        slots |= drum_slots(groove)
    if rng.random() < genre.bass.chance:
        slots.add("bass")
    slots |= {slot for slot, spec in genre.parts.items() if rng.random() < spec.chance}
    if not slots & set(ROLE_OF_SLOT) - {"lead"}:  # every song has harmony
        slots.add(max(genre.parts, key=lambda s: genre.parts[s].chance))
    return slots, kit


def arrange_song(seed: int, genre: str | None = None, bars: int | None = None, seconds: float | None = None,
                 index: int = 0) -> Song:
    """A song, deterministic in (seed, index): of `genre` (or one drawn), `bars` long (or about
    `seconds`, or 16, 24 or 32 bars)."""
    rng = random.Random(f"popular:{seed}:{index}")
    if genre is None:
        genre = rng.choice(sorted(GENRES))
    if genre not in GENRES:
        raise ValueError(f"unknown genre {genre!r}: choose one of {', '.join(sorted(GENRES))}")
    g = GENRES[genre]
    groove = rng.choice(g.grooves)
    meter = meter_of(groove)
    bpm = float(rng.randint(*g.bpm))
    swing = round(rng.uniform(*g.swing), 3)
    verse = rng.choice(g.progressions)
    mode = rng.choice([m for m in PROGRESSIONS[verse][0] if m in g.modes])
    chorus = verse if rng.random() < 0.5 else rng.choice([p for p in g.progressions if mode in PROGRESSIONS[p][0]])
    tonic = rng.randrange(12)
    if bars is None:
        bars = max(4, round(seconds * bpm / 60 / meter)) if seconds else rng.choice(DEFAULT_BARS)
    sections = plan_form(rng.choice(g.forms), bars)
    chords = plan_chords(sections, verse, chorus, tonic)
    slots, kit = _song_slots(g, groove, rng)
    ctx = Context(meter, bpm, tonic, mode, chords, sections, plan_plays(sections, slots, rng), groove, rng)

    parts: list[Part] = []
    drum_notes = write_drums(ctx, kit, g.rolls) if slots & set(DRUM_SLOTS) else {}
    song_kit = choose(g.kits, rng)
    if drum_notes and kit:
        voice = song_kit
        notes = sorted((n for ns in drum_notes.values() for n in ns), key=lambda n: (n.start, n.pitch))
        parts.append(Part("drums", "drums", voice.label_path, voice.timbre, notes, style=groove))
    for slot, notes in sorted(drum_notes.items()) if not kit else ():
        if slot == "perc":  # shakers, congas, cowbells: a hand-percussion kit or the soundfont's
            voice = choose(PERCUSSION_KITS, rng)
        else:  # the song's kit, or a piece layered from another kit or a synth
            voice = song_kit if rng.random() < OWN_KIT else choose(g.kits + SYNTH_PIECES[slot], rng)
        parts.append(Part(slot, "drums", PIECE_LABELS[slot], voice.timbre, notes, style=groove))
    if "bass" in slots:
        style = rng.choice(g.bass.styles)
        voice = choose(g.bass.voices, rng)
        parts.append(Part("bass", "bass", voice.label_path, voice.timbre, write_bass(ctx, style, ctx.plays["bass"]),
                          style=style))
    for slot in sorted(slots & set(ROLE_OF_SLOT)):
        spec = g.parts[slot]
        style = rng.choice(spec.styles)
        voice = choose(spec.voices, rng)
        bars_on = ctx.plays[slot]
        notes = write_lead(ctx, bars_on) if slot == "lead" else write_chords(ctx, style, bars_on)
        parts.append(Part(slot, ROLE_OF_SLOT[slot], voice.label_path, voice.timbre, notes, style=style))
    for kind in g.fx:
        if rng.random() < FX_CHANCE:
            voice = choose(FX[kind], rng)
            parts.append(Part(kind, "fx", voice.label_path, voice.timbre, write_fx(ctx, kind), style=kind))
    for part in parts:
        part.notes = humanise(part.notes, g, swing, ctx)
    sharps = uses_sharps(tonic, mode)
    return Song(f"{_slug(genre)}_{seed}_{index:05d}", seed, genre, bpm, meter, swing, tonic, mode,
                [bar_symbol(c, sharps) for c in chords], sections, [p for p in parts if p.notes])


def song_record(song: Song) -> dict:
    """The song's ground truth, JSON-ready: everything but the notes (a count of them per part)."""
    return {
        "id": song.id, "seed": song.seed, "genre": song.genre, "bpm": song.bpm, "meter": song.meter,
        "swing": song.swing, "key": key_name(song.tonic, song.mode), "tonic": song.tonic, "mode": song.mode,
        "bars": song.bars, "seconds": round(song.seconds, 3), "chords": list(song.chords),
        "sections": [{"name": s.name, "start_bar": s.start_bar, "bars": s.bars} for s in song.sections],
        "parts": [{"name": p.name, "role": p.role, "label_path": list(p.label_path), "style": p.style,
                   "timbre": {"kind": p.timbre.kind, "name": p.timbre.name, "program": p.timbre.program,
                              "bank": p.timbre.bank, "params": dict(p.timbre.params)},
                   "effects": list(p.effects), "notes": len(p.notes)} for p in song.parts],
    }
