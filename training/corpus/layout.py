"""The corpus on disk: MoisesDB's folder layout, the manifest, and the build settings.

    <out>/<track id>/data.json
    <out>/<track id>/<stemName>/<source id>.flac     16-bit FLAC, mono, 16 kHz
    <out>/manifest.jsonl                             one JSON record per finished or skipped track
    <out>/corpus.json                                the settings the folder was built with
    <out>/.lock                                      held by the build running in the folder

A track is written into <out>/.partial/<track id>/ and renamed into place once every file is
there, so a folder with a data.json is always complete and an interrupted track leaves only a
partial folder, which the next build deletes. The manifest is appended by the one main process
after each rename; when a track id appears twice (a track rebuilt after its folder was deleted),
the last record is the current one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile

from stemserver.audio import SAMPLE_RATE
from stemserver_training.corpus.errors import CorpusError
from stemserver_training.corpus.scores import Work
from stemserver_training.corpus.variants import NAMESPACE, TrackPlan

DATA_JSON = "data.json"
MANIFEST = "manifest.jsonl"
CONFIG = "corpus.json"
PARTIAL = ".partial"
LOCK = ".lock"


def data_json(plan: TrackPlan, work: Work) -> dict:
    """MoisesDB's data.json: stems grouped by family, one track per rendered part."""
    stems: dict[str, dict] = {}
    for stem in plan.stems:
        group = stems.setdefault(stem.stem_name, {
            "stemName": stem.stem_name,
            "id": _stem_group_id(plan, stem.stem_name),
            "tracks": [],
        })
        group["tracks"].append({"trackType": stem.label_path[-1], "id": stem.source_id, "extension": "flac",
                                "has_bleed": False})
    return {"song": f"{work.title} ({work.work_id})", "artist": work.composer, "genre": "classical",
            "stems": list(stems.values())}


def write_track(out: Path, plan: TrackPlan, work: Work, audio: dict[str, np.ndarray]) -> Path:
    """Write every stem of `plan` (audio by stem key) and its data.json; returns the track folder."""
    by_source = {stem.source_id: audio[stem.key] for stem in plan.stems}
    return write_folder(out, plan.track_id, data_json(plan, work), by_source)


def write_folder(out: Path, track_id: str, data: dict, audio: dict[str, np.ndarray]) -> Path:
    """Write a track: the file of every source `data` (a data.json) lists, from `audio` by source
    id, then data.json, in a partial folder renamed into place; returns the track folder."""
    partial = out / PARTIAL / track_id
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for stem in data["stems"]:
        folder = partial / stem["stemName"]
        folder.mkdir(exist_ok=True)
        for track in stem["tracks"]:
            soundfile.write(folder / f"{track['id']}.{track['extension']}", audio[track["id"]], SAMPLE_RATE,
                            subtype="PCM_16", format="FLAC")
    (partial / DATA_JSON).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    final = out / track_id
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    return final


def scratch_folder(out: Path, track_id: str) -> Path:
    """An empty folder for a track's MIDI and WAV files, under .partial so interruptions are cleaned."""
    folder = out / PARTIAL / f"{track_id}.scratch"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def is_complete(track_dir: Path) -> bool:
    """True when data.json parses and every file it names is there."""
    try:
        data = json.loads((track_dir / DATA_JSON).read_text())
        return all((track_dir / stem["stemName"] / f"{t['id']}.{t['extension']}").is_file()
                   for stem in data["stems"] for t in stem["tracks"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold the folder's lock for the whole build: two builds in one folder would delete each
    other's partial tracks. The lock dies with the process, so a killed build leaves none behind."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / LOCK).open("w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise CorpusError(f"another build is running in {out}: wait for it, or stop it") from e
        yield


def clean_interrupted(out: Path) -> None:
    """Delete the track folders an interrupted build left half-written, and end a manifest line
    it left cut short (read_manifest ignores that line; the next record must start a new one)."""
    shutil.rmtree(out / PARTIAL, ignore_errors=True)
    manifest = out / MANIFEST
    if manifest.is_file() and manifest.stat().st_size:
        with manifest.open("rb+") as f:
            f.seek(-1, 2)
            if f.read(1) != b"\n":
                f.write(b"\n")


def read_manifest(out: Path) -> dict[str, dict]:
    """Manifest records by track id, the last one winning; a truncated last line is ignored."""
    records: dict[str, dict] = {}
    path = out / MANIFEST
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by an interruption: that track is redone
            records[record["track_id"]] = record
    return records


def append_manifest(out: Path, record: dict) -> None:
    with (out / MANIFEST).open("a") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")


def check_config(out: Path, config: dict) -> None:
    """Record the settings of a new corpus; refuse to mix tracks built with different ones."""
    path = out / CONFIG
    if path.is_file():
        try:
            previous = json.loads(path.read_text())
        except ValueError as e:
            raise CorpusError(f"{path} is corrupt ({e}): delete it, or build into another folder") from e
        changed = {k: (previous.get(k), v) for k, v in config.items() if previous.get(k) != v}
        if changed:
            detail = ", ".join(f"{k} was {old!r}, now {new!r}" for k, (old, new) in changed.items())
            raise CorpusError(f"{out} was built with other settings ({detail}): resume with the same "
                              "settings or build into another folder")
        return
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")


def _stem_group_id(plan: TrackPlan, stem_name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{plan.track_id}/stem/{stem_name}"))
