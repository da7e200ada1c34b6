"""What `pip install stemserver` installs: the product and the trainer, the latter under its own
import name `stemserver_training` (the folder training/ of the repository) with its configs, so
that `stemserver train demo` works from a wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the whole file: subprocesses, rendering or training (README: test tiers)

ROOT = Path(__file__).parents[1]
ENV = {**os.environ, "STEMSERVER_CONFIG": ""}


def test_every_folder_of_python_modules_is_a_listed_package():
    """pyproject.toml lists the packages by hand (the trainer is renamed on the way): a new
    subpackage missing from the list would be missing from every wheel."""
    tomllib = pytest.importorskip("tomllib")
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {"stemserver": ROOT / "stemserver", **{name: ROOT / folder for name, folder in
                                                      setuptools["package-dir"].items()}}
    found = set()
    for name, folder in folders.items():
        for module in folder.rglob("*.py"):
            found.add(".".join([name, *module.parent.relative_to(folder).parts]))
    assert found == set(setuptools["packages"])


def test_a_wheel_installs_the_trainer_as_stemserver_training_with_its_configs(tmp_path):
    pytest.importorskip("setuptools")
    source = tmp_path / "source"
    for folder in ("stemserver", "training"):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for file in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / file, source / file)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("stemserver-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "site")
    assert {name.split("/")[0] for name in names if ".dist-info/" not in name} == {"stemserver", "stemserver_training"}
    assert {f"stemserver_training/configs/{name}.yaml" for name in ("demo", "paper", "tiny")} <= set(names)
    page = {f"stemserver/web/{file.name}" for file in (ROOT / "stemserver" / "web").iterdir()}  # `serve`'s page
    assert "stemserver/web/index.html" in page and page <= set(names)

    # From the unpacked wheel, outside the repository: the shipped configs resolve by name...
    site = tmp_path / "site"
    env = {**ENV, "PYTHONPATH": str(site)}
    code = ("import importlib.util, stemserver_training.config as c; "
            "print(c.config_file('demo')); print(c.__file__); print(importlib.util.find_spec('training'))")
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                           env=env)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.splitlines() == [str(site / "stemserver_training/configs/demo.yaml"),
                                         str(site / "stemserver_training/config.py"), "None"]
    # ...and `stemserver train tiny` reads it and gets as far as the dataset it names.
    nowhere = tmp_path / "no-such-dataset"
    result = subprocess.run([sys.executable, "-m", "stemserver", "train", "tiny", f"data.root={nowhere}",
                             f"data.cache={tmp_path / 'cache'}", "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("train: error:") and str(nowhere) in result.stderr
    assert (tmp_path / "run" / "config.yaml").read_text().count("chunk_seconds: 2.0") == 1  # tiny.yaml's
