"""What an arrangement is, between the writer of the music and its renderer.

Times are in beats from the start of the song (a beat is a quarter note in 4/4, a dotted quarter in
6/8's compound feel is not used: `meter` counts beats per bar); the renderer turns beats into
seconds with the song's tempo. Swing and humanisation are already in the note times and
velocities: what is written here is what plays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ROLES = ("drums", "bass", "chords", "arp", "lead", "fx", "vocal")
TIMBRE_KINDS = ("soundfont", "drumkit", "synth")


@dataclass(frozen=True)
class Note:
    start: float  # beats from the song start
    length: float  # beats
    pitch: int  # MIDI note number; for drums a General MIDI percussion key (36 kick, 38 snare, 42 hat...)
    velocity: int  # 1..127
    glide_to: int | None = None  # a pitch to slide to over the note (808 and acid lines)


@dataclass(frozen=True)
class Timbre:
    """How a part sounds: a soundfont preset, a recorded drum kit, or a synthesised recipe."""

    kind: str  # one of TIMBRE_KINDS
    name: str  # soundfont file name / drum kit name / synth recipe name
    program: int | None = None  # General MIDI program (soundfont)
    bank: int = 0  # soundfont bank (128: drum kits in a GM soundfont)
    params: dict = field(default_factory=dict)  # synth recipe parameters, drawn per song


@dataclass
class Part:
    name: str  # the stem's file name, unique in its song: "kick", "bass", "pad", "lead"...
    role: str  # one of ROLES
    label_path: tuple[str, ...]  # coarse -> fine, in stemserver.vocabulary's words: ("bass", "synth bass")
    timbre: Timbre
    notes: list[Note] = field(default_factory=list)
    effects: list[dict] = field(default_factory=list)  # the production chain, in order (filled by the renderer)
    style: str = ""  # how the arrangement plays it ("808", "walking", "strum", a groove's name...): ground truth only


@dataclass(frozen=True)
class Section:
    name: str  # intro, verse, chorus, break, drop, bridge, outro...
    start_bar: int
    bars: int


@dataclass
class Song:
    id: str
    seed: int
    genre: str
    bpm: float
    meter: int  # beats per bar
    swing: float  # 0 (straight) .. 1 (full triplet swing) of the off-beat eighths or sixteenths
    tonic: int  # pitch class of the key, 0 = C
    mode: str  # major, minor, dorian, mixolydian, ...
    chords: list[str]  # one chord symbol per bar ("Am", "F/A", "G7", "Bbmaj7"...)
    sections: list[Section]
    parts: list[Part]

    @property
    def bars(self) -> int:
        return len(self.chords)

    @property
    def seconds(self) -> float:
        return self.bars * self.meter * 60.0 / self.bpm
