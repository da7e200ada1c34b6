"""The standard instrument vocabulary: the labels training uses and producers type.

Labels form a coarse-to-fine hierarchy (a "label path", e.g. ["reed", "clarinet"]): training draws
one level at random per example, so the predictor learns both "reed" and "clarinet". Every label
here is lower-case and normalised (see normalize_label), so a label typed by a user and a label
written by the trainer meet in the same cache key.
"""

import re

FALLBACK_LABEL = "music"  # the label of a stem that has no label (as in the paper)

# The 16 General MIDI program families, 8 programs each, in program order.
GM_FAMILIES = (
    "piano", "chromatic percussion", "organ", "guitar",
    "bass", "strings", "ensemble", "brass",
    "reed", "pipe", "synth lead", "synth pad",
    "synth effects", "ethnic", "percussive", "sound effects",
)

# GM programs 0..127, named the way a producer would type them rather than as in the GM spec
# ("nylon guitar" rather than "Acoustic Guitar (nylon)").
GM_PROGRAMS = (
    # piano
    "acoustic grand piano", "bright acoustic piano", "electric grand piano", "honky-tonk piano",
    "electric piano", "fm electric piano", "harpsichord", "clavinet",
    # chromatic percussion
    "celesta", "glockenspiel", "music box", "vibraphone",
    "marimba", "xylophone", "tubular bells", "dulcimer",
    # organ
    "drawbar organ", "percussive organ", "rock organ", "church organ",
    "reed organ", "accordion", "harmonica", "bandoneon",
    # guitar
    "nylon guitar", "steel string guitar", "jazz guitar", "clean electric guitar",
    "muted electric guitar", "overdriven guitar", "distorted guitar", "guitar harmonics",
    # bass
    "acoustic bass", "fingered bass", "picked bass", "fretless bass",
    "slap bass", "popped bass", "synth bass", "analog synth bass",
    # strings
    "violin", "viola", "cello", "double bass",
    "tremolo strings", "pizzicato strings", "harp", "timpani",
    # ensemble
    "string ensemble", "slow strings", "synth strings", "analog synth strings",
    "choir aahs", "voice oohs", "synth choir", "orchestra hit",
    # brass
    "trumpet", "trombone", "tuba", "muted trumpet",
    "french horn", "brass section", "synth brass", "analog synth brass",
    # reed
    "soprano saxophone", "alto saxophone", "tenor saxophone", "baritone saxophone",
    "oboe", "english horn", "bassoon", "clarinet",
    # pipe
    "piccolo", "flute", "recorder", "pan flute",
    "blown bottle", "shakuhachi", "whistle", "ocarina",
    # synth lead
    "square lead", "saw lead", "calliope lead", "chiff lead",
    "charang lead", "voice lead", "fifths lead", "bass and lead",
    # synth pad
    "new age pad", "warm pad", "polysynth pad", "choir pad",
    "bowed pad", "metallic pad", "halo pad", "sweep pad",
    # synth effects
    "rain fx", "soundtrack fx", "crystal fx", "atmosphere fx",
    "brightness fx", "goblins fx", "echoes fx", "sci-fi fx",
    # ethnic
    "sitar", "banjo", "shamisen", "koto",
    "kalimba", "bagpipe", "fiddle", "shehnai",
    # percussive
    "tinkle bell", "agogo", "steel drums", "woodblock",
    "taiko drum", "melodic tom", "synth drum", "reverse cymbal",
    # sound effects
    "guitar fret noise", "breath noise", "seashore", "bird tweet",
    "telephone ring", "helicopter", "applause", "gunshot",
)

# General MIDI channel 10 plays drum kits, whatever its program number says.
DRUM_KIT_LABEL_PATH = ["drums", "drum kit"]

MUSDB18_LABELS = ("bass", "drums", "vocals", "other")

# MoisesDB's taxonomy (moisesdb.defaults.taxonomy): stem category -> track types, as friendly
# labels. MOISESDB_TRACK_TYPES below maps the dataset's own strings onto these.
MOISESDB_LABELS = {
    "vocals": ("lead male singer", "lead female singer", "choir", "background vocals",
               "other vocals"),
    "bass": ("bass guitar", "synth bass", "double bass", "tuba", "bassoon"),
    "drums": ("snare drum", "toms", "kick drum", "cymbals", "overheads", "acoustic drum kit",
              "drum machine"),
    "other": ("sound effects", "click track"),
    "guitar": ("clean electric guitar", "distorted electric guitar", "slide guitar",
               "acoustic guitar"),
    "other plucked": ("plucked strings",),
    "percussion": ("unpitched percussion", "pitched percussion"),
    "piano": ("grand piano", "electric piano"),
    "other keys": ("organ", "synth pad", "synth lead", "other keyboards"),
    "bowed strings": ("solo violin", "solo viola", "solo cello", "violin section",
                      "viola section", "cello section", "string section", "other strings"),
    "wind": ("brass", "flutes", "reeds", "other wind"),
}

# MoisesDB's track-type strings, exactly as its metadata spells them, -> friendly labels.
MOISESDB_TRACK_TYPES = {
    "lead male singer": "lead male singer",
    "lead female singer": "lead female singer",
    "human choir": "choir",
    "background vocals": "background vocals",
    "other (vocoder, beatboxing etc)": "other vocals",
    "bass guitar": "bass guitar",
    "bass synthesizer (moog etc)": "synth bass",
    "contrabass/double bass (bass of instrings)": "double bass",
    "tuba (bass of brass)": "tuba",
    "bassoon (bass of woodwind)": "bassoon",
    "snare drum": "snare drum",
    "toms": "toms",
    "kick drum": "kick drum",
    "cymbals": "cymbals",
    "overheads": "overheads",
    "full acoustic drumkit": "acoustic drum kit",
    "drum machine": "drum machine",
    "fx/processed sound, scratches, gun shots, explosions etc": "sound effects",
    "click track": "click track",
    "clean electric guitar": "clean electric guitar",
    "distorted electric guitar": "distorted electric guitar",
    "lap steel guitar or slide guitar": "slide guitar",
    "acoustic guitar": "acoustic guitar",
    "banjo, mandolin, ukulele, harp etc": "plucked strings",
    "a-tonal percussion (claps, shakers, congas, cowbell etc)": "unpitched percussion",
    "pitched percussion (mallets, glockenspiel, ...)": "pitched percussion",
    "grand piano": "grand piano",
    "electric piano (rhodes, wurlitzer, piano sound alike)": "electric piano",
    "organ, electric organ": "organ",
    "synth pad": "synth pad",
    "synth lead": "synth lead",
    "other sounds (hapischord, melotron etc)": "other keyboards",
    "violin (solo)": "solo violin",
    "viola (solo)": "solo viola",
    "cello (solo)": "solo cello",
    "violin section": "violin section",
    "viola section": "viola section",
    "cello section": "cello section",
    "string section": "string section",
    "other strings": "other strings",
    "brass (trumpet, trombone, french horn, brass etc)": "brass",
    "flutes (piccolo, bamboo flute, panpipes, flutes etc)": "flutes",
    "reeds (saxophone, clarinets, oboe, english horn, bagpipe)": "reeds",
    "other wind": "other wind",
}

# Words producers type that the datasets do not use. They are embedded ahead of time so that
# serving answers them from the label cache, without loading a text model.
SYNONYMS = (
    "sax", "keys", "keyboard", "upright bass", "808", "sub bass", "pad", "lead", "strings",
    "hi hats", "hats", "kick", "snare", "claps", "shaker", "lead vocals", "vocal", "backing vocals",
    "acoustic guitar", "electric guitar", "guitar solo", "synth", "arp", "pluck", "choir", "horns",
    "woodwinds", "percussion", "mallets", "fx", "music",
    "riser", "sweep", "impact", "noise", "acid", "fm lead",  # sample-pack words the popular corpus labels with
)


def normalize_label(text: str) -> str:
    """Lower-case, trim, and collapse runs of whitespace and underscores to one space.

    Dataset folder names ("bowed_strings"), user input ("  Bass  Guitar ") and vocabulary entries
    all map to the same key this way.
    """
    label = re.sub(r"[\s_]+", " ", text.lower()).strip()
    if not label:
        raise ValueError(f"empty instrument label {text!r}: give an instrument name such as 'bass'")
    return label


def _check_program(program: int) -> None:
    if not 0 <= program <= 127:
        raise ValueError(
            f"General MIDI program {program} is out of range: programs are numbered 0..127 "
            "(subtract 1 if yours count from 1; drums live on channel 10, see DRUM_KIT_LABEL_PATH)"
        )


def gm_family(program: int) -> str:
    """The family label of a General MIDI program (0..127), e.g. 71 -> "reed"."""
    _check_program(program)
    return GM_FAMILIES[program // 8]


def gm_label_path(program: int) -> list[str]:
    """[family, program name] for a General MIDI program, e.g. 71 -> ["reed", "clarinet"]."""
    _check_program(program)
    return [GM_FAMILIES[program // 8], GM_PROGRAMS[program]]


def moisesdb_label_path(stem: str, track_type: str) -> list[str]:
    """[category, track type] labels for a MoisesDB-style source, from the data.json strings.

    e.g. ("bass", "bass synthesizer (moog etc)") -> ["bass", "synth bass"]. MoisesDB's own
    track-type strings map onto friendly labels (MOISESDB_TRACK_TYPES); any other non-empty track
    type is kept, normalised, and so is any category: the open corpus writes the same layout with
    General MIDI families and programs (("reed", "clarinet") -> ["reed", "clarinet"]), and a label
    outside a fixed taxonomy still trains, since the text encoder embeds free text. A fine label
    equal to its category adds no level and is dropped. An empty stem name is a ValueError.
    """
    category = normalize_label(stem)
    fine = MOISESDB_TRACK_TYPES.get(track_type.strip().lower())
    if fine is None and track_type.replace("_", " ").strip():
        fine = normalize_label(track_type)
    return [category, fine] if fine and fine != category else [category]


def standard_vocabulary() -> list[str]:
    """Every label above, normalised, de-duplicated, in a stable order (first occurrence wins)."""
    labels = [
        FALLBACK_LABEL,
        *GM_FAMILIES,
        *GM_PROGRAMS,
        *DRUM_KIT_LABEL_PATH,
        *MUSDB18_LABELS,
        *(label for category, types in MOISESDB_LABELS.items() for label in (category, *types)),
        *SYNONYMS,
    ]
    return list(dict.fromkeys(normalize_label(label) for label in labels))
