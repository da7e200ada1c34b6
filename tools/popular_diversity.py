"""The diversity of a popular corpus, measured from its manifest, and spectrograms of example mixes.

    .venv/bin/python tools/popular_diversity.py CORPUS [--build-json SUMMARY.json] [--examples 5 --png-dir DIR]

Prints Markdown tables: songs per genre, a tempo histogram, key coverage (24 major/minor keys and
the modes), parts per song, roles, timbre sources (kind and name), soundfonts and kits, effects
(how many stems have each), and the build speed when given the build's `--json` summary. With
`--png-dir`, writes a log-frequency spectrogram of the mix (the sum of the stems) of `--examples`
songs of different genres, with a line of what each holds.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile

MINOR_THIRD = ("minor", "dorian", "phrygian")


def table(title: str, counts: Counter, total: int | None = None, order: str = "count") -> str:
    """A Markdown table of `counts`, most common first, by key ("key") or as given ("given")."""
    rows = {"count": counts.most_common(), "key": sorted(counts.items()), "given": list(counts.items())}[order]
    lines = [f"| {title} | count |" + (" share |" if total else ""), "|---|---|" + ("---|" if total else "")]
    for key, n in rows:
        lines.append(f"| {key} | {n} |" + (f" {100 * n / total:.1f} % |" if total else ""))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--build-json", type=Path, help="the `corpus build --json` summary of the build")
    parser.add_argument("--examples", type=int, default=5)
    parser.add_argument("--png-dir", type=Path)
    args = parser.parse_args()
    records = [json.loads(line) for line in (args.corpus / "manifest.jsonl").read_text().splitlines()]
    latest = {r["track_id"]: r for r in records}
    songs = [r for r in latest.values() if r["type"] == "track"]
    n = len(songs)
    out = [f"{n} songs, {sum(len(s['stems']) for s in songs)} stems, "
           f"{sum(s['duration'] for s in songs) / 3600:.2f} h of songs, "
           f"{sum(s['duration'] * len(s['stems']) for s in songs) / 3600:.2f} stem-hours; "
           f"{len(latest) - n} skipped"]
    out.append(table("genre", Counter(s["genre"] for s in songs), n))
    bins = Counter(int(s["bpm"] // 10 * 10) for s in songs)
    out.append(table("BPM", Counter({f"{b}-{b + 9}": bins[b] for b in sorted(bins)}), n, order="given"))
    keys = Counter((s["tonic"], s["mode"] in MINOR_THIRD) for s in songs)  # by pitch class: C# and Db are one key
    out.append(f"key coverage: {len(keys)} of 24 major/minor keys (by tonic and third); "
               f"least {min(keys.values())}, most {max(keys.values())} songs a key")
    out.append(table("mode", Counter(s["mode"] for s in songs), n))
    out.append(table("meter", Counter(f"{s['meter']}/4" for s in songs), n))
    out.append(table("parts per song", Counter(len(s["stems"]) for s in songs), n, order="key"))
    stems = [st for s in songs for st in s["stems"]]
    out.append(table("role (stems)", Counter(st["role"] for st in stems), len(stems)))
    out.append(table("timbre kind (stems)", Counter(st["timbre"]["kind"] for st in stems), len(stems)))
    out.append(table("timbre source (stems)", Counter(st["timbre"]["name"] for st in stems), len(stems)))
    out.append(table("fine label (stems, top 25)", Counter(dict(Counter(st["label_path"][-1] for st in stems)
                                                                .most_common(25))), len(stems)))
    effects = Counter(e["name"] for st in stems for e in {e["name"]: e for e in st["effects"]}.values())
    out.append(table("effect (stems that have it)", effects, len(stems)))
    chains = Counter(len(st["effects"]) for st in stems)
    out.append(table("effects per stem", chains, len(stems), order="key"))
    if args.build_json:
        summary = json.loads(args.build_json.read_text())
        out.append(f"build: {summary['stem_hours']:.2f} stem-hours in {summary['seconds'] / 60:.1f} min = "
                   f"{summary['stem_hours'] / (summary['seconds'] / 3600):.0f} stem-hours an hour; "
                   f"{summary['bytes'] / 1e9:.2f} GB")
    print("\n\n".join(out))
    if args.png_dir:
        spectrograms(args.corpus, songs, args.examples, args.png_dir)


def spectrograms(corpus: Path, songs: list[dict], count: int, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    chosen, genres = [], set()
    for song in songs:
        if song["genre"] not in genres and len(chosen) < count:
            chosen.append(song)
            genres.add(song["genre"])
    for song in chosen:
        mix = sum(soundfile.read(corpus / song["track_id"] / st["stem_name"] / f"{st['id']}.flac")[0]
                  for st in song["stems"])
        rate = song["sample_rate"]
        fig, ax = plt.subplots(figsize=(12, 4))
        ax.specgram(mix, NFFT=1024, Fs=rate, noverlap=768, cmap="magma", vmin=-130)
        ax.set_yscale("symlog", linthresh=200)
        ax.set_ylim(30, rate / 2)
        bar = song["meter"] * 60 / song["bpm"]
        for section in song["sections"]:
            ax.axvline(section["start_bar"] * bar, color="cyan", lw=0.8)
            ax.text(section["start_bar"] * bar + 0.1, rate / 2 * 0.8, section["name"], color="cyan", fontsize=8)
        parts = ", ".join(f"{st['part']} ({st['timbre']['name']})" for st in song["stems"])
        ax.set_title(f"{song['track_id']}: {song['genre']}, {song['bpm']:g} BPM, {song['key']}\n{parts}",
                     fontsize=8)
        ax.set_xlabel("s")
        ax.set_ylabel("Hz")
        fig.tight_layout()
        fig.savefig(folder / f"{song['track_id']}.png", dpi=90)
        plt.close(fig)
        peak = 20 * np.log10(np.abs(mix).max())
        print(f"{song['track_id']}.png: {song['genre']} {song['bpm']:g} BPM {song['key']}, "
              f"{len(song['stems'])} stems, mix peak {peak:.1f} dBFS, sections "
              + " ".join(f"{s['name']}:{s['bars']}" for s in song["sections"]))


if __name__ == "__main__":
    main()
