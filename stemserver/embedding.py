"""Audio of any length -> the encoder's (rows, columns, d) grid, one column per 160 ms.

Attention cost grows with the square of the number of patches, so long audio is encoded in
consecutive windows (8 s by default, the training length) and the columns are concatenated.
A window of exactly `window_s` seconds yields whole columns, so the concatenated columns stay on
the same 160 ms grid as a single pass would.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from stemserver.device import inference
from stemserver.errors import AudioError
from stemserver.model import StemJEPA


def embed_audio(
    model: StemJEPA,
    samples: np.ndarray,
    device: torch.device,
    window_s: float = 8.0,
    batch_size: int = 16,
    target: bool = False,
) -> np.ndarray:
    """Encode mono samples at the model's rate; returns float32 (rows, columns, d).

    `target=True` uses the EMA target encoder (what library stems are compared in)."""
    config = model.config
    column = config.patch_size * config.front_end.hop_length  # samples per 160 ms column
    window = max(column, int(round(window_s * config.front_end.sample_rate / column)) * column)
    if len(samples) < column:
        raise AudioError(
            f"audio is {len(samples) / config.front_end.sample_rate:.3f} s long; "
            f"the model needs at least {config.seconds_per_column:.2f} s"
        )
    whole = len(samples) // window * window
    chunks = [samples[i : i + window] for i in range(0, whole, window)]
    grids = []
    with inference(device):
        for start in range(0, len(chunks), batch_size):
            batch = torch.from_numpy(np.stack(chunks[start : start + batch_size])).to(device)
            grids.extend(model.encode(batch, target=target).float().cpu().unbind(0))
        tail = samples[whole:]
        if len(tail) >= column:
            grids.append(model.encode(torch.from_numpy(tail)[None].to(device), target=target).float().cpu()[0])
    return torch.cat(grids, dim=1).numpy()


def stem_columns(model: StemJEPA, samples: np.ndarray, device: torch.device, window_s: float = 8.0) -> np.ndarray:
    """How a library stem is represented: the target encoder's patches, each standardised over its
    features (the JEPA loss compares predictions with exactly this), as (columns, rows, d)."""
    grid = torch.from_numpy(embed_audio(model, samples, device, window_s=window_s, target=True))
    return F.layer_norm(grid, grid.shape[-1:]).permute(1, 0, 2).contiguous().numpy()


def predicted_columns(model: StemJEPA, samples: np.ndarray, text: torch.Tensor, device: torch.device) -> np.ndarray:
    """The predictor's guess of a fitting stem for one mix window, as (columns, rows, d).

    `samples` is encoded in one pass (the query window, 8 s by default), `text` is (1, text_dim)."""
    with inference(device):
        grid = model.predict(model.encode(torch.from_numpy(samples)[None].to(device)), text.to(device))
    return grid[0].float().cpu().permute(1, 0, 2).contiguous().numpy()


def mean_vector(columns: np.ndarray) -> np.ndarray:
    """Mean over every patch, L2-normalised: the one vector a window is searched by."""
    mean = columns.reshape(-1, columns.shape[-1]).astype(np.float32).mean(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


def stem_embedder(model: StemJEPA, device: torch.device, tile_loops: bool = False, window_s: float = 8.0):
    """The function a library scan embeds each file with: mono samples -> (columns, rows, d).

    With `tile_loops`, a file shorter than the window is repeated to fill it before encoding (a
    loop is heard in context, as it will be played) and one period of columns is kept."""
    config = model.config
    column = config.patch_size * config.front_end.hop_length
    window = int(window_s * config.front_end.sample_rate)

    def embed(samples: np.ndarray) -> np.ndarray:
        if tile_loops and len(samples) < window:
            tiled = np.tile(samples, -(-window // len(samples)))[:window]
            return stem_columns(model, tiled, device, window_s)[: max(1, len(samples) // column)]
        return stem_columns(model, samples, device, window_s)

    return embed
