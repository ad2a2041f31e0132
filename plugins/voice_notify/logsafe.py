"""Log fields that come from data, escaped.

A CRM field, a callback body or a carrier's reason phrase can hold a newline: logged as
is, it would start a line of its own that looks like the pipeline's (a forged entry).
``escape`` writes every control, format and line-separator character as an escape
sequence and bounds the length, so one field stays one field on one line.
"""

from __future__ import annotations

import unicodedata

__all__ = ["escape"]

# Cc: C0/C1 controls (\n, \r, \x1b ...); Cf: format characters (bidi overrides that
# reorder what a reader sees); Zl/Zp: the Unicode line and paragraph separators.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def _escaped(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape(value: object, limit: int = 200) -> str:
    """``value`` as one printable log field of at most ``limit`` characters (plus ``…``)."""
    text = (
        value if isinstance(value, str) else repr(value) if isinstance(value, bytes) else str(value)
    )
    if len(text) > limit:
        text = text[:limit] + "…"
    if all(unicodedata.category(c) not in _UNSAFE_CATEGORIES for c in text):
        return text
    return "".join(
        _escaped(c) if unicodedata.category(c) in _UNSAFE_CATEGORIES else c for c in text
    )
