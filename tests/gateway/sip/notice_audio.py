"""Notice audio for the SIP tests: the project's text frontend, spoken by espeak-ng.

The synthesis worker's own path (engines, loudness, band limits) is tested elsewhere;
here the audio only has to be real speech that starts with the AI disclosure. Each
segment is spoken and resampled to 8 kHz on its own, then joined with its pause and
encoded as μ-law once: μ-law is sample by sample, so the first samples of the notice
file are exactly the disclosure rendered alone.
"""

from __future__ import annotations

import io
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from synthesis.text import NoticeComposer, render_espeak

AI_LABEL = "本通话语音由人工智能合成。"
RATE = 8000


@dataclass(frozen=True)
class NoticeAudio:
    """A notice as the gateway fetches it, and its first segment (the AI label) alone."""

    wav: bytes  # 8 kHz μ-law WAV
    label_wav: bytes  # the AI label alone, same encoding
    first_text: str

    @property
    def seconds(self) -> float:
        return sf.info(io.BytesIO(self.wav)).duration


def _speak(voice: str, text: str, wpm: int, work: Path) -> np.ndarray:
    wide, narrow = work / "wide.wav", work / "narrow.wav"
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(wide), text],
        check=True,
        timeout=30,
        capture_output=True,
    )
    # -G: guard against clipping in the resampler; -V1: only errors on stderr.
    sox = ["sox", "-V1", "-G", str(wide), "-r", str(RATE), str(narrow)]
    subprocess.run(sox, check=True, timeout=30)
    audio, rate = sf.read(narrow, dtype="float32")
    assert rate == RATE
    return audio


def _ulaw(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, RATE, subtype="ULAW", format="WAV")
    return buffer.getvalue()


def render_notice(
    composer: NoticeComposer,
    notice_type: str,
    variables: dict,
    context: dict,
    *,
    segments: int | None = None,
    wpm: int = 230,
) -> NoticeAudio:
    """Speak the first ``segments`` segments of a composed notice (all when None)."""
    composed = composer.compose(notice_type, "cmn", variables, context)
    chosen = composed.segments[:segments] if segments else composed.segments
    parts = []
    with tempfile.TemporaryDirectory(prefix="vn-sip-notice-") as tmp:
        for segment in chosen:
            voice, text = render_espeak(segment)
            parts.append(_speak(voice, text, wpm, Path(tmp)))
            parts.append(np.zeros(RATE * segment.pause_after_ms // 1000, dtype=np.float32))
    return NoticeAudio(_ulaw(np.concatenate(parts)), _ulaw(parts[0]), chosen[0].text)
