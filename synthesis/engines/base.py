"""The interface every synthesis engine implements.

Engines are constructed cheaply and loaded by an explicit ``load()``; nothing
heavy happens in a constructor, so a worker can report a missing model as a
configuration error before it touches any item.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

    from synthesis.instructs import Instruct
    from synthesis.text import Segment
    from synthesis.voices import VoiceProfile


class EngineUnavailable(RuntimeError):
    """The engine cannot run here (binary, model or voice missing): a configuration error."""


class SegmentRejected(ValueError):
    """The engine refused one segment; the item fails with ``reason_code``."""

    def __init__(self, reason_code: str, detail: str) -> None:
        super().__init__(f"{reason_code}: {detail}")
        self.reason_code = reason_code
        self.detail = detail


class SynthesisEngine(Protocol):
    """Text segments in, mono float32 audio out."""

    name: str
    #: True when the engine has no voice of its own and needs a reference recording.
    needs_prompt: bool

    @property
    def version(self) -> str:
        """Changes whenever the same input could sound different (part of the audio key)."""
        ...

    @property
    def sample_rate(self) -> int: ...

    def load(self) -> None:
        """Check and load what the engine needs; raise ``EngineUnavailable`` if it cannot."""
        ...

    def synthesize(
        self,
        segment: Segment,
        voice: VoiceProfile,
        seed: int,
        *,
        instruct: Instruct | None = None,
        speed: float = 1.0,
    ) -> np.ndarray:
        """Audio for one segment, float32 in [-1, 1] at ``sample_rate``.

        :param seed: the random seed of this rendering (recorded in the result)
        :param instruct: a dialect or tone, for engines that take one
        :param speed: speaking-rate factor (1.0 = the engine's natural rate)
        """
        ...
