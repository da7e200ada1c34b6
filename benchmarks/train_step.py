"""Training speed: one optimiser step of phase 1 (contrastive) and phase 2 (JEPA) for each model size.

    .venv/bin/python benchmarks/train_step.py [--sizes tiny small base] [--batch-sizes 8 32]
        [--device auto] [--precision auto] [--chunk-seconds 8] [--compile] [--json]

A step is the training loop's own `stemserver_training.step.train_step`, on random audio already on
the device (data loading is left out: with enough DataLoader workers it overlaps with the step):
log-mel of the context and target chunks, forward and backward under autocast, the check for a
non-finite loss, gradient clipping, AdamW, and in phase 2 the EMA update of the target encoder.
Prints, per size, phase and batch size: median step time, samples/s, x realtime (seconds of audio
trained on per second), the model's GFLOP per sample (forward + backward, matmuls only) and, on
CUDA, the peak memory. A batch that does not fit is
reported as "out of memory" and the sweep goes on.
"""

from __future__ import annotations

import argparse
import itertools

import torch
import torch.nn.functional as F
from common import emit, timed

from stemserver.device import select_device, set_threads
from stemserver.model import ENCODER_PRESETS, ModelConfig, StemJEPA, encoder_flops, predictor_flops
from stemserver_training.config import OptimConfig
from stemserver_training.distributed import Distributed
from stemserver_training.objectives import build_objective
from stemserver_training.step import autocast_dtype, build_step, train_step

TEXT_DIM = 384  # MiniLM's


def step_function(model: StemJEPA, phase: str, batch: int, chunk_seconds: float, device: torch.device,
                  precision: str, compile: bool):
    """One training step of `phase` on a fixed random batch: the trainer's own `train_step`."""
    ddp = Distributed()
    stepper = build_step(model, build_objective(phase, model, ddp, device), OptimConfig(), 1e-4, ddp, device,
                         precision, compile)
    samples = int(chunk_seconds * model.config.front_end.sample_rate)
    context = torch.randn(batch, samples, device=device) * 0.1
    target = torch.randn(batch, samples, device=device) * 0.1
    text = F.normalize(torch.randn(batch, model.config.text_dim, device=device), dim=-1)
    micro_batches = itertools.repeat((context, target, text))
    tau = 0.996 if phase == "jepa" else None

    def step() -> None:
        if not train_step(stepper, micro_batches, 1e-4, tau).finite:
            raise RuntimeError("the loss of random audio became NaN or Inf")

    return step


def flops_per_sample(config: ModelConfig, phase: str, chunk_seconds: float) -> float:
    """Forward + backward (3x forward) of the trained parts, plus the target encoder's forward in phase 2."""
    columns = int(chunk_seconds * config.front_end.frames_per_second) // config.patch_size
    patches = columns * config.front_end.n_mels // config.patch_size
    encoder = encoder_flops(config, columns)
    if phase == "contrastive":
        return 3 * 2 * encoder  # context and target through the encoder, with gradients
    return 3 * (encoder + predictor_flops(config, patches)) + encoder


def run(sizes: list[str], phases: list[str], batch_sizes: list[int], device: torch.device, precision: str,
        chunk_seconds: float, repeats: int, compile: bool) -> dict:
    rows = []
    for size in sizes:
        config = ModelConfig.preset(size, text_dim=TEXT_DIM)
        for phase in phases:
            for batch in batch_sizes:
                row = {"size": size, "phase": phase, "batch": batch}
                try:
                    model = StemJEPA(config).to(device).train()
                    if device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats(device)
                    seconds = timed(step_function(model, phase, batch, chunk_seconds, device, precision, compile),
                                    device, repeats, warmup=3 if compile else 1)
                except torch.OutOfMemoryError:
                    rows.append({**row, "out_of_memory": True})
                    continue
                finally:
                    model = None
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                rows.append({**row, "step_ms": seconds * 1e3, "samples_per_s": batch / seconds,
                             "x_realtime": batch * chunk_seconds / seconds,
                             "gflop_per_sample": flops_per_sample(config, phase, chunk_seconds) / 1e9,
                             "peak_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda"
                             else None})
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
    return {"device": name, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "precision": str(autocast_dtype(precision, device) or "fp32").replace("torch.", ""),
            "chunk_seconds": chunk_seconds, "compile": compile, "rows": rows}


def print_table(result: dict) -> None:
    print(f"device {result['device']}, {result['threads']} threads, torch {result['torch']}, "
          f"{result['precision']}, {result['chunk_seconds']:g} s chunks{', compiled' if result['compile'] else ''}")
    print(f"{'size':6} {'phase':12} {'batch':>5} {'step ms':>9} {'samples/s':>10} {'x realtime':>11} "
          f"{'GFLOP/sample':>13} {'peak GB':>8}")
    for r in result["rows"]:
        if r.get("out_of_memory"):
            print(f"{r['size']:6} {r['phase']:12} {r['batch']:5d}   out of memory")
            continue
        peak = f"{r['peak_gb']:8.1f}" if r["peak_gb"] is not None else f"{'-':>8}"
        print(f"{r['size']:6} {r['phase']:12} {r['batch']:5d} {r['step_ms']:9.1f} {r['samples_per_s']:10.2f} "
              f"{r['x_realtime']:11.1f} {r['gflop_per_sample']:13.2f} {peak}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(ENCODER_PRESETS), choices=list(ENCODER_PRESETS))
    parser.add_argument("--phases", nargs="+", default=["contrastive", "jepa"], choices=["contrastive", "jepa"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[8, 32])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--chunk-seconds", type=float, default=8.0)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="torch.compile the training step")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    set_threads(args.threads)
    result = run(args.sizes, args.phases, args.batch_sizes, select_device(args.device), args.precision,
                 args.chunk_seconds, args.repeats, args.compile)
    emit(result, args.json, print_table)


if __name__ == "__main__":
    main()
