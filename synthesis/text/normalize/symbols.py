"""Symbols left after every other rule: read (+ 加, # 井号), paused (/ ->，) or dropped (^).

The table is data (include/lexicons/symbols.tsv). Digits still left are read one by one, so
no Arabic digit survives normalization. A symbol with no reading is handled by the caller's
``errors`` policy: ``"strict"`` raises :class:`~synthesis.text.errors.NoticeTextError`
(``unspeakable_text``), ``"ignore"`` drops it.
"""

from __future__ import annotations

import re
import unicodedata
from fractions import Fraction

from synthesis.text.errors import NoticeTextError
from synthesis.text.lexicon import read_tsv
from synthesis.text.normalize.cardinal import cardinal, digit_string
from synthesis.text.paths import INCLUDE_DIR

#: Symbol -> reading; ``-`` in the table means "drop".
SYMBOLS = {
    (chr(int(symbol[2:], 16)) if symbol.startswith("U+") else symbol): (
        "" if reading == "-" else reading
    )
    for symbol, reading in read_tsv(INCLUDE_DIR / "lexicons" / "symbols.tsv").items()
}
ERROR_POLICIES = ("strict", "ignore")
#: ASCII punctuation every engine reads as a pause or ignores (kept as written).
PLAIN_PUNCTUATION = frozenset(" ,.!?;:'\"()-")
#: Numbers written as one character (², ①, ⅷ): superscripts after a letter are powers.
_POWERS = {"²": "的平方", "³": "的立方"}
_NUMBER_CHAR = re.compile(
    r"[\u00b2\u00b3\u00b9\u00bc-\u00be\u2070-\u209f\u2150-\u218f\u2460-\u24ff\u2776-\u2793]"
)
_SYMBOL = re.compile(
    r"[^\w\s,.!?;:'\"()\-\u3000-\u303f\uff01-\uff0f\uff1a-\uff20\u2018-\u201d\u2026\u00b7\u2014]|_"
)
_DIGIT = re.compile(r"\d++")


def _read(match: re.Match[str], errors: str) -> str:
    char = match.group()
    reading = SYMBOLS.get(char)
    if reading is not None:
        return reading
    if errors == "strict":
        name = unicodedata.name(char, f"U+{ord(char):04X}")
        raise NoticeTextError("unspeakable_text", f"no reading for the symbol {name}")
    return ""


def _number_char(match: re.Match[str], errors: str) -> str:
    char = match.group()
    if char in _POWERS:
        return _POWERS[char]
    value = unicodedata.numeric(char, -1)
    if value >= 0 and value == int(value):
        return cardinal(int(value))
    if value > 0:  # ½ ¾ ⅓: vulgar fractions
        ratio = Fraction(value).limit_denominator(100)
        return cardinal(ratio.denominator) + "分之" + cardinal(ratio.numerator)
    if errors == "strict":
        raise NoticeTextError("unspeakable_text", f"no reading for U+{ord(char):04X}")
    return ""


def apply(text: str, errors: str = "ignore") -> str:
    """Free-text rule: remaining digits digit by digit, remaining symbols per the table."""
    if errors not in ERROR_POLICIES:
        raise ValueError(f"errors must be one of {ERROR_POLICIES}")
    if not text.isascii():
        text = _NUMBER_CHAR.sub(lambda m: _number_char(m, errors), text)
    text = _DIGIT.sub(lambda m: digit_string(m.group()) if m.group().isascii() else m.group(), text)
    return _SYMBOL.sub(lambda m: _read(m, errors), text)
