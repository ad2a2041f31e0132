"""Splitting composed text into segments: at sentences, then clauses, never inside a value."""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Sequence
from functools import lru_cache

from synthesis.text.errors import NoticeTextError
from synthesis.text.ir import MAX_SEGMENT_CHARS, Segment
from synthesis.text.speakable import check_segment

Span = tuple[int, int]
Override = tuple[int, int, str]

SENTENCE_PAUSE_MS = 400
CLAUSE_PAUSE_MS = 150
_SENTENCE_END = frozenset("。！？!?；;")
_CLAUSE_END = frozenset("，、,：:")


def _inside(position: int, protected: Sequence[Span]) -> bool:
    """True when a cut before ``position`` would fall strictly inside a protected span.

    ``protected`` is sorted by start and its spans do not overlap.
    """
    index = bisect.bisect_left(protected, (position, position)) - 1
    return index >= 0 and protected[index][1] > position


_SENTENCE_MARKS = {
    "zh": re.compile("[" + "".join(sorted(_SENTENCE_END)) + "]"),
    "en": re.compile(r"[!?;]|\.(?= |$)"),
}
_CLAUSE_MARKS = re.compile("[" + "".join(sorted(_CLAUSE_END)) + "]")


def _cuts(
    text: str, marks: re.Pattern[str], protected: Sequence[Span], offset: int = 0
) -> list[int]:
    """Positions just after a boundary mark (the mark stays with the left piece)."""
    cuts = []
    for match in marks.finditer(text):
        cut = offset + match.end()
        if not _inside(cut, protected):
            cuts.append(cut)
    return cuts


def _pieces(start: int, end: int, cuts: list[int]) -> list[tuple[int, int]]:
    bounds = [start, *[cut for cut in cuts if start < cut < end], end]
    return [(a, b) for a, b in itertools.pairwise(bounds) if a < b]


def _pack(text: str, start: int, end: int, protected: Sequence[Span]) -> list[Span]:
    """Split a long sentence at clause marks, packing clauses up to the segment limit."""
    out: list[Span] = []
    current = start
    candidates = [*_cuts(text[start:end], _CLAUSE_MARKS, protected, start), end]
    while current < end:
        fitting = [c for c in candidates if current < c <= current + MAX_SEGMENT_CHARS]
        if fitting:
            chosen = fitting[-1]
        else:
            chosen = next(
                (
                    c
                    for c in range(min(end, current + MAX_SEGMENT_CHARS), current, -1)
                    if not _inside(c, protected)
                ),
                None,
            )
            if chosen is None:
                raise NoticeTextError("text_too_long", "a value is longer than one segment")
        out.append((current, chosen))
        current = chosen
    return out


@lru_cache(maxsize=65536)
def make_segment(text: str, lang: str, overrides: tuple[Override, ...], pause: int) -> Segment:
    """Segments repeat across notices (disclosure, closing): build and validate each once.

    :raises NoticeTextError: the text holds something its engines cannot read
        (``unspeakable_text``, ``unsupported_script``; see :mod:`synthesis.text.speakable`).
    """
    return check_segment(Segment(text=text, lang=lang, overrides=overrides, pause_after_ms=pause))


def split_segments(
    text: str, overrides: Sequence[Override], protected: Sequence[Span], lang: str
) -> tuple[Segment, ...]:
    """Cut ``text`` into :class:`Segment` s of at most ``MAX_SEGMENT_CHARS`` characters.

    :param protected: spans (values: numbers, names, codes) no cut may fall inside.
    """
    # Overrides cover Han characters only, so no boundary mark can fall inside one.
    guarded = sorted(protected)
    spans: list[tuple[int, int, int]] = []  # start, end, pause
    marks = _SENTENCE_MARKS["en" if lang == "en" else "zh"]
    for start, end in _pieces(0, len(text), _cuts(text, marks, guarded)):
        if end - start <= MAX_SEGMENT_CHARS:
            spans.append((start, end, SENTENCE_PAUSE_MS))
            continue
        packed = _pack(text, start, end, guarded)
        for index, (a, b) in enumerate(packed):
            last = index == len(packed) - 1
            spans.append((a, b, SENTENCE_PAUSE_MS if last else CLAUSE_PAUSE_MS))
    bodies: list[tuple[str, tuple[Override, ...], int]] = []
    cursor = 0  # overrides are sorted and never straddle a cut
    for start, end, pause in spans:
        raw = text[start:end]
        body = raw.strip()
        if not body:
            continue
        first = start + len(raw) - len(raw.lstrip())
        stop = first + len(body)
        while cursor < len(overrides) and overrides[cursor][0] < first:
            cursor += 1
        own = []
        while cursor < len(overrides) and overrides[cursor][1] <= stop:
            a, b, reading = overrides[cursor]
            own.append((a - first, b - first, reading))
            cursor += 1
        bodies.append((body, tuple(own), pause))
    segments = [
        make_segment(body, lang, own, pause if index < len(bodies) - 1 else 0)
        for index, (body, own, pause) in enumerate(bodies)
    ]
    return tuple(segments)
