"""Ranges: 12~23 and 12-23 -> 十二到二十三 (after dates and phone numbers have been read)."""

from __future__ import annotations

import re

from synthesis.text.normalize.cardinal import cardinal

_RANGE = re.compile(r"(?<![\d.\-])(\d{1,6})\s?[~～\-—–]\s?(\d{1,6})(?![\d.\-])")


def apply(text: str) -> str:
    """Free-text rule: ``a~b`` / ``a-b`` with small integers."""
    return _RANGE.sub(lambda m: cardinal(m.group(1)) + "到" + cardinal(m.group(2)), text)
