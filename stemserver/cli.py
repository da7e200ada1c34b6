"""The `stemserver` command line.

Exit codes: 0 success, 1 an error the message explains, 2 wrong usage, 130 interrupted.
Every verb that reports something takes `--json` for scripts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from urllib.parse import quote

from stemserver import __version__, arguments
from stemserver.errors import StemserverError
from stemserver.exits import EXIT_ERROR, EXIT_OK, EXIT_USAGE, run_main
from stemserver.window import QUERY_SECONDS

CHECKPOINT_HELP = "model bundle (.safetensors; default: the bundled default model)"

# Verbs of the training side: stemserver VERB ARGS runs MODULE's main(PREFIX + ARGS). They are imported
# only when used (the product never depends on the trainer, and --help stays fast).
TRAINING_VERBS = {
    "corpus": ("stemserver_training.corpus.__main__", [], "build the open corpus, cut loops (corpus build/loops)"),
    "prepare": ("stemserver_training.cli", ["prepare"], "decode a dataset into the training cache"),
    "train": ("stemserver_training.cli", ["train"], "train a model from a config: contrastive, then JEPA"),
    "eval": ("stemserver_training.evaluate", [], "retrieval metrics and a report on a prepared dataset"),
    "train-instrument": ("stemserver_training.instrument", [], "train an instrument head onto a model bundle"),
    "eval-instrument": ("stemserver_training.instrument_eval", [], "measure a bundle's instrument head"),
}


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The command line; with `verb`, only that verb's parser (what a single command needs: a
    `query --server` spawned on every REAPER "Find" does not pay for building the others)."""
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
    common.add_argument("--threads", type=arguments.positive_int, metavar="N",
                        help="CPU threads for torch (default: one per core)")
    common.add_argument("--json", action="store_true", help="print machine-readable JSON")

    for name, add_verb in VERBS.items():
        if verb in (None, name):
            add_verb(verbs, common)
    if verb is None:
        for name, (_, _, summary) in TRAINING_VERBS.items():  # parsed by the trainer's own command line
            verbs.add_parser(name, help=summary, add_help=False)
    return parser


def _doctor_verb(verbs, common: argparse.ArgumentParser) -> None:
    doctor = verbs.add_parser("doctor", parents=[common], help="check the installation and print what is missing",
                              description="Print versions, the chosen device, and which optional parts are "
                              "missing with how to install them. Exits 1 if a required part is missing.")
    doctor.set_defaults(run=_doctor)


def _embed_verb(verbs, common: argparse.ArgumentParser) -> None:
    embed = verbs.add_parser("embed", parents=[common], help="encode an audio file and summarise its embedding",
                             description="Decode FILE, encode it with the checkpoint's encoder and print the "
                             "shape of the embedding grid (frequency rows x 160 ms columns x dimension); "
                             "with --instrument, also predict the embedding of a stem that fits it.")
    embed.add_argument("file", type=Path, help="audio file (wav, aiff, flac, ogg, mp3, or anything ffmpeg reads)")
    embed.add_argument("--checkpoint", type=Path, help=CHECKPOINT_HELP)
    embed.add_argument("--target", action="store_true", help="use the EMA target encoder (as for library stems)")
    embed.add_argument("--instrument", metavar="TEXT",
                       help="also run the predictor for this instrument (e.g. 'bass') and summarise its output")
    embed.add_argument("--save", type=Path, metavar="PATH.npy", help="also write the grid to a .npy file")
    embed.set_defaults(run=_embed)


def _index_verb(verbs, common: argparse.ArgumentParser) -> None:
    index = verbs.add_parser("index", parents=[common], help="index audio folders into a sample library",
                             description="Scan folders recursively for audio, embed new or changed files, drop "
                             "removed ones, and rebuild the search index (a running server switches to it on "
                             "reload). Unreadable files are reported, not fatal.")
    index.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="folders or files to index")
    index.add_argument("--library", type=Path, help="library folder (default: ~/.local/share/stemserver/library)")
    index.add_argument("--checkpoint", type=Path, help=CHECKPOINT_HELP)
    index.add_argument("--tile-loops", action="store_true",
                       help=f"repeat files shorter than {QUERY_SECONDS:g} s to fill the window before embedding them")
    index.add_argument("--hop", type=arguments.positive_float, default=4.0, metavar="S",
                       help="hop between the 8 s search windows of long files, in seconds (default 4)")
    index.add_argument("--trees", type=arguments.positive_int, default=50, metavar="N",
                       help="Annoy trees (default 50): more is more exact, larger")
    index.add_argument("--pca-dim", type=arguments.positive_int, metavar="D",
                       help="search Annoy in D dimensions (PCA fitted on the library); results are re-ranked on the "
                       "full vectors either way")
    index.add_argument("--follow-symlinks", action="store_true", help="also follow directory symlinks that lead "
                       "outside the given folders (by default only those that stay inside are followed)")
    index.set_defaults(run=_index)


def _library_verb(verbs, common: argparse.ArgumentParser) -> None:
    library = verbs.add_parser("library", parents=[common], help="inspect, check, repair or edit a sample library",
                               description="stats: counts and sizes; list: indexed files; remove PATH...: forget "
                               "files, or folders it was indexed from with their files (all must be in the library, "
                               "else nothing is removed); verify: check the "
                               "database, every embedding and source file, and the search index (exit 1 on any "
                               "problem); repair: rebuild what verify finds damaged from what can still be read "
                               "(never touches your audio); upgrade: add the tempo, key and bars of files indexed "
                               "before stemserver kept them (decodes them again, embeds nothing again).")
    library.add_argument("action", choices=["stats", "list", "remove", "verify", "repair", "upgrade"])
    library.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="files to remove (with remove)")
    library.add_argument("--library", type=Path, help="library folder (default: ~/.local/share/stemserver/library)")
    library.add_argument("--checkpoint", type=Path, help="with repair: the model that embeds damaged files again; "
                         "it must be the one the library was built with (default: the bundled default model)")
    library.set_defaults(run=_library)


def _query_verb(verbs, common: argparse.ArgumentParser) -> None:
    query = verbs.add_parser("query", parents=[common], help="find stems that fit a mix",
                             description="Encode the last seconds of MIX, predict the embedding of a stem of the "
                             "given instrument, and list the best stems of the library with the offset at which "
                             "each lines up with the mix (offset_s: stem position at the start of the query "
                             "window; offset_at_end_s: at its end).")
    query.add_argument("mix", type=Path, help="audio file of the mix")
    query.add_argument("--server", metavar="URL", help="ask a running server (osc://HOST:PORT or ws://HOST:PORT) "
                       "instead of loading the model here")
    query.add_argument("--token", help="the server's token, when it was started with one")
    query.add_argument("--timeout", type=arguments.positive_float, default=30.0, metavar="S",
                       help="seconds to wait for a server")
    query.add_argument("--send-audio", action="store_true", help="over OSC, send the audio even to a server on "
                       "this machine (by default it gets the file's path), e.g. one in a container that cannot "
                       "read your files")
    query.add_argument("--instrument", "-i", required=True, type=arguments.non_empty_text,
                       help="free text, e.g. 'bass' or 'nylon guitar'")
    query.add_argument("-k", type=arguments.positive_int, default=10, help="number of stems (default 10)")
    query.add_argument("--seconds", type=arguments.positive_float, default=QUERY_SECONDS, metavar="S",
                       help=f"use the last S seconds of the mix (default {QUERY_SECONDS:g}; a server takes 2 to 30)")
    query.add_argument("--library", type=Path, help="library folder (default: ~/.local/share/stemserver/library)")
    query.add_argument("--checkpoint", type=Path, help=CHECKPOINT_HELP)
    query.add_argument("--folder", help="only stems under this folder")
    query.add_argument("--label", help="only stems whose path contains this text")
    query.add_argument("--min-duration", type=arguments.non_negative_float, metavar="S",
                       help="only stems at least S seconds long")
    query.add_argument("--max-duration", type=arguments.non_negative_float, metavar="S",
                       help="only stems at most S seconds long")
    query.add_argument("--exclude", action="append", default=[], metavar="PATH", help="never return this file")
    query.add_argument("--tempo", type=arguments.tempo_bpm, metavar="BPM",
                       help="the mix's tempo (default: estimated from its audio); a DAW knows it")
    query.add_argument("--key", type=arguments.key_text, metavar="KEY",
                       help="the mix's key, e.g. 'A minor', F#m (default: estimated from its audio)")
    query.add_argument("--max-stretch", type=arguments.stretch_limit, metavar="R",
                       help="only stems that reach the mix's tempo at a playback rate within 1/R..R (or at "
                            "double or half time); stems without a tempo pass")
    query.add_argument("--key-compatible", action="store_true",
                       help="leave out stems whose key clashes with the mix's (same, relative, dominant and "
                            "subdominant stay); stems without a key pass")
    query.set_defaults(run=_query)


def _preview_verb(verbs, common: argparse.ArgumentParser) -> None:
    preview = verbs.add_parser("preview", parents=[common], help="render a mix with a found stem laid in, to hear it",
                               description="Render MIX with STEM laid in where a query placed it, time-stretched "
                               "and pitch-shifted (Rubber Band) to the mix's tempo and key, into a WAV at the mix's "
                               "rate and channels. Take the values from a query result of this mix: --offset is its "
                               "offset_s (the stem position at the start of the query window, the last --seconds "
                               "of MIX), --stretch its stretch (playback rate: above 1 plays the stem faster), "
                               "--transpose its transpose (semitones). A stem shorter than the window is a loop "
                               "and repeats over the whole mix; the render is scaled down only when the sum would "
                               "clip. Stretching needs pip install 'stemserver[preview]'.")
    preview.add_argument("mix", type=Path, help="audio file of the mix (the one the query was made with)")
    preview.add_argument("stem", type=Path, help="audio file of the stem (a result's path)")
    preview.add_argument("--output", "-o", type=Path, required=True, metavar="OUT.wav",
                         help="the WAV to write (32-bit float; replaced whole)")
    preview.add_argument("--offset", type=arguments.non_negative_float, default=0.0, metavar="S",
                         help="the result's offset_s: stem seconds at the start of the query window (default 0)")
    preview.add_argument("--stretch", type=arguments.positive_float, default=1.0, metavar="R",
                         help="the result's stretch: playback rate, 0.25 to 4 (default 1: as it is)")
    preview.add_argument("--transpose", type=int, default=0, metavar="N",
                         help="the result's transpose: semitones, -12 to 12 (default 0)")
    preview.add_argument("--seconds", type=arguments.positive_float, default=QUERY_SECONDS, metavar="S",
                         help=f"the query window the result was found with: the last S seconds of MIX "
                         f"(default {QUERY_SECONDS:g}, as for query)")
    preview.add_argument("--stem-gain-db", type=float, default=0.0, metavar="DB",
                         help="the stem's level against the mix in dB (default 0; -6 is half)")
    preview.set_defaults(run=_preview)


def _serve_verb(verbs, common: argparse.ArgumentParser) -> None:
    serve = verbs.add_parser("serve", parents=[common], help="run the OSC + WebSocket server and its browser page",
                             description="Serve queries over OSC (UDP) and WebSocket until SIGINT/SIGTERM, and "
                             "the browser page on the WebSocket port (http://127.0.0.1:8765/ by default). "
                             "The wire contract is docs/protocol.md. Prints one 'stemserver: ready ...' line "
                             "on stdout when it listens (its last URL is the page), and a first query to try on "
                             "stderr. On the first start "
                             "with the default model and library, copies the demo library to "
                             "~/.local/share/stemserver/demo and indexes it (a library holding only an earlier "
                             "version's demo gets this version's); the first query sends a demo mix and asks "
                             "for the part it leaves out.")
    serve.add_argument("--checkpoint", type=Path, help=CHECKPOINT_HELP)
    serve.add_argument("--library", type=Path, help="library folder (default: ~/.local/share/stemserver/library)")
    serve.add_argument("--host", default="127.0.0.1", type=arguments.non_empty_text,
                       help="address to listen on (default 127.0.0.1; any other needs --token)")
    serve.add_argument("--osc-port", type=arguments.port, default=9000,
                       help="OSC UDP port (default 9000; 0 = any free)")
    serve.add_argument("--ws-port", type=arguments.port, default=8765,
                       help="WebSocket port (default 8765; 0 = any free)")
    serve.add_argument("--token", type=arguments.non_empty_text,
                       help="shared secret clients must send (required off loopback)")
    serve.add_argument("--allow-origin", action="append", default=[], type=_origin, metavar="ORIGIN",
                       help="let web pages from ORIGIN (e.g. http://localhost:3000) open a WebSocket; may repeat. "
                       "By default a connection that presents an Origin (what browsers send) is refused, "
                       "unless it is the server's own page")
    serve.add_argument("--capture", metavar="DEVICE", help="capture this audio input (name or index) for 'now' "
                       "queries")
    serve.add_argument("--capture-seconds", type=arguments.positive_float, default=30.0,
                       help="seconds of live input kept (default 30)")
    serve.add_argument("--queue", type=arguments.positive_int, default=16,
                       help="queries that may wait before 'busy' (default 16)")
    serve.add_argument("--open", action="store_true", help="open the browser page (served on the WebSocket port) "
                       "once the server listens")
    serve.add_argument("--no-demo", action="store_true", help="do not install and index the demo library when "
                       "the default library is empty (or holds only an earlier version's demo)")
    serve.set_defaults(run=_serve)


def _config_verb(verbs, common: argparse.ArgumentParser) -> None:
    config = verbs.add_parser("config", parents=[common], help="print the effective settings as commented YAML",
                              description="Print the settings in effect (defaults, the config file, then flags) "
                              "as YAML with each key documented: a valid config file to start from.")
    config.set_defaults(run=_config)


VERBS = {"doctor": _doctor_verb, "embed": _embed_verb, "index": _index_verb, "library": _library_verb,
         "query": _query_verb, "preview": _preview_verb, "serve": _serve_verb, "config": _config_verb}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in TRAINING_VERBS:
        import importlib

        module, prefix, _ = TRAINING_VERBS[argv[0]]
        return importlib.import_module(module).main(prefix + argv[1:])
    parser = build_parser(argv[0] if argv and argv[0] in VERBS else None)
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return EXIT_USAGE
    return run_main(args.run, args, "stemserver")


def _settings(args: argparse.Namespace):
    from stemserver.config import load_settings

    return load_settings(args.config).override(
        device=args.device, threads=args.threads, checkpoint=getattr(args, "checkpoint", None),
        library=getattr(args, "library", None),
    )


def _checkpoint_path(settings) -> Path:
    from stemserver.defaults import model_path

    return model_path(settings.checkpoint)


def _library_dir(settings) -> Path:
    from stemserver.defaults import default_library_dir

    return settings.library or default_library_dir()


def _doctor(args: argparse.Namespace) -> int:
    from stemserver.doctor import diagnose, format_report

    report = diagnose(_settings(args))
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return EXIT_OK if report["ok"] else EXIT_ERROR


def _embed(args: argparse.Namespace) -> int:
    import numpy as np

    from stemserver import audio
    from stemserver.checkpoint import load_model
    from stemserver.inference import encode_audio

    settings = _settings(args)
    checkpoint, model, device = load_model(_checkpoint_path(settings), settings)
    samples, info = audio.load(args.file, checkpoint.config.front_end.sample_rate, settings.max_audio_seconds)
    grid = encode_audio(model, samples, device, target=args.target)
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
    """Run the predictor on an encoded grid (rows, columns, d) for one instrument; summarise what it predicts."""
    import numpy as np
    import torch

    from stemserver.inference import predict_columns

    text = checkpoint.label_embedder(settings.text, device=str(device)).embed([instrument])
    predicted = predict_columns(model, torch.from_numpy(grid)[None].to(device), text)[0]  # (columns, rows, d)
    a, b = predicted.mean(axis=(0, 1)), grid.mean(axis=(0, 1))
    cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
    return {"instrument": instrument, "shape": list(grid.shape), "cosine_to_mix": round(cosine, 4)}


def _index(args: argparse.Namespace) -> int:
    from stemserver.indexing import IndexOptions, index_folders

    settings = _settings(args)
    options = IndexOptions(tile_loops=args.tile_loops, hop_s=args.hop, n_trees=args.trees, pca_dim=args.pca_dim,
                           follow_symlinks=args.follow_symlinks)
    summary = index_folders(args.paths, _library_dir(settings), _checkpoint_path(settings), settings, options,
                            progress=not args.json)
    if args.json:
        print(json.dumps(summary, indent=2))
        return EXIT_OK
    speed = summary["audio_seconds"] / max(summary["elapsed_s"], 1e-9)
    print(f"{summary['added']} added, {summary['updated']} updated, {summary['unchanged']} unchanged, "
          f"{summary['removed']} removed, {len(summary['failed'])} unreadable; {summary['audio_seconds']:.0f} s of "
          f"audio in {summary['elapsed_s']:.1f} s ({speed:.1f}x realtime)")
    for failure in summary["failed"]:
        print(f"  unreadable: {failure['error']}")
    for damaged in summary["damaged"]:
        print(f"  embedded again: {damaged['path']}: {damaged['error']}")
    info = summary["index"]
    if info:
        print(f"index generation {info['generation']}: {info['windows']} windows of {info['files']} files "
              f"in {summary['library']}")
    else:
        print("the library is empty: no index was built")
    return EXIT_OK


def _library(args: argparse.Namespace) -> int:
    from stemserver import repair
    from stemserver.index import read_current
    from stemserver.library import Library, LibraryError

    settings = _settings(args)
    root = _library_dir(settings)
    if args.action == "verify":
        problems = repair.verify(root)
        with Library(root) as library:
            count = len(library.files())
        result = {"problems": problems}
        text = "\n".join(problems) if problems else f"ok: {count} files and the search index verified"
    elif args.action == "repair":
        result = {"done": repair.repair(root, _checkpoint_path(settings), settings, progress=not args.json)}
        text = "\n".join(result["done"])
    else:
        with Library(root) as library:
            if args.action == "stats":
                result = library.stats()
                try:
                    result["index"] = read_current(root / "index")
                except LibraryError as e:
                    result["index"] = {"error": str(e)}
                text = "\n".join(f"{key}: {value}" for key, value in result.items() if key != "index")
                index = result["index"]
                text += "\nindex: " + ("none" if index is None else index.get("error") or
                                       f"generation {index['generation']}, {index['windows']} windows")
            elif args.action == "upgrade":
                result = {"analysed": library.add_missing_music(progress=not args.json)}
                text = (f"added tempo, key and bars to {result['analysed']} file(s)" if result["analysed"]
                        else f"nothing to upgrade: every file of {root} has its tempo, key and bars")
            elif args.action == "list":
                files = library.files()
                names = _predicted_instruments(library, files, settings)
                facts = library.music()
                result = [{"path": f.path, "duration_s": round(f.duration_s, 3), "label": f.label,
                           "instrument": names.get(f.sha256), **_music_fields(facts.get(f.path))} for f in files]
                text = "\n".join(f"{r['duration_s']:9.2f} s  {r['instrument'] or '-':24.24}  "
                                  f"{_listed_tempo(r):>14}  {r['key'] or '-':9}  {r['path']}" for r in result)
                if len(facts) < len(files):
                    text += (f"\n{len(files) - len(facts)} file(s) indexed before tempo and key were kept: "
                             "`stemserver library upgrade` adds them (nothing is embedded again)")
            else:
                if not args.paths:
                    raise StemserverError("library remove needs the paths of the files (or of the folders it was "
                                          "indexed from) to forget")
                unknown = library.unknown(args.paths)
                if unknown:  # a typo must not leave half the list removed: nothing is
                    raise StemserverError(f"the library at {root} holds no file {', '.join(unknown)}; nothing was "
                                          "removed (see `stemserver library list`)")
                result = {"removed": library.remove(args.paths)}
                text = f"removed {result['removed']} file(s); run `stemserver index` to rebuild the search index"
    print(json.dumps(result, indent=2) if args.json else text)
    return EXIT_ERROR if args.action == "verify" and result["problems"] else EXIT_OK


def _music_fields(facts) -> dict:
    """A library file's tempo, key and bars as `library list --json` gives them (None: not analysed yet)."""
    from stemserver.music import MusicFacts

    return (facts or MusicFacts())._asdict() | {"analysed": facts is not None}


def _listed_tempo(row: dict) -> str:
    if row["tempo_bpm"] is None:
        return "-"
    bars = f" {row['bars']} bar{'s' if row['bars'] != 1 else ''}" if row["bars"] else ""
    return f"{row['tempo_bpm']:.1f} BPM{bars}"


def _predicted_instruments(library, files: list, settings) -> dict[str, str]:
    """Each file's predicted instrument (by content hash): the label of the model's label cache
    nearest to its instrument vector. Empty when no file has one (a model without an instrument
    head) or the checkpoint cannot be read (the list is still shown)."""
    vectors = {f.sha256: v for f in files if (v := library.load_instrument(f)) is not None}
    if not vectors:
        return {}
    import numpy as np

    from stemserver.checkpoint import load_checkpoint
    from stemserver.errors import CheckpointError

    try:
        checkpoint = load_checkpoint(_checkpoint_path(settings))
    except CheckpointError:
        return {}
    return dict(zip(vectors, checkpoint.nearest_labels(np.stack(list(vectors.values())))))


def _query(args: argparse.Namespace) -> int:
    excluded = [str(Path(p).expanduser().absolute()) for p in args.exclude]
    if args.server:
        from stemserver.server.client import query_server

        filters = {key: value for key, value in [("folder", args.folder), ("label", args.label),
                   ("min_duration", args.min_duration), ("max_duration", args.max_duration),
                   ("exclude", excluded or None), ("max_stretch", args.max_stretch),
                   ("key_compatible", args.key_compatible or None)] if value is not None}
        result = query_server(args.server, args.mix, args.instrument, args.k, args.seconds, filters, args.token,
                              args.timeout, args.send_audio, tempo=args.tempo, key=args.key)
    else:
        from stemserver.engine import Engine
        from stemserver.selection import Filters

        settings = _settings(args)
        engine = Engine(_checkpoint_path(settings), _library_dir(settings), settings)
        filters = Filters(folder=args.folder, min_duration_s=args.min_duration, max_duration_s=args.max_duration,
                          label=args.label, exclude=tuple(excluded), max_stretch=args.max_stretch,
                          key_compatible=args.key_compatible)
        result = engine.query_file(args.mix, args.instrument, k=args.k, filters=filters, seconds=args.seconds,
                                   tempo_bpm=args.tempo, key=args.key).to_dict()
    if args.json:
        print(json.dumps(result, indent=2))
        return EXIT_OK
    if not result["matches"]:
        print("no stems matched (is the library empty, or are the filters too strict?)")
    else:
        print(f"mix: {_tempo_text(result.get('mix_tempo_bpm'))}, {result.get('mix_key') or 'key unknown'}")
        print(f"{'rank':>4} {'score':>7} {'offset s':>9} {'align':>6} {'BPM':>6} {'key':>9} {'stretch':>7} "
              f"{'transp':>6}  path")
        for m in result["matches"]:
            loop = " (loop)" if m["loop"] else ""
            stretch = "-" if m.get("stretch") is None else f"x{m['stretch']:.3f}"
            transpose = "-" if m.get("transpose") is None else f"{m['transpose']:+d}"
            tempo = "-" if m.get("tempo_bpm") is None else f"{m['tempo_bpm']:.1f}"
            print(f"{m['rank']:4d} {m['score']:7.3f} {m['offset_s']:9.2f} {m['alignment_score']:6.2f} {tempo:>6} "
                  f"{m.get('key') or '-':>9} {stretch:>7} {transpose:>6}  {m['path']}{loop}")
    print("ms: " + ", ".join(f"{k} {v:.1f}" for k, v in result["timings_ms"].items()))
    return EXIT_OK


def _tempo_text(bpm: float | None) -> str:
    return "tempo unknown" if bpm is None else f"{bpm:.1f} BPM"


def _preview(args: argparse.Namespace) -> int:
    from stemserver.preview import preview_file

    summary = preview_file(args.mix, args.stem, args.output, offset_s=args.offset, stretch=args.stretch,
                           transpose=args.transpose, seconds=args.seconds, stem_gain_db=args.stem_gain_db,
                           max_duration_s=_settings(args).max_audio_seconds)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        loop = ", the stem looped" if summary["loop"] else ""
        scaled = f", scaled by {summary['gain_db']:g} dB to keep from clipping" if summary["gain_db"] else ""
        print(f"wrote {summary['path']}: {summary['duration_s']:.2f} s, {summary['sample_rate']} Hz, "
              f"{summary['channels']} ch; query window from {summary['window_start_s']:.2f} s{loop}{scaled}")
    return EXIT_OK


def _origin(text: str) -> str:
    from stemserver.server.security import parse_origin

    try:
        return parse_origin(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _serve(args: argparse.Namespace) -> int:
    from stemserver import demo
    from stemserver.server.app import ServerOptions, check_security, serve

    settings = _settings(args)
    options = ServerOptions(host=args.host, osc_port=args.osc_port, ws_port=args.ws_port, token=args.token,
                            capture_device=args.capture, capture_seconds=args.capture_seconds, max_queue=args.queue,
                            allowed_origins=frozenset(args.allow_origin))
    check_security(options)
    checkpoint, library = _checkpoint_path(settings), _library_dir(settings)
    defaults = settings.checkpoint is None and settings.library is None
    if defaults and not args.no_demo and demo.wanted(library):
        demo.install(library, checkpoint, settings)

    def on_ready(osc_url: str, ws_url: str, page_url: str) -> None:
        print(demo.first_query_hint(osc_url, ws_url, page_url, args.token), file=sys.stderr, flush=True)
        if args.open:
            import webbrowser

            opened = webbrowser.open(page_url + (f"?token={quote(args.token, safe='')}" if args.token else ""))
            if not opened:
                print(f"stemserver: no web browser could be opened here; open {page_url} yourself", file=sys.stderr,
                      flush=True)

    return serve(checkpoint, library, settings, options, on_ready)


def _config(args: argparse.Namespace) -> int:
    import dataclasses

    from stemserver.config import settings_to_yaml

    settings = _settings(args)
    if args.json:
        print(json.dumps(dataclasses.asdict(settings), indent=2, default=str))
    else:
        print(settings_to_yaml(settings), end="")
    return EXIT_OK
