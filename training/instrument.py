"""Train the instrument head onto a finished model (a small CLAP of our own):

    stemserver train-instrument CHECKPOINT CACHE --out NEW.safetensors [--holdout-labels "warm pad,..."]

The head (stemserver.model.InstrumentHead) maps a stem's band statistics into the text backend's
embedding space, the space the predictor's FiLM condition lives in, so that a library stem can be
compared with whatever instrument name a user types, names it never saw included. It is trained as
a zero-shot classifier over the training label vocabulary: logits = scale * cos(head(stem),
text(label)) against the fixed text embeddings of every training label, one softmax per level of
the label path (the coarse family, "bass", and the fine program, "synth bass"; both are right, and
a shared softmax would make them compete). Everything else is frozen and its weights are copied
bit for bit: the output bundle is the input plus the head.

A verb of its own rather than a third `stemserver train` phase: the phases share a step built for
pairs of mix and stem (DataLoader workers, DDP, EMA, step checkpoints), while the head needs none
of that. Its examples are random crops of single stems, reduced once to a few hundred features
each and kept in memory, and it trains in a minute or two on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from stemserver import arguments
from stemserver.checkpoint import Checkpoint, load_checkpoint
from stemserver.config import TextSettings
from stemserver.device import inference, select_device, set_threads
from stemserver.errors import ConfigError, StemserverError
from stemserver.exits import EXIT_OK, run_main
from stemserver.features import band_statistics
from stemserver.inference import SILENT_PEAK
from stemserver.model import InstrumentHead, StemJEPA
from stemserver.text import LabelEmbedder
from stemserver_training.cache import PreparedDataset, PreparedStem, open_cache
from stemserver_training.evaluate import held_out, level_label
from stemserver_training.optim import build_optimizer
from stemserver_training.schedule import learning_rate

LEVELS = ("coarse", "fine")


@dataclass(frozen=True)
class HeadTraining:
    """How the head is trained (the verb's options)."""

    steps: int = 1000
    batch_size: int = 256
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.05
    hidden: int = 512  # ModelConfig.instrument_hidden
    crops_per_stem: int = 16  # random crops drawn from each training stem, featurised once
    min_crop_seconds: float = 2.0
    max_crop_seconds: float = 8.0
    holdout_labels: tuple[str, ...] = ()  # kept out of training (any level), for the zero-shot test
    seed: int = 0


@dataclass
class Crops:
    """Featurised crops of labelled stems: what the head trains on."""

    features: torch.Tensor  # (N, features) float32, on the CPU
    paths: list[tuple[str, ...]] = field(default_factory=list)  # each crop's label path


def labelled_stems(dataset: PreparedDataset, split: str) -> list[PreparedStem]:
    """The stems of `split` that have a label (a dataset may not know some stems' instrument)."""
    return [stem for track in dataset.split(split).tracks for stem in track.stems if stem.label_path]


def training_stems(dataset: PreparedDataset, holdout: Sequence[str]) -> list[PreparedStem]:
    """The labelled stems of the train split, without any whose label path has a held-out label."""
    stems = [stem for stem in labelled_stems(dataset, "train") if not held_out(stem.label_path, holdout)]
    if not stems:
        raise ConfigError(f"{dataset.cache_dir}: the train split has no stem left to train the instrument head on "
                          f"(held out: {', '.join(holdout) or 'nothing'})")
    return stems


def draw_crops(model: StemJEPA, stems: Sequence[PreparedStem], settings: HeadTraining, device: torch.device,
               progress: bool = True) -> Crops:
    """`crops_per_stem` random crops of each stem (uniform length in [min, max] crop seconds; a
    shorter stem gives its whole self), peak-normalised by the stem's peak as `instrument_vectors`
    normalises a library file, reduced to band statistics. A crop that falls in a gap of the part
    (see SILENT_PEAK) is drawn again, up to four times, then dropped.

    Each stem's log-mel is computed once and the crops are cut from it: a crop's own log-mel
    differs only in its first and last frame, and the front end, not the head, is what costs."""
    rng = random.Random(settings.seed)
    rate, hop = model.config.front_end.sample_rate, model.config.front_end.hop_length
    shortest = model.config.patch_size * hop
    features, paths = [], []
    for stem in tqdm(stems, desc="featurising crops", unit="stem", disable=not progress):
        if stem.num_samples < shortest or stem.peak <= 0:
            continue
        samples = stem.read(0, stem.num_samples) / stem.peak
        with inference(device):
            mel = model.front_end(torch.from_numpy(samples).to(device)).float()  # (1, n_mels, frames)
        crops = []
        for _ in range(settings.crops_per_stem):
            for _attempt in range(4):
                length = min(stem.num_samples, int(rng.uniform(settings.min_crop_seconds,
                                                               settings.max_crop_seconds) * rate))
                start = rng.randrange(stem.num_samples - length + 1)
                if np.abs(samples[start : start + length]).max() >= SILENT_PEAK:
                    crops.append(band_statistics(mel[..., start // hop : (start + length) // hop + 1]).cpu())
                    break
        features.extend(crops)
        paths.extend([stem.label_path] * len(crops))
    if not features:
        raise ConfigError("no training stem has an audible crop to train the instrument head on")
    return Crops(torch.cat(features), paths)


def level_targets(paths: Sequence[tuple[str, ...]], embedder: LabelEmbedder
                  ) -> dict[str, tuple[list[str], torch.Tensor, torch.Tensor]]:
    """Per level: its label vocabulary (sorted), their text embeddings (V, text_dim) and each
    path's index into it (N,)."""
    levels = {}
    for level in LEVELS:
        names = [level_label(path, level) for path in paths]
        vocabulary = sorted(set(names))
        index = {name: i for i, name in enumerate(vocabulary)}
        levels[level] = (vocabulary, embedder.embed(vocabulary), torch.tensor([index[name] for name in names]))
    return levels


def classifier_loss(head: InstrumentHead, vectors: torch.Tensor, text: torch.Tensor, targets: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of the zero-shot classifier scale * cos(vector, text(label)), and its hits."""
    logits = head.inverse_temperature() * vectors @ text.T
    return F.cross_entropy(logits, targets), logits.argmax(dim=1) == targets


def train_head(checkpoint: Checkpoint, dataset: PreparedDataset, settings: HeadTraining,
               device: torch.device = torch.device("cpu"), embedder: LabelEmbedder | None = None,
               progress: bool = True, log: Callable[[str], None] = print) -> Checkpoint:
    """`checkpoint` plus an instrument head trained on `dataset`'s train split (see the module's
    docstring). `embedder` embeds the labels (default: the checkpoint's label cache, with its text
    backend for labels it lacks); the returned bundle's label cache includes every training label."""
    if dataset.sample_rate != checkpoint.config.front_end.sample_rate:
        raise ConfigError(f"{dataset.cache_dir} holds {dataset.sample_rate} Hz audio but the model expects "
                          f"{checkpoint.config.front_end.sample_rate} Hz")
    t0 = time.perf_counter()
    embedder = embedder or checkpoint.label_embedder(TextSettings())
    base = without_head(checkpoint)
    model = base.build_model(device)
    stems = training_stems(dataset, settings.holdout_labels)
    crops = draw_crops(model, stems, settings, device, progress)
    levels = level_targets(crops.paths, embedder)
    log(f"{len(crops.paths)} crops of {len(stems)} stems; {len(levels['coarse'][0])} coarse and "
        f"{len(levels['fine'][0])} fine labels")

    head, last_loss = fit_head(crops, levels, settings, checkpoint.config.text_dim, device, log)
    facts = {"steps": settings.steps, "loss": last_loss, "crops": len(crops.paths), "stems": len(stems),
             "cache": str(dataset.cache_dir), "labels": {level: levels[level][0] for level in LEVELS},
             "seconds": round(time.perf_counter() - t0, 1), "settings": asdict(settings)}
    return with_head(base, head, settings.hidden, embedder, facts)


def fit_head(crops: Crops, levels: dict[str, tuple[list[str], torch.Tensor, torch.Tensor]], settings: HeadTraining,
             text_dim: int, device: torch.device = torch.device("cpu"), log: Callable[[str], None] = print
             ) -> tuple[InstrumentHead, float]:
    """A new head fitted to featurised `crops` and their `level_targets`, in eval mode, and the
    mean loss of its last logged interval."""
    torch.manual_seed(settings.seed)
    head = InstrumentHead(crops.features.shape[1], settings.hidden, text_dim).to(device)
    head.feature_mean.copy_(crops.features.mean(dim=0))
    head.feature_std.copy_(crops.features.std(dim=0).clamp(min=1e-4))  # a constant band must not divide by 0
    head.train()
    optimizer = build_optimizer(head.parameters(), settings.lr, settings.weight_decay)
    features = crops.features.to(device)
    text = {level: embeddings.to(device) for level, (_, embeddings, _) in levels.items()}
    targets = {level: index.to(device) for level, (_, _, index) in levels.items()}
    generator = torch.Generator().manual_seed(settings.seed)
    loss_sum, hits_sum, logged, last_loss = 0.0, 0.0, 0, math.nan
    for step in range(settings.steps):
        lr = learning_rate(step, settings.lr, settings.warmup_steps, settings.steps, settings.lr / 100)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = torch.randint(len(features), (min(settings.batch_size, len(features)),), generator=generator)
        vectors = head(features[batch])
        results = [classifier_loss(head, vectors, text[level], targets[level][batch]) for level in LEVELS]
        loss = sum(loss for loss, _ in results) / len(results)
        if not math.isfinite(loss.item()):
            raise StemserverError(f"the instrument head's loss became {loss.item()} at step {step + 1}; "
                                  f"try a lower --lr (now {settings.lr:g})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum, hits_sum, logged = loss_sum + loss.item(), hits_sum + results[-1][1].float().mean().item(), logged + 1
        if (step + 1) % max(1, settings.steps // 10) == 0 or step + 1 == settings.steps:
            log(f"step {step + 1:5d}/{settings.steps}  loss {loss_sum / logged:.4f}  fine accuracy "
                f"{hits_sum / logged:.3f}  scale {head.inverse_temperature().item():.1f}")
            last_loss, loss_sum, hits_sum, logged = loss_sum / logged, 0.0, 0.0, 0
    return head.eval(), last_loss


def without_head(checkpoint: Checkpoint) -> Checkpoint:
    """`checkpoint` with no instrument head (a head is retrained from scratch)."""
    state = {k: v for k, v in checkpoint.state.items() if not k.startswith("instrument.")}
    return replace(checkpoint, config=replace(checkpoint.config, instrument_hidden=0), state=state)


def with_head(checkpoint: Checkpoint, head: InstrumentHead, hidden: int, embedder: LabelEmbedder,
              facts: dict) -> Checkpoint:
    """`checkpoint`'s weights unchanged plus `head` (float32: it is small, and what was measured), the
    label cache of `embedder`, and `facts` under info["instrument_head"]."""
    state = dict(checkpoint.state)
    state.update({f"instrument.{k}": v.detach().float().cpu().clone() for k, v in head.state_dict().items()})
    return Checkpoint(replace(checkpoint.config, instrument_hidden=hidden), state, checkpoint.text_backend,
                      embedder.known_labels, embedder.embeddings, {**checkpoint.info, "instrument_head": facts})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = HeadTraining()
    parser.add_argument("checkpoint", type=Path, help="the model bundle to add the head to (e.g. "
                        "stemserver/assets/default-model.safetensors); its weights are copied unchanged")
    parser.add_argument("cache", type=Path, help="a prepared cache (`stemserver prepare`); its train split is used")
    parser.add_argument("--out", type=Path, required=True, metavar="NEW.safetensors", help="the bundle to write")
    parser.add_argument("--holdout-labels", type=label_list, default=(), metavar="A,B",
                        help="labels (any level) kept out of training, for the zero-shot test")
    parser.add_argument("--steps", type=arguments.positive_int, default=defaults.steps)
    parser.add_argument("--batch-size", type=arguments.positive_int, default=defaults.batch_size)
    parser.add_argument("--lr", type=arguments.positive_float, default=defaults.lr, help="peak learning rate")
    parser.add_argument("--warmup-steps", type=arguments.non_negative_int, default=defaults.warmup_steps)
    parser.add_argument("--hidden", type=arguments.positive_int, default=defaults.hidden,
                        help="width of the head's two hidden layers")
    parser.add_argument("--crops-per-stem", type=arguments.positive_int, default=defaults.crops_per_stem)
    parser.add_argument("--min-crop-seconds", type=arguments.positive_float, default=defaults.min_crop_seconds)
    parser.add_argument("--max-crop-seconds", type=arguments.positive_float, default=defaults.max_crop_seconds)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: auto)")
    parser.add_argument("--threads", type=arguments.positive_int, metavar="N", help="CPU threads for torch")


def label_list(text: str) -> tuple[str, ...]:
    return tuple(label.strip() for label in text.split(",") if label.strip())


def run(args: argparse.Namespace) -> int:
    if args.min_crop_seconds > args.max_crop_seconds:
        raise ConfigError(f"--min-crop-seconds {args.min_crop_seconds} is above --max-crop-seconds "
                          f"{args.max_crop_seconds}")
    set_threads(args.threads)
    settings = HeadTraining(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup_steps,
                            hidden=args.hidden, crops_per_stem=args.crops_per_stem,
                            min_crop_seconds=args.min_crop_seconds, max_crop_seconds=args.max_crop_seconds,
                            holdout_labels=args.holdout_labels, seed=args.seed)
    trained = train_head(load_checkpoint(args.checkpoint), open_cache(args.cache), settings,
                         select_device(args.device))
    trained.save(args.out)
    print(f"model with instrument head: {args.out}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="stemserver train-instrument",
        description="Train an instrument head onto a model bundle: it maps a stem's audio into the text "
        "embedding space, so stems can be ranked by any instrument name. Only the head trains; the output is "
        "the input bundle plus the head (docs/training.md, \"Instrument head\").")
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_main(run, args, "stemserver", errors=(StemserverError,))


if __name__ == "__main__":
    raise SystemExit(main())
