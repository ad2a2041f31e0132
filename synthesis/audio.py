"""Audio post-processing and the telephone file format.

Every engine's output goes through the same steps:

1. per segment (``prepare_segment``), for the 24 kHz master: resample to 24 kHz
   (torchaudio), trim leading and trailing silence, normalize loudness to a target
   (BS.1770 LUFS), peak limiter, short fades so cuts never click;
2. per segment, for the gateway (``telephone_segment``): resample to 8 kHz
   (torchaudio), band-limit to the telephone band (300–3400 Hz), re-level, look-ahead
   peak limiter (torch), fades;
3. per notice (``assemble``): a short lead-in, the segments with the pauses the
   frontend asked for, a short tail — at both rates.

Doing the work per segment lets the segment cache hold finished pieces: a notice
whose sentences are mostly shared costs little more than a concatenation.

and is written with soundfile: G.711 μ-law (or A-law) WAV at 8 kHz for the gateway
and PCM16 WAV at 24 kHz as the master. ``torchaudio``'s μ-law helpers are the plain
μ=255 formula, not G.711, so they are never used for telephone files.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import soundfile as sf

MASTER_RATE = 24000
TELEPHONE_RATE = 8000
LAWS = ("ULAW", "ALAW")


@dataclass(frozen=True)
class AudioSettings:
    """Levels and timings of the pipeline.

    :param target_lufs: loudness of every segment and of the finished notice (LUFS)
    :param ceiling_dbfs: the limiter's sample-peak ceiling (dBFS); leaves codec headroom
    :param silence_dbfs: frame RMS below which audio counts as silence (dBFS)
    :param lead_ms, tail_ms: silence before the first and after the last word (ms)
    :param fade_ms: fade in/out of each segment (ms)
    :param band_hz: the telephone band kept by the band-limit (Hz)
    """

    target_lufs: float = -20.0
    ceiling_dbfs: float = -1.0
    silence_dbfs: float = -45.0
    lead_ms: int = 150
    tail_ms: int = 250
    fade_ms: int = 8
    band_hz: tuple[float, float] = (300.0, 3400.0)


DEFAULT_SETTINGS = AudioSettings()


def _torch():
    import torch

    return torch


@cache
def _resampler(from_rate: int, to_rate: int):
    import torchaudio.transforms as T

    # A Resample transform keeps its windowed-sinc kernel: computed once per rate pair.
    return T.Resample(from_rate, to_rate)


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Band-limited resampling (torchaudio's windowed sinc; its low-pass avoids aliasing)."""
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    if from_rate == to_rate or audio.size == 0:
        return audio
    torch = _torch()
    with torch.inference_mode():
        return _resampler(from_rate, to_rate)(torch.from_numpy(audio)).numpy()


def frame_rms_db(audio: np.ndarray, rate: int, frame_ms: int = 10) -> np.ndarray:
    """RMS of consecutive frames in dBFS (the last partial frame is dropped)."""
    size = max(1, rate * frame_ms // 1000)
    count = audio.size // size
    if count == 0:
        return np.zeros(0, dtype=np.float32)
    frames = audio[: count * size].reshape(count, size)
    power = np.mean(np.square(frames, dtype=np.float32), axis=1)
    return 10.0 * np.log10(np.maximum(power, 1e-12))


def speech_bounds(
    audio: np.ndarray, rate: int, silence_dbfs: float = DEFAULT_SETTINGS.silence_dbfs
) -> tuple[int, int] | None:
    """Sample indices ``[start, end)`` from the first to the last non-silent 10 ms frame."""
    levels = frame_rms_db(audio, rate)
    loud = np.flatnonzero(levels > silence_dbfs)
    if loud.size == 0:
        return None
    size = max(1, rate // 100)
    return int(loud[0]) * size, min(audio.size, (int(loud[-1]) + 1) * size)


def trim_silence(
    audio: np.ndarray, rate: int, silence_dbfs: float = DEFAULT_SETTINGS.silence_dbfs
) -> np.ndarray:
    """The audio from its first to its last non-silent frame (empty if all silent)."""
    bounds = speech_bounds(audio, rate, silence_dbfs)
    if bounds is None:
        return audio[:0]
    return audio[bounds[0] : bounds[1]]


@cache
def _meter(rate: int):
    import pyloudnorm

    return pyloudnorm.Meter(rate)  # ITU-R BS.1770-4 K-weighting and gating


def loudness_lufs(audio: np.ndarray, rate: int) -> float | None:
    """Integrated loudness per ITU-R BS.1770-4 (pyloudnorm: K-weighting, 400 ms blocks
    with 75 % overlap, -70 LUFS absolute and -10 LU relative gates); None when shorter
    than one block or silent (tests compare it with ``torchaudio.functional.loudness``).
    """
    if audio.size < round(0.4 * rate) or not np.any(audio):
        return None
    level = _meter(rate).integrated_loudness(np.asarray(audio, dtype=np.float64))
    return float(level) if np.isfinite(level) else None


def rms_dbfs(audio: np.ndarray) -> float:
    if audio.size == 0:
        return -120.0
    return float(10.0 * np.log10(max(float(np.mean(np.square(audio))), 1e-12)))


def normalize_loudness(
    audio: np.ndarray, rate: int, target_lufs: float = DEFAULT_SETTINGS.target_lufs
) -> np.ndarray:
    """Gain the audio to ``target_lufs``; clips too short for BS.1770 are matched by RMS."""
    measured = loudness_lufs(audio, rate)
    if measured is None:
        # Speech RMS sits roughly 3 dB above its gated loudness; good enough for a syllable.
        if not np.any(audio):
            return audio
        measured = rms_dbfs(audio) - 3.0
    gain = 10.0 ** ((target_lufs - measured) / 20.0)
    return (audio * gain).astype(np.float32)


def apply_fades(
    audio: np.ndarray, rate: int, fade_ms: int = DEFAULT_SETTINGS.fade_ms
) -> np.ndarray:
    """Linear fade in and out of ``fade_ms`` each (shorter for very short audio)."""
    length = min(audio.size // 2, rate * fade_ms // 1000)
    if length <= 0:
        return audio
    out = audio.copy()
    ramp = np.linspace(0.0, 1.0, length, endpoint=False, dtype=np.float32)
    out[:length] *= ramp
    out[-length:] *= ramp[::-1]
    return out


@dataclass(frozen=True)
class PreparedSegment:
    """One segment ready to assemble, with what was measured on the way.

    :param audio: the master piece (24 kHz)
    :param telephone: the gateway piece (8 kHz, telephone band)
    :param clipped_fraction: share of the engine's raw samples at full scale
    :param speech_s: duration after trimming silence (seconds)
    """

    audio: np.ndarray
    telephone: np.ndarray
    speech_s: float
    clipped_fraction: float
    raw_s: float


def prepare_segment(
    raw: np.ndarray, rate: int, settings: AudioSettings = DEFAULT_SETTINGS
) -> PreparedSegment:
    """Resample, trim, loudness-normalize, limit and fade one engine output."""
    raw = np.asarray(raw, dtype=np.float32).reshape(-1)
    clipped = float(np.mean(np.abs(raw) >= 0.999)) if raw.size else 0.0
    master = resample(raw, rate, MASTER_RATE)
    trimmed = trim_silence(master, MASTER_RATE, settings.silence_dbfs)
    leveled = normalize_loudness(trimmed, MASTER_RATE, settings.target_lufs)
    leveled = limit_peaks(leveled, MASTER_RATE, settings.ceiling_dbfs)
    piece = apply_fades(leveled, MASTER_RATE, settings.fade_ms)
    return PreparedSegment(
        audio=piece,
        telephone=telephone_segment(piece, settings),
        speech_s=trimmed.size / MASTER_RATE,
        clipped_fraction=clipped,
        raw_s=raw.size / rate if rate else 0.0,
    )


def telephone_segment(piece: np.ndarray, settings: AudioSettings = DEFAULT_SETTINGS) -> np.ndarray:
    """A master piece as an 8 kHz telephone-band piece, leveled, limited and faded.

    The band-pass rings on past the last sample, so the piece gets 20 ms of room first.
    """
    if piece.size == 0:
        return piece
    room = np.zeros(TELEPHONE_RATE // 50, dtype=np.float32)
    narrow = np.concatenate((resample(piece, MASTER_RATE, TELEPHONE_RATE), room))
    narrow = band_limit(narrow, TELEPHONE_RATE, settings.band_hz)
    narrow = normalize_loudness(narrow, TELEPHONE_RATE, settings.target_lufs)
    narrow = limit_peaks(narrow, TELEPHONE_RATE, settings.ceiling_dbfs)
    return apply_fades(narrow, TELEPHONE_RATE, settings.fade_ms)


def assemble(
    parts: Sequence[tuple[np.ndarray, int]],
    rate: int = MASTER_RATE,
    settings: AudioSettings = DEFAULT_SETTINGS,
) -> np.ndarray:
    """Lead-in, then each ``(audio, pause_after_ms)`` part, then the tail, as one signal.

    The last part's pause is replaced by the tail.
    """
    pieces: list[np.ndarray] = [np.zeros(rate * settings.lead_ms // 1000, dtype=np.float32)]
    for index, (audio, pause_ms) in enumerate(parts):
        pieces.append(np.asarray(audio, dtype=np.float32))
        gap = settings.tail_ms if index == len(parts) - 1 else pause_ms
        if gap > 0:
            pieces.append(np.zeros(rate * gap // 1000, dtype=np.float32))
    return np.concatenate(pieces)


@cache
def _band_pass(rate: int, low_hz: float, high_hz: float) -> np.ndarray:
    from scipy.signal import butter

    return butter(2, [low_hz, min(high_hz, rate / 2 * 0.98)], "bandpass", fs=rate, output="sos")


def band_limit(audio: np.ndarray, rate: int, band_hz: tuple[float, float]) -> np.ndarray:
    """Keep the telephone band: a 4th-order Butterworth band-pass (scipy's ``sosfilt``, for
    the same cost reason as :func:`loudness_lufs`)."""
    from scipy.signal import sosfilt

    filtered = sosfilt(_band_pass(rate, *band_hz), np.asarray(audio, dtype=np.float64))
    return filtered.astype(np.float32)


def limit_peaks(
    audio: np.ndarray, rate: int, ceiling_dbfs: float = DEFAULT_SETTINGS.ceiling_dbfs
) -> np.ndarray:
    """A look-ahead peak limiter: no sample exceeds ``ceiling_dbfs``.

    Around each run of over-ceiling samples the gain is the lowest needed within ±3 ms
    of each sample (a min filter), then smoothed by a moving average over half that
    window: the average of minima that all cover the sample is never above the
    sample's own required gain, so the ceiling holds while the gain still moves
    smoothly (no clicks). Audio far from any peak is left untouched (and not computed).
    """
    ceiling = 10.0 ** (ceiling_dbfs / 20.0)
    audio = np.asarray(audio, dtype=np.float32)
    over = np.flatnonzero(np.abs(audio) > ceiling)
    if over.size == 0:
        return audio
    torch = _torch()
    pool = torch.nn.functional
    window = max(1, rate * 3 // 1000)
    half = window // 2
    out = audio.copy()
    # Runs of peaks closer than the filters' reach are limited together.
    breaks = np.flatnonzero(np.diff(over) > 4 * window)
    firsts = np.concatenate(([over[0]], over[breaks + 1]))
    lasts = np.concatenate((over[breaks], [over[-1]]))
    with torch.inference_mode():
        for first, last in zip(firsts, lasts, strict=True):
            low, high = max(0, int(first) - 2 * window), min(audio.size, int(last) + 2 * window + 1)
            x = torch.from_numpy(audio[low:high])
            need = torch.clamp(ceiling / torch.clamp(x.abs(), min=1e-9), max=1.0)[None, None]
            minimum = -pool.max_pool1d(-need, 2 * window + 1, 1, padding=window)
            smooth = pool.avg_pool1d(
                minimum, 2 * half + 1, 1, padding=half, count_include_pad=False
            )
            out[low:high] = (x * smooth[0, 0]).clamp(-ceiling, ceiling).numpy()
    return out


def to_telephone(master: np.ndarray, settings: AudioSettings = DEFAULT_SETTINGS) -> np.ndarray:
    """The 24 kHz master as an 8 kHz telephone-band signal, re-leveled and limited."""
    narrow = resample(master, MASTER_RATE, TELEPHONE_RATE)
    narrow = band_limit(narrow, TELEPHONE_RATE, settings.band_hz)
    narrow = normalize_loudness(narrow, TELEPHONE_RATE, settings.target_lufs)
    return limit_peaks(narrow, TELEPHONE_RATE, settings.ceiling_dbfs)


def encode_wav(
    audio: np.ndarray,
    rate: int,
    subtype: str,
    comment: str | None = None,
    container: str = "WAV",
) -> bytes:
    """A mono WAV file; ``comment`` goes into the RIFF LIST/INFO ``ICMT`` chunk.

    :param container: ``WAV``, or ``FLAC`` (lossless, about half a PCM16 WAV's size;
        ``comment`` becomes its Vorbis ``COMMENT``)
    """
    # Rounded to 16-bit here: libsndfile then copies instead of converting per sample
    # (25x faster for the PCM16 master, and G.711 encodes from 16-bit anyway).
    pcm = np.round(np.clip(audio, -1.0, 32767 / 32768) * 32768.0).astype(np.int16)
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", rate, 1, subtype, format=container) as wav:
        if comment is not None:
            wav.comment = comment
            wav.software = "voice-notify"
        wav.write(pcm)
    return buffer.getvalue()


def encode_telephone(audio: np.ndarray, law: str = "ULAW", comment: str | None = None) -> bytes:
    """An 8 kHz G.711 WAV (``law`` is ``ULAW`` or ``ALAW``) of an 8 kHz signal."""
    if law not in LAWS:
        raise ValueError(f"G.711 law must be ULAW or ALAW, not {law!r}")
    return encode_wav(audio, TELEPHONE_RATE, law, comment)


def decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    return np.asarray(audio, dtype=np.float32), int(rate)
