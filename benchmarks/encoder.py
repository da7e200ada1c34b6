"""Forward speed of encoder + predictor on 8 s windows, for each model size, next to the machine's matmul speed.

    .venv/bin/python benchmarks/encoder.py [--sizes tiny small base] [--batch-sizes 1 16] [--device auto]

Prints, per size and batch size: median forward time, windows/s, x realtime (seconds of audio
encoded per second), model GFLOP per window, achieved GFLOP/s, and that as a fraction of a plain
matmul's GFLOP/s measured in the same run (how close the model runs to what the machine can do).
The front end (log-mel) is included in the timing: it is part of every query.
"""

from __future__ import annotations

import argparse

import torch
from common import emit, timed

from stemserver.device import inference, select_device, set_threads
from stemserver.model import ENCODER_PRESETS, ModelConfig, StemJEPA, encoder_flops, predictor_flops

WINDOW_S = 8.0


def matmul_flops_per_s(device: torch.device, repeats: int, n: int = 2048) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    with inference(device):
        seconds = timed(lambda: a @ b, device, repeats)
    return 2 * n**3 / seconds


def run(sizes: list[str], batch_sizes: list[int], device: torch.device, repeats: int) -> dict:
    matmul = matmul_flops_per_s(device, repeats=max(repeats, 5))
    rows = []
    for size in sizes:
        config = ModelConfig.preset(size)
        model = StemJEPA(config).to(device).eval()
        columns = int(WINDOW_S * config.front_end.frames_per_second) // config.patch_size
        patches = columns * config.front_end.n_mels // config.patch_size
        flops = encoder_flops(config, columns) + predictor_flops(config, patches)
        samples = int(WINDOW_S * config.front_end.sample_rate)
        for batch in batch_sizes:
            waveform = torch.randn(batch, samples, device=device) * 0.1
            text = torch.nn.functional.normalize(torch.randn(batch, config.text_dim, device=device), dim=-1)
            def forward(model=model, waveform=waveform, text=text):
                return model.predict(model.encode(waveform), text)

            with inference(device):
                seconds = timed(forward, device, repeats)
            achieved = flops * batch / seconds
            rows.append({
                "size": size, "batch": batch, "forward_ms": seconds * 1e3,
                "windows_per_s": batch / seconds, "x_realtime": batch * WINDOW_S / seconds,
                "gflop_per_window": flops / 1e9, "achieved_gflop_per_s": achieved / 1e9,
                "fraction_of_matmul": achieved / matmul,
            })
    return {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "matmul_gflop_per_s": matmul / 1e9, "rows": rows}


def print_table(result: dict) -> None:
    print(f"device {result['device']}, {result['threads']} threads, torch {result['torch']}; "
          f"plain 2048^3 matmul: {result['matmul_gflop_per_s']:.1f} GFLOP/s")
    print(f"{'size':6} {'batch':>5} {'forward ms':>11} {'windows/s':>10} {'x realtime':>11} "
          f"{'GFLOP/win':>10} {'GFLOP/s':>9} {'of matmul':>10}")
    for r in result["rows"]:
        print(f"{r['size']:6} {r['batch']:5d} {r['forward_ms']:11.1f} {r['windows_per_s']:10.2f} "
              f"{r['x_realtime']:11.1f} {r['gflop_per_window']:10.2f} {r['achieved_gflop_per_s']:9.1f} "
              f"{r['fraction_of_matmul']:10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(ENCODER_PRESETS), choices=list(ENCODER_PRESETS))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    set_threads(args.threads)
    result = run(args.sizes, args.batch_sizes, select_device(args.device), args.repeats)
    emit(result, args.json, print_table)


if __name__ == "__main__":
    main()
