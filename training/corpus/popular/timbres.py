"""What parts can sound like: General MIDI presets, recorded drum kits and synth recipes, each with
the two-level label (coarse, fine) its stem gets, and the ranges a synth recipe's parameters are
drawn from per song.

Soundfont timbres name no soundfont (`name="gm"`): the renderer chooses the soundfont file and
records it. Drum kits are "gm" (a soundfont's bank-128 kit, its program one of GM_KIT_PROGRAMS) or
a Hydrogen kit folder of Debian's hydrogen-drumkits package (DRUM_KITS). Synth recipes are rendered
by the sound side with the parameters in SYNTH_PARAMS (seconds, Hz, semitones, 0..1 amounts).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from stemserver.vocabulary import GM_PROGRAMS, gm_label_path
from stemserver_training.corpus.popular.score import Timbre


@dataclass(frozen=True)
class Voice:
    timbre: Timbre
    label_path: tuple[str, ...]
    fixed: dict = field(default_factory=dict)  # synth parameters this voice draws from its own ranges


def gm(*names: str) -> tuple[Voice, ...]:
    programs = [GM_PROGRAMS.index(name) for name in names]
    return tuple(Voice(Timbre("soundfont", "gm", program=p), tuple(gm_label_path(p))) for p in programs)


def synth(name: str, coarse: str, fine: str, **fixed) -> Voice:
    return Voice(Timbre("synth", name), (coarse, fine), fixed)


# Kit name -> (what it is, the kit part's label). "gm" is a soundfont's bank-128 kit (GM_KIT_PROGRAMS
# below); the others are Hydrogen kit folders in /usr/share/hydrogen/data/drumkits (hydrogen-drumkits).
DRUM_KITS = {
    "gm": ("soundfont", ("drums", "drum kit")),
    "BJA_Pacific": ("acoustic", ("drums", "acoustic drum kit")),
    "ColomboAcousticDrumkit": ("acoustic", ("drums", "acoustic drum kit")),
    "ForzeeStereo": ("acoustic", ("drums", "acoustic drum kit")),
    "Millo-Drums_v.1": ("acoustic", ("drums", "acoustic drum kit")),
    "Millo_MultiLayered2": ("acoustic", ("drums", "acoustic drum kit")),
    "Millo_MultiLayered3": ("acoustic", ("drums", "acoustic drum kit")),
    "The Black Pearl 1.0": ("acoustic", ("drums", "acoustic drum kit")),
    "Audiophob": ("acoustic", ("drums", "acoustic drum kit")),
    "ElectricEmpireKit": ("machine", ("drums", "drum machine")),
    "HardElectro1": ("machine", ("drums", "drum machine")),
    "VariBreaks": ("machine", ("drums", "drum machine")),
    "rumpf_kit_z01_h2": ("machine", ("drums", "drum machine")),
    "Gimme A Hand 1.0": ("percussion", ("percussion", "unpitched percussion")),
    "circAfrique v4": ("percussion", ("percussion", "unpitched percussion")),
}


# The GS/GM2 kit presets of bank 128 that General MIDI soundfonts carry (FluidR3 and MuseScore General
# have them all; a soundfont without one falls back to its standard kit, program 0).
GM_KIT_PROGRAMS = {"acoustic": {0: "standard", 8: "room", 16: "power", 32: "jazz", 40: "brush"},
                   "machine": {24: "electronic", 25: "tr-808"}, "percussion": {0: "standard"}}
GM_KIT_LABELS = {"acoustic": ("drums", "drum kit"), "machine": ("drums", "drum machine"),
                 "percussion": ("percussion", "unpitched percussion")}


def kits(kind: str) -> tuple[Voice, ...]:
    """The Hydrogen kits of a kind (acoustic, machine, percussion) and the soundfont kits that match it."""
    hydrogen = tuple(Voice(Timbre("drumkit", name), label) for name, (k, label) in DRUM_KITS.items() if k == kind)
    return hydrogen + tuple(Voice(Timbre("drumkit", "gm", program=p, bank=128), GM_KIT_LABELS[kind])
                            for p in GM_KIT_PROGRAMS[kind])


# Synth recipe -> parameter -> ("log", lo, hi) | (lo, hi) | ("int", lo, hi) | ("choice", a, b, ...).
SYNTH_PARAMS = {
    "saw": {"cutoff": ("log", 300, 8000), "resonance": (0.0, 0.7), "env_amount": (0.0, 1.0), "attack": (0.001, 0.03),
            "decay": (0.05, 0.8), "sustain": (0.2, 1.0), "release": (0.02, 0.4), "detune_cents": (0.0, 15.0)},
    "square": {"cutoff": ("log", 300, 6000), "resonance": (0.0, 0.6), "env_amount": (0.0, 1.0),
               "attack": (0.001, 0.03), "decay": (0.05, 0.8), "sustain": (0.2, 1.0), "release": (0.02, 0.4)},
    "pulse": {"width": (0.1, 0.45), "cutoff": ("log", 300, 6000), "resonance": (0.0, 0.6),
              "env_amount": (0.0, 1.0), "attack": (0.001, 0.03), "decay": (0.05, 0.8), "sustain": (0.2, 1.0),
              "release": (0.02, 0.4)},
    "acid": {"cutoff": ("log", 200, 2000), "resonance": (0.5, 0.95), "env_amount": (0.3, 1.0), "decay": (0.05, 0.4),
             "accent": (0.0, 1.0), "drive": (0.0, 0.7)},
    "fm": {"ratio": ("choice", 0.5, 1, 2, 3, 3.5, 7), "index": (0.5, 8.0), "decay": (0.1, 2.0), "sustain": (0.0, 0.8),
           "release": (0.02, 0.5)},
    "supersaw": {"voices": ("int", 5, 9), "detune_cents": (8.0, 40.0), "cutoff": ("log", 1000, 12000),
                 "attack": (0.001, 0.2), "release": (0.05, 0.8)},
    "808": {"decay": (0.3, 2.0), "pitch_drop": (0.0, 24.0), "drop_time": (0.01, 0.08), "drive": (0.0, 0.6)},
    "noise_hat": {"decay": (0.02, 0.3), "highpass": ("log", 5000, 11000), "metallic": (0.0, 1.0)},
    "noise": {"color": ("choice", "white", "pink", "brown"), "cutoff": ("log", 500, 12000), "decay": (0.05, 0.4),
              "tone_hz": ("log", 150, 400), "tone_mix": (0.0, 0.6)},
    "pad": {"cutoff": ("log", 400, 6000), "attack": (0.2, 1.5), "release": (0.5, 2.0), "detune_cents": (3.0, 25.0),
            "vowel": ("choice", "none", "none", "a", "o")},
    "pluck": {"decay": (0.1, 0.6), "cutoff": ("log", 800, 8000), "brightness": (0.2, 1.0)},
    "riser": {"start_hz": ("log", 150, 800), "end_hz": ("log", 2000, 9000), "noise_mix": (0.0, 1.0)},
    "sweep": {"direction": ("choice", "up", "down"), "low_hz": ("log", 100, 500), "high_hz": ("log", 3000, 12000)},
    "impact": {"decay": (0.5, 3.0), "pitch_drop": (6.0, 36.0), "noise_mix": (0.0, 0.8)},
}
VOWEL = {"vowel": ("choice", "a", "o", "u", "e")}


def draw(spec, rng: random.Random):
    if spec[0] == "choice":
        return rng.choice(spec[1:])
    if spec[0] == "int":
        return rng.randint(spec[1], spec[2])
    if spec[0] == "log":
        lo, hi = spec[1], spec[2]
        return round(lo * (hi / lo) ** rng.random(), 1)
    return round(rng.uniform(*spec), 4)


def choose(voices: tuple[Voice, ...], rng: random.Random) -> Voice:
    """One of the candidates, its synth parameters (if any) drawn for this song."""
    voice = rng.choice(voices)
    if voice.timbre.kind != "synth":
        return voice
    specs = {**SYNTH_PARAMS[voice.timbre.name], **voice.fixed}
    return replace(voice, timbre=replace(voice.timbre, params={k: draw(s, rng) for k, s in specs.items()}))


# The candidate voices, by what they are; genres combine them.
PIANO = gm("acoustic grand piano", "bright acoustic piano", "electric grand piano")
EPIANO = gm("electric piano", "fm electric piano")
ORGAN = gm("drawbar organ", "percussive organ", "rock organ")
CLAV = gm("clavinet")
CLEAN_GUITAR = gm("clean electric guitar", "jazz guitar")
MUTED_GUITAR = gm("muted electric guitar", "clean electric guitar")
ACOUSTIC_GUITAR = gm("nylon guitar", "steel string guitar")
DIST_GUITAR = gm("overdriven guitar", "distorted guitar")
LIVE_BASS = gm("fingered bass", "picked bass", "fretless bass")
UPRIGHT_BASS = gm("acoustic bass")
SLAP_BASS = gm("slap bass", "popped bass")
GM_SYNTH_BASS = gm("synth bass", "analog synth bass")
SYNTH_BASS = (synth("saw", "bass", "synth bass"), synth("square", "bass", "synth bass"),
              synth("pulse", "bass", "synth bass"), synth("fm", "bass", "synth bass"))
ACID_BASS = (synth("acid", "bass", "synth bass"),)
BASS_808 = (synth("808", "bass", "808"),)
STRINGS = gm("string ensemble", "slow strings", "synth strings", "tremolo strings")
GM_PADS = gm("warm pad", "polysynth pad", "new age pad", "halo pad", "sweep pad", "bowed pad")
SYNTH_PADS = (synth("pad", "synth pad", "warm pad"), synth("supersaw", "synth pad", "polysynth pad"))
BRASS = gm("brass section", "trumpet", "synth brass", "alto saxophone")
STABS = gm("orchestra hit", "brass section") + (synth("saw", "synth pad", "polysynth pad"),
                                                 synth("square", "synth pad", "polysynth pad"))
GM_LEADS = gm("square lead", "saw lead", "chiff lead", "calliope lead")
ACOUSTIC_LEADS = gm("flute", "alto saxophone", "tenor saxophone", "trumpet", "vibraphone", "harmonica", "violin")
SYNTH_LEADS = (synth("saw", "synth lead", "saw lead"), synth("square", "synth lead", "square lead"),
               synth("pulse", "synth lead", "square lead"), synth("fm", "synth lead", "fm lead"),
               synth("supersaw", "synth lead", "saw lead"))
PLUCKS = gm("kalimba", "marimba", "vibraphone", "harp", "pizzicato strings", "music box", "celesta") + (
    synth("pluck", "synth lead", "pluck"), synth("fm", "synth lead", "pluck"))
ARPS = (synth("saw", "synth lead", "saw lead"), synth("square", "synth lead", "square lead"),
        synth("pluck", "synth lead", "pluck"), synth("fm", "synth lead", "fm lead"),
        synth("acid", "synth lead", "acid"))
CHOIRS = gm("choir aahs", "voice oohs", "synth choir") + (synth("pad", "ensemble", "synth choir", **VOWEL),)
ACOUSTIC_KITS = kits("acoustic")
MACHINE_KITS = kits("machine")
PERCUSSION_KITS = kits("percussion")
# Separate drum pieces can also be synthesised (808 kick, noise snare or clap, noise hats).
SYNTH_PIECES = {
    "kick": (synth("808", "drums", "kick drum"),),
    "snare": (synth("noise", "drums", "snare drum"),),
    "clap": (synth("noise", "drums", "claps"),),
    "hats": (synth("noise_hat", "drums", "cymbals"),),
}
PIECE_LABELS = {  # a separate piece's label, whatever kit plays it
    "kick": ("drums", "kick drum"), "snare": ("drums", "snare drum"), "clap": ("drums", "claps"),
    "hats": ("drums", "cymbals"), "perc": ("percussion", "unpitched percussion"),
}
FX = {
    "riser": (synth("riser", "sound effects", "riser"), *gm("reverse cymbal")),
    "sweep": (synth("sweep", "sound effects", "sweep"),),
    "impact": (synth("impact", "sound effects", "impact"),),
    "noise": (synth("noise", "sound effects", "noise"),),
}
