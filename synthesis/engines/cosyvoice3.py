"""CosyVoice3 (Fun-CosyVoice3-0.5B): the agent's cloned voice, in a dialect or tone.

Only a local model directory is used. Upstream downloads a missing model from a hub
without asking; this adapter checks the directory and every file it needs first and
refuses to start otherwise, naming what is missing.

Per voice profile and style the speaker prompt is registered once with
``add_zero_shot_spk`` and reused by id:

- plain voice: the prompt text is the system prefix plus the recording's transcript,
  synthesized with ``inference_zero_shot``;
- a dialect or tone: the prompt text slot holds the instruction (that is what
  ``inference_instruct2`` puts there), synthesized with ``inference_instruct2``.

Our frontend has already normalized and split the text, so every call passes
``text_frontend=False`` with one segment rendered by ``render_cosyvoice3`` (pinyin and
CMU tokens for overridden readings).
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from synthesis.engines.base import EngineUnavailable, SegmentRejected
from synthesis.instructs import END_OF_PROMPT, SYSTEM_PREFIX

if TYPE_CHECKING:
    from synthesis.instructs import Instruct
    from synthesis.text import Segment, TokenInventory
    from synthesis.voices import VoiceProfile

#: What a Fun-CosyVoice3 model directory must hold before anything is loaded.
REQUIRED_FILES = (
    "cosyvoice3.yaml",
    "llm.pt",
    "flow.pt",
    "hift.pt",
    "campplus.onnx",
    "speech_tokenizer_v3.onnx",
)
REQUIRED_DIRS = ("CosyVoice-BlankEN",)
_TOKEN = re.compile(r"\[([^\[\]]+)\]")


def check_model_dir(model_dir: Path) -> None:
    """Raise :class:`EngineUnavailable` naming the first thing missing from ``model_dir``."""
    if not model_dir.is_dir():
        raise EngineUnavailable(
            f"CosyVoice3 model directory {model_dir} does not exist; mount the weights there "
            "(no download at run time)"
        )
    for name in REQUIRED_FILES:
        if not (model_dir / name).is_file():
            raise EngineUnavailable(f"CosyVoice3 model directory {model_dir} lacks {name}")
    for name in REQUIRED_DIRS:
        if not (model_dir / name).is_dir():
            raise EngineUnavailable(f"CosyVoice3 model directory {model_dir} lacks {name}/")


def set_seed(seed: int) -> None:
    """Seed every generator the model samples from (upstream seeds globally per call)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


class CosyVoice3Engine:
    """CosyVoice3 through its Python API (``cosyvoice.cli.cosyvoice``).

    :param model_dir: local directory of the weights (checked by ``load()``)
    :param cosyvoice_root: a checkout of the CosyVoice repository, put on ``sys.path`` with
        its ``third_party/Matcha-TTS`` (the GPU image sets ``VOICE_NOTIFY_COSYVOICE_ROOT``)
    :param fp16, load_vllm, load_trt: upstream accelerations (off by default)
    """

    name = "cosyvoice3"
    needs_prompt = True

    def __init__(
        self,
        model_dir: str | Path,
        *,
        cosyvoice_root: str | Path | None = None,
        fp16: bool = False,
        load_vllm: bool = False,
        load_trt: bool = False,
        inventory: TokenInventory | None = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.cosyvoice_root = Path(cosyvoice_root) if cosyvoice_root else None
        self._options = {"load_trt": load_trt, "load_vllm": load_vllm, "fp16": fp16}
        self._inventory = inventory
        self._model: Any = None
        self._version: str | None = None
        self._speakers: set[str] = set()

    @property
    def version(self) -> str:
        if self._version is None:
            raise EngineUnavailable("CosyVoice3Engine.load() was not called")
        return self._version

    @property
    def sample_rate(self) -> int:
        if self._model is None:
            raise EngineUnavailable("CosyVoice3Engine.load() was not called")
        return int(self._model.sample_rate)

    @property
    def speakers(self) -> frozenset[str]:
        """Speaker ids registered with ``add_zero_shot_spk`` so far."""
        return frozenset(self._speakers)

    def load(self) -> None:
        check_model_dir(self.model_dir)
        # Belt and braces: even if upstream reaches for a hub, it must stay offline.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("MODELSCOPE_OFFLINE", "1")
        if self.cosyvoice_root is not None:
            for path in (self.cosyvoice_root / "third_party" / "Matcha-TTS", self.cosyvoice_root):
                if str(path) not in sys.path:
                    sys.path.insert(0, str(path))
        try:
            from cosyvoice.cli.cosyvoice import CosyVoice3
        except ImportError as exc:
            raise EngineUnavailable(
                f"cannot import cosyvoice ({exc}); install the CosyVoice repository at the "
                "commit pinned in docker/synthesis/Dockerfile with its requirements and set "
                "VOICE_NOTIFY_COSYVOICE_ROOT to the checkout (it needs third_party/Matcha-TTS)"
            ) from exc
        if self._inventory is None:
            from synthesis.text.render.cosyvoice3 import default_inventory

            try:
                self._inventory = default_inventory()
            except FileNotFoundError as exc:
                raise EngineUnavailable(str(exc)) from exc
        try:
            self._model = CosyVoice3(str(self.model_dir), **self._options, trt_concurrent=1)
        except Exception as exc:  # upstream raises anything from yaml to CUDA errors
            raise EngineUnavailable(
                f"CosyVoice3 failed to load: {type(exc).__name__}: {exc}"
            ) from exc
        config = (self.model_dir / "cosyvoice3.yaml").read_bytes()
        weights = "".join(
            f"{name}:{(self.model_dir / name).stat().st_size};" for name in REQUIRED_FILES
        )
        digest = hashlib.sha256(config + weights.encode()).hexdigest()[:12]
        commit = os.environ.get("VOICE_NOTIFY_COSYVOICE_COMMIT", "unknown")[:12]
        self._version = f"cosyvoice3 {self.model_dir.name} {digest} code {commit}"

    def speaker_id(self, voice: VoiceProfile, instruct: Instruct | None) -> str:
        """The cached speaker of a profile and style: ``<profile>-<fingerprint>/<style>``."""
        style = instruct.key if instruct is not None else "plain"
        return f"{voice.id}-{voice.fingerprint}/{style}"

    def _speaker(self, voice: VoiceProfile, instruct: Instruct | None) -> str:
        if voice.prompt_wav is None:
            raise SegmentRejected("voice_profile_missing", "CosyVoice3 needs a voice prompt")
        spk_id = self.speaker_id(voice, instruct)
        if spk_id not in self._speakers:
            prompt_text = (
                instruct.instruct_text
                if instruct is not None
                else f"{SYSTEM_PREFIX}{END_OF_PROMPT}{voice.prompt_text}"
            )
            self._model.add_zero_shot_spk(prompt_text, str(voice.prompt_wav), spk_id)
            self._speakers.add(spk_id)
        return spk_id

    def tts_text(self, segment: Segment) -> str:
        """The segment as CosyVoice3 input; a bracket token the model lacks is rejected."""
        from synthesis.text import render_cosyvoice3

        text = render_cosyvoice3(segment, self._inventory)
        if not text.strip():
            raise SegmentRejected("empty_segment", "the segment has nothing to speak")
        inventory = self._inventory
        for token in _TOKEN.findall(text):
            if token not in inventory.pinyin and token not in inventory.cmu:
                raise SegmentRejected("rejected_token", f"[{token}] is not a CosyVoice3 token")
        return text

    def synthesize(
        self,
        segment: Segment,
        voice: VoiceProfile,
        seed: int,
        *,
        instruct: Instruct | None = None,
        speed: float = 1.0,
    ) -> np.ndarray:
        import torch

        if self._model is None:
            raise EngineUnavailable("CosyVoice3Engine.load() was not called")
        text = self.tts_text(segment)
        spk_id = self._speaker(voice, instruct)
        set_seed(seed)
        common = {"zero_shot_spk_id": spk_id, "stream": False, "speed": speed}
        with torch.inference_mode():
            if instruct is None:
                chunks = self._model.inference_zero_shot(
                    text, "", "", text_frontend=False, **common
                )
            else:
                chunks = self._model.inference_instruct2(
                    text, instruct.instruct_text, "", text_frontend=False, **common
                )
            pieces = [chunk["tts_speech"].reshape(-1) for chunk in chunks]
        if not pieces:
            raise SegmentRejected("empty_audio", "the model produced no audio")
        return torch.cat(pieces).float().cpu().numpy()
