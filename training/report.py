"""The evaluation report: metrics.json, report.md and its PNG plots, all from the metrics dictionary.

Everything is drawn from what metrics.json holds (stemserver_training.evaluate builds it), so a report can
be redrawn from a stored metrics.json without the model or the data. Files written to OUT:

    metrics.json          everything, machine-readable (percentages; see its "protocol" entry)
    report.md             the tables, with the plots embedded
    confusion.png         target label x label of the nearest neighbour, first label level
    confusion_coarse.png  the same for coarse labels, when both levels were evaluated
    alignment.png         the temporal-alignment curves, raw and centred

Plots are drawn on matplotlib Figure objects, never pyplot: no global state and no display
backend, so reports can be written from a server or a training job.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stemserver.errors import StemserverError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CATEGORY_NAMES = {
    "both_right": "both right",
    "right_track_and_instrument_not_target": "right track & instrument, not the target",
    "right_instrument_wrong_track": "right instrument, wrong track",
    "right_track_wrong_instrument": "right track, wrong instrument",
    "both_wrong": "both wrong",
}
DPI = 110
ANNOTATE_UP_TO = 16  # labels; above this, confusion cells are too small to hold their number


def check_plotting() -> None:
    """Fail before a long evaluation, not after it, when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise StemserverError("the evaluation report draws its plots with matplotlib: pip install matplotlib") from e


def write_report(metrics: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write every report file into `out_dir` (created if needed); returns name -> path."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise StemserverError(f"{out_dir} exists and is not a folder; pass another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"metrics": out_dir / "metrics.json", "report": out_dir / "report.md"}
    for i, (level, results) in enumerate(metrics.get("levels", {}).items()):
        name = "confusion" if i == 0 else f"confusion_{level}"
        files[name] = out_dir / f"{name}.png"
        plot_confusion(results["confusion"], level).savefig(files[name], dpi=DPI)
    if "levels" in metrics:
        files["alignment"] = out_dir / "alignment.png"
        plot_alignment(metrics["levels"]).savefig(files["alignment"], dpi=DPI)
    files["metrics"].write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    files["report"].write_text(markdown(metrics, {name: path.name for name, path in files.items()}), encoding="utf-8")
    return files


def markdown(metrics: dict, files: dict[str, str]) -> str:
    """report.md: the library protocol's table (when it ran), then the papers' protocol: its
    retrieval table, per label level the nearest-neighbour analysis, the per-label breakdown and
    the confusion matrix, then the alignment curves."""
    title = "Retrieval evaluation"
    if "checkpoint" in metrics:
        title += f": {Path(metrics['checkpoint']['path']).name} on {metrics['dataset']['cache_dir']} " \
                 f"({metrics['dataset']['split']})"
    lines = [f"# {title}", ""]
    if "library" in metrics:
        lines += library_markdown(metrics["library"])
    if "levels" in metrics:
        lines += papers_markdown(metrics, files)
    return "\n".join(lines)


LIBRARY_COLUMNS = (("R@1", "R@1"), ("R@5", "R@5"), ("R@10", "R@10"), ("median norm. rank", "median_normalised_rank"),
                   ("instrument P@10", "instrument_precision@10"), ("key agr.@10", "key_agreement@10"),
                   ("tempo agr.@10", "tempo_agreement@10"), ("offset within 1 column", "offset_within_one_column"))


def library_markdown(library: dict) -> list[str]:
    """The library protocol's section: how a user meets the product (stemserver_training.library_protocol)."""
    data, protocol = library["data"], library["protocol"]
    lines = ["## Library protocol (as a user meets the product)", "",
             f"Pool: {protocol['pool']}; {data['pool']} stems of {data['tracks']} tracks. Query: {protocol['query']}; "
             f"{data['queries']} queries. Instrument P@10: share of the top 10 whose label is the one asked (of the "
             f"top n when the pool holds n < 10 of it). Key / tempo agreement: {protocol['key_agreement']}; "
             f"{protocol['tempo_agreement']}. Offset: {protocol['offset']}. Percent; '-' where the data states no "
             "key or tempo.", "",
             "| query | " + " | ".join(name for name, _ in LIBRARY_COLUMNS) + " |",
             "|---|" + "---:|" * len(LIBRARY_COLUMNS)]
    for level, results in library["levels"].items():
        rows = [(f"model, {level} labels", results["model"]), (f"chance, {level} labels", results["chance"])]
        if "zero_shot" in results:
            rows += [(f"model, {level} labels, {group.replace('_', '-')} ({results['zero_shot'][group]['queries']})",
                      results["zero_shot"][group]) for group in ("held_out", "seen")]
        lines += [f"| {name} | " + " | ".join("-" if r.get(key) is None else f"{r[key]:.1f}"
                                              for _, key in LIBRARY_COLUMNS) + " |" for name, r in rows]
    return lines + [""]


def papers_markdown(metrics: dict, files: dict[str, str]) -> list[str]:
    data, protocol, levels = metrics["data"], metrics["protocol"], metrics["levels"]
    first = next(iter(levels))
    lines = [
        "## Papers' protocol (aligned chunks)", "",
        f"{data['targets']} targets: every active stem of up to {data['chunks_per_track']} chunk(s) of "
        f"{data['chunk_seconds']:g} s per track, {data['tracks']} tracks. Each is retrieved from a pool of all "
        f"{data['targets']}, embedded by the **{protocol['pool_encoder']}** encoder. The query is the predictor's "
        "output for the mix of the other active stems, conditioned on the target's label. Figures are percent; "
        "ranks are 0-based and divided by the pool size (0 = the target ranked first), ties count half."
        + (f" Every pool stem is embedded **{data['target_shift_s']:g} s later** than its mix."
           if data.get("target_shift_s") else ""), "",
        "### Retrieval", "",
        "| query | R@1 | R@5 | R@10 | mean norm. rank | median norm. rank |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    rows = [(f"JEPA, {level} labels", results["retrieval"]["jepa"]) for level, results in levels.items()]
    rows += [("contrastive baseline (mix embedding, no predictor)", levels[first]["retrieval"]["contrastive_baseline"]),
             ("chance", levels[first]["retrieval"]["chance"])]
    lines += [f"| {name} | {r['R@1']:.1f} | {r['R@5']:.1f} | {r['R@10']:.1f} | {r['mean_normalised_rank']:.2f} | "
              f"{r['median_normalised_rank']:.2f} |" for name, r in rows]
    lines += [f"\n> {note}" for note in metrics.get("notes", [])]
    zero_shot = [(level, results["zero_shot"]) for level, results in levels.items() if "zero_shot" in results]
    if zero_shot:
        held = ", ".join(zero_shot[0][1]["holdout_labels"])
        lines += ["", "### Zero-shot: labels kept out of training", "",
                  f"Training never used a stem labelled {held} (at any level): neither as a target nor in a "
                  "context. Targets with such a label, against the targets of labels it trained on.", "",
                  "| query | targets | R@1 | R@5 | R@10 | mean norm. rank | median norm. rank |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for level, z in zero_shot:
            for group in ("held_out", "seen"):
                for name, key in (("JEPA", "jepa"), ("contrastive baseline", "contrastive_baseline")):
                    r = z[group][key]
                    lines.append(f"| {name}, {level} labels, {group.replace('_', '-')} | {r['queries']} | "
                                 f"{r['R@1']:.1f} | {r['R@5']:.1f} | {r['R@10']:.1f} | "
                                 f"{r['mean_normalised_rank']:.2f} | {r['median_normalised_rank']:.2f} |")
    for i, (level, results) in enumerate(levels.items()):
        lines += ["", f"### Nearest neighbour, {level} labels", "",
                  "| query | " + " | ".join(CATEGORY_NAMES.values()) + " |",
                  "|---|" + "---:|" * len(CATEGORY_NAMES)]
        for name, key in (("JEPA", "jepa"), ("contrastive baseline", "contrastive_baseline")):
            shares = results["categories"][key]
            lines.append(f"| {name} | " + " | ".join(f"{shares[c]:.1f}" for c in CATEGORY_NAMES) + " |")
        lines += ["", "| label | targets | R@1 | R@10 | median norm. rank | "
                  + " | ".join(CATEGORY_NAMES.values()) + " |",
                  "|---|---:|---:|---:|---:|" + "---:|" * len(CATEGORY_NAMES)]
        for label, r in results["per_label"].items():
            lines.append(f"| {label} | {r['queries']} | {r['R@1']:.1f} | {r['R@10']:.1f} | "
                         f"{r['median_normalised_rank']:.2f} | "
                         + " | ".join(f"{r['categories'][c]:.1f}" for c in CATEGORY_NAMES) + " |")
        confusion = "confusion" if i == 0 else f"confusion_{level}"
        lines += ["", f"![confusion matrix, {level} labels]({files[confusion]})"]
    lines += ["", "### Temporal alignment", "",
              "Mean cosine between stem column i and prediction column i + j (160 ms columns, frequency rows "
              "concatenated, overlapping columns only). Centred: each sequence minus its mean column first, as "
              "the product's offset search does; *offset found* is the share of targets whose centred curve "
              "peaks at j = 0.", "",
              "| labels | peak j raw | peak j centred | cos at 0 raw | cos at 0 centred | offset found "
              "| within 1 column |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for level, results in levels.items():
        a = results["alignment"]
        zero = a["shifts"].index(0)
        lines.append(f"| {level} | {a['peak_shift_raw']} | {a['peak_shift_centred']} | {a['raw'][zero]:.3f} | "
                     f"{a['centred'][zero]:.3f} | {a['offset_found']:.1f} | {a['offset_within_one_column']:.1f} |")
    lines += ["", f"![alignment curves]({files['alignment']})", ""]
    return lines


def plot_confusion(confusion: dict, level: str) -> Figure:
    """Row-normalised confusion matrix: what share of each label's queries found which label."""
    from matplotlib.figure import Figure

    labels, counts = confusion["labels"], np.asarray(confusion["counts"], dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = max(4.0, 2.5 + 0.32 * len(labels))
    figure = Figure(figsize=(side + 1.2, side), layout="constrained")
    axes = figure.add_subplot()
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(labels)), labels, rotation=90)
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("label of the nearest neighbour")
    axes.set_ylabel("target label (the conditioning)")
    axes.set_title(f"Nearest neighbour by label, {level} labels")
    if len(labels) <= ANNOTATE_UP_TO:
        for (row, column), share in np.ndenumerate(shares):
            if counts[row, column]:
                axes.text(column, row, f"{share:.2f}", ha="center", va="center", fontsize=8,
                          color="white" if share > 0.5 else "black")
    figure.colorbar(image, ax=axes, shrink=0.8, label="share of the row's queries")
    return figure


def plot_alignment(levels: dict) -> Figure:
    """The alignment curves against the shift in seconds, raw and centred side by side."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), layout="constrained")
    panels = figure.subplots(1, 2)
    for axes, kind, title in ((panels[0], "raw", "raw cosine (Stem-JEPA fig. 4)"),
                              (panels[1], "centred", "centred (as the offset search)")):
        for level, results in levels.items():
            a = results["alignment"]
            axes.plot(np.asarray(a["shifts"]) * a["seconds_per_column"], a[kind], marker=".", label=f"{level} labels")
        axes.axvline(0, color="grey", linewidth=0.8, linestyle="--")
        axes.set_xlabel("shift j of the prediction (s)")
        axes.set_ylabel("mean cos(stem[i], prediction[i + j])")
        axes.set_title(title)
        axes.grid(alpha=0.3)
        axes.legend()
    return figure

