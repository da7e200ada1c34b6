"""Where the recorded sounds come from: the General MIDI soundfonts and the drum kits that Debian
packages, found where their packages install them.

Only sources whose licence lets the corpus be shared are listed (docs/corpus.md names each with
its package, version and licence). A drum machine's separately packaged kits are fine; the demo
songs, templates and sample packs that ship inside DAWs are not sources (they are kept for
testing generalisation).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from stemserver_training.corpus.errors import CorpusError
from stemserver_training.corpus.popular.score import Timbre

HYDROGEN_KITS = Path("/usr/share/hydrogen/data/drumkits")


@dataclass(frozen=True)
class Soundfont:
    name: str  # the Timbre.name that selects it
    package: str  # the Debian package that installs it
    paths: tuple[str, ...]  # where the package puts it, in order of preference
    licence: str

    def path(self) -> Path | None:
        return next((Path(p) for p in self.paths if Path(p).is_file()), None)


SOUNDFONTS = (
    Soundfont("FluidR3_GM.sf2", "fluid-soundfont-gm", ("/usr/share/sounds/sf2/FluidR3_GM.sf2",), "MIT"),
    Soundfont("MuseScore_General.sf3", "musescore-general-soundfont",
              ("/usr/share/sounds/sf3/MuseScore_General_Full.sf3", "/usr/share/sounds/sf3/MuseScore_General.sf3"),
              "MIT"),
    Soundfont("TimGM6mb.sf2", "timgm6mb-soundfont", ("/usr/share/sounds/sf2/TimGM6mb.sf2",), "GPL-2"),
    Soundfont("sf_GMbank.sf2", "csound-soundfont", ("/usr/share/sounds/sf2/sf_GMbank.sf2",
                                                    "/usr/share/samples/sf_GMbank.sf2"), "public domain"),
)
DRUMKIT_PACKAGE = "hydrogen-drumkits"
# Per kit, from the package's copyright file (a kit's own drumkit.xml licence field is free text, often empty).
KIT_LICENCES = {
    "Audiophob": "CC0", "BJA_Pacific": "CC-BY-SA-3.0-us", "ColomboAcousticDrumkit": "GPL-2+ with composition exception",
    "ElectricEmpireKit": "GPL-2+", "HardElectro1": "GPL-2+", "VariBreaks": "GPL-2+",
    "Millo-Drums_v.1": "GPL-2", "Millo_MultiLayered2": "GPL-2", "Millo_MultiLayered3": "GPL-2",
    "Gimme A Hand 1.0": "GPL-2", "The Black Pearl 1.0": "GPL-2", "ForzeeStereo": "GPL-2",
    "circAfrique v4": "CC-BY-SA-3.0", "rumpf_kit_z01_h2": "CC-BY-3.0",
}


def installed_soundfonts() -> list[Soundfont]:
    return [sf for sf in SOUNDFONTS if sf.path() is not None]


def soundfont_path(name: str) -> Path:
    """The file of the soundfont called `name`, or a CorpusError saying which package to install."""
    for sf in SOUNDFONTS:
        if sf.name == name:
            path = sf.path()
            if path is None:
                raise CorpusError(f"soundfont {name} is not installed: install it with "
                                  f"`sudo apt-get install {sf.package}`")
            return path
    raise CorpusError(f"unknown soundfont {name!r}; known: {', '.join(sf.name for sf in SOUNDFONTS)}")


def installed_drumkits(root: Path = HYDROGEN_KITS) -> list[str]:
    """The names (folder names) of the Hydrogen drum kits installed under `root`."""
    if not root.is_dir():
        return []
    return sorted(kit.name for kit in root.iterdir() if (kit / "drumkit.xml").is_file())


def drumkit_folder(name: str, root: Path = HYDROGEN_KITS) -> Path:
    folder = root / name
    if not (folder / "drumkit.xml").is_file():
        hint = (f"install the kits with `sudo apt-get install {DRUMKIT_PACKAGE}`" if not installed_drumkits(root)
                else f"installed kits: {', '.join(installed_drumkits(root))}")
        raise CorpusError(f"drum kit {name!r} not found in {root}: {hint}")
    return folder


@lru_cache(maxsize=16)
def package_version(package: str) -> str | None:
    """The installed version of a Debian package (None off Debian or when not installed)."""
    if shutil.which("dpkg-query") is None:
        return None
    done = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True)
    version = done.stdout.strip() if done.returncode == 0 else ""
    return version or None


def describe(timbre: Timbre) -> dict:
    """The provenance of a timbre for the manifest: its kind and name, and for recorded sounds the
    Debian package (with its version) and licence; for a synth, its recipe's parameters."""
    out = {"kind": timbre.kind, "name": timbre.name}
    if timbre.kind == "soundfont":
        font = next((sf for sf in SOUNDFONTS if sf.name == timbre.name), None)
        out.update(program=timbre.program, bank=timbre.bank)
        if font is not None:
            out.update(package=font.package, version=package_version(font.package), licence=font.licence)
    elif timbre.kind == "drumkit":
        out.update(package=DRUMKIT_PACKAGE, version=package_version(DRUMKIT_PACKAGE),
                   licence=KIT_LICENCES.get(timbre.name))
    else:
        out.update(params=dict(timbre.params))
    return out
