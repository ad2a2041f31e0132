"""Synthesis engines behind one interface; see ``synthesis.engines.base``."""

from __future__ import annotations

from synthesis.engines.base import (
    EngineUnavailable,
    SegmentRejected,
    SynthesisEngine,
    make_engine,
)

__all__ = ["EngineUnavailable", "SegmentRejected", "SynthesisEngine", "make_engine"]
