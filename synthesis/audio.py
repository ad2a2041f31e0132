"""Audio assembly and the telephone file format.

Segments are joined with the pauses the frontend asked for, band-limited and
resampled to 8 kHz, peak-normalized, and written as G.711 WAV with soundfile
(``torchaudio``'s μ-law helpers are the plain μ=255 formula, not G.711).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import soundfile as sf

TELEPHONE_RATE = 8000
_PEAK = 10 ** (-1.0 / 20)  # -1 dBFS leaves headroom for the codec


@dataclass(frozen=True)
class TelephoneAudio:
    wav_bytes: bytes
    duration_s: float


def join_segments(parts: Sequence[tuple[np.ndarray, int]], sample_rate: int) -> np.ndarray:
    """Concatenate ``(audio, pause_after_ms)`` parts into one mono signal."""
    pieces: list[np.ndarray] = []
    for audio, pause_ms in parts:
        pieces.append(np.asarray(audio, dtype=np.float32))
        if pause_ms > 0:
            pieces.append(np.zeros(int(sample_rate * pause_ms / 1000), dtype=np.float32))
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Band-limited resampling (torchaudio's windowed sinc; its low-pass avoids aliasing)."""
    if from_rate == to_rate:
        return audio.astype(np.float32, copy=False)
    import torch
    import torchaudio.functional as F

    tensor = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    return F.resample(tensor, from_rate, to_rate).numpy()


def normalize_peak(audio: np.ndarray, peak: float = _PEAK) -> np.ndarray:
    top = float(np.max(np.abs(audio))) if audio.size else 0.0
    if top == 0.0:
        return audio
    return (audio * (peak / top)).astype(np.float32)


def encode_g711(audio: np.ndarray, sample_rate: int, law: str = "ULAW") -> TelephoneAudio:
    """An 8 kHz G.711 WAV (``law`` is ``ULAW`` or ``ALAW``) of the given audio."""
    if law not in ("ULAW", "ALAW"):
        raise ValueError(f"G.711 law must be ULAW or ALAW, not {law!r}")
    telephone = normalize_peak(resample(audio, sample_rate, TELEPHONE_RATE))
    buffer = io.BytesIO()
    sf.write(buffer, telephone, TELEPHONE_RATE, subtype=law, format="WAV")
    return TelephoneAudio(buffer.getvalue(), duration_s=len(telephone) / TELEPHONE_RATE)


def describe_wav(data: bytes) -> dict[str, object]:
    """Format facts of a WAV file, for checks and tests."""
    info = sf.info(io.BytesIO(data))
    audio, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    return {
        "samplerate": info.samplerate,
        "channels": info.channels,
        "subtype": info.subtype,
        "format": info.format,
        "duration_s": info.duration,
        "rms": float(np.sqrt(np.mean(np.square(audio)))) if audio.size else 0.0,
    }
