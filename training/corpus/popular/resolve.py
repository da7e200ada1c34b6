"""From an arrangement's timbres to what the sound side renders: the song's soundfont file, and
each synth voice's recipe and parameters.

The arrangement names voices by what they are ("saw", "808", "noise_hat", "gm") with parameters
on musical scales (0..1 amounts); the renderer (synth.py, soundfont.py, drumkit.py) takes recipe
names and parameters in its own units (filter Q, octaves of envelope, velocity thresholds). The
manifest records both: the voice as drawn and the timbre that played.
"""

from __future__ import annotations

import dataclasses
import random

from stemserver_training.corpus.errors import CorpusError
from stemserver_training.corpus.popular.score import Part, Song, Timbre
from stemserver_training.corpus.popular.sources import installed_soundfonts

KICK_END_HZ = 48.0
IMPACT_END_HZ = 32.0


def _q(resonance: float) -> float:
    """A 0..1 resonance as a filter Q: 0.7 (none) to about 8 (a squelching acid)."""
    return round(0.7 * 12 ** resonance, 3)


def _drive(amount: float) -> float:
    return round(1.0 + 3.0 * amount, 3)


def _subtractive(wave: str, p: dict) -> dict:
    out = {"wave": wave, "cutoff": p["cutoff"], "resonance": _q(p["resonance"]),
           "env_amount": round(3.0 * p["env_amount"], 3), "attack": p["attack"], "decay": p["decay"],
           "sustain": p["sustain"], "release": p["release"]}
    if p.get("width") is not None:
        out["width"] = p["width"]
    if p.get("detune_cents", 0.0) >= 2.0:
        out.update(voices=2, detune=p["detune_cents"])
    return out


def synth_recipe(part: Part) -> tuple[str, dict]:
    """The renderer's (recipe, parameters) for an arranged synth voice."""
    name, p, drums = part.timbre.name, part.timbre.params, part.role == "drums"
    if name in ("saw", "square", "pulse"):
        return "subtractive", _subtractive(name, p)
    if name == "acid":
        return "acid", {"cutoff": p["cutoff"], "resonance": _q(p["resonance"]),
                        "env_amount": round(4.0 * p["env_amount"], 3), "f_decay": p["decay"],
                        "accent": round(127 - 40 * p["accent"]), "drive": _drive(p["drive"])}
    if name == "fm":
        return "fm", {k: p[k] for k in ("ratio", "index", "decay", "sustain", "release")}
    if name == "supersaw":
        return "supersaw", {"voices": p["voices"], "detune": p["detune_cents"], "cutoff": p["cutoff"],
                            "attack": p["attack"], "release": p["release"]}
    if name == "808" and drums:
        start = round(KICK_END_HZ * 2 ** (max(p["pitch_drop"], 12) / 12), 1)
        return "kick808", {"decay": p["decay"], "start_hz": start,
                           "end_hz": KICK_END_HZ, "sweep": p["drop_time"], "drive": _drive(p["drive"])}
    if name == "808":
        return "bass808", {"decay": p["decay"], "punch": p["pitch_drop"], "punch_time": p["drop_time"],
                           "drive": _drive(p["drive"])}
    if name == "noise_hat":
        return "hats", {"closed": p["decay"], "open": round(min(4 * p["decay"], 0.8), 4), "cutoff": p["highpass"],
                        "metallic": p["metallic"]}
    if name == "noise" and drums:  # a synthesised snare or clap: the drum machine's, keyed by GM note
        return "drum_machine", {"snare_decay": max(p["decay"], 0.1), "snare_hz": p["tone_hz"],
                                "snare_tone": p["tone_mix"], "clap_decay": max(p["decay"], 0.15)}
    if name == "noise":
        return "noise", {"cutoff": p["cutoff"], "release": max(p["decay"], 0.1)}
    if name == "pad":
        vowel = p.get("vowel")
        return "pad", {"cutoff": p["cutoff"], "attack": p["attack"], "release": p["release"],
                       "detune": p["detune_cents"], "vowel": None if vowel in (None, "none") else vowel}
    if name == "pluck":
        return "pluck", {"decay": p["decay"], "cutoff": p["cutoff"], "env_amount": round(1 + 3 * p["brightness"], 3)}
    if name == "riser":
        return "riser", {"start_hz": p["start_hz"], "end_hz": p["end_hz"], "tone": round(1 - p["noise_mix"], 4)}
    if name == "sweep":
        return "sweep", {"start_hz": p["low_hz"], "end_hz": p["high_hz"], "down": p["direction"] == "down"}
    if name == "impact":
        return "impact", {"decay": p["decay"], "start_hz": round(IMPACT_END_HZ * 2 ** (p["pitch_drop"] / 12), 1),
                          "end_hz": IMPACT_END_HZ, "noise": p["noise_mix"]}
    raise ValueError(f"no synth recipe renders the arranged voice {name!r} (part {part.name!r})")


def resolve_timbres(song: Song, rng: random.Random) -> dict[str, Timbre]:
    """Give every part of `song` the timbre the renderer plays (in place): the song's soundfont,
    drawn from the installed ones, for GM presets and GM kits; a recipe for synth voices. Returns
    each part's voice as the arrangement drew it, by part name."""
    fonts = installed_soundfonts()
    font = rng.choice(fonts).name if fonts else None
    drawn = {}
    for part in song.parts:
        timbre = drawn[part.name] = part.timbre
        if timbre.name == "gm":
            if font is None:
                raise CorpusError("no General MIDI soundfont is installed: install one with "
                                  "`sudo apt-get install fluid-soundfont-gm`")
            part.timbre = dataclasses.replace(timbre, kind="soundfont", name=font)
        elif timbre.kind == "synth":
            recipe, params = synth_recipe(part)
            part.timbre = dataclasses.replace(timbre, name=recipe, params=params)
    return drawn
