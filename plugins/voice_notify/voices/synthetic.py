"""Synthetic recordings: espeak-ng voices that stand in for speakers (the demo agents and
the denylist's references), so enrollment can be built and tested without anyone's voice.
"""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# -- synthetic recordings (demo agents and denylist stand-ins) --------------------------------


@dataclass(frozen=True)
class SyntheticVoice:
    """An espeak-ng rendering standing in for a person: variant, pitch (0–99), speed."""

    variant: str
    pitch: int = 50
    speed: float = 1.0


def render_synthetic(text: str, lang: str, voice: SyntheticVoice) -> tuple[np.ndarray, int]:
    """``text`` spoken by espeak-ng (through the project's text frontend), peak at −3 dBFS.

    espeak-ng is deterministic: the same text and voice give the same samples.
    """
    import soundfile as sf

    from synthesis.text import Segment, render_espeak

    binary = shutil.which("espeak-ng")
    if binary is None:
        raise RuntimeError("espeak-ng not found; install it with `apt-get install espeak-ng`")
    espeak_voice, espeak_text = render_espeak(Segment(text=text, lang=lang))
    wpm = str(round(175 * voice.speed))
    with tempfile.TemporaryDirectory(prefix="vn-enroll-") as tmp:
        path = Path(tmp) / "voice.wav"
        command = [binary, "-v", f"{espeak_voice}+{voice.variant}", "-p", str(voice.pitch)]
        subprocess.run(
            [*command, "-s", wpm, "-w", str(path), "--stdin"],
            input=espeak_text,
            text=True,
            check=True,
            capture_output=True,
            timeout=60,
        )
        audio, rate = sf.read(path, dtype="float32")
    peak = float(np.max(np.abs(audio))) or 1.0
    return (audio * (0.708 / peak)).astype(np.float32), int(rate)


def wav_bytes(audio: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, subtype=subtype, format="WAV")
    return buffer.getvalue()
