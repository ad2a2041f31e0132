"""Synthesis engines behind one interface (``base.SynthesisEngine``), and the registry that
names them. The engines import ``base``; only this registry imports the engines, lazily,
so a worker that never uses CosyVoice3 never imports torch's heavy half.
"""

from __future__ import annotations

import os
from typing import Any

from synthesis.engines.base import EngineUnavailable, SegmentRejected, SynthesisEngine

__all__ = ["ENGINES", "EngineUnavailable", "SegmentRejected", "SynthesisEngine", "make_engine"]

ENGINES = ("espeak", "cosyvoice3")


def make_engine(name: str, **options: Any) -> SynthesisEngine:
    """The engine called ``name`` (not loaded yet).

    :param options: ``model_dir`` and ``cosyvoice_root`` for ``cosyvoice3``
        (defaults: ``$VOICE_NOTIFY_MODEL_DIR``, ``$VOICE_NOTIFY_COSYVOICE_ROOT``)
    """
    if name == "espeak":
        from synthesis.engines.espeak import EspeakEngine

        return EspeakEngine()
    if name == "cosyvoice3":
        from synthesis.engines.cosyvoice3 import CosyVoice3Engine

        model_dir = options.get("model_dir") or os.environ.get("VOICE_NOTIFY_MODEL_DIR")
        if not model_dir:
            raise EngineUnavailable(
                "cosyvoice3 needs a local model directory: --model-dir or VOICE_NOTIFY_MODEL_DIR"
            )
        return CosyVoice3Engine(
            model_dir,
            cosyvoice_root=options.get("cosyvoice_root")
            or os.environ.get("VOICE_NOTIFY_COSYVOICE_ROOT"),
        )
    raise EngineUnavailable(f"unknown synthesis engine {name!r}; known: {', '.join(ENGINES)}")
