"""Phone numbers: validation to E.164, and keeping them out of logs.

CRM rows hold numbers as people typed them (``138 1234 5678``, ``+86-10-8888
6666``, ``0086…``). The gateway wants E.164, and logs must never show a whole
number, so every log line that mentions a callee goes through ``mask_phone``, and
free text that may hold one (an exception's message) through ``redact_numbers``.
Validation uses Google's numbering metadata (``phonenumbers``), which knows
each region's valid lengths and prefixes.

Which characters a number may be written with is an explicit rule, not whatever the
parser accepts (``phonenumbers`` reads digits of every script and letters of vanity
numbers alike):

- ASCII digits, ``+``, spaces, ``-``, ``.``, ``(`` and ``)``;
- full-width forms of those (``１３８…``, ``＋``, what a Chinese input method types) and
  the ideographic space, folded to ASCII first: the same number, differently wide;
- nothing else. Digits of another script (Arabic-Indic ``١٣٨``, Devanagari, circled
  ``①``, superscripts) are refused with ``phone_non_ascii_digits``: no CRM here writes
  them, so they are data damage or a trick, never a number to call; letters and any
  other character are refused with ``invalid_phone``.
"""

from __future__ import annotations

import functools
import re
import unicodedata

import phonenumbers

from voice_notify.logsafe import escape
from voice_notify.reasons import Reason

_E164 = re.compile(r"\+[0-9]{9,15}")
_ALLOWED = frozenset("0123456789+-.() ")
# Full-width ASCII (U+FF01-U+FF5E) is ASCII shifted by 0xFEE0; U+3000 is a space.
_WIDTH_FOLD = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
_MAX_CHARS = 64
# A number inside free text: digits of any script with single separators between them,
# 7 or more after a "+" (or its URL form %2B), else 9 or more (a date is 8).
# With a leading + (or its URL form) from 7 digits, else from 9 (a mobile number, a
# landline with its area code), separators as people write them; shorter runs are
# amounts, dates and ids, which stay readable.
_NUMBER_IN_TEXT = re.compile(
    r"(?:\+|%2[bB])\d(?:[ \-.()\u00a0]?\d){6,}|\d(?:[ \-.()\u00a0]?\d){8,}"
)


class InvalidPhoneNumber(ValueError):
    """The number cannot be dialled; the plan records ``reason``."""

    reason: str = Reason.INVALID_PHONE


class NonAsciiDigits(InvalidPhoneNumber):
    """Digits of a script other than ASCII (full-width aside): refused, never guessed."""

    reason: str = Reason.PHONE_NON_ASCII_DIGITS


def digit_like(char: str) -> bool:
    """Whether ``char`` is a digit in any script (decimal, superscript, circled, CJK numeral)."""
    return char.isdigit() or unicodedata.numeric(char, None) is not None


def phone_text(raw: object) -> str:
    """The number as ASCII text by the rule above.

    :raises NonAsciiDigits: digits of another script
    :raises InvalidPhoneNumber: empty, too long, not text, or any character outside the rule
    """
    if raw is None or isinstance(raw, bool | float | bytes):
        raise InvalidPhoneNumber("not a phone number field")
    text = str(raw).translate(_WIDTH_FOLD).strip()
    if not text:
        raise InvalidPhoneNumber("empty")
    if len(text) > _MAX_CHARS:
        raise InvalidPhoneNumber("too long")
    foreign = {c for c in text if c not in _ALLOWED}
    if any(digit_like(c) for c in foreign):
        raise NonAsciiDigits("digits of a script other than ASCII")
    if foreign:
        raise InvalidPhoneNumber("characters a phone number does not have")
    return text


def to_e164(raw: object, default_region: str = "CN") -> str:
    """Return the number in E.164; numbers without a country code are read as ``default_region``.

    :raises InvalidPhoneNumber: for anything that is not a valid, dialable number
        (``NonAsciiDigits`` for digits of another script); ``.reason`` is its code
    """
    text = phone_text(raw)
    if text.startswith("00"):
        text = "+" + text[2:]
    if default_region == "CN":
        plain = _CN_MOBILE.fullmatch(text.translate(_GROUPING))
        if plain:
            return _valid_cn_mobile(plain[1])
    return _parsed_e164(text, default_region)


# Most CRM numbers are Chinese mobiles written plainly (13812345678, 138-1234-5678,
# +86 138 1234 5678): their number is known without phonenumbers' general parse, which
# costs more than the check of its metadata (a plan reads 100,000 numbers). 11x, 12x and
# 179x are left to the parse: those are China's carrier-select prefixes, which parsing
# may strip.
_CN_MOBILE = re.compile(r"(?:\+86)?(1(?:[3-68][0-9]|7[0-8]|9[0-9])[0-9]{8})")
_GROUPING = str.maketrans("", "", " -")


@functools.cache
def _cn_mobile_descs() -> tuple[tuple[re.Pattern, frozenset[int]], ...]:
    """China's general and mobile number descriptions in phonenumbers' metadata: each
    pattern with its possible lengths (none: any)."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region("CN")
    return tuple(
        (re.compile(desc.national_number_pattern), frozenset(desc.possible_length or ()))
        for desc in (metadata.general_desc, metadata.mobile)
    )


def _valid_cn_mobile(national: str) -> str:
    # A number matching China's general and mobile descriptions is valid (a mobile), as
    # is_valid_number would find after trying every type before mobile; only the rest
    # take that path.
    if all(
        pattern.fullmatch(national) and (not lengths or len(national) in lengths)
        for pattern, lengths in _cn_mobile_descs()
    ):
        return "+86" + national
    number = phonenumbers.PhoneNumber(country_code=86, national_number=int(national))
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhoneNumber("not a valid number for its region")
    return "+86" + national


def _parsed_e164(text: str, default_region: str) -> str:
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException:
        raise InvalidPhoneNumber("not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhoneNumber("not a valid number for its region")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mask_phone(number: object) -> str:
    """A phone number fit for a log line: ``+8613812345678`` → ``+86*******5678``.

    Only the last four characters survive, plus the two digits after the ``+`` of a
    full-length E.164 number (where a call went, not to whom). Anything else keeps
    its last four characters, with every digit before them masked, in any script;
    control characters are escaped, so a CRM field cannot start a log line of its own.
    """
    if number is None or number == "":
        return "<none>"
    text = str(number)
    if _E164.fullmatch(text):
        return f"{text[:3]}{'*' * (len(text) - 7)}{text[-4:]}"
    text = text[:_MAX_CHARS]
    if len(text) <= 4:
        return "*" * len(text)
    head = "".join("*" if digit_like(c) else c for c in text[:-4])
    return escape(head + text[-4:])


def mask_numbers_in(text: str) -> str:
    """``text`` with every phone-number-like run of digits masked (separators allowed)."""
    return _NUMBER_IN_TEXT.sub(lambda m: mask_phone(m.group()), text)


def redact_numbers(text: object) -> str:
    """``text`` with every phone-number-like run of digits (any script) masked, escaped:
    for free text that may quote a number, such as an exception's message or a URL."""
    return escape(mask_numbers_in(str(text)), 500)
