"""Enrollment checks for a new voice recording: what it must be to become a voice prompt.

A recording becomes a voice profile's prompt only if it passes every check, in
this order; the first failure is the rejection, with its reason code:

| reason code | check (defaults in :class:`EnrollmentThresholds`) |
| --- | --- |
| ``recording_unreadable`` | not a WAV/FLAC file soundfile can decode, or empty |
| ``recording_sample_rate_low`` | sample rate below 16 kHz |
| ``recording_too_short`` / ``recording_too_long`` | outside 3–30 s |
| ``recording_clipped`` | more than 0.1 % of samples in flat runs (≥ 3) at full scale |
| ``recording_no_speech`` | under 1.5 s of voiced frames (webrtcvad) or under 25 % voiced |
| ``recording_too_noisy`` | speech over noise under 20 dB, or a noise floor above −40 dBFS |
| ``recording_multiple_speakers`` | the recording's two halves sound like two voices (< 0.82) |
| ``transcript_missing`` | no transcript |
| ``denylist_name`` | speaker, profile id or transcript names a denylisted person or body |
| ``denylist_voice`` | speaker embedding close to a denylisted voice |

Thresholds were calibrated on this project's synthetic voices (espeak-ng variants
standing in for speakers; ``python -m voice_notify_dev.calibrate_voices`` prints
the figures): see :data:`DENYLIST_SIMILARITY` and
:data:`SINGLE_SPEAKER_MIN_SIMILARITY` for the measured ranges. Recalibrate on real
recordings before trusting them for people.

The denylist is data: ``include/voices/denylist.yaml`` (names and, for voices, the
synthetic stand-in that produces the reference) and
``include/voices/denylist_embeddings.json`` (the reference embeddings, regenerated
with ``python -m voice_notify.voices.denylist build``)."""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

EMBEDDING_MODEL = "resemblyzer-0.1.4"
VAD_RATE = 16000
_FRAME_S = 0.03

#: Cosine at or above which a voice counts as a denylisted one. Calibrated with
#: ``calibrate``: each stand-in against its reference (5 texts × pitch ±8, speed ±10 %,
#: each also as an 8 kHz μ-law copy; 150 pairs) 0.901–0.986; the four demo agents and
#: eight other espeak-ng variants against every reference (180 pairs) 0.515–0.823.
#: 0.86 is the midpoint (margins 0.04 either side).
DENYLIST_SIMILARITY = 0.86

#: Lowest cosine between the two halves of a recording for it to count as one speaker.
#: Calibrated with ``calibrate``: 12 espeak-ng voices × 5 texts × 3 styles (normal, warm
#: pitch 58 speed 0.92, serious pitch 44 speed 0.95), one speaker each: 0.848–0.957
#: (180 recordings, none rejected); the same texts with the second half spoken by the
#: next voice: 0.60–0.909, 44 of 60 rejected at 0.82. The ones let through are pairs of
#: same-sex variants the encoder itself scores 0.84–0.90 alike (m4/m5/m6, f1/f2):
#: voices it cannot tell apart. Margin to the worst single speaker: 0.028.
SINGLE_SPEAKER_MIN_SIMILARITY = 0.82


class RecordingRejected(Exception):
    """A recording or an enrollment request refused, with its reason code."""

    def __init__(self, reason_code: str, detail: str, metrics: Mapping[str, Any] | None = None):
        super().__init__(f"{reason_code}: {detail}")
        self.reason_code = reason_code
        self.detail = detail
        self.metrics = dict(metrics or {})


@dataclass(frozen=True)
class EnrollmentThresholds:
    """Bounds of the enrollment checks (units in the names).

    Speech and noise, measured on demo-agent recordings (espeak-ng f3, m7; 8.3 s) with
    white noise added: clean 39.7–78 dB estimated; true 30 dB → 26.4–27.2; 25 dB →
    20.8–22.6 (passes); 20 dB → 17.5–19.4 (rejected); noise alone, a 440 Hz tone and
    digital silence → 0 s voiced (``recording_no_speech``).
    """

    min_rate_hz: int = 16000
    min_duration_s: float = 3.0
    max_duration_s: float = 30.0
    clip_level: float = 0.985
    clip_run: int = 3
    max_clipped_fraction: float = 0.001
    min_speech_s: float = 1.5
    min_speech_fraction: float = 0.25
    min_snr_db: float = 20.0
    max_noise_dbfs: float = -40.0
    single_speaker_similarity: float = SINGLE_SPEAKER_MIN_SIMILARITY
    denylist_similarity: float = DENYLIST_SIMILARITY


@dataclass(frozen=True)
class RecordingReport:
    """What the checks measured on a recording that passed them."""

    sha256: str
    rate: int
    metrics: dict[str, Any] = field(default_factory=dict)


# -- reading and measuring ----------------------------------------------------------------


def read_recording(data: bytes) -> tuple[np.ndarray, int]:
    """Decode a recording to mono float32; ``recording_unreadable`` when it cannot be."""
    import soundfile as sf

    try:
        audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (RuntimeError, ValueError, sf.LibsndfileError) as exc:
        raise RecordingRejected("recording_unreadable", str(exc)[:200]) from None
    if audio.size == 0:
        raise RecordingRejected("recording_unreadable", "no samples")
    return audio.mean(axis=1).astype(np.float32), int(rate)


def _resample(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return audio.astype(np.float32)
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(rate, target)
    return resample_poly(audio, target // g, rate // g).astype(np.float32)


def clipped_fraction(audio: np.ndarray, level: float = 0.985, run: int = 3) -> float:
    """Share of samples in flat tops: runs of ``run`` or more samples at ``level`` or above.

    A loud recording touches full scale now and then; a clipped one stays there.
    """
    hot = np.abs(audio) >= level
    if not hot.any():
        return 0.0
    padded = np.concatenate(([0], hot.astype(np.int8), [0]))
    edges = np.flatnonzero(np.diff(padded))
    lengths = edges[1::2] - edges[0::2]
    return float(lengths[lengths >= run].sum() / audio.size)


def _frame_levels(audio16k: np.ndarray) -> np.ndarray:
    size = int(VAD_RATE * _FRAME_S)
    frames = audio16k[: audio16k.size // size * size].reshape(-1, size)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-5))  # floor −100 dBFS (digital silence)


def _voiced_frames(audio16k: np.ndarray, aggressiveness: int = 3) -> np.ndarray:
    import webrtcvad

    vad = webrtcvad.Vad(aggressiveness)
    size = int(VAD_RATE * _FRAME_S)
    pcm = (np.clip(audio16k, -1, 1) * 32767).astype("<i2")
    count = pcm.size // size
    return np.array(
        [vad.is_speech(pcm[i * size : (i + 1) * size].tobytes(), VAD_RATE) for i in range(count)],
        dtype=bool,
    )


def speech_metrics(audio: np.ndarray, rate: int) -> dict[str, float]:
    """Voiced seconds and share (webrtcvad), speech and noise levels, their difference."""
    audio16k = _resample(audio, rate, VAD_RATE)
    levels = _frame_levels(audio16k)
    voiced = _voiced_frames(audio16k)[: levels.size]
    # Noise: the frames webrtcvad hears no speech in (pauses, lead-in); a recording
    # without pauses falls back to its quietest frames.
    quiet = levels[~voiced]
    noise_db = float(np.median(quiet)) if quiet.size >= 10 else float(np.percentile(levels, 5))
    # A voiced frame must also stand out of the floor: webrtcvad calls loud noise speech.
    voiced &= levels > noise_db + 6
    speech_db = float(np.median(levels[voiced])) if voiced.any() else noise_db
    return {
        "speech_s": round(float(voiced.sum()) * _FRAME_S, 3),
        "speech_fraction": round(float(voiced.mean()) if voiced.size else 0.0, 3),
        "speech_dbfs": round(speech_db, 1),
        "noise_dbfs": round(noise_db, 1),
        "snr_db": round(speech_db - noise_db, 1),
    }


# -- speaker embeddings ---------------------------------------------------------------------


@functools.cache
def speaker_encoder() -> Any:
    """resemblyzer's encoder, loaded once per process (its weights ship in the wheel)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from resemblyzer import VoiceEncoder
    except ImportError as exc:  # pragma: no cover - pinned in requirements.txt
        raise RuntimeError("enrollment needs resemblyzer: pip install resemblyzer==0.1.4") from exc
    return VoiceEncoder(device="cpu", verbose=False)


def _prepared(audio: np.ndarray, rate: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # a scipy path resemblyzer uses
        from resemblyzer import preprocess_wav

    audio16k = _resample(audio, rate, VAD_RATE)
    wav = preprocess_wav(audio16k, source_sr=VAD_RATE)
    return wav if wav.size >= VAD_RATE // 2 else audio16k


def embed(audio: np.ndarray, rate: int) -> np.ndarray:
    """A unit-length speaker embedding (256 floats), prepared as the synthesis QC does."""
    return speaker_encoder().embed_utterance(_prepared(audio, rate)).astype(np.float32)


def speaker_consistency(audio: np.ndarray, rate: int) -> tuple[np.ndarray, float]:
    """The utterance embedding and the cosine between its two halves' embeddings.

    One speaker's halves score alike (different words, same voice); a recording that
    changes speaker part way scores lower. Of the measures tried (2-means over the 1.6 s
    windows, thirds, halves), halves varied least for one speaker: see
    :data:`SINGLE_SPEAKER_MIN_SIMILARITY`.
    """
    wav = _prepared(audio, rate)
    encoder = speaker_encoder()
    whole = encoder.embed_utterance(wav).astype(np.float32)
    half = wav.size // 2
    if half < VAD_RATE:  # under 2 s of speech: nothing to compare
        return whole, 1.0
    return whole, cosine(encoder.embed_utterance(wav[:half]), encoder.embed_utterance(wav[half:]))


def cosine(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))


# -- the checks -----------------------------------------------------------------------------


def check_recording(
    data: bytes, thresholds: EnrollmentThresholds = EnrollmentThresholds()
) -> RecordingReport:
    """Signal checks of a recording, without the speaker model (fast, no torch).

    :raises RecordingRejected: on the first failed check
    """
    audio, rate = read_recording(data)
    metrics: dict[str, Any] = {"rate_hz": rate, "duration_s": round(audio.size / rate, 3)}

    def reject(code: str, detail: str) -> RecordingRejected:
        return RecordingRejected(code, detail, metrics)

    if rate < thresholds.min_rate_hz:
        raise reject("recording_sample_rate_low", f"{rate} Hz < {thresholds.min_rate_hz} Hz")
    duration = metrics["duration_s"]
    if duration < thresholds.min_duration_s:
        raise reject("recording_too_short", f"{duration} s < {thresholds.min_duration_s} s")
    if duration > thresholds.max_duration_s:
        raise reject("recording_too_long", f"{duration} s > {thresholds.max_duration_s} s")
    clipped = clipped_fraction(audio, thresholds.clip_level, thresholds.clip_run)
    metrics["clipped_fraction"] = round(clipped, 5)
    if clipped > thresholds.max_clipped_fraction:
        raise reject("recording_clipped", f"{clipped:.4%} of samples clipped")
    metrics.update(speech_metrics(audio, rate))
    if (
        metrics["speech_s"] < thresholds.min_speech_s
        or metrics["speech_fraction"] < thresholds.min_speech_fraction
    ):
        raise reject(
            "recording_no_speech",
            f"{metrics['speech_s']} s voiced ({metrics['speech_fraction']:.0%})",
        )
    if (
        metrics["snr_db"] < thresholds.min_snr_db
        or metrics["noise_dbfs"] > thresholds.max_noise_dbfs
    ):
        raise reject(
            "recording_too_noisy",
            f"speech {metrics['snr_db']} dB over noise at {metrics['noise_dbfs']} dBFS",
        )
    return RecordingReport(hashlib.sha256(data).hexdigest(), rate, metrics)


def check_speaker(
    data: bytes, thresholds: EnrollmentThresholds = EnrollmentThresholds()
) -> tuple[np.ndarray, dict[str, Any]]:
    """The speaker embedding of a recording that holds one speaker.

    :raises RecordingRejected: ``recording_multiple_speakers``
    """
    audio, rate = read_recording(data)
    embedding, alike = speaker_consistency(audio, rate)
    metrics = {"halves_similarity": round(alike, 4)}
    if alike < thresholds.single_speaker_similarity:
        raise RecordingRejected(
            "recording_multiple_speakers",
            f"two voices {alike:.3f} alike (< {thresholds.single_speaker_similarity})",
            metrics,
        )
    return embedding, metrics
