"""One part -> MIDI -> the FluidSynth command line -> mono float32 samples at 16 kHz.

The FluidSynth binary is used rather than a Python binding: it is one Debian/Homebrew package,
its fast-render mode (-F) is deterministic (same MIDI, same soundfont -> same samples), and a
crash in it cannot take a worker down. Each call loads the soundfont again (~0.2 s for
FluidR3_GM), small next to rendering a whole part. (FluidSynth's dynamic sample loading would
save most of that, but it changes how the GM drum kit sounds, so the default is kept.)
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import soundfile

from stemserver.audio import SAMPLE_RATE
from stemserver_training.corpus.errors import CorpusError
from stemserver_training.corpus.midi import Note, write_midi

DEFAULT_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
INSTALL_HINT = ("install it with `sudo apt-get install fluidsynth fluid-soundfont-gm` (Debian/Ubuntu) "
                "or `brew install fluid-synth` (macOS)")
RENDER_TIMEOUT_S = 900


def find_fluidsynth() -> str:
    """The path of the fluidsynth binary, or a CorpusError saying how to install it."""
    path = shutil.which("fluidsynth")
    if path is None:
        raise CorpusError(f"the `fluidsynth` program is not on PATH: {INSTALL_HINT}")
    return path


def check_soundfont(path: str | Path) -> Path:
    """`path` as an absolute Path if it is a SoundFont 2 file, else a CorpusError saying what to do."""
    path = Path(path).expanduser()
    hint = (f"{INSTALL_HINT}, or pass any General MIDI .sf2 with --soundfont"
            if path == DEFAULT_SOUNDFONT else "pass a General MIDI SoundFont 2 (.sf2) file with --soundfont")
    if not path.is_file():
        raise CorpusError(f"soundfont {path} not found: {hint}")
    with path.open("rb") as f:
        header = f.read(12)
    if header[:4] != b"RIFF" or header[8:12] != b"sfbk":
        raise CorpusError(f"{path} is not a SoundFont 2 file (no RIFF/sfbk header): {hint}")
    return path.resolve()


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def render(
    notes: Iterable[Note],
    program: int | None,
    channel: int,
    soundfont: Path,
    n_samples: int,
    workdir: Path,
    fluidsynth: str = "fluidsynth",
    sample_rate: int = SAMPLE_RATE,
    options: Sequence[str] = (),
) -> np.ndarray:
    """Render one part alone: float32 mono at `sample_rate`, exactly `n_samples` long (padded or cut).
    `options` are more fluidsynth arguments (e.g. `-o name=value` settings)."""
    midi = workdir / "part.mid"
    write_midi(midi, notes, program=program, channel=channel, end=n_samples / sample_rate)
    return render_midi(midi, soundfont, n_samples, fluidsynth, sample_rate, options)


def render_midi(midi: Path, soundfont: Path, n_samples: int, fluidsynth: str = "fluidsynth",
                sample_rate: int = SAMPLE_RATE, options: Sequence[str] = ()) -> np.ndarray:
    """Render a MIDI file: float32 mono at `sample_rate`, exactly `n_samples` long (padded or cut);
    the WAV is written beside the MIDI file."""
    wav = midi.with_suffix(".wav")
    command = [fluidsynth, "-ni", "-q", *options, "-r", str(sample_rate), "-O", "float", "-T", "wav",
               "-F", str(wav), str(soundfont), str(midi)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=RENDER_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        raise CorpusError(f"fluidsynth took over {RENDER_TIMEOUT_S} s to render {midi.name}") from e
    if done.returncode != 0 or not wav.is_file():
        detail = (done.stderr or done.stdout).strip()[-500:]
        raise CorpusError(f"fluidsynth failed (exit {done.returncode}) rendering with {soundfont}: {detail}")
    samples, rate = soundfile.read(wav, dtype="float32", always_2d=True)
    if rate != sample_rate:
        raise CorpusError(f"fluidsynth wrote {rate} Hz audio when asked for {sample_rate} Hz")
    mono = samples.mean(axis=1)
    out = np.zeros(n_samples, dtype=np.float32)
    out[: min(n_samples, len(mono))] = mono[:n_samples]
    return out
