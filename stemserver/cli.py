"""The `stemserver` command line.

Exit codes: 0 success, 1 an error the message explains, 2 wrong usage, 130 interrupted.
Every verb that reports something takes `--json` for scripts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stemserver import __version__
from stemserver.errors import StemserverError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stemserver",
        description="Find the stem that fits a mix: a local server, a sample-library indexer and the trainer.",
    )
    parser.add_argument("--version", action="version", version=f"stemserver {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="<verb>")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", help="YAML settings file (default: $STEMSERVER_CONFIG, "
                        "then ~/.config/stemserver/config.yaml if it exists)")
    common.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    common.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch (default: one per core)")
    common.add_argument("--json", action="store_true", help="print machine-readable JSON")

    doctor = verbs.add_parser("doctor", parents=[common], help="check the installation and print what is missing",
                              description="Print versions, the chosen device, and which optional parts are "
                              "missing with how to install them. Exits 1 if a required part is missing.")
    doctor.set_defaults(run=_doctor)

    embed = verbs.add_parser("embed", parents=[common], help="encode an audio file and summarise its embedding",
                             description="Decode FILE, encode it with the checkpoint's encoder and print the "
                             "shape of the embedding grid (frequency rows x 160 ms columns x dimension); "
                             "with --instrument, also predict the embedding of a stem that fits it.")
    embed.add_argument("file", type=Path, help="audio file (wav, aiff, flac, ogg, mp3, or anything ffmpeg reads)")
    embed.add_argument("--checkpoint", type=Path, help="model bundle (.safetensors)")
    embed.add_argument("--target", action="store_true", help="use the EMA target encoder (as for library stems)")
    embed.add_argument("--instrument", metavar="TEXT",
                       help="also run the predictor for this instrument (e.g. 'bass') and summarise its output")
    embed.add_argument("--save", type=Path, metavar="PATH.npy", help="also write the grid to a .npy file")
    embed.set_defaults(run=_embed)

    config = verbs.add_parser("config", parents=[common], help="print the effective settings as commented YAML",
                              description="Print the settings in effect (defaults, the config file, then flags) "
                              "as YAML with each key documented: a valid config file to start from.")
    config.set_defaults(run=_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.run(args)
    except StemserverError as e:
        print(f"stemserver: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("stemserver: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _settings(args: argparse.Namespace):
    from stemserver.config import load_settings

    return load_settings(args.config).override(
        device=args.device, threads=args.threads, checkpoint=getattr(args, "checkpoint", None)
    )


def _doctor(args: argparse.Namespace) -> int:
    from stemserver.doctor import diagnose, format_report

    report = diagnose(_settings(args))
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return EXIT_OK if report["ok"] else EXIT_ERROR


def _embed(args: argparse.Namespace) -> int:
    import numpy as np

    from stemserver import audio
    from stemserver.checkpoint import load_checkpoint
    from stemserver.device import select_device, set_threads
    from stemserver.embedding import embed_audio

    settings = _settings(args)
    if settings.checkpoint is None:
        raise StemserverError("no model to embed with: pass --checkpoint PATH (no default model is bundled yet)")
    set_threads(settings.threads)
    device = select_device(settings.device)
    checkpoint = load_checkpoint(settings.checkpoint)
    model = checkpoint.build_model(device)
    samples, info = audio.load(args.file, checkpoint.config.front_end.sample_rate, settings.max_audio_seconds)
    grid = embed_audio(model, samples, device, target=args.target)
    if args.save:
        np.save(args.save, grid)
    mean = grid.mean(axis=(0, 1))
    prediction = _predict(model, checkpoint, settings, grid, args.instrument, device) if args.instrument else None
    summary = {
        "file": str(args.file),
        "duration_s": round(info.duration_s, 3),
        "source_sample_rate": info.sample_rate,
        "source_channels": info.channels,
        "encoder": "target" if args.target else "context",
        "device": str(device),
        "shape": list(grid.shape),
        "seconds_per_column": checkpoint.config.seconds_per_column,
        "mean_embedding_norm": round(float(np.linalg.norm(mean)), 4),
        "embedding_std": round(float(grid.std()), 4),
        "saved_to": str(args.save) if args.save else None,
        "prediction": prediction,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        rows, cols, dim = grid.shape
        print(f"{args.file}: {info.duration_s:.2f} s ({info.sample_rate} Hz, {info.channels} ch) on {device}")
        print(f"embedding grid: {rows} frequency rows x {cols} columns ({summary['seconds_per_column']:.2f} s each) "
              f"x {dim} dims, {summary['encoder']} encoder")
        print(f"mean embedding norm {summary['mean_embedding_norm']}, std {summary['embedding_std']}")
        if prediction:
            print(f"predicted '{prediction['instrument']}' stem: grid {prediction['shape']}, cosine to the mix "
                  f"embedding {prediction['cosine_to_mix']}")
        if args.save:
            print(f"saved to {args.save}")
    return EXIT_OK


def _predict(model, checkpoint, settings, grid, instrument: str, device) -> dict:
    """Run the predictor on an encoded grid for one instrument; summarise what it predicts."""
    import numpy as np
    import torch

    from stemserver.device import inference

    text = checkpoint.label_embedder(settings.text, device=str(device)).embed([instrument])
    with inference(device):
        predicted = model.predict(torch.from_numpy(grid)[None].to(device), text.to(device))[0].float().cpu().numpy()
    a, b = predicted.mean(axis=(0, 1)), grid.mean(axis=(0, 1))
    cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
    return {"instrument": instrument, "shape": list(predicted.shape), "cosine_to_mix": round(cosine, 4)}


def _config(args: argparse.Namespace) -> int:
    import dataclasses

    from stemserver.config import settings_to_yaml

    settings = _settings(args)
    if args.json:
        print(json.dumps(dataclasses.asdict(settings), indent=2, default=str))
    else:
        print(settings_to_yaml(settings), end="")
    return EXIT_OK
