"""Recorded drum kits (Hydrogen's drumkit.xml and its samples) played by General MIDI percussion keys.

A kit's instruments are matched to GM keys by their names (kits name them freely: "Kick",
"BassDrum", "c3 - bass drum 1", "Sabian Hat Semi-Open"...). A note picks the instrument's layer
for its velocity, and the sample is mixed in at the note's start, scaled by the instrument's
and the layer's gain and by the velocity. A hit cuts the one still ringing in its mute group
(the kit's own groups, and the hi-hat's three keys as one), as Hydrogen plays them.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile
import soxr

from stemserver_training.corpus.errors import CorpusError
from stemserver_training.corpus.popular import dsp, sources
from stemserver_training.corpus.popular.score import Note

LEAD_DB = -46.0  # a sample's start is its first sample this far below its peak or louder...
LEAD_KEEP_S = 0.0005  # ...less this much, so the attack keeps its first rise
HAT_GROUP = -2  # the choke group of a kit's hi-hat keys when the kit gives them none

# GM key -> alternatives tried in order, each (words that must all be in the name, words that must not);
# `nth` of a rule picks a second instrument of the kind (a second crash for key 57) when the kit has one.
_NO_HAT_VARIANT = ("open", "pedal", "op", "pd", "side", "free", "semi", "swish", "choke")
_TOMS = {"low": (("tom", "floor"), ("tom", "low"), ("tom", "lo")), "mid": (("tom", "mid"), ("tom", "2")),
         "high": (("tom", "hi"), ("tom", "1"), ("tom",))}
_RULES: dict[int, tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]] = {
    36: ((("kick",), ()), (("bass drum",), ()), (("bassdrum",), ()), (("bd",), ())),
    38: ((("snare",), ("roll", "rim", "stick")),),
    37: ((("stick",), ()), (("rim",), ())),
    39: ((("clap",), ()),),
    42: tuple(((w, c), _NO_HAT_VARIANT) for w in ("hat", "hh") for c in ("closed", "cl"))
    + ((("hh",), _NO_HAT_VARIANT),),
    44: ((("hat", "pedal"), ()), (("hh", "pedal"), ()), (("hat", "pd"), ())),
    46: tuple(((w, o), ()) for o in ("open", "op", "semi") for w in ("hat", "hh")),
    49: ((("crash",), ("ride",)), (("crash",), ())),
    51: ((("ride",), ("bell", "cup", "crash")), (("ride",), ("bell", "cup"))),
    53: ((("ride", "bell"), ()), (("cup",), ()), (("ride",), ())),
    55: ((("splash",), ("choke",)), (("crash",), ())),
    41: tuple((w, ()) for w in _TOMS["low"]), 43: tuple((w, ()) for w in _TOMS["low"]),
    45: tuple((w, ()) for w in _TOMS["mid"]), 47: tuple((w, ()) for w in _TOMS["mid"]),
    48: tuple((w, ()) for w in _TOMS["high"]), 50: tuple((w, ()) for w in _TOMS["high"]),
    54: ((("tamb",), ()),), 56: ((("cowbell",), ()), (("cow",), ())),
    60: ((("bongo", "hi"), ()), (("bongo",), ())), 61: ((("bongo", "lo"), ()), (("bongo",), ())),
    62: ((("conga",), ()), (("djembe", "slap"), ())), 63: ((("conga",), ()), (("djembe", "tone"), ())),
    64: ((("conga",), ()), (("djembe", "bass"), ())),
    69: ((("cabasa",), ()), (("shaker",), ()), (("maraca",), ())), 70: ((("maraca",), ()), (("shaker",), ())),
    75: ((("clave",), ()),), 76: ((("woodblock", "hi"), ()), (("wood",), ())),
    77: ((("woodblock", "lo"), ()), (("wood",), ())),
}
_SECOND = {35: 36, 40: 38, 57: 49, 59: 51, 52: 49}  # keys that take a second instrument of a kind, else the first
_FALLBACK = {44: 42, 45: 48, 47: 48}  # a kit without a pedal hat plays it closed; one without a mid tom, high


@dataclass(frozen=True)
class Layer:
    low: float  # velocity range, 0..1
    high: float
    gain: float
    path: Path


@dataclass(frozen=True)
class Instrument:
    name: str
    gain: float
    layers: tuple[Layer, ...]
    mute_group: int | None

    def layer(self, velocity: int) -> Layer:
        v = velocity / 127
        for layer in self.layers:
            if layer.low <= v <= layer.high:
                return layer
        return min(self.layers, key=lambda la: min(abs(la.low - v), abs(la.high - v)))


@dataclass(frozen=True)
class Kit:
    name: str
    folder: Path
    licence: str
    instruments: tuple[Instrument, ...]

    def keymap(self) -> dict[int, Instrument]:
        """The instrument each General MIDI percussion key plays (keys the kit lacks are absent)."""
        found: dict[int, list[Instrument]] = {key: _matches(self.instruments, rules) for key, rules in _RULES.items()}
        out = {key: matches[0] for key, matches in found.items() if matches}
        for key, kind in _SECOND.items():
            if found[kind]:
                out[key] = found[kind][1] if len(found[kind]) > 1 else found[kind][0]
        for key, other in _FALLBACK.items():
            if key not in out and other in out:
                out[key] = out[other]
        return out


def playable_kits(keys: Sequence[int], root: Path | None = None) -> list[str]:
    """The installed kits that have an instrument for every one of `keys` (e.g. 36, 38, 42 for a full kit)."""
    folder = sources.HYDROGEN_KITS if root is None else root
    return [name for name in sources.installed_drumkits(folder)
            if set(keys) <= set(load_kit(sources.drumkit_folder(name, folder)).keymap())]


def _matches(instruments: Sequence[Instrument], rules) -> list[Instrument]:
    """The instruments that satisfy the first rule any of them satisfies, in kit order."""
    for required, forbidden in rules:
        hits = [i for i in instruments if all(" " + w in _words(i.name) for w in required)
                and not any(" " + w in _words(i.name) for w in forbidden)]
        if hits:
            return hits
    return []


def _words(name: str) -> str:
    """A name lower-cased with separators as spaces, padded: a rule's word matches the start of a
    word ("op" matches "open", "tom" does not match "stomp")."""
    return " " + re.sub(r"[^a-z0-9]+", " ", name.lower()) + " "


def _text(element: ET.Element, tag: str, default: str = "") -> str:
    child = element.find(tag)
    return default if child is None or child.text is None else child.text.strip()


@lru_cache(maxsize=32)
def load_kit(folder: Path) -> Kit:
    """Parse `folder`/drumkit.xml (any Hydrogen version: with or without a namespace, per-layer or
    single samples); instruments without a sample file on disk are left out."""
    try:
        root = ET.parse(folder / "drumkit.xml").getroot()
    except (OSError, ET.ParseError) as e:
        raise CorpusError(f"cannot read the drum kit {folder}/drumkit.xml: {e}") from e
    for element in root.iter():
        element.tag = element.tag.rpartition("}")[2]
    instruments = []
    for inst in root.iter("instrument"):
        layers = [Layer(float(_text(la, "min", "0")), float(_text(la, "max", "1")), float(_text(la, "gain", "1")),
                        folder / _text(la, "filename")) for la in inst.iter("layer") if _text(la, "filename")]
        if not layers and _text(inst, "filename"):
            layers = [Layer(0.0, 1.0, 1.0, folder / _text(inst, "filename"))]
        layers = [la for la in layers if la.path.is_file()]
        if not layers or _text(inst, "isMuted") == "true":
            continue
        group = int(_text(inst, "muteGroup", "-1"))
        gain = float(_text(inst, "gain", "1")) * float(_text(inst, "volume", "1"))
        instruments.append(Instrument(_text(inst, "name"), gain, tuple(layers), group if group >= 0 else None))
    if not instruments:
        raise CorpusError(f"the drum kit {folder} has no instrument with a sample file")
    return Kit(_text(root, "name", folder.name), folder, _text(root, "license") or _text(root, "licence"),
               tuple(instruments))


@lru_cache(maxsize=4096)
def load_sample(path: Path, sample_rate: int) -> np.ndarray:
    """A sample file as mono float64 at `sample_rate` (kept: a kit's samples are played many times),
    its leading silence cut (some kits' samples start up to 18 ms late, which would drag the groove)."""
    try:
        audio, rate = soundfile.read(path, dtype="float64", always_2d=True)
    except (OSError, RuntimeError) as e:
        raise CorpusError(f"cannot read the drum sample {path}: {e}") from e
    mono = audio.mean(axis=1)
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate)
    loud = np.flatnonzero(np.abs(mono) > np.abs(mono).max(initial=0.0) * 10 ** (LEAD_DB / 20))
    if len(loud):
        mono = mono[max(0, loud[0] - int(LEAD_KEEP_S * sample_rate)):]
    mono.setflags(write=False)
    return mono


def render_kit(kit: Kit, notes: Sequence[Note], seconds_per_beat: float, sample_rate: int,
               n_samples: int) -> np.ndarray:
    """`notes` (GM percussion keys) played on `kit`; keys the kit lacks stay silent (see keymap)."""
    keymap = kit.keymap()
    hits = []
    for note in notes:
        inst = keymap.get(note.pitch)
        if inst is None:
            continue
        layer = inst.layer(note.velocity)
        sound = load_sample(layer.path, sample_rate) * (inst.gain * layer.gain * note.velocity / 127)
        group = inst.mute_group if inst.mute_group is not None else (HAT_GROUP if note.pitch in (42, 44, 46)
                                                                     else None)
        hits.append((round(note.start * seconds_per_beat * sample_rate), sound, group))
    return dsp.mix_hits(hits, n_samples, sample_rate).astype(np.float32)
