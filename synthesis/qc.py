"""The quality gate every notice passes before a customer hears it.

Checks, on what the worker is about to publish:

- ``duration``: speech seconds against the text's length (characters per second
  within bounds per language: a model that skips or loops text fails this);
- ``leading_silence`` / ``trailing_silence``: dead air before the first word or after
  the last one on the 8 kHz file;
- ``clipping``: share of the engine's raw samples at full scale;
- ``loudness``: the telephone file's integrated loudness near the target;
- ``similarity``: cosine between resemblyzer embeddings of the notice (24 kHz master)
  and of the voice profile's reference recording, only where a clone speaks: an engine
  that renders from the recording (``needs_prompt``: CosyVoice3) speaking a consenting
  agent's profile. espeak-ng speaks its own voices (the standard voice, and the variants
  the demo profiles name) and clones nobody: there is nothing to compare, and the encoder
  is never loaded. Reference recordings are embedded once per voice and batch, together
  in one model call (``SpeakerEncoder.embed_many``).

Similarity threshold (``SIMILARITY_THRESHOLD`` = 0.91), calibrated on the project's own
voices with ``python -m voice_notify_dev.bench_synthesis calibrate``: the four demo profiles
(``include/voices``, espeak-ng variants f3, f5, m3, m7 standing in for speakers), 12
Mandarin demo notices rendered in each voice through the whole pipeline, each notice's
24 kHz master embedded and compared with every profile's prompt recording. Same voice:
0.931–0.969 (mean 0.954); other voice: 0.617–0.885 (mean 0.724). 0.91 is the midpoint
between the worst same-voice and the best other-voice pair (margins 0.02 either side).
Real clones score lower against their prompt than an engine against itself:
recalibrate with CosyVoice3 clones on the GPU pool before trusting it for them
(``--similarity-threshold`` overrides it per run).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from synthesis.audio import (
    DEFAULT_SETTINGS,
    TELEPHONE_RATE,
    AudioSettings,
    loudness_lufs,
    resample,
    speech_bounds,
)

SIMILARITY_THRESHOLD = 0.91
_HAN = re.compile(r"[\u3400-\u9fff]")
_LETTER = re.compile(r"[A-Za-z]")


@dataclass(frozen=True)
class QcThresholds:
    """Bounds of the gate. ``cps`` is characters per second of speech: Han characters
    for cmn/yue, letters for en."""

    cps: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {"cmn": (1.5, 9.0), "yue": (1.5, 9.0), "en": (5.0, 30.0)}
    )
    max_leading_s: float = 0.5
    max_trailing_s: float = 0.8
    max_clipped_fraction: float = 0.001
    loudness_tolerance_db: float = 3.0
    similarity: float = SIMILARITY_THRESHOLD


def text_units(text: str, lang: str) -> int:
    pattern = _LETTER if lang == "en" else _HAN
    return len(pattern.findall(text))


@dataclass
class QcReport:
    metrics: dict[str, Any]
    failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def reason_code(self) -> str | None:
        return f"qc_{self.failures[0]}" if self.failures else None


class SpeakerEncoder:
    """resemblyzer's speaker encoder, loaded on first use (its weights ship in the wheel)."""

    def __init__(self) -> None:
        self._encoder: Any = None

    def _load(self) -> Any:
        if self._encoder is None:
            try:
                with warnings.catch_warnings():
                    # resemblyzer 0.1.4 imports a scipy path deprecated since.
                    warnings.simplefilter("ignore", DeprecationWarning)
                    from resemblyzer import VoiceEncoder
            except ImportError as exc:  # pragma: no cover - pinned in requirements.txt
                raise RuntimeError(
                    "speaker similarity needs resemblyzer: pip install resemblyzer==0.1.4"
                ) from exc
            self._encoder = VoiceEncoder(device="cpu", verbose=False)
        return self._encoder

    @staticmethod
    def _prepared(audio: np.ndarray, rate: int) -> np.ndarray:
        from resemblyzer import preprocess_wav

        wav = preprocess_wav(resample(audio, rate, 16000), source_sr=16000)
        if wav.size < 16000 // 2:  # resemblyzer trims silence; keep something to embed
            wav = resample(audio, rate, 16000)
        return wav

    def embed(self, audio: np.ndarray, rate: int) -> np.ndarray:
        """A unit-length speaker embedding of mono float32 audio."""
        return self._load().embed_utterance(self._prepared(audio, rate))

    def embed_many(self, clips: Sequence[tuple[np.ndarray, int]]) -> list[np.ndarray]:
        """Unit-length embeddings of several ``(audio, rate)`` clips in one model call.

        The same embedding as :meth:`embed` per clip (the mean of its 1.6 s partial
        utterances, normalized); every clip's partials go through the network together.
        """
        if not clips:
            return []
        encoder = self._load()
        import torch
        from resemblyzer.audio import wav_to_mel_spectrogram

        mels, counts = [], []
        for audio, rate in clips:
            wav = self._prepared(audio, rate)
            wav_slices, mel_slices = encoder.compute_partial_slices(wav.size, 1.3, 0.75)
            if wav_slices[-1].stop >= wav.size:
                wav = np.pad(wav, (0, wav_slices[-1].stop - wav.size), "constant")
            mel = wav_to_mel_spectrogram(wav)
            mels.extend(mel[piece] for piece in mel_slices)
            counts.append(len(mel_slices))
        with torch.no_grad():
            partials = encoder(torch.from_numpy(np.array(mels)).to(encoder.device)).cpu().numpy()
        embeddings, start = [], 0
        for count in counts:
            mean = partials[start : start + count].mean(axis=0)
            embeddings.append(mean / np.linalg.norm(mean, 2))
            start += count
        return embeddings


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))


def check_notice(
    *,
    texts: Sequence[tuple[str, str]],
    speech_s: float,
    clipped_fraction: float,
    telephone: np.ndarray,
    similarity: float | None,
    thresholds: QcThresholds,
    settings: AudioSettings = DEFAULT_SETTINGS,
) -> QcReport:
    """Run every check; ``texts`` are the segments' ``(text, lang)`` in order."""
    metrics: dict[str, Any] = {}
    failures: list[str] = []
    units = sum(text_units(text, lang) for text, lang in texts)
    lang = texts[-1][1] if texts else "cmn"
    low, high = thresholds.cps.get(lang, (1.0, 30.0))
    cps = units / speech_s if speech_s > 0 else 0.0
    metrics["speech_s"] = round(speech_s, 3)
    metrics["chars_per_s"] = round(cps, 2)
    if not low <= cps <= high:
        failures.append("duration")
    duration_s = telephone.size / TELEPHONE_RATE
    bounds = speech_bounds(telephone, TELEPHONE_RATE, settings.silence_dbfs)
    lead, tail = (
        (duration_s, duration_s)
        if bounds is None
        else (
            bounds[0] / TELEPHONE_RATE,
            duration_s - bounds[1] / TELEPHONE_RATE,
        )
    )
    metrics["leading_silence_s"] = round(lead, 3)
    metrics["trailing_silence_s"] = round(tail, 3)
    if lead > thresholds.max_leading_s:
        failures.append("leading_silence")
    if tail > thresholds.max_trailing_s:
        failures.append("trailing_silence")
    metrics["clipped_fraction"] = round(clipped_fraction, 5)
    if clipped_fraction > thresholds.max_clipped_fraction:
        failures.append("clipping")
    lufs = loudness_lufs(telephone, TELEPHONE_RATE)
    metrics["loudness_lufs"] = None if lufs is None else round(lufs, 2)
    if lufs is None or abs(lufs - settings.target_lufs) > thresholds.loudness_tolerance_db:
        failures.append("loudness")
    metrics["similarity"] = None if similarity is None else round(similarity, 4)
    if similarity is not None and similarity < thresholds.similarity:
        failures.append("similarity")
    return QcReport(metrics, failures)
