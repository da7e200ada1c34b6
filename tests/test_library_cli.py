"""The `index` and `library` command lines as a user runs them: a real subprocess, real files, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile
from conftest import melody

pytestmark = pytest.mark.slow  # the whole file: subprocesses, rendering or training (README: test tiers)

ENV = {**os.environ, "STEMSERVER_CONFIG": ""}  # never read the developer's own config


def stemserver(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stemserver", *args], capture_output=True, text=True, timeout=300,
                          env=ENV)


@pytest.mark.parametrize("flag, value", [("--hop", "0"), ("--hop", "-1"), ("--hop", "nan"), ("--trees", "0"),
                                         ("--trees", "-3"), ("--pca-dim", "0")])
def test_index_refuses_a_non_positive_setting_as_a_usage_error(tmp_path: Path, flag: str, value: str):
    result = stemserver("index", str(tmp_path), "--library", str(tmp_path / "lib"), flag, value)
    assert result.returncode == 2 and flag in result.stderr, result.stderr
    assert not (tmp_path / "lib").exists()  # refused before anything was written


@pytest.fixture
def indexed(tmp_path: Path, identity_checkpoint: Path) -> dict:
    """Two stems inside the root, one reached through a symlink to a folder outside it, and a loop."""
    root, outside = tmp_path / "root", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    for name, seed in (("a.wav", 1), ("b.wav", 2)):
        soundfile.write(root / name, melody(3.0, seed), 16_000)
    soundfile.write(outside / "outside.wav", melody(3.0, 3), 16_000)
    os.symlink(outside, root / "link out")
    os.symlink(root, root / "loop")
    common = ["--library", str(tmp_path / "lib"), "--checkpoint", str(identity_checkpoint), "--device", "cpu",
              "--threads", "1"]
    return {"root": root, "common": common, "library": ["--library", str(tmp_path / "lib")]}


def listed(indexed: dict) -> list[str]:
    result = stemserver("library", "list", *indexed["library"], "--json")
    assert result.returncode == 0, result.stderr
    return sorted(Path(f["path"]).name for f in json.loads(result.stdout))


def test_index_follows_symlinks_out_of_the_root_only_when_asked(indexed: dict):
    result = stemserver("index", str(indexed["root"]), *indexed["common"])
    assert result.returncode == 0, result.stderr
    assert listed(indexed) == ["a.wav", "b.wav"]
    result = stemserver("index", str(indexed["root"]), *indexed["common"], "--follow-symlinks")
    assert result.returncode == 0, result.stderr
    assert listed(indexed) == ["a.wav", "b.wav", "outside.wav"]


def test_library_remove_of_an_unknown_path_removes_nothing_and_names_it(indexed: dict):
    assert stemserver("index", str(indexed["root"]), *indexed["common"]).returncode == 0
    known, unknown = indexed["root"] / "a.wav", indexed["root"] / "typo.wav"
    result = stemserver("library", "remove", str(known), str(unknown), *indexed["library"])
    assert result.returncode == 1
    assert "stemserver: error:" in result.stderr and str(unknown) in result.stderr and str(known) not in result.stderr
    assert "nothing was removed" in result.stderr
    assert listed(indexed) == ["a.wav", "b.wav"]
    result = stemserver("library", "remove", str(known), *indexed["library"], "--json")
    assert result.returncode == 0 and json.loads(result.stdout) == {"removed": 1}
    assert listed(indexed) == ["b.wav"]


def test_library_remove_of_a_folder_it_was_indexed_from_forgets_the_folder_and_its_files(indexed: dict,
                                                                                        tmp_path: Path):
    """A folder deleted for good: a re-index would report it missing forever."""
    other = tmp_path / "other"
    (other / "sub").mkdir(parents=True)
    soundfile.write(other / "sub" / "c.wav", melody(3.0, 4), 16_000)
    assert stemserver("index", str(indexed["root"]), str(other), *indexed["common"]).returncode == 0
    assert stemserver("index", str(other / "sub"), *indexed["common"]).returncode == 0  # kept, inside `other`
    assert listed(indexed) == ["a.wav", "b.wav", "c.wav"]
    result = stemserver("library", "remove", str(other), *indexed["library"], "--json")
    assert result.returncode == 0 and json.loads(result.stdout) == {"removed": 1}, result.stderr
    assert listed(indexed) == ["a.wav", "b.wav"]
    from stemserver.library import Library

    with Library(tmp_path / "lib") as library:
        assert library.folders() == [indexed["root"]]
        assert library.meta("folders") == json.dumps([str(indexed["root"])])  # `other/sub` went with it
    result = stemserver("library", "remove", str(other), *indexed["library"])
    assert result.returncode == 1 and "nothing was removed" in result.stderr  # forgotten: no longer known


def test_library_list_shows_tempo_and_key_and_upgrade_fills_a_library_made_before_them(tmp_path: Path,
                                                                                      identity_checkpoint: Path):
    import sqlite3

    root = tmp_path / "samples"
    root.mkdir()
    soundfile.write(root / "Bass_124_Fmin_03.wav", melody(3.0, 1), 16_000)
    library = ["--library", str(tmp_path / "lib")]
    result = stemserver("index", str(root), *library, "--checkpoint", str(identity_checkpoint), "--device", "cpu",
                        "--threads", "1")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(stemserver("library", "list", *library, "--json").stdout)
    assert (row["tempo_bpm"], row["tempo_source"], row["key"], row["key_source"], row["analysed"]) == \
        (124.0, "name", "F minor", "name", True)
    assert "124.0 BPM" in stemserver("library", "list", *library).stdout
    with sqlite3.connect(tmp_path / "lib" / "library.sqlite") as db:  # as a format-1 library holds it
        db.execute("DROP TABLE music")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    db.close()
    listing = stemserver("library", "list", *library)
    assert "1 file(s) indexed before tempo and key" in listing.stdout and "library upgrade" in listing.stdout
    result = stemserver("library", "upgrade", *library, "--json")
    assert result.returncode == 0 and json.loads(result.stdout) == {"analysed": 1}, result.stderr
    assert json.loads(stemserver("library", "list", *library, "--json").stdout)[0]["key"] == "F minor"
    assert "nothing to upgrade" in stemserver("library", "upgrade", *library).stdout
