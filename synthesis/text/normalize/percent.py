"""Percentages: 30.6% -> 百分之三十点六; -98% -> 负百分之九十八; 百分之1 -> 百分之一."""

from __future__ import annotations

import re

from synthesis.text.normalize.decimal import decimal


def percent(number: str) -> str:
    """Read a percentage value (without the sign ``%``); trailing decimal zeros are dropped."""
    negative = number[:1] in "-－负"
    body = number[1:] if negative else number
    if "." in body:
        body = body.rstrip("0").rstrip(".")
    return ("负" if negative else "") + "百分之" + decimal(body)


_PERCENT = re.compile(r"(?<![\d.])([-－负]?\d+(?:\.\d+)?)\s?[%％]")
_WRITTEN = re.compile(r"(?<![\d.])([-－负]?)百分之(\d+(?:\.\d+)?)")


def apply(text: str) -> str:
    """Free-text rule: ``N%`` and ``百分之N``."""
    text = _PERCENT.sub(lambda m: percent(m.group(1)), text)
    return _WRITTEN.sub(lambda m: ("负" if m.group(1) else "") + percent(m.group(2)), text)
