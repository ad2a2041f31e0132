"""A tiny stand-in for ``cosyvoice.cli.cosyvoice.CosyVoice3`` (no weights, no GPU).

Same constructor and methods as upstream: ``add_zero_shot_spk`` registers a speaker from
a prompt recording; ``inference_zero_shot`` and ``inference_instruct2`` are generators of
``{"tts_speech": tensor[1, T]}`` chunks at ``sample_rate`` 24000. It "clones" by
replaying stretches of the prompt recording: about 0.25 s per character divided by
``speed``, starting where the global torch seed says, so seeds and speakers matter the
way they do for the real model. Every call is recorded for the tests to inspect.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import soundfile as sf
import torch
import torchaudio.functional as F

SECONDS_PER_CHAR = 0.25


class FakeCosyVoice3:
    instances: ClassVar[list[FakeCosyVoice3]] = []

    def __init__(
        self,
        model_dir: str,
        load_trt: bool = False,
        load_vllm: bool = False,
        fp16: bool = False,
        trt_concurrent: int = 1,
    ) -> None:
        self.model_dir = model_dir
        self.options = {"load_trt": load_trt, "load_vllm": load_vllm, "fp16": fp16}
        self.sample_rate = 24000
        self.speakers: dict[str, tuple[str, torch.Tensor]] = {}
        self.calls: list[dict[str, Any]] = []
        FakeCosyVoice3.instances.append(self)

    def add_zero_shot_spk(self, prompt_text: str, prompt_wav: str, zero_shot_spk_id: str) -> bool:
        audio, rate = sf.read(prompt_wav, dtype="float32", always_2d=True)
        speech = F.resample(torch.from_numpy(audio.mean(axis=1)), rate, self.sample_rate)
        self.speakers[zero_shot_spk_id] = (prompt_text, speech)
        self.calls.append({"method": "add_zero_shot_spk", "spk": zero_shot_spk_id})
        return True

    def _speech(self, text: str, spk_id: str, speed: float) -> torch.Tensor:
        _prompt_text, prompt = self.speakers[spk_id]
        length = int(len(text) * SECONDS_PER_CHAR / speed * self.sample_rate)
        start = int(torch.randint(0, prompt.numel(), (1,)))
        reps = (start + length) // prompt.numel() + 2
        return prompt.repeat(reps)[start : start + length][None]

    def _generate(self, method: str, tts_text: str, spk_id: str, speed: float, **rest: Any):
        call = {"method": method, "text": tts_text, "spk": spk_id, "speed": speed, **rest}
        self.calls.append(call)
        speech = self._speech(tts_text, spk_id, speed)
        half = speech.shape[1] // 2
        yield {"tts_speech": speech[:, :half]}
        yield {"tts_speech": speech[:, half:]}

    def inference_zero_shot(
        self,
        tts_text: str,
        prompt_text: str,
        prompt_wav: str,
        zero_shot_spk_id: str = "",
        stream: bool = False,
        speed: float = 1.0,
        text_frontend: bool = True,
    ):
        yield from self._generate(
            "inference_zero_shot",
            tts_text,
            zero_shot_spk_id,
            speed,
            prompt_text=prompt_text,
            prompt_wav=prompt_wav,
            stream=stream,
            text_frontend=text_frontend,
        )

    def inference_instruct2(
        self,
        tts_text: str,
        instruct_text: str,
        prompt_wav: str,
        zero_shot_spk_id: str = "",
        stream: bool = False,
        speed: float = 1.0,
        text_frontend: bool = True,
    ):
        yield from self._generate(
            "inference_instruct2",
            tts_text,
            zero_shot_spk_id,
            speed,
            instruct_text=instruct_text,
            prompt_wav=prompt_wav,
            stream=stream,
            text_frontend=text_frontend,
        )


def make_model_dir(root: Path) -> Path:
    """A model directory with every file the adapter checks for (empty placeholders)."""
    from synthesis.engines.cosyvoice3 import REQUIRED_DIRS, REQUIRED_FILES

    model_dir = root / "Fun-CosyVoice3-0.5B-2512"
    model_dir.mkdir(parents=True)
    for name in REQUIRED_FILES:
        (model_dir / name).write_bytes(b"stand-in")
    for name in REQUIRED_DIRS:
        (model_dir / name).mkdir()
    return model_dir
