import pytest

from stemserver import vocabulary as v


def test_gm_tables_have_the_right_sizes_and_unique_names():
    assert len(v.GM_FAMILIES) == 16
    assert len(v.GM_PROGRAMS) == 128
    assert len(set(v.GM_FAMILIES)) == 16
    assert len(set(v.GM_PROGRAMS)) == 128


@pytest.mark.parametrize("program, path", [
    (0, ["piano", "acoustic grand piano"]),
    (24, ["guitar", "nylon guitar"]),
    (33, ["bass", "fingered bass"]),
    (34, ["bass", "picked bass"]),
    (40, ["strings", "violin"]),
    (65, ["reed", "alto saxophone"]),
    (71, ["reed", "clarinet"]),
    (127, ["sound effects", "gunshot"]),
])
def test_gm_label_path(program, path):
    assert v.gm_label_path(program) == path
    assert v.gm_family(program) == path[0]


def test_every_program_belongs_to_its_block_of_eight():
    for program in range(128):
        assert v.gm_family(program) == v.GM_FAMILIES[program // 8]
        assert v.gm_label_path(program) == [v.GM_FAMILIES[program // 8], v.GM_PROGRAMS[program]]


@pytest.mark.parametrize("program", [-1, 128, 1000])
def test_out_of_range_program_is_a_clear_error(program):
    with pytest.raises(ValueError, match=r"0\.\.127"):
        v.gm_label_path(program)
    with pytest.raises(ValueError, match=str(program)):
        v.gm_family(program)


def test_drum_kit_path():
    assert v.DRUM_KIT_LABEL_PATH == ["drums", "drum kit"]


@pytest.mark.parametrize("text, label", [
    ("Bass", "bass"),
    ("  Bass_Guitar \t", "bass guitar"),
    ("other__plucked", "other plucked"),
    ("HI   HATS\n", "hi hats"),
    ("808", "808"),
])
def test_normalize_label(text, label):
    assert v.normalize_label(text) == label


@pytest.mark.parametrize("text", ["", "   ", "__", "\t_\n"])
def test_normalize_label_rejects_empty(text):
    with pytest.raises(ValueError, match="empty instrument label"):
        v.normalize_label(text)


def test_every_table_is_already_normalised():
    labels = [*v.GM_FAMILIES, *v.GM_PROGRAMS, *v.DRUM_KIT_LABEL_PATH, *v.MUSDB18_LABELS,
              *v.MOISESDB_LABELS, *(t for types in v.MOISESDB_LABELS.values() for t in types),
              *v.SYNONYMS, v.FALLBACK_LABEL]
    assert all(v.normalize_label(label) == label for label in labels)


def test_moisesdb_taxonomy():
    # The stem folders of MoisesDB, written as labels.
    assert set(v.MOISESDB_LABELS) == {
        "bass", "bowed strings", "drums", "guitar", "other", "other keys", "other plucked",
        "percussion", "piano", "vocals", "wind"}
    assert {"bass guitar", "synth bass", "double bass"} <= set(v.MOISESDB_LABELS["bass"])
    assert {"lead male singer", "lead female singer", "background vocals"} <= set(
        v.MOISESDB_LABELS["vocals"])
    # Every friendly track type is reachable from the dataset's own strings, and only those.
    assert set(v.MOISESDB_TRACK_TYPES.values()) == {
        t for types in v.MOISESDB_LABELS.values() for t in types}


@pytest.mark.parametrize("stem, track_type, path", [
    ("bass", "bass synthesizer (moog etc)", ["bass", "synth bass"]),
    ("bowed_strings", "violin (solo)", ["bowed strings", "solo violin"]),
    ("guitar", "Distorted Electric Guitar", ["guitar", "distorted electric guitar"]),
    # A track type outside MoisesDB's table is kept, normalised.
    ("other_keys", "something new", ["other keys", "something new"]),
    # The open corpus: General MIDI family -> program, categories outside MoisesDB's taxonomy.
    ("reed", "clarinet", ["reed", "clarinet"]),
    ("synth_pad", "Warm  Pad", ["synth pad", "warm pad"]),
    ("drums", "drum kit", ["drums", "drum kit"]),
    ("kazoos", "kazoo", ["kazoos", "kazoo"]),
    # No usable fine level: just the category.
    ("bass", "", ["bass"]),
    ("vocals", " _ ", ["vocals"]),
    ("Bass", "bass", ["bass"]),
])
def test_moisesdb_label_path(stem, track_type, path):
    assert v.moisesdb_label_path(stem, track_type) == path


def test_moisesdb_label_path_rejects_an_empty_stem_name():
    with pytest.raises(ValueError, match="empty instrument label"):
        v.moisesdb_label_path("  ", "bass guitar")


def test_standard_vocabulary():
    vocab = v.standard_vocabulary()
    assert len(vocab) == len(set(vocab))
    assert vocab == v.standard_vocabulary()  # stable order
    assert all(v.normalize_label(label) == label for label in vocab)
    expected = {*v.GM_FAMILIES, *v.GM_PROGRAMS, *v.DRUM_KIT_LABEL_PATH, *v.MUSDB18_LABELS,
                *v.MOISESDB_LABELS, *v.SYNONYMS, v.FALLBACK_LABEL,
                *(t for types in v.MOISESDB_LABELS.values() for t in types)}
    assert set(vocab) == expected
    for word in ["sax", "keys", "upright bass", "808", "pad", "hi hats", "lead vocals", "music"]:
        assert word in vocab
