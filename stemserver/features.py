"""The log-mel front end: waveform (B, n) at 16 kHz -> standardised log-mel image (B, n_mels, frames).

It reproduces the reference implementation's front end (torchaudio's MelSpectrogram defaults:
periodic Hann window, reflect padding with center=True, HTK mel scale, unnormalised triangular
filters), written with `torch.stft` so it runs on any device torch runs on and needs no torchaudio.
The standardisation statistics are measured by the trainer and stored in the checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

LOG_OFFSET = 1.19e-7
"""Added before the log (float32 machine epsilon, as in the reference): keeps silence finite."""


@dataclass(frozen=True)
class FrontEndConfig:
    sample_rate: int = 16_000
    n_fft: int = 400  # 25 ms
    win_length: int = 400
    hop_length: int = 160  # 10 ms: 100 frames per second
    n_mels: int = 80
    f_min: float = 50.0
    f_max: float = 8_000.0
    mean: float = -9.453  # the reference's dataset statistics; the trainer measures its own
    std: float = 3.569

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length

    def to_dict(self) -> dict:
        return asdict(self)


def hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    """HTK mel scale."""
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """Triangular filters on the HTK mel scale, shape (n_fft // 2 + 1, n_mels), no area normalisation."""
    fft_freqs = torch.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    mel_points = torch.linspace(
        hz_to_mel(torch.tensor(f_min, dtype=torch.float64)),
        hz_to_mel(torch.tensor(f_max, dtype=torch.float64)),
        n_mels + 2,
        dtype=torch.float64,
    )
    hz_points = mel_to_hz(mel_points)
    widths = hz_points[1:] - hz_points[:-1]  # (n_mels + 1,)
    distance = hz_points[None, :] - fft_freqs[:, None]  # (n_freqs, n_mels + 2)
    rising = -distance[:, :-2] / widths[:-1]
    falling = distance[:, 2:] / widths[1:]
    return torch.clamp(torch.minimum(rising, falling), min=0.0).to(torch.float32)


class LogMel(nn.Module):
    """Waveform (B, n) or (n,) -> standardised log-mel (B, n_mels, 1 + n // hop_length)."""

    def __init__(self, config: FrontEndConfig = FrontEndConfig()):
        super().__init__()
        self.config = config
        self.register_buffer("window", torch.hann_window(config.win_length), persistent=False)
        filterbank = mel_filterbank(config.sample_rate, config.n_fft, config.n_mels, config.f_min, config.f_max)
        self.register_buffer("filterbank", filterbank, persistent=False)

    def power_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """The mel power spectrogram before the log, (B, n_mels, frames)."""
        if waveform.dim() == 1:
            waveform = waveform[None]
        c = self.config
        spectrum = torch.stft(
            waveform.float(),
            n_fft=c.n_fft,
            hop_length=c.hop_length,
            win_length=c.win_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        power = spectrum.real.square() + spectrum.imag.square()  # (B, n_freqs, frames)
        return torch.einsum("bft,fm->bmt", power, self.filterbank)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        log_mel = torch.log(self.power_mel(waveform) + LOG_OFFSET)
        return (log_mel - self.config.mean) / self.config.std



def band_statistics(mel: torch.Tensor) -> torch.Tensor:
    """Standardised log-mel (B, n_mels, frames) -> (B, 3 * n_mels) timbre features: per band, the
    mean over time (spectral envelope), the standard deviation over time (how much the band moves)
    and the mean absolute frame-to-frame difference (onsets and decays against sustain).

    A fixed-size vector for audio of any length (at least two frames), and a strong one: a linear
    probe on the first two names instrument families better than the encoder's pooled patches."""
    if mel.shape[-1] < 2:
        raise ValueError(f"band statistics need at least 2 frames, got {mel.shape[-1]}")
    mean = mel.mean(dim=-1)
    std = mel.std(dim=-1)
    flux = (mel[..., 1:] - mel[..., :-1]).abs().mean(dim=-1)
    return torch.cat([mean, std, flux], dim=-1)


def band_statistics_dim(config: FrontEndConfig) -> int:
    """The length of `band_statistics`' vectors for this front end."""
    return 3 * config.n_mels
