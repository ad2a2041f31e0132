"""Cardinal numbers: 51110 -> 五万一千一百一十; bare numbers in text; 两/二 conventions.

Also the shared vocabulary of the other rules: digit names, the measure words after which
a number is a quantity, and the look-behind that tells a minus sign from a hyphen.
"""

from __future__ import annotations

import re
from functools import lru_cache

DIGITS = "零一二三四五六七八九"
_SMALL_UNITS = ("", "十", "百", "千")
_SECTION_UNITS = ("", "万", "亿", "万亿")

#: The longest integer read as a quantity; longer digit runs are read digit by digit.
MAX_CARDINAL_DIGITS = 16

#: Characters a spoken number is made of (what the rules before this one produce).
NUMERAL_CHARS = "零一二三四五六七八九十百千万亿两幺"

#: Measure words and units after which a number is a quantity (3-5个, 18-25岁, 110人).
MEASURE_WORDS = (
    "个位名人次天岁年月日号周期届倍成元块角毛分秒点时刻件张本条家所层楼页章集台辆架艘只头匹"
    "斤两克吨米里亩升度份批套项种类笔单户间室厅栋座根支瓶杯碗盒包箱袋株棵颗粒滴首篇部场回趟"
    "遍轮组对双副串排行列段节堂门科届期站路号码字岁届版码级等折"
)
#: A ``-`` is a minus sign unless it follows a digit, a letter, a spoken number or a
#: closing mark (12-23 is a range, A-1 a code, 十-二十 a range already read).
SIGN_LOOKBEHIND = r"(?<![0-9A-Za-z.%)）\]" + NUMERAL_CHARS + "年月日号点分秒])"


def _section(four: str) -> str:
    """Read a section of up to four digits (no leading-zero handling)."""
    out: list[str] = []
    zero_pending = False
    width = len(four)
    for index, char in enumerate(four):
        value = int(char)
        unit = _SMALL_UNITS[width - 1 - index]
        if value == 0:
            zero_pending = bool(out)
            continue
        if zero_pending:
            out.append("零")
            zero_pending = False
        out.append(DIGITS[value] + unit)
    return "".join(out)


@lru_cache(maxsize=16384, typed=True)  # amounts' yuan parts recur where the cents do not
def cardinal(number: str | int) -> str:
    """Read a non-negative integer: ``10010000`` -> ``一千零一万``; ``10`` -> ``十``."""
    digits = str(number).replace(",", "").lstrip("0") or "0"
    if not digits.isdigit() or not digits.isascii() or len(digits) > MAX_CARDINAL_DIGITS:
        raise ValueError(f"not a cardinal: {number!r}")
    if digits == "0":
        return "零"
    sections: list[str] = []
    while digits:
        sections.insert(0, digits[-4:])
        digits = digits[:-4]
    out: list[str] = []
    need_zero = False
    last = len(sections) - 1
    for index, section in enumerate(sections):
        if int(section) == 0:
            need_zero = bool(out)
            continue
        if out and (need_zero or section[0] == "0"):
            out.append("零")
        out.append(_section(section.lstrip("0")) + _SECTION_UNITS[last - index])
        need_zero = False
    text = "".join(out)
    return text[1:] if text.startswith("一十") else text


def count(number: str | int, *, measure_word: str = "") -> str:
    """Read a quantity before a measure word: 2 -> 两 (两个, 两千), 12 -> 十二, 2000 -> 两千."""
    text = cardinal(number)
    if text == "二" or (len(text) > 1 and text[0] == "二" and text[1] in "千万亿"):
        text = "两" + text[1:]
    return text + measure_word


def signed(number: str) -> str:
    """Read an integer with an optional sign: ``-5`` -> ``负五``."""
    if number[:1] in "-－负":
        return "负" + cardinal(number[1:])
    return cardinal(number.lstrip("+"))


def digit_string(digits: str) -> str:
    """Each digit by name, other characters kept: ``0427`` -> ``零四二七``."""
    return "".join(DIGITS[ord(char) - 48] if "0" <= char <= "9" else char for char in digits)


def integer(digits: str) -> str:
    """A bare integer: a quantity, or digit by digit when it has a leading zero or is too long."""
    digits = digits.replace(",", "")
    if len(digits) > MAX_CARDINAL_DIGITS or (len(digits) > 1 and digits[0] == "0"):
        return digit_string(digits)
    return cardinal(digits)


# A bare integer in running text (thousands may be grouped with commas: 1,234,567), with a
# minus sign where one can be, and the informal scale w (300w = 三百万). Digit runs that
# look like identifiers were read by ``digits.py`` (which runs earlier).
_BARE = re.compile(
    r"(?:" + SIGN_LOOKBEHIND + r"([-－]))?(?<![\d.])"
    r"(\d{1,3}(?:,\d{3})++(?![\d,])|\d++)(?:([wW])(?![A-Za-z]))?"
)


#: Measure words before which 2 is 两 (两个, 两年, 两点); not 月, 日, 号, 楼 (二月, 二号).
LIANG_MEASURE_WORDS = frozenset(
    "个位名人次天年周岁件张本条家所台辆架只头匹斤克吨米里亩升份批套项种类笔户间根支瓶杯碗"
    "盒包箱袋株棵颗粒首篇部场回趟遍轮组对双副串排行列段节倍成元块角毛点分小千万亿百夜晚声"
)


def _bare(match: re.Match[str]) -> str:
    sign, digits, scale = match.groups()
    text = integer(digits)
    following = match.string[match.end() : match.end() + 1]
    if not sign and not scale and following in LIANG_MEASURE_WORDS and "," not in digits:
        text = count(digits) if text == cardinal(digits) else text
    return ("负" if sign else "") + text + ("万" if scale else "")


def apply(text: str) -> str:
    """Free-text rule: every remaining integer becomes a cardinal (第3 -> 第三)."""
    return _BARE.sub(_bare, text)
