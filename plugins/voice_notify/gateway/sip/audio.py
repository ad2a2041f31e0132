"""Audio at the SIP edge: the file baresip plays, and proof of what the callee heard.

baresip's ``aufile`` source reads only 8 kHz 16-bit PCM WAV, and the pipeline's files
are 8 kHz G.711. Decoding G.711 to 16-bit PCM is a table look-up, and encoding that PCM
again with the same law gives back the same bytes, so a call that negotiates the
file's own law (PCMU for μ-law) delivers the file bit for bit. ``compare_audio`` checks
exactly that on a callee's recording.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

TELEPHONE_RATE = 8000
FRAME_SAMPLES = 160  # 20 ms at 8 kHz, the RTP packet size
# A 20 ms frame counts as active (speech, not silence) above this level; the same
# threshold as the simulator's "not silent" check.
ACTIVE_FRAME_DBFS = -50.0
MIN_NCC = 0.99

#: WAV subtypes the gateway plays, and the SIP codec that carries each unchanged.
CODEC_OF_SUBTYPE = {"ULAW": "PCMU", "ALAW": "PCMA", "PCM_16": None}


class UnplayableAudio(ValueError):
    """The fetched file is not 8 kHz mono G.711 (or 16-bit PCM) WAV with sound in it."""


@dataclass(frozen=True)
class PlaybackAudio:
    """The notice audio ready for baresip.

    :param samples: the notice as 16-bit PCM, decoded bit-exactly from the G.711 file
    :param codec: ``PCMU`` or ``PCMA``, the codec that carries the file unchanged
        (None for a PCM file)
    """

    samples: np.ndarray
    codec: str | None
    subtype: str

    @property
    def seconds(self) -> float:
        return self.samples.size / TELEPHONE_RATE

    def write_wav(self, path: Path, lead_in_s: float, tail_s: float) -> Path:
        """Write the PCM WAV baresip plays: silence, the notice, silence.

        The lead-in absorbs the first packets a media path may clip at answer; the tail
        keeps the call up so a key pressed right after the notice is still heard (baresip
        hangs up when the file ends).
        """
        lead = np.zeros(round(lead_in_s * TELEPHONE_RATE), dtype=np.int16)
        tail = np.zeros(round(tail_s * TELEPHONE_RATE), dtype=np.int16)
        sf.write(path, np.concatenate([lead, self.samples, tail]), TELEPHONE_RATE, subtype="PCM_16")
        return path


def decode_playback(wav_bytes: bytes) -> PlaybackAudio:
    """Decode a prompt to 16-bit PCM without changing a single sample.

    :raises UnplayableAudio: for anything but 8 kHz mono G.711 or 16-bit PCM WAV, or a
        silent file
    """
    try:
        info = sf.info(io.BytesIO(wav_bytes))
        samples, rate = sf.read(io.BytesIO(wav_bytes), dtype="int16", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise UnplayableAudio(f"not a readable WAV file: {exc}") from None
    if info.format != "WAV" or info.subtype not in CODEC_OF_SUBTYPE:
        raise UnplayableAudio(f"expected G.711 WAV, got {info.format} {info.subtype}")
    if rate != TELEPHONE_RATE or info.channels != 1:
        raise UnplayableAudio(f"expected 8000 Hz mono, got {rate} Hz x {info.channels}")
    if samples.size == 0 or _dbfs(samples) <= ACTIVE_FRAME_DBFS:
        raise UnplayableAudio("the file is empty or silent")
    return PlaybackAudio(samples, CODEC_OF_SUBTYPE[info.subtype], info.subtype)


def read_pcm(path: Path | bytes) -> np.ndarray:
    """Any 8 kHz mono WAV (a recording, a G.711 prompt) as 16-bit samples."""
    source = io.BytesIO(path) if isinstance(path, bytes) else path
    samples, rate = sf.read(source, dtype="int16", always_2d=False)
    if rate != TELEPHONE_RATE:
        raise UnplayableAudio(f"expected 8000 Hz, got {rate} Hz")
    return samples if samples.ndim == 1 else samples[:, 0]


def _dbfs(samples: np.ndarray) -> float:
    if samples.size == 0:
        return -math.inf
    rms = math.sqrt(float(np.mean(np.square(samples.astype(np.float64)))))
    return 20 * math.log10(rms / 32768) if rms > 0 else -math.inf


@dataclass(frozen=True)
class AudioMatch:
    """How a recording compares with the audio that was sent.

    :param lag_s: where the sent audio starts in the recording (seconds)
    :param ncc: normalised cross-correlation of the sent audio and the aligned recording
    :param active_frames: 20 ms frames of the sent audio above -50 dBFS
    :param equal_frames: how many of those the recording holds sample for sample
    :param matches: ``ncc >= 0.99`` and every active frame equal
    """

    sent_s: float
    recorded_s: float
    lag_s: float
    ncc: float
    active_frames: int
    equal_frames: int
    matches: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def best_lag(sent: np.ndarray, recorded: np.ndarray) -> int:
    """The offset of ``sent`` in ``recorded`` with the highest cross-correlation.

    Negative when the recording lost the start of the sent audio.
    """
    a = sent.astype(np.float64)
    b = recorded.astype(np.float64)
    size = 1 << math.ceil(math.log2(max(1, a.size + b.size - 1)))
    spectrum = np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size))
    correlation = np.fft.irfft(spectrum, size)
    # Index k >= 0 is lag k; the top of the buffer holds the negative lags.
    lags = np.concatenate([np.arange(0, b.size), np.arange(-(a.size - 1), 0)])
    values = np.concatenate([correlation[: b.size], correlation[size - (a.size - 1) :]])
    return int(lags[int(np.argmax(values))])


def _aligned(recorded: np.ndarray, lag: int, size: int) -> np.ndarray:
    """``size`` samples of ``recorded`` from ``lag`` on, zero where it has none."""
    out = np.zeros(size, dtype=recorded.dtype)
    start, stop = max(lag, 0), min(lag + size, recorded.size)
    if stop > start:
        out[start - lag : stop - lag] = recorded[start:stop]
    return out


def canonical_zero(samples: np.ndarray) -> np.ndarray:
    """``samples`` with baresip's two μ-law zeros (±2) written as 0, as libsndfile does.

    G.711 μ-law has two codes for silence (0xFF, 0x7F). libsndfile and sox decode both to
    0; libre, baresip's codec library, decodes them to +2 and -2. No other code of either
    law decodes to ±2 (the smallest step is 8), so this maps libre's reading of those
    codes onto libsndfile's and changes nothing else.
    """
    out = samples.copy()
    out[np.abs(out) == 2] = 0
    return out


def compare_audio(
    sent: np.ndarray, recorded: np.ndarray, *, min_ncc: float = MIN_NCC
) -> AudioMatch:
    """Align ``recorded`` to ``sent`` and measure how much of it arrived unchanged.

    Both are 16-bit samples decoded from G.711; the recording may come from baresip's
    decoder (see ``canonical_zero``).
    """
    recorded = canonical_zero(recorded)
    lag = best_lag(sent, recorded)
    aligned = _aligned(recorded, lag, sent.size)
    a, b = sent.astype(np.float64), aligned.astype(np.float64)
    denominator = math.sqrt(float(a @ a) * float(b @ b))
    ncc = float(a @ b) / denominator if denominator else 0.0
    frames = sent.size // FRAME_SAMPLES
    active = equal = 0
    for index in range(frames):
        window = slice(index * FRAME_SAMPLES, (index + 1) * FRAME_SAMPLES)
        if _dbfs(sent[window]) <= ACTIVE_FRAME_DBFS:
            continue
        active += 1
        equal += bool(np.array_equal(sent[window], aligned[window]))
    return AudioMatch(
        sent_s=round(sent.size / TELEPHONE_RATE, 3),
        recorded_s=round(recorded.size / TELEPHONE_RATE, 3),
        lag_s=round(lag / TELEPHONE_RATE, 6),
        ncc=round(ncc, 6),
        active_frames=active,
        equal_frames=equal,
        matches=ncc >= min_ncc and active > 0 and equal == active,
    )
