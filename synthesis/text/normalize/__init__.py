"""Chinese text normalization: one rule per module, applied in a fixed order.

The composer normalizes typed variables with the typed readers (``money.money``,
``date.date``, ...) so nothing is guessed; :func:`normalize_text` is for free text
(template literals, department names, the command-line tool and the evaluation).

The order matters: the most specific shapes are read first (dates, clock times,
identifiers, math, scores), so that a ``-`` or ``/`` still between two numbers when
``range`` and ``fraction`` run can only be a range or a fraction. Every rule's pattern
is linear in its input (tests/synthesis/text/test_linear_rules.py).
"""

from __future__ import annotations

import builtins
import re
import unicodedata
from functools import lru_cache

from synthesis.text.normalize import (
    cardinal,
    date,
    decimal,
    digits,
    fraction,
    math,
    measure,
    money,
    percent,
    score,
    symbols,
    time,
)
from synthesis.text.normalize import range as range_rule

# (``builtins.range``: the ``range`` rule module shadows the builtin in this package.)
# Full-width digits, letters and the symbols that matter to numbers, the ratio colon ∶ and
# the minus sign − of GB/T 15835, 〇 as 零; Chinese full-width punctuation (，！？：；（）)
# stays as written.
_FULLWIDTH = str.maketrans(
    "０１２３４５６７８９％．／－＋＝＜＞～＄＃＆＊＠∶−〇"
    + "".join(chr(c) for c in builtins.range(0xFF21, 0xFF3B))
    + "".join(chr(c) for c in builtins.range(0xFF41, 0xFF5B))
    + "\u00a0",
    "0123456789%./-+=<>~$#&*@:-零"
    + "".join(chr(c) for c in builtins.range(0x41, 0x5B))
    + "".join(chr(c) for c in builtins.range(0x61, 0x7B))
    + " ",
)
# A thin space between digit groups (1 000 000, GB/T 15835) is part of the number.
_THIN_SPACE = re.compile(r"(?<=\d)[\u2009\u202f](?=\d{3})")

# Decimal digits of other scripts (Arabic-Indic, Devanagari ...) are digits too.
_OTHER_DIGIT = re.compile(r"(?![0-9])\d")

#: Rules in the order they run: each takes and returns text.
RULES = (
    date.apply,
    time.apply,
    digits.apply,
    math.apply,
    score.apply,
    range_rule.apply,
    measure.apply,
)
LATER_RULES = (percent.apply, fraction.apply, decimal.apply, cardinal.apply)


def normalize_text(text: str, money_style: str = "yuan-jiao-fen", errors: str = "ignore") -> str:
    """Normalize Chinese free text so that no Arabic digit or unread symbol is left.

    :param money_style: ``yuan-jiao-fen`` (三千二百八十元五角) or ``decimal`` (三千二百八十点五元).
    :param errors: what to do with a symbol that has no reading: ``"ignore"`` drops it,
        ``"strict"`` raises :class:`~synthesis.text.errors.NoticeTextError`
        (``unspeakable_text``).
    """
    text = text.translate(_FULLWIDTH)
    if not text.isascii():
        text = _THIN_SPACE.sub("", text)
        text = _OTHER_DIGIT.sub(lambda m: str(unicodedata.digit(m.group())), text)
    for rule in RULES:
        text = rule(text)
    text = money.apply(text, money_style)
    for rule in LATER_RULES:
        text = rule(text)
    return symbols.apply(text, errors)


@lru_cache(maxsize=4096)
def normalize_cached(text: str, money_style: str = "yuan-jiao-fen", errors: str = "ignore") -> str:
    """:func:`normalize_text` memoized: for template literals and other repeated text."""
    return normalize_text(text, money_style, errors)


__all__ = ["normalize_cached", "normalize_text"]
