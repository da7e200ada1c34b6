"""The Stem-JEPA model in one file: ViT encoder, FiLM-conditioned predictor, and the pair of them.

Shapes, for a batch of B waveforms of 8 s at 16 kHz:
    waveform (B, 128000) -> log-mel (B, 80, 801) -> patches 16x16 -> grid (B, 5, 50, d)
    predictor(grid, text (B, D)) -> grid (B, 5, 50, d)
One grid column covers 16 frames = 160 ms. The fixed 2-D sin-cos positional embeddings let the
encoder take any duration: frames past the last whole column are dropped.
An optional instrument head (config.instrument_hidden > 0) maps a stem's band statistics into the
text embedding space, so that a stem can be compared with any instrument name (a small CLAP).

References: Stem-JEPA (Riou et al., ISMIR 2024) and its zero-shot successor (FiLM conditioning on a
text embedding of the instrument), see shared/papers/.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from stemserver.features import FrontEndConfig, LogMel, band_statistics_dim

ENCODER_PRESETS: dict[str, tuple[int, int, int]] = {
    # name: (embed_dim, depth, num_heads)
    "base": (768, 12, 12),  # the papers' ViT-Base
    "small": (384, 6, 6),
    "tiny": (192, 4, 3),
}

Conditioning = Literal["film", "concat"]


@dataclass(frozen=True)
class ModelConfig:
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    patch_size: int = 16
    predictor_hidden: int = 1024
    predictor_layers: int = 6
    conditioning: Conditioning = "film"  # "concat" is Stem-JEPA's, kept for the ablation
    text_dim: int = 512  # 512 for LAION-CLAP, 384 for MiniLM
    front_end: FrontEndConfig = field(default_factory=FrontEndConfig)
    instrument_hidden: int = 0  # width of the instrument head's hidden layers; 0: no head

    @classmethod
    def preset(cls, name: str, **overrides) -> ModelConfig:
        if name not in ENCODER_PRESETS:
            raise ValueError(f"unknown model size {name!r}; choose one of {', '.join(ENCODER_PRESETS)}")
        embed_dim, depth, num_heads = ENCODER_PRESETS[name]
        return cls(embed_dim=embed_dim, depth=depth, num_heads=num_heads, **overrides)

    def __post_init__(self):
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.embed_dim % 4:
            raise ValueError(f"embed_dim {self.embed_dim} must be a multiple of 4 (2-D sin-cos embedding)")
        if self.front_end.n_mels % self.patch_size:
            raise ValueError(f"n_mels {self.front_end.n_mels} is not a multiple of patch_size {self.patch_size}")
        if self.conditioning not in ("film", "concat"):
            raise ValueError(f"conditioning must be 'film' or 'concat', not {self.conditioning!r}")
        if self.predictor_layers < 2:
            raise ValueError("the predictor needs at least 2 layers")
        if self.instrument_hidden < 0:
            raise ValueError(f"instrument_hidden must be >= 0 (0: no instrument head), not {self.instrument_hidden}")

    @property
    def seconds_per_column(self) -> float:
        return self.patch_size / self.front_end.frames_per_second

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        """Rebuild from `to_dict()`; unknown keys are an error (a checkpoint from a newer version)."""
        values = dict(values)
        front_end = FrontEndConfig(**values.pop("front_end", {}))
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(sorted(unknown))}")
        return cls(front_end=front_end, **values)


def sincos_2d(rows: int, cols: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sin-cos positional embeddings, (rows, cols, dim): half the channels encode the
    row (frequency band), half the column (time), as in MAE / I-JEPA."""

    def sincos_1d(positions: torch.Tensor, d: int) -> torch.Tensor:
        omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / (d / 2))
        angles = positions[:, None].double() * omega[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    row_embedding = sincos_1d(torch.arange(rows), dim // 2)  # (rows, dim/2)
    col_embedding = sincos_1d(torch.arange(cols), dim // 2)  # (cols, dim/2)
    grid = torch.cat(
        [row_embedding[:, None, :].expand(rows, cols, -1), col_embedding[None, :, :].expand(rows, cols, -1)],
        dim=-1,
    )
    return grid.float()


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Encoder(nn.Module):
    """ViT over 16x16 patches of the log-mel image: (B, n_mels, frames) -> (B, rows, cols, d)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        p = config.patch_size
        self.patch_embed = nn.Conv2d(1, config.embed_dim, kernel_size=p, stride=p)
        self.blocks = nn.ModuleList(
            Block(config.embed_dim, config.num_heads, config.mlp_ratio) for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(config.embed_dim, eps=1e-6)
        self.apply(_init_weights)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        p = self.config.patch_size
        frames = mel.shape[-1] - mel.shape[-1] % p
        if frames == 0:
            raise ValueError(f"input has {mel.shape[-1]} frames; the encoder needs at least {p}")
        x = self.patch_embed(mel[:, None, :, :frames])  # (B, d, rows, cols)
        B, d, rows, cols = x.shape
        x = x.permute(0, 2, 3, 1) + sincos_2d(rows, cols, d).to(device=x.device, dtype=x.dtype)
        x = x.reshape(B, rows * cols, d)
        for block in self.blocks:
            x = block(x)
        return self.norm(x).view(B, rows, cols, d)


class FiLM(nn.Module):
    """Feature-wise affine modulation by the text embedding: h -> gamma(c) * h + beta(c).

    gamma is parameterised as 1 + W c with small W so the predictor starts close to an
    unconditioned MLP and the condition's influence is learned."""

    def __init__(self, cond_dim: int, features: int):
        super().__init__()
        self.gamma = nn.Linear(cond_dim, features)
        self.beta = nn.Linear(cond_dim, features)
        for linear in (self.gamma, self.beta):
            nn.init.normal_(linear.weight, std=0.02)
            nn.init.zeros_(linear.bias)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return (1.0 + self.gamma(c)) * h + self.beta(c)


class Predictor(nn.Module):
    """Per-patch MLP predicting the target stem's patch embedding from the mix's, given the
    instrument's text embedding: (B, ..., d), (B, text_dim) -> (B, ..., d)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.conditioning = config.conditioning
        d, m, text_dim = config.embed_dim, config.predictor_hidden, config.text_dim
        in_dim = d + text_dim if config.conditioning == "concat" else d
        dims = [in_dim] + [m] * (config.predictor_layers - 1) + [d]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.film = (
            nn.ModuleList(FiLM(text_dim, m) for _ in range(config.predictor_layers - 1))
            if config.conditioning == "film"
            else None
        )
        self.norm = nn.LayerNorm(d, eps=1e-6)
        for linear in self.layers:
            _init_weights(linear)

    def forward(self, z: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        # One condition per batch item, broadcast over every patch.
        c = text.to(z.dtype).view(text.shape[0], *([1] * (z.dim() - 2)), text.shape[-1])
        h = torch.cat([z, c.expand(*z.shape[:-1], -1)], dim=-1) if self.film is None else z
        for i, linear in enumerate(self.layers[:-1]):
            h = linear(h)
            if self.film is not None:
                h = self.film[i](h, c)
            h = F.relu(h)
        return self.norm(self.layers[-1](h))


MAX_LOGIT_SCALE = 100.0  # CLIP's cap on the learned inverse temperature: beyond it training goes unstable


class InstrumentHead(nn.Module):
    """Band statistics of a stem (stemserver.features.band_statistics) -> unit vector in the text
    embedding space: features -> hidden -> hidden -> text_dim, L2-normalised.

    Its cosine with the text embedding of an instrument name scores how much the stem sounds like
    that instrument, for names never trained on too (zero-shot through the text model).
    `feature_mean` and `feature_std` standardise each feature with the training set's statistics
    (bands differ in level and spread by orders of magnitude); `logit_scale` is the learned inverse
    temperature of the classifier it was trained as, kept so that scores can be turned into
    probabilities the way training did."""

    def __init__(self, features: int, hidden: int, text_dim: int, dropout: float = 0.1):
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(features))
        self.register_buffer("feature_std", torch.ones(features))
        self.mlp = nn.Sequential(
            nn.Linear(features, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, text_dim),
        )
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature
        self.mlp.apply(_init_weights)

    def inverse_temperature(self) -> torch.Tensor:
        """What the classifier multiplies cosines by: exp(logit_scale), capped at MAX_LOGIT_SCALE."""
        return self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, features) -> (B, text_dim) unit vectors."""
        x = (features - self.feature_mean) / self.feature_std
        return F.normalize(self.mlp(x), dim=-1)


class StemJEPA(nn.Module):
    """Front end, context encoder, EMA target encoder, predictor and, optionally, the instrument head.

    The context encoder embeds mixes (queries); the target encoder is what the predictor learned
    to predict, so it is the natural encoder for library stems."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.front_end = LogMel(config.front_end)
        self.encoder = Encoder(config)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.predictor = Predictor(config)
        self.instrument = (
            InstrumentHead(band_statistics_dim(config.front_end), config.instrument_hidden, config.text_dim)
            if config.instrument_hidden
            else None
        )

    def encode(self, waveform: torch.Tensor, target: bool = False) -> torch.Tensor:
        """(B, n) waveform at the front end's rate -> (B, rows, cols, d) grid."""
        encoder = self.target_encoder if target else self.encoder
        return encoder(self.front_end(waveform))

    def predict(self, grid: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.predictor(grid, text)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        nn.init.xavier_uniform_(module.weight.view(module.weight.shape[0], -1))
        nn.init.zeros_(module.bias)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def encoder_flops(config: ModelConfig, columns: int) -> int:
    """Multiply-adds x 2 of one encoder forward on `columns` time columns (matmuls only)."""
    rows = config.front_end.n_mels // config.patch_size
    n, d, p = rows * columns, config.embed_dim, config.patch_size
    hidden = int(d * config.mlp_ratio)
    patch = n * p * p * d
    per_block = n * d * 3 * d + 2 * n * n * d + n * d * d + 2 * n * d * hidden
    return 2 * (patch + config.depth * per_block)


def predictor_flops(config: ModelConfig, patches: int) -> int:
    d, m, t = config.embed_dim, config.predictor_hidden, config.text_dim
    in_dim = d + t if config.conditioning == "concat" else d
    dims = [in_dim] + [m] * (config.predictor_layers - 1) + [d]
    per_patch = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    film = 2 * t * m * (config.predictor_layers - 1) if config.conditioning == "film" else 0
    return 2 * (patches * per_patch + film)
