"""The default model and the demo library: tools/make_demo_library.py on a tiny corpus-shaped
folder, and `stemserver serve` as a new user first runs it (a real subprocess on loopback, an empty
data folder, the demo copied and indexed, the printed first query run as printed)."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import soundfile
from conftest import make_checkpoint, melody

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


def write_corpus(root: Path, seconds: float = 6.0) -> list[str]:
    """A folder as `stemserver corpus build` writes it: MoisesDB layout and manifest.jsonl."""
    ids, seed = [], 0
    for work_id, variant, stems in TRACKS:
        track_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{work_id}/{variant}"))
        folder = root / track_id
        entries, records = {}, []
        for stem_name, track_type in stems:
            source_id = str(uuid.uuid4())
            (folder / stem_name).mkdir(parents=True, exist_ok=True)
            soundfile.write(folder / stem_name / f"{source_id}.flac", melody(seconds, seed), RATE, subtype="PCM_16")
            seed += 1
            entries.setdefault(stem_name, {"stemName": stem_name, "id": str(uuid.uuid4()), "tracks": []})
            entries[stem_name]["tracks"].append({"trackType": track_type, "id": source_id, "extension": "flac"})
            records.append({"stem_name": stem_name, "source_id": source_id})
        (folder / "data.json").write_text(json.dumps({"song": f"Title ({work_id})", "artist": work_id.split("/")[0],
                                                      "stems": list(entries.values())}))
        record = {"type": "track", "track_id": track_id, "work_id": work_id, "composer": work_id.split("/")[0],
                  "title": f"Title of {work_id}", "variant": variant, "duration": seconds, "stems": records,
                  "soundfont": SOUNDFONT}
        with (root / "manifest.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        ids.append(track_id)
    return ids


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("corpus")
    return root, write_corpus(root)


def make_demo(corpus: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), str(corpus), *args], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def demo(corpus, tmp_path_factory) -> Path:
    root, ids = corpus
    out = tmp_path_factory.mktemp("assets") / "demo"
    result = make_demo(root, "--out", str(out), "--track", ids[0], "--track", ids[2])
    assert result.returncode == 0, result.stderr
    return out


# -- tools/make_demo_library.py ---------------------------------------------------------------


def test_the_demo_holds_encoded_stems_mixes_and_a_manifest(corpus, demo: Path):
    _, ids = corpus
    manifest = json.loads((demo / "demo.json").read_text())
    assert "FluidR3_GM" in manifest["source"] and "MIT" in manifest["source"] and "music21" in manifest["source"]
    files = manifest["files"]
    assert [f["track"] for f in files if f["kind"] == "mix"] == [ids[0], ids[2]]
    assert sorted(f["path"] for f in files if f["track"] == ids[0]) == [
        "mixes/bach-bwv66-6-v0.opus", "stems/bass/bach-bwv66-6-v0-fretless-bass.opus",
        "stems/drums/bach-bwv66-6-v0-drum-kit.opus", "stems/guitar/bach-bwv66-6-v0-steel-string-guitar.opus"]
    trumpets = sorted(f["path"] for f in files if f["track"] == ids[2] and f["stem"] and "brass" in f["stem"])
    assert trumpets == ["stems/brass/mozart-k155-movement1-v0-trumpet-2.opus",
                        "stems/brass/mozart-k155-movement1-v0-trumpet.opus"]
    on_disk = sorted(p.relative_to(demo).as_posix() for p in demo.rglob("*.opus"))
    assert on_disk == sorted(f["path"] for f in files)
    for f in files:
        assert f["bytes"] == (demo / f["path"]).stat().st_size
        assert f["work"] and f["source"] == manifest["source"] and f["seconds"] == pytest.approx(6.0, abs=0.01)
        info = soundfile.info(demo / f["path"])
        assert (info.format, info.subtype, info.samplerate, info.channels) == ("OGG", "OPUS", RATE, 1)
        assert info.duration == pytest.approx(6.0, abs=0.01)
    bass = next(f for f in files if f["path"].startswith("stems/bass/bach"))
    assert (bass["kind"], bass["labels"], bass["stem"].split("/")[0]) == ("stem", ["bass", "fretless bass"], "bass")
    mix = next(f for f in files if f["path"] == "mixes/bach-bwv66-6-v0.opus")
    assert mix["labels"] == ["bass", "drums", "guitar"] and mix["stem"] is None
    assert sum(p.stat().st_size for p in demo.rglob("*") if p.is_file()) < 20e6


def test_tracks_are_chosen_from_a_split_one_per_work(corpus, tmp_path: Path):
    root, _ = corpus
    prepared = build_cache(read_moisesdb(root), tmp_path / "cache", valid_fraction=0.0, test_fraction=0.99,
                           progress=False)
    held_out = {t.name for t in prepared.tracks if t.split == "test"}
    out = tmp_path / "demo"
    result = make_demo(root, "--cache", str(tmp_path / "cache"), "--tracks", "3", "--out", str(out),
                       "--seconds", "2")
    assert result.returncode == 0, result.stderr
    mixes = [f for f in json.loads((out / "demo.json").read_text())["files"] if f["kind"] == "mix"]
    assert len({m["work"] for m in mixes}) == 3 and {m["track"] for m in mixes} <= held_out
    assert all(m["seconds"] == pytest.approx(2.0, abs=0.01) for m in mixes)

    too_many = make_demo(root, "--cache", str(tmp_path / "cache"), "--tracks", "4", "--out", str(out))
    assert too_many.returncode == 1 and "3 distinct work(s)" in too_many.stderr and "--tracks" in too_many.stderr


def test_over_the_budget_fails_and_keeps_the_previous_demo(corpus, tmp_path: Path):
    root, ids = corpus
    out = tmp_path / "demo"
    assert make_demo(root, "--out", str(out), "--track", ids[1], "--codec", "vorbis").returncode == 0
    before = (out / "demo.json").read_text()
    assert json.loads(before)["files"][0]["path"].endswith(".ogg")
    result = make_demo(root, "--out", str(out), "--track", ids[0], "--track", ids[2], "--budget-mb", "0.01")
    assert result.returncode == 1
    assert "over its 0.01 MB budget" in result.stderr and "--compression-level" in result.stderr
    assert (out / "demo.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no partial folder left behind


def test_unknown_tracks_and_bad_usage_are_clear(corpus, tmp_path: Path):
    root, _ = corpus
    unknown = make_demo(root, "--out", str(tmp_path / "demo"), "--track", "nope")
    assert unknown.returncode == 1 and "track nope has no track record" in unknown.stderr
    assert make_demo(root, "--out", str(tmp_path / "demo")).returncode == 2
    assert not (tmp_path / "demo").exists()


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

    server = FirstStart(env)
    try:
        command = server.first_query()
        installed = data / "stemserver" / "demo"
        assert sorted(p.relative_to(installed).as_posix() for p in (installed / "stems").rglob("*.opus")) == stems
        assert (installed / "mixes" / "bach-bwv66-6-v0.opus").is_file() and (installed / "demo.json").is_file()
        assert "first start: copying the demo library" in server.log
        assert f"{installed / 'mixes' / 'bach-bwv66-6-v0.opus'} -i bass --server osc://127.0.0.1:" in command
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


def test_no_demo_leaves_an_empty_library_alone(demo: Path, tmp_path: Path):
    make_checkpoint(tmp_path / "default.safetensors")
    env = {**os.environ, "STEMSERVER_CONFIG": "", "XDG_DATA_HOME": str(tmp_path / "data"),
           "STEMSERVER_DEMO": str(demo), "STEMSERVER_DEFAULT_MODEL": str(tmp_path / "default.safetensors")}
    result = stemserver("serve", "--no-demo", "--osc-port", "0", "--ws-port", "0", env=env)
    assert result.returncode == 1 and "no library at" in result.stderr and "stemserver index" in result.stderr
    assert not (tmp_path / "data" / "stemserver" / "demo").exists()
