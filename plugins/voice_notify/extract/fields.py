"""The CRM's fields, read where they enter: one type per field, or a reason code.

A CRM holds what people and other systems typed into it. On SQLite a ``DATE`` column
holds any text (``2026-11-31``); elsewhere a time zone is a tzdata folder (``Asia``), a
flag is ``"yes"``, a name carries a newline. None of that may stop a batch: every row
comes out of ``clean_notice`` with each field of its declared type, and the first field
that has none names the row's reason (``invalid_reason``), which the plan records as
the notice's skip reason.

========================  ===================================  =========================
field                     accepted                             otherwise
========================  ===================================  =========================
``notice_id``             an integer                           the row cannot be keyed:
                                                               dropped, counted, logged
``customer_id``           an integer or empty                  ``invalid_customer_id``
``notice_type``           text (trimmed, at most 48 chars)     ``unknown_notice_type``
``due_date``              a date, or ``YYYY-MM-DD`` text        ``invalid_due_date``
``voice_opt_out``         a boolean, 0/1, true/false/yes/no/   ``invalid_opt_out`` (never
                          t/f/y/n text; empty is "no"          called while unreadable)
``voice_consent``         the same, when the row has it        ``invalid_consent``
``time_zone``             an IANA zone name; empty: the        ``invalid_time_zone``
                          number's region decides
``customer_name``         text without control characters      ``invalid_customer_name``
``preferred_dialect``     text; anything else: Mandarin        (no reason: a default)
``phone``, ``variables``  checked by the plan (``phone.py``,   ``invalid_phone``,
                          the text frontend)                   ``invalid_variables_json``
========================  ===================================  =========================
"""

from __future__ import annotations

import datetime as dt
import unicodedata
import zoneinfo
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from voice_notify.reasons import Reason

__all__ = ["INVALID_REASON", "clean_notice", "notice_id_of", "parse_flag", "valid_time_zone"]

#: The key a cleaned row carries its first problem under (absent when there is none).
INVALID_REASON = "invalid_reason"
_MAX_TYPE_CHARS = 48
_MAX_NAME_CHARS = 200
_MAX_DIALECT_CHARS = 16
_TRUE = frozenset({"1", "true", "t", "yes", "y"})
_FALSE = frozenset({"0", "false", "f", "no", "n", ""})
_UNPARSED = object()


def notice_id_of(value: Any) -> int | None:
    """A notice id as an integer, or None when the row has no usable one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return None


def parse_flag(value: Any) -> bool | object:
    """A yes/no field; ``_UNPARSED`` for anything that is not clearly one or the other."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return _UNPARSED


@lru_cache(maxsize=1024)
def _zone_exists(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    # OSError: a tzdata folder ("Asia") or an unreadable name; ValueError: a bad key.
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def valid_time_zone(value: Any) -> str | None:
    """The zone name if it is one, else None (then the number's region decides)."""
    if not isinstance(value, str):
        return None
    name = value.strip()
    if not name or len(name) > 64 or not name.isascii() or not _zone_exists(name):
        return None
    return name


def _due_date(value: Any) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        text = value.strip()
        # A date, or a timestamp whose first ten characters are one.
        if len(text) >= 10 and text[:10].isascii() and (len(text) == 10 or text[10] in " T"):
            try:
                return dt.date.fromisoformat(text[:10])
            except ValueError:
                return None
    return None


def _control_free(text: str) -> bool:
    # isprintable() is False for every control, format and line or paragraph separator
    # (and for other spaces, which are allowed): when it is True, nothing is left to check.
    if text.isprintable():
        return True
    return not any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in text)


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def clean_notice(row: Mapping[str, Any]) -> dict[str, Any]:
    """The row with every field of its type; ``invalid_reason`` names the first that is not.

    Idempotent: a cleaned row comes out unchanged, so the plan may clean again what the
    extract wrote (an older snapshot, a hand-made one).
    """
    clean = dict(row)
    problems: list[str] = []

    def problem(reason: str) -> None:
        problems.append(reason)

    clean["notice_id"] = notice_id_of(row.get("notice_id"))
    customer_id = row.get("customer_id")
    if customer_id is None or customer_id == "":
        clean["customer_id"] = None
    else:
        clean["customer_id"] = notice_id_of(customer_id)
        if clean["customer_id"] is None:
            problem(Reason.INVALID_CUSTOMER_ID)

    notice_type = row.get("notice_type")
    if isinstance(notice_type, str) and _control_free(notice_type):
        clean["notice_type"] = notice_type.strip()[:_MAX_TYPE_CHARS]
    else:
        # Recorded as skipped under a printable stand-in; the type is unknown to the config.
        shown = "" if notice_type is None else repr(notice_type)[:_MAX_TYPE_CHARS]
        clean["notice_type"] = shown
        problem(Reason.UNKNOWN_NOTICE_TYPE)

    opted_out = parse_flag(row.get("voice_opt_out"))
    if opted_out is _UNPARSED:
        clean["voice_opt_out"] = True  # unreadable: treated as opted out, never called
        problem(Reason.INVALID_OPT_OUT)
    else:
        clean["voice_opt_out"] = opted_out
    if "voice_consent" in row:
        consent = parse_flag(row.get("voice_consent"))
        clean["voice_consent"] = consent is True
        if consent is _UNPARSED:
            problem(Reason.INVALID_CONSENT)

    due = _due_date(row.get("due_date"))
    clean["due_date"] = due.isoformat() if due else None
    if due is None:
        problem(Reason.INVALID_DUE_DATE)

    zone = row.get("time_zone")
    clean["time_zone"] = valid_time_zone(zone)
    empty_zone = zone is None or (isinstance(zone, str) and not zone.strip())
    if clean["time_zone"] is None and not empty_zone:
        problem(Reason.INVALID_TIME_ZONE)

    name = row.get("customer_name")
    if name is None or (isinstance(name, str) and _control_free(name)):
        clean["customer_name"] = (name or "")[:_MAX_NAME_CHARS]
    else:
        clean["customer_name"] = ""
        problem(Reason.INVALID_CUSTOMER_NAME)

    dialect = _text_or_none(row.get("preferred_dialect"))
    if dialect is not None and (len(dialect) > _MAX_DIALECT_CHARS or not _control_free(dialect)):
        dialect = None
    clean["preferred_dialect"] = dialect

    # A cleaned row cleaned again keeps its first reason.
    earlier = row.get(INVALID_REASON)
    if isinstance(earlier, str) and earlier:
        first: str | None = earlier
    else:
        first = problems[0] if problems else None
    if first:
        clean[INVALID_REASON] = first
    else:
        clean.pop(INVALID_REASON, None)
    return clean
