"""The model at inference, in one place: mix -> predicted stem, audio -> stem representation.

The engine (queries), the CLI (`embed`), the library indexer (`stem_embedder`) and the
evaluation all call these functions, so a change of representation is made here once:

    query:  mix waveforms -> log-mel -> context encoder -> predictor(text) -> (B, columns, rows, d)
    stem:   audio -> log-mel -> target encoder -> each patch layer-normalised over its features
            (what the JEPA loss compares predictions with) -> (columns, rows, d)
    search: mean over every patch, L2-normalised (`mean_vector`), of each search window of a
            library file encoded alone, as a query window is (`stem_embedder`)
    instrument: audio -> log-mel -> band statistics -> instrument head -> unit text-space vector
            (`instrument_vectors`; only for a model with an instrument head)

Attention cost grows with the square of the number of patches, so long audio is encoded in
consecutive windows of the query window's length (QUERY_SECONDS, the training length) and the
columns are concatenated; a window of exactly that length yields whole columns, so the
concatenated columns stay on the same 160 ms grid as a single pass would.

Per-stage timings come from `on_stage(name)`, called after "front_end", "encoder" and
"predictor" (after a device synchronisation on CUDA, so each stage's time is its own).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from stemserver.device import inference
from stemserver.errors import AudioError, CheckpointError
from stemserver.features import band_statistics
from stemserver.model import InstrumentHead, StemJEPA
from stemserver.window import HOP_COLUMNS, QUERY_SECONDS, window_starts

OnStage = Callable[[str], None]


def encode(model: StemJEPA, waveforms: torch.Tensor, target: bool = False, on_stage: OnStage | None = None
           ) -> torch.Tensor:
    """(B, n) waveforms at the model's rate -> (B, rows, columns, d) grid, on their device.

    The context encoder embeds mixes; `target=True` uses the EMA target encoder (library stems)."""
    with inference(waveforms.device):
        mel = model.front_end(waveforms)
        _stage(on_stage, "front_end", waveforms.device)
        grid = (model.target_encoder if target else model.encoder)(mel)
        _stage(on_stage, "encoder", waveforms.device)
    return grid


def predict_columns(model: StemJEPA, grid: torch.Tensor, text: torch.Tensor, on_stage: OnStage | None = None
                    ) -> np.ndarray:
    """The predictor's guess of a fitting stem for each encoded mix, float32 (B, columns, rows, d)
    on the CPU; `text` is (B, text_dim)."""
    with inference(grid.device):
        predicted = model.predict(grid, text.to(grid.device))
    columns = predicted.float().permute(0, 2, 1, 3).cpu().numpy()
    _stage(on_stage, "predictor", grid.device)
    return columns


def query_columns(model: StemJEPA, waveforms: torch.Tensor, text: torch.Tensor, on_stage: OnStage | None = None
                  ) -> np.ndarray:
    """What a query searches with: mix waveforms (B, n) -> predicted columns (B, columns, rows, d)."""
    return predict_columns(model, encode(model, waveforms, on_stage=on_stage), text, on_stage)


def stem_representation(grid: torch.Tensor) -> torch.Tensor:
    """How a stem is represented: (..., rows, columns, d) grid -> float32 (..., columns, rows, d),
    each patch standardised over its features."""
    return F.layer_norm(grid.float(), grid.shape[-1:]).transpose(-3, -2).contiguous()


def encode_audio(model: StemJEPA, samples: np.ndarray, device: torch.device, window_s: float = QUERY_SECONDS,
                 batch_size: int = 16, target: bool = False) -> np.ndarray:
    """Mono samples of any length at the model's rate -> float32 (rows, columns, d), encoded
    window by window (see the module's docstring)."""
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
    for start in range(0, len(chunks), batch_size):
        batch = torch.from_numpy(np.stack(chunks[start : start + batch_size])).to(device)
        grids.extend(encode(model, batch, target=target).float().cpu().unbind(0))
    tail = samples[whole:]
    if len(tail) >= column:
        grids.append(encode(model, torch.from_numpy(tail)[None].to(device), target=target).float().cpu()[0])
    return torch.cat(grids, dim=1).numpy()


def stem_columns(model: StemJEPA, samples: np.ndarray, device: torch.device, window_s: float = QUERY_SECONDS
                 ) -> np.ndarray:
    """A library stem's representation, (columns, rows, d) float32 (see `stem_representation`)."""
    grid = torch.from_numpy(encode_audio(model, samples, device, window_s=window_s, target=True))
    return stem_representation(grid).numpy()


def mean_vector(columns: np.ndarray) -> np.ndarray:
    """Mean over every patch, L2-normalised: the one vector a window is searched by."""
    mean = columns.reshape(-1, columns.shape[-1]).astype(np.float32).mean(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


@dataclass(frozen=True)
class StemEmbedding:
    """What the library stores of one file (stemserver.library)."""

    columns: np.ndarray  # (columns, rows, d) float32: the sequence the offset search aligns
    windows: np.ndarray  # (windows, d) float32 unit vectors: the search windows, each encoded alone
    hop_columns: int  # between the windows' starts (stemserver.window.window_starts)
    instrument: np.ndarray | None = None  # (text_dim,) unit: what it sounds like, in the text space (a head's)


def window_vectors(model: StemJEPA, samples: np.ndarray, columns: np.ndarray, starts: list[int], window: int,
                   device: torch.device, batch_size: int = 16) -> np.ndarray:
    """The search vector of each window of `window` columns of `samples` starting at a column of
    `starts`, encoded alone, as a query window is. A window that is one of the consecutive chunks
    `columns` were encoded in (`encode_audio`), or the whole of a file no longer than a window, is
    that encoding: its vector is taken from `columns` instead of being encoded again.

    Cut from the consecutive chunks instead, a window that straddles two of them holds the end of
    one encoding and the start of the next: with the first default model such a vector had a
    cosine of 0.12 with the same window encoded alone (0.89 for the chunk itself)."""
    column = model.config.patch_size * model.config.front_end.hop_length
    chunked = len(columns) // window * window  # the columns of whole chunks; the tail was encoded alone
    vectors: list[np.ndarray | None] = [None] * len(starts)
    alone = []
    for i, first in enumerate(starts):
        if len(columns) <= window or (first % window == 0 and first + window <= chunked):
            vectors[i] = mean_vector(columns[first : first + window])
        else:
            alone.append(i)
    for batch in range(0, len(alone), batch_size):
        members = alone[batch : batch + batch_size]
        # the last column can come from a part-filled patch: its window runs up to a column past the end
        audio = np.stack([_padded(samples[starts[i] * column : (starts[i] + window) * column], window * column)
                          for i in members])
        grids = encode(model, torch.from_numpy(audio).to(device), target=True)
        for i, grid in zip(members, stem_representation(grids).cpu().numpy()):
            vectors[i] = mean_vector(grid)
    return np.stack(vectors)


def _padded(samples: np.ndarray, length: int) -> np.ndarray:
    return samples if len(samples) >= length else np.pad(samples, (0, length - len(samples)))


def stem_embedder(model: StemJEPA, device: torch.device, tile_loops: bool = False, window_s: float = QUERY_SECONDS,
                  hop_columns: int = HOP_COLUMNS) -> Callable[[np.ndarray], StemEmbedding]:
    """The function a library scan embeds each file with: mono samples -> StemEmbedding, its
    search windows `hop_columns` apart, and its instrument vector when the model has a head (none
    for a silent file: it has no instrument to name).

    With `tile_loops`, a file shorter than the window is repeated to fill it before encoding (a
    loop is heard in context, as it will be played) and one period of columns is kept."""
    config = model.config
    column = config.patch_size * config.front_end.hop_length
    window = int(window_s * config.front_end.sample_rate)

    def embed(samples: np.ndarray) -> StemEmbedding:
        if tile_loops and len(samples) < window:
            tiled = np.tile(samples, -(-window // len(samples)))[:window]
            columns = stem_columns(model, tiled, device, window_s)[: max(1, len(samples) // column)]
        else:
            columns = stem_columns(model, samples, device, window_s)
        starts = window_starts(len(columns), window // column, hop_columns)
        instrument = None
        if model.instrument is not None and np.abs(samples).max(initial=0.0) > 0:
            instrument = instrument_vectors(model, samples, device)
        return StemEmbedding(columns, window_vectors(model, samples, columns, starts, window // column, device),
                             hop_columns, instrument)

    return embed


SILENT_PEAK = 0.01
"""A window (or training crop) peaking under this share of its stem's peak (-40 dB) is a gap in the
part: its statistics say nothing about the instrument, so it is left out."""


def instrument_features(model: StemJEPA, waveforms: torch.Tensor) -> torch.Tensor:
    """What the instrument head reads: (B, n) peak-normalised waveforms -> (B, features) band
    statistics of the model's own front end (stemserver.features.band_statistics)."""
    with inference(waveforms.device):
        return band_statistics(model.front_end(waveforms))


def instrument_vectors(model: StemJEPA, samples: np.ndarray, device: torch.device, window_s: float = QUERY_SECONDS,
                       batch_size: int = 16) -> np.ndarray:
    """One stem's instrument vector: mono samples at the model's rate -> unit float32 (text_dim,),
    to compare by cosine with the text embedding of an instrument name ("bass", "warm pad").

    The stem is peak-normalised first (the head was trained on peak-normalised stems, and a
    library file's level says nothing about its instrument), cut into windows of `window_s` (the
    length the head was trained on at most, and bounded memory for any length); windows that are
    gaps in the part (see SILENT_PEAK) are skipped, and the head's vectors of the others are
    averaged, weighted by their length, and normalised."""
    head = _instrument_head(model)
    samples = np.asarray(samples, dtype=np.float32)
    rate = model.config.front_end.sample_rate
    shortest = model.config.patch_size * model.config.front_end.hop_length  # one column, 0.16 s
    if samples.ndim != 1 or len(samples) < shortest:
        raise AudioError(f"the instrument head needs mono audio of at least {shortest / rate:.2f} s; got "
                         f"{samples.shape[0] / rate if samples.ndim == 1 else samples.shape} "
                         f"{'s' if samples.ndim == 1 else '(not mono)'}")
    if not np.isfinite(samples).all():
        raise AudioError(f"the audio holds {int(np.count_nonzero(~np.isfinite(samples)))} NaN or infinite "
                         "samples; repair or re-export the file")
    peak = float(np.max(np.abs(samples)))
    if peak == 0:
        raise AudioError("the audio is silent: it has no instrument to name")
    samples = samples / peak
    window = max(shortest, int(round(window_s * rate)))
    starts = [start for start in range(0, len(samples), window) if len(samples) - start >= shortest]
    windows = [samples[start : start + window] for start in starts]
    heard = [w for w in windows if np.max(np.abs(w)) >= SILENT_PEAK] or windows
    vectors, weights = [], []
    for length in sorted({len(w) for w in heard}):  # whole windows batched, the tail on its own
        same = [w for w in heard if len(w) == length]
        for first in range(0, len(same), batch_size):
            batch = torch.from_numpy(np.stack(same[first : first + batch_size])).to(device)
            with inference(device):
                vectors.append(head(instrument_features(model, batch)).float().cpu())
            weights.extend([length] * len(batch))
    weighted = (torch.cat(vectors) * torch.tensor(weights, dtype=torch.float32)[:, None]).sum(dim=0)
    return F.normalize(weighted, dim=0).numpy()


def _instrument_head(model: StemJEPA) -> InstrumentHead:
    if model.instrument is None:
        raise CheckpointError("this model has no instrument head, so it cannot name a stem's instrument; train one "
                              "onto it with `stemserver train-instrument CHECKPOINT CACHE --out NEW.safetensors`")
    return model.instrument


def _stage(on_stage: OnStage | None, name: str, device: torch.device) -> None:
    if on_stage is None:
        return
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    on_stage(name)
