"""Decimal numbers: 1890.5555 -> 一千八百九十点五五五五; .22 -> 零点二二."""

from __future__ import annotations

import re

from synthesis.text.normalize.cardinal import cardinal
from synthesis.text.normalize.digits import digits


def decimal(number: str) -> str:
    """Read ``[-]int.frac``; the fraction is read digit by digit and keeps its zeros."""
    sign = ""
    if number[:1] in "-－负":
        sign, number = "负", number[1:]
    whole, _, frac = number.partition(".")
    text = sign + cardinal(whole or "0")
    return text + "点" + digits(frac) if frac else text


_DECIMAL = re.compile(r"(?<![\d.])(-|－|负)?(\d*\.\d+)(?![\d.])")


def apply(text: str) -> str:
    """Free-text rule: decimals (also before 万/亿, which stay as written)."""
    return _DECIMAL.sub(lambda m: decimal((m.group(1) or "") + m.group(2)), text)
