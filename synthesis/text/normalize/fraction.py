"""Fractions: 1/3 -> 三分之一; 1又1/5 -> 一又五分之一; 负100分之57 -> 负一百分之五十七."""

from __future__ import annotations

import re

from synthesis.text.normalize.cardinal import SIGN_LOOKBEHIND, cardinal


def fraction(numerator: str, denominator: str) -> str:
    """Read ``numerator/denominator``."""
    return cardinal(denominator) + "分之" + cardinal(numerator)


_SLASH = re.compile(
    r"(?:" + SIGN_LOOKBEHIND + r"([-－负]))?(?<![\d./])(?:(\d++)又)?(\d{1,12})\s?/\s?(\d{1,12})"
    r"(?![\d/]|\.\d)"
)
_WRITTEN = re.compile(r"(?<![\d.])([-－负]?)(\d{1,12})分之(\d{1,12})(?![\d.])")


def _slash(match: re.Match[str]) -> str:
    sign, whole, numerator, denominator = match.groups()
    text = fraction(numerator, denominator)
    if whole:
        text = cardinal(whole) + "又" + text
    return ("负" if sign else "") + text


def apply(text: str) -> str:
    """Free-text rule: ``a/b``, ``w又a/b`` and ``b分之a`` with digits."""
    text = _SLASH.sub(_slash, text)
    return _WRITTEN.sub(
        lambda m: ("负" if m.group(1) else "") + fraction(m.group(3), m.group(2)), text
    )
