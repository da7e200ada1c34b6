"""Genre templates, progressions and forms: plain tables an arrangement draws from.

A genre names its tempo range, swing, grooves (whose length sets the meter), progressions, modes,
forms, bass styles, drum kits, and for each other part slot the chance it is in a song, the styles
it plays in and the voices it can have. Progressions are roman numerals read against the tonic's
major scale (theory.py), one bar each; "ii7 V7" splits a bar in halves.
"""

from __future__ import annotations

from dataclasses import dataclass

from stemserver_training.corpus.popular import timbres as t
from stemserver_training.corpus.popular.timbres import Voice

MAJ, MIN, DOR, MIX, PHR = ("major",), ("minor",), ("dorian",), ("mixolydian",), ("phrygian",)

PROGRESSIONS = {  # name -> (modes it fits, bars)
    "axis": (MAJ, ("I", "V", "vi", "IV")),
    "axis_vi": (MAJ, ("vi", "IV", "I", "V")),
    "fifties": (MAJ, ("I", "vi", "IV", "V")),
    "plagal": (MAJ, ("I", "IV", "I", "V")),
    "pop_long": (MAJ, ("I", "V", "vi", "iii", "IV", "I", "IV", "V")),
    "borrowed_iv": (MAJ, ("I", "IV", "iv", "I")),
    "borrowed_b7": (MAJ + MIX, ("I", "bVII", "IV", "I")),
    "borrowed_b6": (MAJ, ("I", "bVI", "bVII", "I")),
    "secondary_vi": (MAJ, ("I", "V7/vi", "vi", "IV")),
    "secondary_v": (MAJ, ("I", "V/V", "IV", "I")),
    "ii_v_i": (MAJ, ("ii7", "V7", "Imaj7", "Imaj7")),
    "ii_v_split": (MAJ, ("ii7 V7", "Imaj7", "ii7 V7", "Imaj7 V7/ii")),
    "lofi_major": (MAJ, ("IVmaj7", "iii7", "ii7", "Imaj7")),
    "neo_soul": (MAJ, ("Imaj9", "vi9", "ii9", "V9")),
    "blues": (MAJ + MIX, ("I7", "I7", "I7", "I7", "IV7", "IV7", "I7", "I7", "V7", "IV7", "I7", "V7")),
    "quick_blues": (MAJ + MIX, ("I7", "IV7", "I7", "I7", "IV7", "IV7", "I7", "I7", "V7", "IV7", "I7", "V7")),
    "rock_mixo": (MIX + MAJ, ("I", "bVII", "IV", "IV")),
    "rock_classic": (MAJ, ("I", "IV", "V", "IV")),
    "two_chord": (MAJ, ("I", "ii")),
    "funk_vamp": (MIX, ("I7",)),
    "funk_two": (MIX, ("I7", "IV7")),
    "montuno": (MAJ, ("I", "IV", "V7", "IV")),
    "aeolian": (MIN, ("i", "bVI", "bIII", "bVII")),
    "epic": (MIN, ("i", "bVII", "bVI", "bVII")),
    "minor_pop": (MIN, ("i", "bVI", "bVII", "i")),
    "minor_cadence": (MIN, ("i", "iv", "v", "i")),
    "minor_harmonic": (MIN, ("i", "iv", "V7", "i")),
    "andalusian": (MIN, ("i", "bVII", "bVI", "V")),
    "minor_four": (MIN, ("i", "iv", "bVI", "V")),
    "minor_two": (MIN, ("i", "iv")),
    "minor_sevenths": (MIN, ("i7", "bVImaj7", "bIIImaj7", "bVII")),
    "minor_jazz": (MIN, ("iih7", "V7", "i7", "i7")),
    "minor_lofi": (MIN, ("i7", "iv7", "bVII7", "bIIImaj7")),
    "trap_minor": (MIN, ("i", "i", "bVI", "bVI")),
    "trap_dark": (MIN, ("i", "bVI", "v", "i")),
    "dorian_vamp": (DOR, ("i7", "IV7")),
    "dorian_two": (DOR, ("i7", "i7", "IV", "IV")),
    "dorian_lofi": (DOR, ("i9", "IV9")),
    "phrygian_vamp": (PHR, ("i", "bII")),
    "one_chord": (MIN + DOR + PHR, ("i",)),
    "one_chord_m7": (MIN + DOR, ("i7",)),
    "ambient_major": (MAJ, ("Imaj7", "IVmaj7", "vi7", "IVmaj7")),
    "ambient_minor": (MIN, ("i", "bVImaj7", "i", "bVImaj7")),
    "ambient_sus": (MAJ + MIX, ("Isus2", "IVsus2", "Isus2", "bVII")),
}

FORMS = {  # name -> sections as (name, bars); a song shorter than the form takes its start (arrange.py)
    "edm": (("intro", 8), ("build", 4), ("drop", 8), ("break", 8), ("build", 4), ("drop", 8), ("outro", 8)),
    "song": (("intro", 4), ("verse", 8), ("chorus", 8), ("verse", 8), ("chorus", 8), ("bridge", 4), ("chorus", 8),
             ("outro", 4)),
    "loop": (("intro", 4), ("verse", 8), ("chorus", 8), ("break", 4), ("verse", 8), ("chorus", 8), ("outro", 4)),
    "blues": (("intro", 4), ("verse", 12), ("verse", 12), ("chorus", 12), ("outro", 4)),
    "ambient": (("intro", 8), ("verse", 8), ("break", 8), ("chorus", 8), ("outro", 8)),
}

# Which part slots play in each kind of section (a song then drops a few at random, arrange.py).
SECTION_SLOTS = {
    "intro": {"hats", "perc", "keys", "guitar", "pad", "arp", "vocal"},
    "verse": {"kick", "snare", "clap", "hats", "perc", "bass", "keys", "guitar", "pluck", "lead"},
    "chorus": {"kick", "snare", "clap", "hats", "perc", "bass", "keys", "guitar", "pad", "stab", "arp", "pluck",
               "lead", "vocal"},
    "drop": {"kick", "snare", "clap", "hats", "perc", "bass", "keys", "guitar", "pad", "stab", "arp", "pluck",
             "lead"},
    "build": {"snare", "clap", "hats", "keys", "pad", "arp", "pluck", "vocal"},
    "break": {"keys", "guitar", "pad", "arp", "pluck", "vocal", "lead"},
    "bridge": {"kick", "snare", "hats", "bass", "keys", "guitar", "pad", "vocal"},
    "outro": {"kick", "hats", "perc", "bass", "keys", "guitar", "pad"},
}
ARRIVALS = ("chorus", "drop")  # sections a riser leads into and an impact marks


@dataclass(frozen=True)
class Slot:
    chance: float  # that a song has this part
    styles: tuple[str, ...]
    voices: tuple[Voice, ...]


@dataclass(frozen=True)
class Genre:
    name: str
    bpm: tuple[int, int]
    swing: tuple[float, float]  # drawn per song
    swing_unit: float  # beats: 0.5 swings the off-beat eighths, 0.25 the off-beat sixteenths
    grooves: tuple[str, ...]  # grooves.GROOVES names; a groove's length sets the meter
    progressions: tuple[str, ...]
    modes: tuple[str, ...]
    forms: tuple[str, ...]
    bass: Slot
    kits: tuple[Voice, ...]
    split: float  # chance the drums are separate stems (kick, snare, hats, perc) rather than one kit
    parts: dict[str, Slot]
    fx: tuple[str, ...] = ()
    drums: float = 1.0  # chance the song has drums at all
    lock: bool = False  # the bass plays with the kick (tested)
    timing_ms: float = 4.0  # humanisation: the standard deviation of note onsets
    rolls: bool = False  # trap hat rolls


GENRES = {g.name: g for g in (
    Genre("house", (118, 128), (0.0, 0.25), 0.25, ("house", "house_garage"),
          ("axis_vi", "lofi_major", "neo_soul", "one_chord_m7", "dorian_vamp", "aeolian", "minor_sevenths"),
          MAJ + MIN + DOR, ("edm",), Slot(1.0, ("offbeat", "octave", "syncopated"), t.SYNTH_BASS + t.GM_SYNTH_BASS),
          t.MACHINE_KITS, 0.7,
          {"keys": Slot(0.6, ("stab", "comp", "block"), t.PIANO + t.EPIANO + t.ORGAN),
           "pad": Slot(0.6, ("pad",), t.SYNTH_PADS + t.GM_PADS + t.STRINGS),
           "stab": Slot(0.3, ("stab",), t.STABS), "arp": Slot(0.3, ("arp",), t.ARPS),
           "pluck": Slot(0.4, ("pluck",), t.PLUCKS), "lead": Slot(0.4, ("lead",), t.SYNTH_LEADS + t.GM_LEADS),
           "vocal": Slot(0.5, ("hold", "line"), t.CHOIRS), "guitar": Slot(0.15, ("stab",), t.MUTED_GUITAR)},
          fx=("riser", "sweep", "impact", "noise"), timing_ms=1.5),
    Genre("techno", (125, 140), (0.0, 0.1), 0.25, ("techno", "techno_rolling"),
          ("one_chord", "one_chord_m7", "phrygian_vamp", "minor_two", "dorian_vamp"), MIN + DOR + PHR, ("edm",),
          Slot(1.0, ("offbeat", "rolling", "acid"), t.ACID_BASS + t.SYNTH_BASS), t.MACHINE_KITS, 0.85,
          {"stab": Slot(0.5, ("stab",), t.STABS), "pad": Slot(0.5, ("pad",), t.SYNTH_PADS + t.GM_PADS),
           "arp": Slot(0.6, ("arp",), t.ARPS), "lead": Slot(0.2, ("lead",), t.SYNTH_LEADS),
           "vocal": Slot(0.1, ("hold",), t.CHOIRS)},
          fx=("riser", "sweep", "impact", "noise"), timing_ms=0.5),
    Genre("hip-hop", (84, 96), (0.3, 0.6), 0.25, ("boombap", "boombap_sparse"),
          ("minor_jazz", "lofi_major", "minor_lofi", "dorian_two", "minor_cadence", "aeolian"), MAJ + MIN + DOR,
          ("loop", "song"), Slot(1.0, ("kick",), t.LIVE_BASS + t.UPRIGHT_BASS + t.GM_SYNTH_BASS),
          t.ACOUSTIC_KITS + t.MACHINE_KITS, 0.5,
          {"keys": Slot(0.8, ("comp", "block"), t.PIANO + t.EPIANO), "guitar": Slot(0.2, ("broken",), t.CLEAN_GUITAR),
           "pad": Slot(0.3, ("pad",), t.STRINGS), "pluck": Slot(0.3, ("pluck",), t.PLUCKS),
           "lead": Slot(0.5, ("lead",), t.ACOUSTIC_LEADS + t.BRASS), "vocal": Slot(0.3, ("hold", "line"), t.CHOIRS)},
          fx=("impact", "noise"), lock=True, timing_ms=8.0),
    Genre("trap", (130, 168), (0.0, 0.05), 0.25, ("trap", "trap_sparse"),
          ("trap_minor", "trap_dark", "minor_four", "aeolian", "phrygian_vamp", "andalusian"), MIN + PHR,
          ("loop", "song"), Slot(1.0, ("808",), t.BASS_808), t.MACHINE_KITS, 0.9,
          {"pluck": Slot(0.6, ("pluck",), t.PLUCKS), "pad": Slot(0.4, ("pad",), t.GM_PADS + t.SYNTH_PADS + t.STRINGS),
           "keys": Slot(0.4, ("block", "broken"), t.PIANO),
           "lead": Slot(0.4, ("lead",), t.SYNTH_LEADS + t.ACOUSTIC_LEADS),
           "vocal": Slot(0.4, ("hold",), t.CHOIRS)},
          fx=("riser", "impact", "sweep"), lock=True, timing_ms=0.5, rolls=True),
    Genre("drum & bass", (164, 178), (0.0, 0.05), 0.25, ("dnb", "dnb_amen"),
          ("minor_sevenths", "aeolian", "minor_two", "one_chord_m7", "dorian_vamp"), MIN + DOR, ("edm",),
          Slot(1.0, ("sub", "syncopated"), t.SYNTH_BASS), t.MACHINE_KITS + t.ACOUSTIC_KITS, 0.6,
          {"pad": Slot(0.8, ("pad",), t.SYNTH_PADS + t.GM_PADS + t.STRINGS),
           "keys": Slot(0.3, ("block", "stab"), t.EPIANO), "arp": Slot(0.4, ("arp",), t.ARPS),
           "lead": Slot(0.3, ("lead",), t.SYNTH_LEADS), "vocal": Slot(0.4, ("hold", "line"), t.CHOIRS)},
          fx=("riser", "sweep", "impact", "noise"), timing_ms=1.0),
    Genre("pop", (90, 128), (0.0, 0.1), 0.25, ("pop", "pop_four", "pop", "waltz"),
          ("axis", "axis_vi", "fifties", "pop_long", "secondary_vi", "borrowed_iv", "borrowed_b6", "minor_pop",
           "epic"), MAJ + MIN, ("song",),
          Slot(1.0, ("kick", "eighths", "octave"), t.LIVE_BASS + t.SYNTH_BASS + t.GM_SYNTH_BASS),
          t.ACOUSTIC_KITS + t.MACHINE_KITS, 0.4,
          {"keys": Slot(0.7, ("block", "comp", "broken"), t.PIANO + t.EPIANO),
           "guitar": Slot(0.5, ("strum", "broken"), t.ACOUSTIC_GUITAR + t.CLEAN_GUITAR),
           "pad": Slot(0.5, ("pad",), t.SYNTH_PADS + t.STRINGS), "pluck": Slot(0.3, ("pluck",), t.PLUCKS),
           "lead": Slot(0.8, ("lead",), t.GM_LEADS + t.SYNTH_LEADS + t.ACOUSTIC_LEADS),
           "vocal": Slot(0.5, ("hold", "line"), t.CHOIRS)},
          fx=("riser", "impact"), lock=True, timing_ms=4.0),
    Genre("rock", (100, 150), (0.0, 0.1), 0.5, ("rock", "rock_drive", "rock_halftime", "waltz_rock"),
          ("rock_mixo", "rock_classic", "blues", "quick_blues", "axis", "borrowed_b7", "epic", "minor_cadence"),
          MAJ + MIX + MIN, ("song", "blues"), Slot(1.0, ("eighths", "kick", "octave"), t.LIVE_BASS),
          t.ACOUSTIC_KITS, 0.4,
          {"guitar": Slot(1.0, ("strum", "power"), t.DIST_GUITAR + t.CLEAN_GUITAR + t.ACOUSTIC_GUITAR),
           "keys": Slot(0.3, ("block", "comp"), t.ORGAN + t.PIANO),
           "lead": Slot(0.6, ("lead",), t.DIST_GUITAR + t.ACOUSTIC_LEADS), "vocal": Slot(0.2, ("hold",), t.CHOIRS),
           "pad": Slot(0.1, ("pad",), t.STRINGS)},
          fx=("impact",), lock=True, timing_ms=8.0),
    Genre("funk", (95, 118), (0.0, 0.35), 0.25, ("funk", "funk_break"),
          ("funk_vamp", "funk_two", "dorian_vamp", "dorian_two", "blues"), MIX + DOR + MAJ, ("loop", "song"),
          Slot(1.0, ("syncopated", "octave"), t.SLAP_BASS + t.LIVE_BASS + t.GM_SYNTH_BASS), t.ACOUSTIC_KITS, 0.4,
          {"guitar": Slot(0.9, ("stab", "strum"), t.MUTED_GUITAR + t.CLEAN_GUITAR),
           "keys": Slot(0.7, ("comp", "stab"), t.CLAV + t.EPIANO + t.ORGAN), "stab": Slot(0.4, ("stab",), t.BRASS),
           "lead": Slot(0.5, ("lead",), t.BRASS + t.ACOUSTIC_LEADS + t.SYNTH_LEADS),
           "vocal": Slot(0.2, ("hold",), t.CHOIRS)},
          timing_ms=6.0),
    Genre("reggae", (70, 90), (0.1, 0.4), 0.25, ("reggae_one_drop", "reggae_steppers"),
          ("plagal", "two_chord", "axis", "minor_two", "dorian_two"), MAJ + MIN + DOR, ("loop",),
          Slot(1.0, ("dub",), t.LIVE_BASS + t.GM_SYNTH_BASS), t.ACOUSTIC_KITS, 0.4,
          {"guitar": Slot(0.9, ("skank",), t.CLEAN_GUITAR + t.MUTED_GUITAR),
           "keys": Slot(0.8, ("skank", "block"), t.ORGAN + t.PIANO),
           "lead": Slot(0.4, ("lead",), t.BRASS + t.ACOUSTIC_LEADS), "vocal": Slot(0.3, ("hold",), t.CHOIRS),
           "pad": Slot(0.1, ("pad",), t.STRINGS)},
          fx=("sweep", "impact"), timing_ms=6.0),
    Genre("lo-fi", (70, 90), (0.35, 0.65), 0.25, ("lofi", "jazz_swing", "boombap_sparse"),
          ("ii_v_i", "ii_v_split", "lofi_major", "neo_soul", "minor_jazz", "minor_lofi", "dorian_lofi"),
          MAJ + MIN + DOR, ("loop",), Slot(1.0, ("walking", "kick"), t.UPRIGHT_BASS + t.LIVE_BASS),
          t.ACOUSTIC_KITS, 0.3,
          {"keys": Slot(0.95, ("comp", "block", "broken"), t.EPIANO + t.PIANO),
           "guitar": Slot(0.3, ("broken",), t.CLEAN_GUITAR), "pad": Slot(0.3, ("pad",), t.STRINGS + t.GM_PADS),
           "lead": Slot(0.6, ("lead",), t.ACOUSTIC_LEADS), "pluck": Slot(0.2, ("pluck",), t.PLUCKS),
           "vocal": Slot(0.2, ("hold",), t.CHOIRS)},
          fx=("noise",), timing_ms=10.0),
    Genre("ambient", (60, 90), (0.0, 0.0), 0.5, ("ambient_pulse",),
          ("ambient_major", "ambient_minor", "ambient_sus", "one_chord", "dorian_two"), MAJ + MIN + DOR + MIX,
          ("ambient",), Slot(0.6, ("sub",), t.SYNTH_BASS + t.GM_SYNTH_BASS), t.PERCUSSION_KITS, 0.5,
          {"pad": Slot(1.0, ("pad",), t.SYNTH_PADS + t.GM_PADS + t.STRINGS),
           "vocal": Slot(0.7, ("hold", "line"), t.CHOIRS), "arp": Slot(0.5, ("arp",), t.ARPS + t.PLUCKS),
           "pluck": Slot(0.4, ("pluck",), t.PLUCKS), "keys": Slot(0.4, ("broken", "block"), t.PIANO + t.EPIANO),
           "lead": Slot(0.3, ("lead",), t.ACOUSTIC_LEADS + t.GM_LEADS)},
          fx=("noise", "sweep", "riser"), drums=0.4, timing_ms=5.0),
    Genre("latin", (88, 130), (0.0, 0.15), 0.25, ("bossa", "dembow", "cumbia"),
          ("montuno", "andalusian", "minor_harmonic", "ii_v_i", "axis_vi", "minor_four"), MAJ + MIN, ("song", "loop"),
          Slot(1.0, ("tumbao", "kick"), t.LIVE_BASS + t.UPRIGHT_BASS + t.GM_SYNTH_BASS),
          t.ACOUSTIC_KITS + t.PERCUSSION_KITS, 0.6,
          {"guitar": Slot(0.7, ("broken", "strum"), t.ACOUSTIC_GUITAR), "keys": Slot(0.6, ("montuno", "comp"), t.PIANO),
           "stab": Slot(0.3, ("stab",), t.BRASS), "lead": Slot(0.6, ("lead",), t.BRASS + t.ACOUSTIC_LEADS),
           "pad": Slot(0.2, ("pad",), t.STRINGS), "vocal": Slot(0.2, ("hold",), t.CHOIRS)},
          timing_ms=6.0),
)}
