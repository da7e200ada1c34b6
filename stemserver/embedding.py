"""Audio of any length -> the encoder's (rows, columns, d) grid, one column per 160 ms.

Attention cost grows with the square of the number of patches, so long audio is encoded in
consecutive windows (8 s by default, the training length) and the columns are concatenated.
A window of exactly `window_s` seconds yields whole columns, so the concatenated columns stay on
the same 160 ms grid as a single pass would.
"""

from __future__ import annotations

import numpy as np
import torch

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
