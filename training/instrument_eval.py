"""Measure an instrument head on a prepared cache's test split, the way the product will use it:

    stemserver eval-instrument BUNDLE CACHE [--split test] [--json]

Every stem of the split is one whole file of the pool, reduced to one vector by
`stemserver.inference.instrument_vectors` (what the library indexer calls). Reported per level of
the label path (coarse family, fine program):

- top-1 of the zero-shot classifier over the pool's labels at that level (the label whose text
  embedding is nearest), for the stems whose labels were trained on and for held-out ones apart;
- text retrieval, what a query by name does: for each label, the pool ranked by cos(head, text(label))
  and the share of its top 10 (top n when the pool has only n < 10 such stems) that carry it, the
  mean over labels (seen and held out apart);
- the floor the issue quotes: a linear probe (logistic regression, standardised features) on the
  per-band log-mel mean and standard deviation of each whole stem, fitted on the train split, with
  `--probe-encoder` also on the target encoder's mean patch representation and on both together.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from stemserver import arguments
from stemserver.checkpoint import load_checkpoint
from stemserver.config import TextSettings
from stemserver.device import select_device, set_threads
from stemserver.errors import StemserverError
from stemserver.exits import EXIT_OK, run_main
from stemserver.features import band_statistics
from stemserver.inference import instrument_vectors, mean_vector, stem_columns
from stemserver.model import StemJEPA
from stemserver.text import LabelEmbedder
from stemserver_training.cache import PreparedStem, open_cache
from stemserver_training.evaluate import held_out, level_label
from stemserver_training.instrument import LEVELS, label_list, labelled_stems

TOP = 10


def zero_shot_hits(vectors: np.ndarray, names: Sequence[str], embedder: LabelEmbedder) -> np.ndarray:
    """(N,) bool: whether each vector's nearest label among the distinct `names` is its own name."""
    vocabulary = sorted(set(names))
    text = embedder.embed(vocabulary).numpy()
    predicted = np.asarray(vocabulary)[(vectors @ text.T).argmax(axis=1)]
    return predicted == np.asarray(names)


def precision_at_top(vectors: np.ndarray, names: Sequence[str], embedder: LabelEmbedder) -> dict[str, float]:
    """For each distinct name: the share of the pool's top min(10, its count) by cos(vector,
    text(name)) that carry it."""
    names = np.asarray(names)
    vocabulary = sorted(set(names))
    scores = vectors @ embedder.embed(vocabulary).numpy().T  # (N, V)
    result = {}
    for j, name in enumerate(vocabulary):
        top = min(TOP, int((names == name).sum()))
        ranked = np.argsort(-scores[:, j], kind="stable")[:top]
        result[name] = float((names[ranked] == name).mean())
    return result


def linear_probe(train_x: np.ndarray, train_y: Sequence[str], test_x: np.ndarray, test_y: Sequence[str]) -> float:
    """Top-1 on test of a multinomial logistic regression on features standardised with the train
    set's statistics, fitted on train by L-BFGS with scikit-learn's default L2 penalty (C = 1); a test
    label the train set lacks counts as a miss."""
    classes = sorted(set(train_y))
    index = {name: i for i, name in enumerate(classes)}
    x = torch.from_numpy(np.asarray(train_x, dtype=np.float64))
    mean, std = x.mean(dim=0), x.std(dim=0).clamp(min=1e-8)
    x = (x - mean) / std
    y = torch.tensor([index[name] for name in train_y])
    weight = torch.zeros(x.shape[1], len(classes), dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(len(classes), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=1000, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight + bias, y) + 0.5 * weight.square().sum() / len(x)
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        test = (torch.from_numpy(np.asarray(test_x, dtype=np.float64)) - mean) / std
        predicted = np.asarray(classes)[(test @ weight + bias).argmax(dim=1).numpy()]
    return float((predicted == np.asarray(test_y)).mean())


def log_mel_statistics(model: StemJEPA, stem: PreparedStem) -> np.ndarray:
    """Per band, the mean and standard deviation over the whole stem of its standardised log-mel."""
    with torch.inference_mode():
        stats = band_statistics(model.front_end(torch.from_numpy(stem.read(0, stem.num_samples))[None]))[0]
    return stats[: 2 * model.config.front_end.n_mels].numpy()


def encoder_mean(model: StemJEPA, stem: PreparedStem, device: torch.device) -> np.ndarray:
    """The stored stem representation (target encoder, each patch normalised), mean over patches."""
    return mean_vector(stem_columns(model, stem.read(0, stem.num_samples), device))


def evaluate(bundle: Path, cache: Path, split: str = "test", holdout: Sequence[str] | None = None,
             probe: bool = True, probe_encoder: bool = False, device: torch.device = torch.device("cpu"),
             progress: bool = True) -> dict:
    """The figures of the module's docstring, as a JSON-ready dict."""
    checkpoint = load_checkpoint(bundle)
    model = checkpoint.build_model(device)
    embedder = checkpoint.label_embedder(TextSettings())
    facts = checkpoint.info.get("instrument_head", {})
    holdout = list(holdout if holdout is not None else facts.get("settings", {}).get("holdout_labels", []))
    dataset = open_cache(cache)
    pool = labelled_stems(dataset, split)
    vectors = np.stack([instrument_vectors(model, stem.read(0, stem.num_samples), device)
                        for stem in tqdm(pool, desc=f"{split} stems", unit="stem", disable=not progress)])
    unseen = np.array([held_out(stem.label_path, holdout) for stem in pool])
    report = {"bundle": str(bundle), "cache": str(cache), "split": split, "stems": len(pool),
              "held_out_labels": holdout, "held_out_stems": int(unseen.sum()), "levels": {}}
    trained = {level: set(facts.get("labels", {}).get(level, [])) for level in LEVELS}
    for level in LEVELS:
        names = [level_label(stem.label_path, level) for stem in pool]
        hits = zero_shot_hits(vectors, names, embedder)
        precision = precision_at_top(vectors, names, embedder)
        unseen_names = {name for name in precision
                        if name in holdout or (trained[level] and name not in trained[level])}
        counts = {name: names.count(name) for name in precision}
        report["levels"][level] = {
            "labels": len(precision),
            "majority": max(counts.values()) / len(names),
            "top1": float(hits.mean()),
            "top1_seen": float(hits[~unseen].mean()) if (~unseen).any() else None,
            "top1_held_out": float(hits[unseen].mean()) if unseen.any() else None,
            "precision_at_10": _mean([p for name, p in precision.items() if name not in unseen_names]),
            "precision_at_10_per_query": _mean([precision[name] for name in names if name not in unseen_names]),
            "precision_at_10_held_out": _mean([p for name, p in precision.items() if name in unseen_names]),
            "precision_by_label": {name: {"precision": p, "stems": counts[name], "held_out": name in unseen_names}
                                   for name, p in precision.items()},
        }
    if probe:
        report["probes"] = probes(model, dataset, pool, split, probe_encoder, device, progress)
    return report


def probes(model: StemJEPA, dataset, pool: list[PreparedStem], split: str, probe_encoder: bool,
           device: torch.device, progress: bool) -> dict:
    """Linear probes fitted on the train split and scored on `pool`, per level and feature set."""
    train = labelled_stems(dataset, "train")
    sets = {}
    for name, stems in (("train", train), (split, pool)):
        mel = [log_mel_statistics(model, stem) for stem in tqdm(stems, desc=f"log-mel {name}", disable=not progress)]
        sets[name] = {"log_mel": np.stack(mel)}
        if probe_encoder:
            encoded = [encoder_mean(model, stem, device)
                       for stem in tqdm(stems, desc=f"encoder {name}", disable=not progress)]
            sets[name]["encoder"] = np.stack(encoded)
            sets[name]["log_mel+encoder"] = np.concatenate([sets[name]["log_mel"], sets[name]["encoder"]], axis=1)
    result = {}
    for level in LEVELS:
        train_y = [level_label(stem.label_path, level) for stem in train]
        test_y = [level_label(stem.label_path, level) for stem in pool]
        result[level] = {features: linear_probe(sets["train"][features], train_y, sets[split][features], test_y)
                         for features in sets["train"]}
    return result


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def markdown(report: dict) -> str:
    """The report's headline figures as a Markdown table."""
    lines = [f"{report['split']} split of {report['cache']}: {report['stems']} stems "
             f"({report['held_out_stems']} with a held-out label: {', '.join(report['held_out_labels']) or 'none'})",
             "", "| level | labels | majority | zero-shot top-1 | seen | held out | P@10 per label | per query "
             "| P@10 held out |"
             + (" " + " | ".join(f"probe {name}" for name in report["probes"]["coarse"]) + " |"
                if "probes" in report else ""),
             "|---" * (9 + len(report.get("probes", {}).get("coarse", {}))) + "|"]
    for level, r in report["levels"].items():
        row = [level, str(r["labels"]), _percent(r["majority"]), _percent(r["top1"]), _percent(r["top1_seen"]),
               _percent(r["top1_held_out"]), _percent(r["precision_at_10"]), _percent(r["precision_at_10_per_query"]),
               _percent(r["precision_at_10_held_out"])]
        row += [_percent(value) for value in report.get("probes", {}).get(level, {}).values()]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stemserver eval-instrument", description="Measure a bundle's instrument "
                                     "head on a prepared cache: zero-shot top-1, precision@10 when ranking by "
                                     "text, and the log-mel linear-probe floor (docs/training.md).")
    parser.add_argument("bundle", type=Path, help="a model bundle with an instrument head")
    parser.add_argument("cache", type=Path, help="a prepared cache (`stemserver prepare`)")
    parser.add_argument("--split", choices=("train", "valid", "test"), default="test")
    parser.add_argument("--holdout-labels", type=label_list, metavar="A,B", help="held-out labels (default: those "
                        "the head was trained without, from the bundle)")
    parser.add_argument("--no-probe", action="store_true", help="skip the linear probes")
    parser.add_argument("--probe-encoder", action="store_true", help="also probe the target encoder's mean "
                        "representation, alone and with the log-mel statistics (slow on a CPU)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    parser.add_argument("--threads", type=arguments.positive_int, metavar="N", help="CPU threads for torch")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the full report as JSON")
    args = parser.parse_args(argv)

    def run(args: argparse.Namespace) -> int:
        set_threads(args.threads)
        report = evaluate(args.bundle, args.cache, args.split, args.holdout_labels, not args.no_probe,
                          args.probe_encoder, select_device(args.device))
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
        print(markdown(report))
        return EXIT_OK

    return run_main(run, args, "stemserver", errors=(StemserverError,))


if __name__ == "__main__":
    raise SystemExit(main())
