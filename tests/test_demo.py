"""The default model and the demo library: tools/make_demo_library.py on tiny corpus-shaped folders
(classical and popular) and on tiny real builds of both corpora, and `stemserver serve` as a new user
first runs it (a real subprocess on loopback, an empty data folder, the demo copied and indexed, the
printed first query run as printed), and as a user of an earlier version's demo meets the new one."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import soundfile
from conftest import make_checkpoint, melody

from stemserver import audio
from stemserver.index import read_current
from stemserver.library import Library
from stemserver_training.cache import build_cache
from stemserver_training.datasets import read_moisesdb

pytestmark = pytest.mark.slow  # the whole file: subprocesses, rendering or training (README: test tiers)

ROOT = Path(__file__).parent.parent
TOOL = ROOT / "tools" / "make_demo_library.py"
RATE = 16_000
SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
# (work id, variant, [(stemName, trackType)]): two variants of one work, and two other works
TRACKS = [
    ("bach/bwv66.6.mxl", 0, [("bass", "fretless bass"), ("guitar", "steel string guitar"), ("drums", "drum kit")]),
    ("bach/bwv66.6.mxl", 1, [("bass", "acoustic bass"), ("organ", "church organ")]),
    ("mozart/k155/movement1.mxl", 0, [("bass", "synth bass 1"), ("brass", "trumpet"), ("brass", "trumpet")]),
    ("haydn/opus1no1/movement1.mxl", 0, [("ensemble", "string ensemble 1"), ("bass", "electric bass finger")]),
]
SYNTH = {"kind": "synth", "name": "subtractive", "params": {}}
FLUID = {"kind": "soundfont", "name": "FluidR3_GM.sf2", "program": 0, "bank": 0, "package": "fluid-soundfont-gm",
         "version": "3.1-5.3", "licence": "MIT"}
CC0_KIT = {"kind": "drumkit", "name": "Audiophob", "package": "hydrogen-drumkits", "version": "2017.09.19~dfsg-1",
           "licence": "CC0"}
GPL_FONT = {"kind": "soundfont", "name": "TimGM6mb.sf2", "program": 33, "bank": 0, "package": "timgm6mb-soundfont",
            "version": "1.3-5", "licence": "GPL-2"}
# (song id, genre, [(stemName, trackType, timbre, level dB, starts at s)]), as `corpus build --style popular` writes
SONGS = [
    ("house_0_00000", "house", [("drums", "kick drum", CC0_KIT, 0, 0), ("drums", "cymbals", CC0_KIT, -30, 0),
                                ("bass", "synth bass", SYNTH, 0, 0), ("piano", "electric piano", FLUID, -3, 0),
                                ("sound_effects", "riser", SYNTH, -12, 0)]),
    ("rock_0_00001", "rock", [("drums", "acoustic drum kit", CC0_KIT, 0, 0), ("bass", "picked bass", GPL_FONT, 0, 0),
                              ("guitar", "distorted guitar", FLUID, 0, 0)]),
    ("pop_0_00002", "pop", [("drums", "drum kit", FLUID, 0, 0), ("bass", "fingered bass", FLUID, -40, 0),
                            ("piano", "bright acoustic piano", FLUID, 0, 0), ("synth_lead", "saw lead", SYNTH, 0, 0),
                            ("strings", "violin", FLUID, 0, 4.5)]),
]


def write_corpus(root: Path, seconds: float = 6.0) -> list[str]:
    """A folder as `stemserver corpus build` writes it: MoisesDB layout and manifest.jsonl."""
    ids, seed = [], 0
    for work_id, variant, stems in TRACKS:
        track_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{work_id}/{variant}"))
        records = []
        for stem_name, track_type in stems:
            source_id = write_stem(root / track_id, stem_name, track_type, melody(seconds, seed))
            seed += 1
            records.append({"stem_name": stem_name, "source_id": source_id, "label_path": [stem_name, track_type]})
        write_data_json(root / track_id, f"Title ({work_id})", work_id.split("/")[0])
        append_record(root, {"type": "track", "track_id": track_id, "work_id": work_id,
                             "composer": work_id.split("/")[0], "title": f"Title of {work_id}", "variant": variant,
                             "duration": seconds, "stems": records, "soundfont": SOUNDFONT})
        ids.append(track_id)
    return ids


def write_popular_corpus(root: Path, seconds: float = 6.0) -> list[str]:
    """A folder as `stemserver corpus build --style popular` writes it: every stem's timbre and licence."""
    for n, (song, genre, stems) in enumerate(SONGS):
        records = []
        for i, (stem_name, track_type, timbre, level_db, start) in enumerate(stems):
            samples = melody(seconds, 100 + 10 * n + i) * np.float32(10 ** (level_db / 20))
            samples[: int(start * RATE)] = 0
            source_id = write_stem(root / song, stem_name, track_type, samples)
            records.append({"stem_name": stem_name, "label_path": [stem_name.replace("_", " "), track_type],
                            "id": source_id, "timbre": timbre})
        write_data_json(root / song, song, "stemserver popular generator")
        append_record(root, {"type": "track", "track_id": song, "style": "popular", "genre": genre, "bpm": 120.0,
                             "key": "A minor", "duration": seconds, "stems": records, "silent_stems": []})
    return [song for song, _, _ in SONGS]


def write_stem(folder: Path, stem_name: str, track_type: str, samples: np.ndarray) -> str:
    source_id = str(uuid.uuid4())
    (folder / stem_name).mkdir(parents=True, exist_ok=True)
    soundfile.write(folder / stem_name / f"{source_id}.flac", samples, RATE, subtype="PCM_16")
    data = json.loads((folder / "stems.json").read_text()) if (folder / "stems.json").is_file() else {}
    data.setdefault(stem_name, {"stemName": stem_name, "id": str(uuid.uuid4()), "tracks": []})
    data[stem_name]["tracks"].append({"trackType": track_type, "id": source_id, "extension": "flac"})
    (folder / "stems.json").write_text(json.dumps(data))
    return source_id


def write_data_json(folder: Path, song: str, artist: str) -> None:
    stems = json.loads((folder / "stems.json").read_text())
    (folder / "stems.json").unlink()
    (folder / "data.json").write_text(json.dumps({"song": song, "artist": artist, "stems": list(stems.values())}))


def append_record(root: Path, record: dict) -> None:
    with (root / "manifest.jsonl").open("a") as f:
        f.write(json.dumps(record) + "\n")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("corpus")
    return root, write_corpus(root)


@pytest.fixture(scope="module")
def popular(tmp_path_factory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("popular")
    return root, write_popular_corpus(root)


def make_demo(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def demo(corpus, popular, tmp_path_factory) -> Path:
    (root, ids), (songs, song_ids) = corpus, popular
    out = tmp_path_factory.mktemp("assets") / "demo"
    result = make_demo(songs, root, "--out", out, "--seconds", "4", "--track", song_ids[0], "--track", ids[0],
                       "--track", song_ids[2], "--track", ids[2])
    assert result.returncode == 0, result.stderr
    return out


def manifest_of(demo: Path) -> dict:
    return json.loads((demo / "demo.json").read_text())


def decoded(demo: Path, path: str) -> np.ndarray:
    return audio.load(demo / path)[0]


def db(samples: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(samples, dtype=np.float64)) + 1e-20))


def assert_mix_leaves_out(demo: Path, mix: dict) -> None:
    """The mix is the sum of its track's other stems, and not of the one it leaves out, within what the codec
    changes (its error on loud stems can be as loud as a quiet part: the part left out shows in correlation)."""
    others = [f["path"] for f in manifest_of(demo)["files"] if f["kind"] == "stem" and f["track"] == mix["track"]
              and f["path"] != mix["missing"]["path"]]
    heard = decoded(demo, mix["path"])
    residual = heard - mix["gain"] * np.sum([decoded(demo, p) for p in others], axis=0)
    missing = mix["gain"] * decoded(demo, mix["missing"]["path"])
    assert db(residual) < db(heard) - 12, mix["path"]
    assert abs(np.corrcoef(residual, missing)[0, 1]) < 0.2, mix["path"]
    assert np.corrcoef(residual - missing, missing)[0, 1] < -0.5, mix["path"]  # were it in the mix, this would be ~0
    assert 0 < mix["gain"] <= 1 and np.abs(heard).max() <= 1.0


# -- tools/make_demo_library.py ---------------------------------------------------------------


def test_the_demo_holds_encoded_stems_mixes_and_a_manifest(corpus, popular, demo: Path):
    (_, ids), (_, song_ids) = corpus, popular
    manifest = manifest_of(demo)
    assert "FluidR3_GM" in manifest["source"] and "music21" in manifest["source"] and "popular" in manifest["source"]
    assert manifest["licences"] == ["CC0", "MIT"]
    files = manifest["files"]
    assert [f["track"] for f in files if f["kind"] == "mix"] == [song_ids[0], ids[0], song_ids[2], ids[2]]
    assert sorted(f["path"] for f in files if f["track"] == ids[0]) == [
        "mixes/bach-bwv66-6-v0.opus", "stems/bass/bach-bwv66-6-v0-fretless-bass.opus",
        "stems/drums/bach-bwv66-6-v0-drum-kit.opus", "stems/guitar/bach-bwv66-6-v0-steel-string-guitar.opus"]
    assert sorted(f["path"] for f in files if f["track"] == song_ids[0]) == [
        "mixes/house-0-00000.opus", "stems/bass/house-0-00000-synth-bass.opus",
        "stems/drums/house-0-00000-cymbals.opus", "stems/drums/house-0-00000-kick-drum.opus",
        "stems/piano/house-0-00000-electric-piano.opus", "stems/sound-effects/house-0-00000-riser.opus"]
    trumpets = sorted(f["path"] for f in files if f["track"] == ids[2] and f["stem"] and "brass" in f["stem"])
    assert trumpets == ["stems/brass/mozart-k155-movement1-v0-trumpet-2.opus",
                        "stems/brass/mozart-k155-movement1-v0-trumpet.opus"]
    on_disk = sorted(p.relative_to(demo).as_posix() for p in demo.rglob("*.opus"))
    assert on_disk == sorted(f["path"] for f in files)
    for f in files:
        assert f["kind"] in ("mix", "stem") and f["track"] and f["work"] and f["style"] in ("popular", "classical")
        assert f["bytes"] == (demo / f["path"]).stat().st_size and f["seconds"] == pytest.approx(4.0, abs=0.01)
        info = soundfile.info(demo / f["path"])
        assert (info.format, info.subtype, info.samplerate, info.channels) == ("OGG", "OPUS", RATE, 1)
        assert info.duration == pytest.approx(4.0, abs=0.01)
    bass = next(f for f in files if f["path"].startswith("stems/bass/bach"))
    assert (bass["kind"], bass["labels"], bass["stem"].split("/")[0]) == ("stem", ["bass", "fretless bass"], "bass")
    assert "music21" in bass["source"] and "FluidR3_GM" in bass["source"] and bass["licence"] == "MIT"
    kick, synth = (next(f for f in files if f["path"] == f"stems/{p}.opus")
                   for p in ("drums/house-0-00000-kick-drum", "bass/house-0-00000-synth-bass"))
    assert "popular-music generator" in kick["source"] and "Audiophob" in kick["source"] and kick["licence"] == "CC0"
    assert "subtractive synthesiser" in synth["source"] and synth["licence"] == "MIT"
    assert (kick["genre"], kick["bpm"], kick["key"], kick["title"]) == ("house", 120.0, "A minor",
                                                                         "house song, 120 BPM, A minor")
    house = next(f for f in files if f["path"] == "mixes/house-0-00000.opus")
    assert "Audiophob" in house["source"] and "FluidR3_GM" in house["source"] and house["licence"] == "CC0; MIT"
    # the violin starts at 4.5 s: silent in the first 4 s, it is neither shipped nor mixed
    violin = next(f"strings/{p.stem}" for p in (popular[0] / song_ids[2] / "strings").iterdir())
    assert manifest["left_out"] == [{"track": song_ids[2], "stem": violin, "reason": "silent in the excerpt"}]
    assert sum(p.stat().st_size for p in demo.rglob("*") if p.is_file()) < 20e6


def test_each_mix_leaves_out_one_audible_part_alone_in_its_family_and_the_families_rotate(demo: Path):
    files = manifest_of(demo)["files"]
    mixes = [f for f in files if f["kind"] == "mix"]
    # house: its drums are two stems (kick and cymbals): bass; bach: bass was asked, drums not yet; pop: its bass is
    # 40 dB down, drums were asked: piano; mozart: two trumpets, so brass is never asked alone: bass again
    assert [m["missing"]["family"] for m in mixes] == ["bass", "drums", "piano", "bass"]
    for mix in mixes:
        stems = {f["path"]: f for f in files if f["kind"] == "stem" and f["track"] == mix["track"]}
        missing = mix["missing"]
        assert missing["path"] in stems and missing["path"] not in mix["contains"]
        assert sorted([*mix["contains"], missing["path"]]) == sorted(stems)
        assert missing["labels"] == stems[missing["path"]]["labels"]
        assert missing["family"] == missing["path"].split("/")[1] == missing["labels"][0].replace(" ", "-")
        assert mix["labels"] == sorted({stems[p]["labels"][0] for p in mix["contains"]})
        assert sum(stems[p]["path"].split("/")[1] == missing["family"] for p in stems) == 1


def test_each_mix_is_the_sum_of_its_other_stems(demo: Path):
    """Decoded, within what the codec changes: the part left out is not in the mix, every other one is."""
    for mix in (f for f in manifest_of(demo)["files"] if f["kind"] == "mix"):
        assert_mix_leaves_out(demo, mix)


def test_tracks_are_chosen_from_a_split_one_per_work_from_each_corpus(corpus, popular, tmp_path: Path):
    (root, ids), (songs, song_ids) = corpus, popular
    root, songs = shutil.copytree(root, tmp_path / "corpora" / "classical"), \
        shutil.copytree(songs, tmp_path / "corpora" / "popular")
    prepared = build_cache(read_moisesdb(tmp_path / "corpora"), tmp_path / "cache", valid_fraction=0.0,
                           test_fraction=0.99, progress=False)
    held_out = {t.name for t in prepared.tracks if t.split == "test"}
    out = tmp_path / "demo"
    result = make_demo(songs, root, "--cache", tmp_path / "cache", "--tracks", "2", "--out", out, "--seconds", "2")
    assert result.returncode == 0, result.stderr
    mixes = [f for f in manifest_of(out)["files"] if f["kind"] == "mix"]
    assert [m["style"] for m in mixes] == ["popular", "classical", "popular", "classical"]
    assert len({m["work"] for m in mixes}) == 4 and {m["track"] for m in mixes} <= held_out
    # the rock song plays a GPL soundfont: it may not ship with stemserver, so the two others are taken
    assert {m["track"] for m in mixes if m["style"] == "popular"} == {song_ids[0], song_ids[2]}
    assert all(m["seconds"] == pytest.approx(2.0, abs=0.01) for m in mixes)

    too_many = make_demo(songs, root, "--cache", tmp_path / "cache", "--tracks", "3", "--out", out)
    assert too_many.returncode == 1 and f"2 track(s) of distinct works with 3 stems or more besides sound effects " \
        f"from {songs} (1 more left out for their licences: --any-licence takes them); 3 were asked for" \
        in too_many.stderr
    # two variants of one work are one work, and a mix of one stem is no mix: 2 of the 4 classical tracks count
    too_many = make_demo(songs, root, "--cache", tmp_path / "cache", "--tracks", "2", "3", "--out", out)
    assert too_many.returncode == 1 and f"2 track(s) of distinct works with 3 stems or more besides sound effects " \
        f"from {root}; 3 were asked for: ask for fewer with --tracks" in too_many.stderr
    # the first mix is the printed first query's: the track with a bass and drums leads, wherever the cache has it
    in_order = [t.name for t in prepared.tracks if t.name in (ids[0], ids[2])]
    assert make_demo(root, "--cache", tmp_path / "cache", "--tracks", "2", "--out", out).returncode == 0
    assert [f["track"] for f in manifest_of(out)["files"] if f["kind"] == "mix"] == [ids[0], ids[2]]
    assert in_order == [ids[2], ids[0]]  # mozart's trumpets and bass first in the cache: the lead was moved
    anything = make_demo(songs, "--cache", tmp_path / "cache", "--tracks", "3", "--out", out, "--any-licence")
    assert anything.returncode == 0, anything.stderr
    assert {f["track"] for f in manifest_of(out)["files"]} == set(song_ids)
    assert "GPL-2" in manifest_of(out)["licences"]
    assert make_demo(songs, root, "--cache", tmp_path / "cache", "--tracks", "1", "2", "3").returncode == 2


def test_over_the_budget_or_the_stem_limit_fails_and_keeps_the_previous_demo(corpus, tmp_path: Path, monkeypatch):
    root, ids = corpus
    out = tmp_path / "demo"
    assert make_demo(root, "--out", out, "--track", ids[1], "--codec", "vorbis").returncode == 0
    before = (out / "demo.json").read_text()
    assert json.loads(before)["files"][0]["path"].endswith(".ogg")
    result = make_demo(root, "--out", out, "--track", ids[0], "--track", ids[2], "--budget-mb", "0.01")
    assert result.returncode == 1
    assert "over its 0.01 MB budget" in result.stderr and "--compression-level" in result.stderr
    assert (out / "demo.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no partial folder left behind

    spec = importlib.util.spec_from_file_location("make_demo_library", TOOL)
    tool = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, tool)  # its dataclasses look their module up
    spec.loader.exec_module(tool)
    assert tool.MAX_STEMS == 100  # what one query returns: the demo checks rank the whole pool at once
    encoding = tool.Encoding("opus", 0.9, 2.0)
    with pytest.raises(tool.DemoError, match="would hold 6 stems after 2 of 2 tracks, over 5"):
        tool.build([tool.Corpus.open(root)], out, [ids[0], ids[2]], encoding, 10**9, max_stems=5)
    assert (out / "demo.json").read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["demo"]


def test_unknown_tracks_unshareable_sounds_and_bad_usage_are_clear(corpus, popular, tmp_path: Path):
    (root, _), (songs, song_ids) = corpus, popular
    unknown = make_demo(root, songs, "--out", tmp_path / "demo", "--track", "nope")
    assert unknown.returncode == 1 and "track nope has no track record" in unknown.stderr
    gpl = make_demo(songs, "--out", tmp_path / "demo", "--track", song_ids[1])
    assert gpl.returncode == 1 and "TimGM6mb.sf2 (GPL-2)" in gpl.stderr and "--any-licence" in gpl.stderr
    assert make_demo(root, "--out", tmp_path / "demo").returncode == 2
    assert make_demo(root, "--out", tmp_path / "demo", "--track", "x", "--tracks", "2").returncode == 2
    assert not (tmp_path / "demo").exists()


@pytest.mark.skipif(shutil.which("fluidsynth") is None or not Path(SOUNDFONT).is_file(),
                    reason="needs fluidsynth and FluidR3_GM (apt-get install fluidsynth fluid-soundfont-gm)")
def test_real_builds_of_both_corpora_make_a_demo_from_their_test_split(tmp_path: Path):
    corpora = tmp_path / "corpus"
    for style in (["--style", "popular", "--limit", "3"], ["--limit", "1"]):
        out = corpora / ("popular" if "popular" in style else "classical")
        built = subprocess.run([sys.executable, "-m", "stemserver", "corpus", "build", str(out), *style,
                                "--seconds", "8", "--workers", "1"], capture_output=True, text=True, timeout=600)
        assert built.returncode == 0, built.stderr
    build_cache(read_moisesdb(corpora), tmp_path / "cache", valid_fraction=0.0, test_fraction=0.99, progress=False)
    out = tmp_path / "demo"
    result = make_demo(corpora / "popular", corpora / "classical", "--cache", tmp_path / "cache", "--tracks", "2", "1",
                       "--out", out, "--any-licence")
    assert result.returncode == 0, result.stderr
    manifest = manifest_of(out)
    mixes = [f for f in manifest["files"] if f["kind"] == "mix"]
    assert [m["style"] for m in mixes] == ["popular", "classical", "popular"]
    assert len({m["missing"]["family"] for m in mixes}) == 3  # a different family asked of each mix
    for mix in mixes:
        stems = [f for f in manifest["files"] if f["kind"] == "stem" and f["track"] == mix["track"]]
        assert mix["missing"]["path"] in {f["path"] for f in stems} and len(mix["contains"]) == len(stems) - 1
        assert all(f["licence"] and f["source"] for f in stems) and all(f["path"].startswith("stems/") for f in stems)
        assert_mix_leaves_out(out, mix)


# -- the default model ------------------------------------------------------------------------


def stemserver(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stemserver", *args], capture_output=True, text=True, timeout=300,
                          env=env)


def test_a_missing_default_model_says_what_to_do(tmp_path: Path):
    env = {**os.environ, "STEMSERVER_CONFIG": "", "XDG_DATA_HOME": str(tmp_path),
           "STEMSERVER_DEFAULT_MODEL": str(tmp_path / "absent.safetensors")}
    soundfile.write(tmp_path / "mix.wav", melody(3.0, 0), RATE)
    for args in (["serve", "--osc-port", "0", "--ws-port", "0"], ["query", str(tmp_path / "mix.wav"), "-i", "bass"],
                 ["index", str(tmp_path)], ["embed", str(tmp_path / "mix.wav")]):
        result = stemserver(*args, env=env)
        assert result.returncode == 1, (args, result.stderr)
        assert result.stderr.startswith("stemserver: error: STEMSERVER_DEFAULT_MODEL points to")
        assert "--checkpoint PATH" in result.stderr and "Traceback" not in result.stderr
    doctor = json.loads(stemserver("doctor", "--json", env=env).stdout)["checkpoint"]
    assert doctor["source"] == "default" and doctor["missing"] is True


def test_without_the_variable_the_bundled_path_is_named(monkeypatch, tmp_path: Path):
    from stemserver import defaults
    from stemserver.errors import CheckpointError

    monkeypatch.delenv("STEMSERVER_DEFAULT_MODEL", raising=False)
    monkeypatch.setattr(defaults, "BUNDLED_MODEL", tmp_path / "default-model.safetensors")
    with pytest.raises(CheckpointError, match="bundled default model is missing") as error:
        defaults.model_path(None)
    assert str(tmp_path / "default-model.safetensors") in str(error.value) and "--checkpoint PATH" in str(error.value)
    assert defaults.model_path(tmp_path / "mine.safetensors") == tmp_path / "mine.safetensors"


def test_doctor_shows_the_default_model(tmp_path: Path):
    make_checkpoint(tmp_path / "default.safetensors")
    env = {**os.environ, "STEMSERVER_CONFIG": "", "STEMSERVER_DEFAULT_MODEL": str(tmp_path / "default.safetensors")}
    report = json.loads(stemserver("doctor", "--json", env=env).stdout)["checkpoint"]
    assert report["source"] == "default" and report["path"] == str(tmp_path / "default.safetensors")
    assert report["size_bytes"] == (tmp_path / "default.safetensors").stat().st_size and len(report["sha256"]) == 12
    text = stemserver("doctor", env=env).stdout
    assert f"model (default): {tmp_path / 'default.safetensors'}" in text and report["sha256"] in text


# -- the first start --------------------------------------------------------------------------


class FirstStart:
    """`stemserver serve` with no checkpoint and no library given, as scripts/run.sh starts it."""

    def __init__(self, env: dict, *extra: str):
        self.log_file = tempfile.NamedTemporaryFile("w+", suffix=".log")  # a pipe nobody reads would block it
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stemserver", "serve", "--osc-port", "0", "--ws-port", "0", "--device", "cpu",
             "--threads", "1", *extra], stdout=subprocess.PIPE, stderr=self.log_file, text=True, env=env)
        self.ready = self.process.stdout.readline()
        if not self.ready.startswith("stemserver: ready"):
            self.process.kill()
            raise RuntimeError(f"server did not start: {self.ready!r} {self.log}")

    @property
    def log(self) -> str:
        return Path(self.log_file.name).read_text()

    def first_query(self) -> str:
        """The command the server printed (just after its ready line)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            match = re.search(r"A first query, from another terminal:\n  (.+)\n", self.log)
            if match:
                return match.group(1)
            time.sleep(0.1)
        raise AssertionError(f"no first query printed: {self.log}")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def test_the_first_start_installs_and_indexes_the_demo_once(demo: Path, tmp_path: Path):
    make_checkpoint(tmp_path / "default.safetensors")
    data = tmp_path / "data"
    env = {**os.environ, "STEMSERVER_CONFIG": "", "XDG_DATA_HOME": str(data), "STEMSERVER_DEMO": str(demo),
           "STEMSERVER_DEFAULT_MODEL": str(tmp_path / "default.safetensors")}
    stems = sorted(p.relative_to(demo).as_posix() for p in (demo / "stems").rglob("*.opus"))
    first = next(f for f in manifest_of(demo)["files"] if f["kind"] == "mix")
    assert (first["path"], first["missing"]["family"]) == ("mixes/house-0-00000.opus", "bass")

    server = FirstStart(env)
    try:
        command = server.first_query()
        installed = data / "stemserver" / "demo"
        assert sorted(p.relative_to(installed).as_posix() for p in (installed / "stems").rglob("*.opus")) == stems
        assert (installed / first["path"]).is_file() and (installed / "demo.json").is_file()
        assert "first start: copying the demo library" in server.log
        assert f"{installed / first['path']} -i bass --server osc://127.0.0.1:" in command
        assert f"the stem it left out, {installed / first['missing']['path']}, is in the library" in server.log
        answer = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=120, env=env)
        assert answer.returncode == 0, answer.stderr
        assert f"  {installed / 'stems'}/" in answer.stdout and "ms: " in answer.stdout
    finally:
        assert server.stop() == 0
    library = data / "stemserver" / "library"
    with Library(library) as opened:
        assert sorted(Path(f.path).relative_to(installed).as_posix() for f in opened.files()) == stems
    assert read_current(library / "index")["generation"] == 1

    again = FirstStart(env)
    try:
        again.first_query()
    finally:
        assert again.stop() == 0
    assert "first start" not in again.log and read_current(library / "index")["generation"] == 1


def earlier_demo(demo: Path, corpus: Path, track: str, out: Path) -> Path:
    """A demo as an earlier version shipped it: other files, and mixes of every stem with no `missing`."""
    assert make_demo(corpus, "--out", out, "--track", track).returncode == 0
    manifest = manifest_of(out)
    for f in manifest["files"]:
        for key in ("missing", "contains", "gain", "style", "licence"):
            f.pop(key, None)
    (out / "demo.json").write_text(json.dumps(manifest))
    assert not {f["path"] for f in manifest["files"]} & {f["path"] for f in manifest_of(demo)["files"]}
    return out


def test_an_untouched_earlier_demo_is_replaced_and_one_beside_your_own_files_is_left(corpus, demo: Path,
                                                                                       tmp_path: Path):
    root, ids = corpus
    old = earlier_demo(demo, root, ids[3], tmp_path / "old-demo")
    make_checkpoint(tmp_path / "default.safetensors")
    env = {**os.environ, "STEMSERVER_CONFIG": "", "STEMSERVER_DEFAULT_MODEL": str(tmp_path / "default.safetensors")}
    untouched, yours = ({**env, "XDG_DATA_HOME": str(tmp_path / name)} for name in ("untouched", "yours"))
    for user in (untouched, yours):
        first = FirstStart({**user, "STEMSERVER_DEMO": str(old)})
        try:  # the earlier version's hint: its demo.json names no missing part
            assert f"{Path(user['XDG_DATA_HOME']) / 'stemserver' / 'demo' / 'mixes'}/haydn" in first.first_query()
            assert " -i bass " in first.first_query() and "left out" not in first.log
        finally:
            assert first.stop() == 0
    mine = tmp_path / "My Samples"
    mine.mkdir()
    soundfile.write(mine / "loop.wav", melody(4.0, 7), RATE)
    library = Path(yours["XDG_DATA_HOME"]) / "stemserver" / "library"
    assert stemserver("index", str(mine), "--library", str(library), env=yours).returncode == 0

    # the new version: the library of demo stems only gets the new demo; the one with your loop is not touched
    for user in (untouched, yours):
        server = FirstStart({**user, "STEMSERVER_DEMO": str(demo)})
        try:
            command = server.first_query()
        finally:
            assert server.stop() == 0
        installed = Path(user["XDG_DATA_HOME"]) / "stemserver" / "demo"
        with Library(Path(user["XDG_DATA_HOME"]) / "stemserver" / "library") as opened:
            indexed = sorted(f.path for f in opened.files())
        on_disk = sorted(p.relative_to(installed).as_posix() for p in installed.rglob("*.opus"))
        if user is untouched:
            assert "a new demo library: replacing the earlier version's" in server.log
            assert on_disk == sorted(f["path"] for f in manifest_of(demo)["files"])
            assert indexed == sorted(str(installed / f["path"]) for f in manifest_of(demo)["files"]
                                     if f["kind"] == "stem")
            assert f"{installed / 'mixes' / 'house-0-00000.opus'} -i bass " in command and "left out" in server.log
            assert (installed / "demo.json").read_bytes() == (demo / "demo.json").read_bytes()
        else:
            assert "demo library" not in server.log and (installed / "demo.json").read_text() == \
                (old / "demo.json").read_text()
            assert on_disk == sorted(f["path"] for f in manifest_of(old)["files"])
            assert str(mine / "loop.wav") in indexed and f"{installed / 'mixes'}/haydn" in command


def test_the_hint_reads_any_demo_json_and_asks_for_the_part_left_out(monkeypatch, tmp_path: Path):
    from stemserver import demo as demo_module

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    folder = tmp_path / "stemserver" / "demo"
    (folder / "mixes").mkdir(parents=True)
    soundfile.write(folder / "mixes" / "song.opus", melody(2.0, 0), RATE, format="OGG", subtype="OPUS")

    def hint(manifest) -> str:
        (folder / "demo.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
        return demo_module.first_query_hint("osc://127.0.0.1:9000", "ws://127.0.0.1:8765", "http://127.0.0.1:8765/",
                                            None)

    mix = {"kind": "mix", "track": "t", "path": "mixes/song.opus"}
    stems = [{"kind": "stem", "track": "t", "path": "stems/piano/p.opus", "labels": ["piano", "electric piano"]},
             {"kind": "stem", "track": "t", "path": "stems/synth-lead/l.opus", "labels": ["synth lead", "saw lead"]}]
    lead = {"path": "stems/synth-lead/l.opus", "labels": ["synth lead", "saw lead"], "family": "synth-lead"}
    mixed = f"{folder / 'mixes' / 'song.opus'}"
    assert f"{mixed} -i 'synth lead' " in hint({"files": [{**mix, "missing": lead}, *stems]})
    assert f"the stem it left out, {folder / 'stems/synth-lead/l.opus'}, is in the library" in \
        hint({"files": [{**mix, "missing": lead}, *stems]})
    assert f"{mixed} -i piano " in hint({"files": [mix, *stems]})  # an earlier version's: no bass, so its first stem
    assert f"{mixed} -i bass " in hint({"files": [mix, {**stems[0], "labels": ["bass", "fretless bass"]}]})
    for broken in ("not json", {"files": [{"kind": "mix"}]}, {"files": [{**mix, "missing": {"labels": []}}]},
                   {"files": "x"}, {"files": [{**mix, "missing": "bass"}]}):
        assert "MIX.wav -i bass " in hint(broken), broken


def test_no_demo_leaves_an_empty_library_alone(demo: Path, tmp_path: Path):
    make_checkpoint(tmp_path / "default.safetensors")
    env = {**os.environ, "STEMSERVER_CONFIG": "", "XDG_DATA_HOME": str(tmp_path / "data"),
           "STEMSERVER_DEMO": str(demo), "STEMSERVER_DEFAULT_MODEL": str(tmp_path / "default.safetensors")}
    result = stemserver("serve", "--no-demo", "--osc-port", "0", "--ws-port", "0", env=env)
    assert result.returncode == 1 and "no library at" in result.stderr and "stemserver index" in result.stderr
    assert not (tmp_path / "data" / "stemserver" / "demo").exists()
