"""Clock times: 15:30 -> 十五点三十分, 1:02:36 am -> 上午一点零二分三十六秒; scores after 比分."""

from __future__ import annotations

import re

from synthesis.text.normalize.cardinal import cardinal

_CLOCK = re.compile(r"^([01]?\d|2[0-3])[:：]([0-5]\d)(?:[:：]([0-5]\d))?$")


def parse_time(value: object) -> tuple[int, int, int | None]:
    """Parse ``"15:30"`` or ``"15:30:00"`` into hour, minute, second.

    :raises ValueError: not a 24-hour clock time.
    """
    match = _CLOCK.match(str(value).strip())
    if not match:
        raise ValueError(f"not a time: {value!r}")
    hour, minute, second = match.groups()
    return int(hour), int(minute), int(second) if second is not None else None


def _two(number: int) -> str:
    return ("零" if 0 < number < 10 else "") + cardinal(number)


def clock(hour: int, minute: int, second: int | None = None) -> str:
    """Read a 24-hour time; minutes and seconds below ten get 零 (十五点零五分)."""
    text = ("两" if hour == 2 else cardinal(hour)) + "点"
    if second is not None:
        return text + (_two(minute) if minute else "零") + "分" + _two(second) + "秒"
    return text + (_two(minute) + "分" if minute else "")


#: am/pm written after a time (8:00 a.m., 10:04PM); Chinese says 上午/下午 before it.
_AM_PM = r"(?:\s?([AaPp])\.?[Mm]\.?(?![A-Za-z]))?"
_PERIOD = "(上午|下午|早上|晚上|中午|凌晨|傍晚|夜里|清晨)?"
_TEXT_CLOCK = re.compile(
    _PERIOD + r"(?<![\d.:：])(\d{1,2})[:：](\d{2})(?:[:：](\d{2}))?(?![\d]|[:：]\d)" + _AM_PM
)
# A time already written with 点/分/秒 and followed by am/pm: 3点4分5秒am.
_HAN_CLOCK = re.compile(
    _PERIOD
    + r"(?<![\d.])(\d{1,2}点(?:差?\d{1,2}分)?(?:\d{1,2}秒)?)\s?([AaPp])\.?[Mm]\.?(?![A-Za-z])"
)
_SCORE_BEFORE = re.compile(r"(比分|比赛|战胜|击败|负于|胜|比)\S{0,4}$")
_SCORE_LOOKBACK = 8


def _period(written: str | None, am_pm: str | None) -> str:
    if written or not am_pm:
        return written or ""
    return "上午" if am_pm in "Aa" else "下午"


def _text_clock(match: re.Match[str]) -> str:
    written, hour, minute, second, am_pm = match.groups()
    before = match.string[max(0, match.start() - _SCORE_LOOKBACK) : match.start()]
    invalid = int(hour) > 24 or int(minute) > 59 or (second is not None and int(second) > 59)
    if second is None and not am_pm and (invalid or _SCORE_BEFORE.search(before)):
        return (written or "") + cardinal(hour) + "比" + cardinal(minute)
    if invalid:
        return match.group()
    second_value = int(second) if second is not None else None
    return _period(written, am_pm) + clock(int(hour), int(minute), second_value)


def apply(text: str) -> str:
    """Free-text rule: ``HH:MM[:SS]`` with am/pm as a time, or as a score after 比分."""
    text = _TEXT_CLOCK.sub(_text_clock, text)
    return _HAN_CLOCK.sub(lambda m: _period(m.group(1), m.group(3)) + m.group(2), text)
