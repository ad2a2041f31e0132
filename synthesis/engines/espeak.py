"""espeak-ng, the standard TTS and the fallback engine.

Mandarin goes in as tone-numbered pinyin through the ``cmn-latn-pinyin`` voice
(espeak-ng's own ``cmn`` voice misreads numbers and polyphones); the text
frontend decides the voice and the input for each segment.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from synthesis.engines.base import EngineUnavailable, SegmentRejected

if TYPE_CHECKING:
    from synthesis.instructs import Instruct
    from synthesis.text import Segment
    from synthesis.voices import VoiceProfile

_REQUIRED_VOICES = ("cmn-latn-pinyin", "yue", "en-us")
#: espeak-ng's default rate in words per minute; ``speed`` scales it.
_DEFAULT_WPM = 175
_MIN_WPM, _MAX_WPM = 80, 450
_VARIANT = re.compile(r"^[a-z0-9_]{1,16}$")


class EspeakEngine:
    """espeak-ng through its command line (``-w`` file output; ``--stdout`` misreports length)."""

    name = "espeak"
    needs_prompt = False

    def __init__(self, binary: str = "espeak-ng", timeout_s: float = 30.0) -> None:
        self._binary = binary
        self._timeout_s = timeout_s
        self._version: str | None = None
        self._path: str | None = None

    @property
    def version(self) -> str:
        if self._version is None:
            raise EngineUnavailable("EspeakEngine.load() was not called")
        return self._version

    @property
    def sample_rate(self) -> int:
        return 22050

    def load(self) -> None:
        path = shutil.which(self._binary)
        if path is None:
            raise EngineUnavailable(
                f"{self._binary} not found; install it with `apt-get install espeak-ng`"
            )
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=self._timeout_s
        )
        voices = subprocess.run(
            [path, "--voices"], capture_output=True, text=True, timeout=self._timeout_s
        ).stdout
        known = {line.split()[1] for line in voices.splitlines()[1:] if len(line.split()) > 1}
        missing = [v for v in _REQUIRED_VOICES if v not in known]
        if missing:
            raise EngineUnavailable(f"espeak-ng lacks the voices {missing}")
        self._path = path
        self._version = "espeak-ng " + out.stdout.split("Data at")[0].strip().split()[-1]

    def synthesize(
        self,
        segment: Segment,
        voice: VoiceProfile,
        seed: int,
        *,
        instruct: Instruct | None = None,
        speed: float = 1.0,
    ) -> np.ndarray:
        """espeak-ng is deterministic: ``seed`` changes nothing, ``instruct`` is not applied.

        A profile's ``espeak_variant`` (``f3``, ``m2``, ...) picks one of espeak-ng's voice
        variants: the demo's stand-ins for distinct speakers.
        """
        from synthesis.text import render_espeak

        if self._path is None:
            raise EngineUnavailable("EspeakEngine.load() was not called")
        espeak_voice, text = render_espeak(segment)
        if not text.strip(" ,."):
            raise SegmentRejected("empty_segment", "the segment has nothing to speak")
        if voice.espeak_variant:
            if not _VARIANT.match(voice.espeak_variant):
                raise SegmentRejected("voice_profile_unreadable", "bad espeak_variant")
            espeak_voice = f"{espeak_voice}+{voice.espeak_variant}"
        wpm = min(_MAX_WPM, max(_MIN_WPM, round(_DEFAULT_WPM * speed)))
        with tempfile.TemporaryDirectory(prefix="espeak-") as tmp:
            wav_path = Path(tmp) / "segment.wav"
            proc = subprocess.run(
                [self._path, "-v", espeak_voice, "-s", str(wpm), "-w", str(wav_path), "--stdin"],
                input=text,
                capture_output=True,
                text=True,
                timeout=self._timeout_s,
            )
            if proc.returncode != 0 or not wav_path.exists():
                raise SegmentRejected("engine_error", proc.stderr.strip()[:200] or "no output")
            data = wav_path.read_bytes()
        audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
        if rate != self.sample_rate:
            raise SegmentRejected("engine_error", f"unexpected sample rate {rate}")
        return np.asarray(audio, dtype=np.float32)
