"""The engine-neutral speech text IR: segments of normalized text plus pronunciation overrides."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LANGS = ("cmn", "yue", "en")

#: Longest text one segment may carry (characters).
MAX_SEGMENT_CHARS = 200


@dataclass(frozen=True, slots=True)
class Segment:
    """One piece of speech: synthesized in one engine call.

    :param text: normalized spoken text (no Arabic digits, no currency signs).
    :param lang: ``cmn``, ``yue`` or ``en``.
    :param overrides: ``(start, end, pinyin)`` spans over ``text``; ``pinyin`` is tone-marked,
        one syllable per character separated by spaces (e.g. ``(0, 1, "zēng")``).
    :param pause_after_ms: silence to insert after this segment, in milliseconds.
    """

    text: str
    lang: str
    overrides: tuple[tuple[int, int, str], ...] = ()
    pause_after_ms: int = 0

    def __post_init__(self) -> None:
        if self.lang not in LANGS:
            raise ValueError(f"lang must be one of {LANGS}, got {self.lang!r}")
        if len(self.text) > MAX_SEGMENT_CHARS:
            raise ValueError(f"segment text is {len(self.text)} chars, max {MAX_SEGMENT_CHARS}")
        if self.pause_after_ms < 0:
            raise ValueError("pause_after_ms must be >= 0")
        previous_end = 0
        for start, end, reading in self.overrides:
            if not (previous_end <= start < end <= len(self.text)):
                raise ValueError(f"override span ({start}, {end}) is out of order or range")
            if len(reading.split()) != end - start:
                raise ValueError(f"override {reading!r} needs one syllable per character")
            previous_end = end

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (lists instead of tuples)."""
        return {
            "text": self.text,
            "lang": self.lang,
            "overrides": list(map(list, self.overrides)),  # a name has one per character
            "pause_after_ms": self.pause_after_ms,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Segment:
        """Inverse of :meth:`to_dict`."""
        return cls(
            text=str(data["text"]),
            lang=str(data["lang"]),
            overrides=tuple(
                (int(start), int(end), str(reading))
                for start, end, reading in data.get("overrides", ())
            ),
            pause_after_ms=int(data.get("pause_after_ms", 0)),
        )


@dataclass(frozen=True, slots=True)
class ComposedNotice:
    """A notice rendered, normalized and split into segments, ready for an engine."""

    notice_type: str
    locale: str
    display_text: str
    segments: tuple[Segment, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "notice_type": self.notice_type,
            "locale": self.locale,
            "display_text": self.display_text,
            "segments": [segment.to_dict() for segment in self.segments],
        }
