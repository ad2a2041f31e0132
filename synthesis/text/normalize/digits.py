"""Digit strings read one by one: phone numbers, card tails, codes, identifiers in text."""

from __future__ import annotations

import re

from synthesis.text.normalize.cardinal import DIGITS

#: Letters are read by name in Mandarin speech ("P" stays "P"); only digits are replaced.
_PHONE_CHARS = re.compile(r"[\s\-()（）+]")


def digits(text: str, *, yao: bool = False) -> str:
    """Read each digit: ``"0427"`` -> ``零四二七``; with ``yao=True`` 1 is 幺 (phone style)."""
    table = DIGITS.replace("一", "幺") if yao else DIGITS
    return "".join(table[ord(char) - 48] if "0" <= char <= "9" else char for char in text)


def phone(number: str, *, yao: bool = True) -> str:
    """Read a phone number digit by digit, dropping separators: 0755-8888 -> 零七五五八八八八."""
    return digits(_PHONE_CHARS.sub("", number), yao=yao)


# Identifier-like digit runs in running text:
#  - a landline with area code (0421-33441122) or a +86 mobile;
#  - an 11-digit mobile number, an 8-digit landline that is not a round amount;
#  - a 5-digit service number (100xx, 12xxx, 95xxx, 96xxx);
#  - digits after a word that names an identifier (编号, 电话, 尾号 ...);
#  - 3+ digits before 号 that are not a day of the month (“26314”号).
_AREA_PHONE = re.compile(r"(?<!\d)0\d{2,3}-\d{7,8}(?!\d)")
_INTL_PHONE = re.compile(r"\+86[\s-]?(1[3-9]\d{9})(?!\d)")
_MOBILE = re.compile(r"(?<![\d.])1[3-9]\d{9}(?![\d.])")
_LANDLINE = re.compile(r"(?<![\d.\-/:第])[1-9]\d{4}(?!000)\d{3}(?![\d.%年月日号万亿元个])")
_SERVICE = re.compile(
    r"(?<![\d.\-/:第])(?:100[1-9]\d|12[1-9]\d\d|9[56]\d{3})(?![\d.%年月日号万亿元个])"
)
_KEYWORD = re.compile(
    r"(编号|号码|电话|热线|尾号|卡号|工号|账号|单号|代码|验证码|密码)(为|是|：|:)?(\d{3,})"
)
_BEFORE_HAO = re.compile(r"(?<![\d.月])(\d{3,})(?=[”\"」』]?号)")


def apply(text: str) -> str:
    """Free-text rule: identifier-like digit runs become digit strings."""
    text = _AREA_PHONE.sub(lambda m: phone(m.group(), yao=False), text)
    text = _INTL_PHONE.sub(lambda m: digits("86" + m.group(1)), text)
    text = _KEYWORD.sub(lambda m: m.group(1) + (m.group(2) or "") + digits(m.group(3)), text)
    text = _BEFORE_HAO.sub(lambda m: digits(m.group(1)), text)
    for pattern in (_MOBILE, _LANDLINE, _SERVICE):
        text = pattern.sub(lambda m: digits(m.group()), text)
    return text
