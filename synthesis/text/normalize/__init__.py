"""Chinese text normalization: one rule per module, applied in a fixed order.

The composer normalizes typed variables with the typed readers (``money.money``,
``date.date``, ...) so nothing is guessed; :func:`normalize_text` is for free text
(template literals, department names, the command-line tool and the evaluation).
"""

from __future__ import annotations

from functools import lru_cache

from synthesis.text.normalize import (
    cardinal,
    date,
    decimal,
    digits,
    fraction,
    measure,
    money,
    percent,
    time,
)
from synthesis.text.normalize import range as range_rule

_FULLWIDTH = str.maketrans("０１２３４５６７８９％．：／", "0123456789%.:/")


def normalize_text(text: str, money_style: str = "yuan-jiao-fen") -> str:
    """Normalize Chinese free text so that no Arabic digit or currency sign is left."""
    text = text.translate(_FULLWIDTH)
    text = date.apply(text)
    text = time.apply(text)
    text = digits.apply(text)
    text = money.apply(text, money_style)
    text = measure.apply(text)
    text = percent.apply(text)
    text = fraction.apply(text)
    text = range_rule.apply(text)
    text = decimal.apply(text)
    return cardinal.apply(text)


@lru_cache(maxsize=4096)
def normalize_cached(text: str, money_style: str = "yuan-jiao-fen") -> str:
    """:func:`normalize_text` memoized: for template literals and other repeated text."""
    return normalize_text(text, money_style)


__all__ = ["normalize_cached", "normalize_text"]
