"""Live capture: the last N seconds of an audio input, so a query can simply say "now".

Point it at a loopback device (BlackHole, Soundflower, a JACK port, PulseAudio's monitor...) that
carries the DAW's master output. Audio is captured at the device's own rate (many devices offer
only 48 kHz) and resampled when a query reads it.
"""

from __future__ import annotations

import threading

import numpy as np

from stemserver.errors import StemserverError


class CaptureError(StemserverError):
    """The capture device cannot be opened or used."""


class LiveCapture:
    """A ring buffer of the most recent `seconds` of one input device, filled by PortAudio's thread."""

    def __init__(self, device: str | int | None, seconds: float = 30.0, channels: int | None = None):
        try:
            import sounddevice
        except (ImportError, OSError) as e:  # OSError: the PortAudio library itself is missing
            raise CaptureError(
                f"live capture needs sounddevice and PortAudio ({e}): pip install 'stemserver[capture]' "
                "and apt-get install libportaudio2 (macOS: brew install portaudio)"
            ) from e
        try:
            info = sounddevice.query_devices(device, kind="input")
        except (ValueError, sounddevice.PortAudioError) as e:
            raise CaptureError(f"no input device {device!r} ({e}); list them with "
                               "python -m sounddevice") from e
        self.device_name = info["name"]
        self.sample_rate = int(info["default_samplerate"])
        self.channels = channels or min(2, int(info["max_input_channels"]))
        self.ring = np.zeros((int(seconds * self.sample_rate), self.channels), np.float32)
        self.written = 0  # frames written since start
        self.lock = threading.Lock()
        try:
            self.stream = sounddevice.InputStream(
                device=device, samplerate=self.sample_rate, channels=self.channels, dtype="float32",
                callback=self._callback,
            )
            self.stream.start()
        except sounddevice.PortAudioError as e:
            raise CaptureError(f"cannot open input device {self.device_name!r}: {e}") from e

    def _callback(self, indata: np.ndarray, frames: int, time, status) -> None:  # PortAudio's thread
        with self.lock:
            start = self.written % len(self.ring)
            first = min(frames, len(self.ring) - start)
            self.ring[start : start + first] = indata[:first]
            self.ring[: frames - first] = indata[first:]
            self.written += frames

    def last(self, seconds: float) -> np.ndarray:
        """The most recent `seconds` (or all captured so far), (frames, channels) at `sample_rate`."""
        with self.lock:
            available = min(self.written, len(self.ring), int(seconds * self.sample_rate))
            end = self.written % len(self.ring)
            indices = np.arange(end - available, end) % len(self.ring)
            return self.ring[indices].copy()

    def close(self) -> None:
        self.stream.stop()
        self.stream.close()
