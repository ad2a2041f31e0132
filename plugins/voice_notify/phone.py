"""Phone numbers: validation to E.164 and masking for logs.

CRM rows hold numbers as people typed them (``138 1234 5678``, ``+86-10-8888
6666``, ``0086…``). The gateway wants E.164, and logs must never show a whole
number, so every log line that mentions a callee goes through ``mask_phone``.
"""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[\s\-().]")
# Mainland mobile numbers: 1[3-9] followed by 9 digits.
_CN_MOBILE = re.compile(r"^1[3-9]\d{9}$")
# Mainland fixed lines with area code, trunk prefix 0 dropped: 10-12 digits.
_CN_FIXED = re.compile(r"^[2-9]\d{9,10}$")
_E164 = re.compile(r"^\+[1-9]\d{7,14}$")


class InvalidPhoneNumber(ValueError):
    """The number cannot be dialled; the plan records reason ``invalid_phone``."""


def to_e164(raw: str | None, default_country_code: str = "86") -> str:
    """Return the number in E.164, assuming mainland China when no country code is given.

    :raises InvalidPhoneNumber: for anything that is not a dialable number
    """
    if raw is None:
        raise InvalidPhoneNumber("empty")
    digits = _SEPARATORS.sub("", str(raw))
    if digits.startswith("00"):
        digits = "+" + digits[2:]
    if digits.startswith("+"):
        if not _E164.match(digits):
            raise InvalidPhoneNumber("not E.164")
        if digits.startswith("+86") and not _valid_cn_national(digits[3:]):
            raise InvalidPhoneNumber("not a mainland number")
        return digits
    if not digits.isdigit():
        raise InvalidPhoneNumber("non-digit characters")
    national = digits[1:] if digits.startswith("0") else digits
    if default_country_code == "86" and not _valid_cn_national(national):
        raise InvalidPhoneNumber("not a mainland number")
    candidate = f"+{default_country_code}{national}"
    if not _E164.match(candidate):
        raise InvalidPhoneNumber("not E.164")
    return candidate


def _valid_cn_national(national: str) -> bool:
    return bool(_CN_MOBILE.match(national) or _CN_FIXED.match(national))


def mask_phone(number: str | None) -> str:
    """Keep the country code and the last four digits: ``+86*******5678``."""
    if not number:
        return "<none>"
    text = str(number)
    digits = [i for i, ch in enumerate(text) if ch.isdigit()]
    keep = set(digits[-4:])
    if text.startswith("+86"):
        keep |= {1, 2}
    elif text.startswith("+") and len(digits) > 1:
        keep.add(1)
    return "".join(ch if (i in keep or not ch.isdigit()) else "*" for i, ch in enumerate(text))
