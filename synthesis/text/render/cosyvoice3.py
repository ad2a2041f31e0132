"""CosyVoice3 text with pronunciation inpainting: 曾 -> [z][ēng], AI -> [EY1][AY1].

Only override characters whose reading differs from the common reading of the span
(what a generic frontend would say: 曾 -> céng) are replaced by tokens; plain
characters keep the model's prosody natural.
Every emitted token is checked against the model's inventory; a reading that cannot be
expressed falls back to the plain character.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pypinyin import Style, lazy_pinyin
from pypinyin.contrib.tone_convert import to_finals_tone, to_initials

from synthesis.text.ir import Segment
from synthesis.text.lexicon import read_tsv
from synthesis.text.paths import INCLUDE_DIR, cosyvoice3_tokens_dir
from synthesis.text.pinyin import (
    is_number_run,
    number_reading,
    numbers_read_otherwise,
    run_marked,
)

_LATIN_WORD = re.compile(r"[A-Za-z]+")
#: CosyVoice3 special-token syntax (<|endofprompt|>): composed segments never hold it
#: (speakable.py checks); a segment built by hand loses it here. Square brackets are left
#: for the engine adapter, which rejects any [token] outside the inventory.
_SPECIAL_TOKEN = re.compile(r"<\|[^|<>]{0,64}\|>|<\||\|>")


def _read_tokens(path: pathlib.Path) -> frozenset[str]:
    lines = path.read_text(encoding="utf-8").split()
    return frozenset(line.strip()[1:-1] for line in lines if line.startswith("["))


class MarkupMemo:
    """Markup pieces by their input, bounded: a segment's markup is the concatenation of
    its gaps' (the text between overrides) and its overrides' markup, each a function of
    its own text alone. What a template fixes (its literal wording and lexicon words)
    recurs in every notice of the template and is made once; only the values' spans
    (names, amounts) are new work."""

    __slots__ = ("by_id", "gaps", "segments", "spans", "syllables")
    limit = 65536

    def __init__(self) -> None:
        self.segments: dict[Segment, str] = {}  # segments of template text alone
        # The same, by the segment object: the composer hands out one object per
        # template sentence, found here without hashing its text and overrides. The
        # entry holds the segment, so its id is not reused while the entry lives.
        self.by_id: dict[int, tuple[Segment, str]] = {}
        self.gaps: dict[str, str] = {}
        self.spans: dict[tuple[str, str], str] = {}
        self.syllables: dict[str, str | None] = {}

    def clear(self) -> None:
        for table in (self.segments, self.by_id, self.gaps, self.spans, self.syllables):
            table.clear()

    @classmethod
    def remember(cls, table: dict[Any, Any], key: Any, value: Any) -> None:
        if len(table) >= cls.limit:
            table.clear()  # unique values (names, amounts) would grow it without end
        table[key] = value


@dataclass(frozen=True)
class TokenInventory:
    """The pinyin and CMU tokens the model knows, and our CMU word lexicon."""

    pinyin: frozenset[str]
    cmu: frozenset[str]
    words: dict[str, tuple[str, ...]]
    #: Markup already made with this inventory: template text recurs in every notice.
    memo: MarkupMemo = field(default_factory=lambda: MarkupMemo(), compare=False, repr=False)

    @classmethod
    def load(
        cls, tokens_dir: pathlib.Path | None = None, lexicon_dir: pathlib.Path | None = None
    ) -> TokenInventory:
        """Read ``pinyin_tokens.txt`` / ``cmu_tokens.txt`` and ``include/lexicons/cmu.tsv``.

        :raises FileNotFoundError: with the variable to set when the inventory is absent.
        """
        tokens_dir = tokens_dir or cosyvoice3_tokens_dir()
        if not (tokens_dir / "pinyin_tokens.txt").is_file():
            raise FileNotFoundError(
                f"CosyVoice3 token inventory not found in {tokens_dir}; "
                "set VOICE_NOTIFY_COSYVOICE3_TOKENS to the folder holding pinyin_tokens.txt"
            )
        cmu = _read_tokens(tokens_dir / "cmu_tokens.txt")
        lexicon = read_tsv((lexicon_dir or INCLUDE_DIR / "lexicons") / "cmu.tsv")
        words = {
            word.upper(): tuple(phones.split())
            for word, phones in lexicon.items()
            if all(phone in cmu for phone in phones.split())
        }
        return cls(_read_tokens(tokens_dir / "pinyin_tokens.txt"), cmu, words)


def syllable_tokens(syllable: str, inventory: TokenInventory) -> str | None:
    """``zēng`` -> ``[z][ēng]``; ``yù`` -> ``[y][ù]``; None when a piece has no token."""
    initial = to_initials(syllable, strict=False)
    final = to_finals_tone(syllable, strict=False).replace("ü", "v")
    pieces = [piece for piece in (initial, final) if piece]
    if not pieces or not all(piece in inventory.pinyin for piece in pieces):
        return None
    return "".join(f"[{piece}]" for piece in pieces)


@lru_cache(maxsize=1)
def default_inventory() -> TokenInventory:
    """The inventory from :func:`~synthesis.text.paths.cosyvoice3_tokens_dir`, loaded once."""
    return TokenInventory.load()


def _english(text: str, inventory: TokenInventory) -> str:
    def replace(match: re.Match[str]) -> str:
        phones = inventory.words.get(match.group().upper())
        return "".join(f"[{phone}]" for phone in phones) if phones else match.group()

    if "|" in text:
        text = _SPECIAL_TOKEN.sub("", text)
    return _LATIN_WORD.sub(replace, text)


def _span_markup(span: str, reading: str, inventory: TokenInventory) -> str:
    """One override: tokens for the characters whose reading differs from the common one."""
    if (
        is_number_run(span)
        and reading == number_reading(span)
        and not numbers_read_otherwise().search(span)
    ):
        return span  # an amount, a date, digits: read as pypinyin would read them
    memo = inventory.memo
    common = run_marked(span)
    out: list[str] = []
    for index, syllable in enumerate(reading.split()):
        if index < len(common) and common[index] == syllable:
            out.append(span[index])
            continue
        tokens = memo.syllables.get(syllable, False)
        if tokens is False:
            tokens = syllable_tokens(syllable, inventory)
            memo.remember(memo.syllables, syllable, tokens)
        out.append(tokens or span[index])
    return "".join(out)


def render_cosyvoice3(segment: Segment, inventory: TokenInventory | None = None) -> str:
    """CosyVoice3 ``tts_text`` for one segment (call the model with ``text_frontend=False``).

    Pieces are memoized on the inventory (:class:`MarkupMemo`); the result is the same
    as :func:`render_cosyvoice3_uncached`'s, byte for byte.
    """
    inventory = inventory or default_inventory()
    if segment.lang == "en":
        return _SPECIAL_TOKEN.sub("", segment.text) if "|" in segment.text else segment.text
    memo = inventory.memo
    known = memo.by_id.get(id(segment))
    if known is not None and known[0] is segment:
        return known[1]
    whole = memo.segments.get(segment)
    if whole is not None:
        memo.remember(memo.by_id, id(segment), (segment, whole))
        return whole
    gaps, spans = memo.gaps, memo.spans
    text = segment.text
    fresh = False  # a piece not seen before: a value's, so the segment is unlikely to recur
    out: list[str] = []
    position = 0
    for start, end, reading in (*segment.overrides, (len(text), len(text), "")):
        gap = text[position:start]
        if gap:
            markup = gaps.get(gap)
            if markup is None:
                markup, fresh = _english(gap, inventory), True
                memo.remember(gaps, gap, markup)
            out.append(markup)
        if reading:
            key = (text[start:end], reading)
            markup = spans.get(key)
            if markup is None:
                markup, fresh = _span_markup(key[0], reading, inventory), True
                memo.remember(spans, key, markup)
            out.append(markup)
        position = end
    rendered = "".join(out)
    if not fresh:
        memo.remember(memo.segments, segment, rendered)
        memo.remember(memo.by_id, id(segment), (segment, rendered))
    return rendered


def render_cosyvoice3_uncached(
    segment: Segment,
    inventory: TokenInventory | None = None,
    reading: Callable[[str], Sequence[str]] | None = None,
) -> str:
    """The reference path: every piece worked out again (tests hold the memoized one to it).

    :param reading: the common reading of a span (default: ``lazy_pinyin`` on it).
    """
    inventory = inventory or default_inventory()
    reading_of = reading or (lambda span: lazy_pinyin(span, style=Style.TONE))
    if segment.lang == "en":
        return _SPECIAL_TOKEN.sub("", segment.text) if "|" in segment.text else segment.text
    text = segment.text
    out: list[str] = []
    position = 0
    for start, end, override in segment.overrides:
        out.append(_english(text[position:start], inventory))
        span = text[start:end]
        common = reading_of(span)
        for index, syllable in enumerate(override.split()):
            needed = index >= len(common) or common[index] != syllable
            tokens = syllable_tokens(syllable, inventory) if needed else None
            out.append(tokens or span[index])
        position = end
    out.append(_english(text[position:], inventory))
    return "".join(out)
