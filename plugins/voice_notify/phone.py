"""Phone numbers: validation to E.164 and masking for logs.

CRM rows hold numbers as people typed them (``138 1234 5678``, ``+86-10-8888
6666``, ``0086…``). The gateway wants E.164, and logs must never show a whole
number, so every log line that mentions a callee goes through ``mask_phone``.
Validation uses Google's numbering metadata (``phonenumbers``), which knows
each region's valid lengths and prefixes.
"""

from __future__ import annotations

import re

import phonenumbers

_E164 = re.compile(r"\+[0-9]{9,15}")
_DIGIT = re.compile(r"[0-9]")


class InvalidPhoneNumber(ValueError):
    """The number cannot be dialled; the plan records reason ``invalid_phone``."""


def to_e164(raw: str | None, default_region: str = "CN") -> str:
    """Return the number in E.164; numbers without a country code are read as ``default_region``.

    :raises InvalidPhoneNumber: for anything that is not a valid, dialable number
    """
    if raw is None or not str(raw).strip():
        raise InvalidPhoneNumber("empty")
    text = str(raw).strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(str(exc)) from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhoneNumber("not a valid number for its region")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mask_phone(number: str | None) -> str:
    """A phone number fit for a log line: ``+8613812345678`` → ``+86*******5678``.

    Only the last four digits survive, plus the two digits after the ``+`` of a
    full-length E.164 number (where a call went, not to whom). Anything else
    keeps just its last four characters, with every other digit masked.
    """
    if not number:
        return "<none>"
    text = str(number)
    if _E164.fullmatch(text):
        return f"{text[:3]}{'*' * (len(text) - 7)}{text[-4:]}"
    if len(text) <= 4:
        return "*" * len(text)
    return _DIGIT.sub("*", text[:-4]) + text[-4:]
