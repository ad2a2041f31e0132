"""Every rule is linear in its input: 10,000-character adversarial strings under a budget.

Two checks per rule and string: the time on 10,000 characters stays under a budget, and it
grows like the input: four times the characters may cost at most ``MAX_GROWTH`` times the
time (linear: 4 to 6 with memory effects; quadratic: 16). A simple quadratic pattern in C
can stay under an absolute budget at 10,000 characters; its growth gives it away. Cubic
patterns (the old ``(\\S*年\\S*?)(bc)$`` took 25 s on ``'年' * 2000 + 'x'``) fail both.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable

import pytest

from synthesis.text.errors import NoticeTextError
from synthesis.text.normalize import (
    cardinal,
    date,
    decimal,
    digits,
    fraction,
    math,
    measure,
    money,
    normalize_text,
    percent,
    score,
    symbols,
)
from synthesis.text.normalize import range as range_rule
from synthesis.text.normalize import time as time_rule
from synthesis.text.normalize.english import normalize_en
from synthesis.text.speakable import strip_markup, text_problem
from tests.synthesis.text.adversarial import repeated

LENGTH = 10_000
#: Seconds one rule may take on one 10,000-character string (linear rules take < 0.07 s on
#: a loaded two-core machine; a quadratic one takes several seconds).
RULE_BUDGET_S = 0.25
#: The whole normalizer runs every rule in turn.
NORMALIZER_BUDGET_S = 1.0
#: Growth allowed from 2,500 to 10,000 characters, and the time under which growth is noise.
MAX_GROWTH = 11.0
GROWTH_FLOOR_S = 0.05

RULES: dict[str, Callable[[str], object]] = {
    module.__name__.rsplit(".", 1)[-1]: module.apply
    for module in (cardinal, date, decimal, digits, fraction, math, measure, money, percent,
                   range_rule, score, symbols, time_rule)
}  # fmt: skip
RULES["english"] = normalize_en
RULES["strip_markup"] = strip_markup
RULES["text_problem"] = lambda text: text_problem(text, "cmn")
ADVERSARIAL = repeated(LENGTH)
QUARTER = {text: text[: LENGTH // 4 - 1] + "x" for text in ADVERSARIAL}


def _seconds(rule: Callable[[str], object], text: str) -> float:
    # CPU seconds of this process: other work on a shared machine does not count
    # against a rule (wall time made these budgets fail under load, never the rules).
    started = time.process_time()
    with contextlib.suppress(NoticeTextError):
        rule(text)
    return time.process_time() - started


def _best(rule: Callable[[str], object], text: str, runs: int) -> float:
    """The fastest of ``runs`` calls: other work on a shared machine only ever adds time."""
    return min(_seconds(rule, text) for _ in range(runs))


def _measure(rule: Callable[[str], object], text: str, budget: float) -> tuple[float, float]:
    """(seconds on ``text``, growth from its quarter); a figure over its limit is measured
    again (best of several calls) before it counts."""
    seconds = _seconds(rule, text)
    if seconds > budget:
        seconds = min(seconds, _best(rule, text, 3))
    if seconds < GROWTH_FLOOR_S:
        return seconds, 1.0
    quarter = max(_best(rule, QUARTER[text], 3), 1e-4)
    growth = seconds / quarter
    if growth > MAX_GROWTH:  # measure both again, interleaved, so both see the same load
        pairs = [(_seconds(rule, QUARTER[text]), _seconds(rule, text)) for _ in range(7)]
        quarter = max(min(pair[0] for pair in pairs), 1e-4)
        growth = min(pair[1] for pair in pairs) / quarter
    return seconds, growth


def _slowest(rule: Callable[[str], object], budget: float) -> tuple[float, float, str]:
    """The worst time and the worst growth over the adversarial strings, with an example."""
    worst_seconds, worst_growth, example = 0.0, 0.0, ""
    for text in ADVERSARIAL:
        seconds, growth = _measure(rule, text, budget)
        if seconds > worst_seconds or growth > worst_growth:
            example = text[:20]
        worst_seconds, worst_growth = max(worst_seconds, seconds), max(worst_growth, growth)
    return worst_seconds, worst_growth, example


def test_the_adversarial_strings_are_long() -> None:
    assert len(ADVERSARIAL) > 200
    assert all(len(text) == LENGTH for text in ADVERSARIAL)


@pytest.mark.parametrize("name", sorted(RULES))
def test_rule_is_linear(name: str) -> None:
    seconds, growth, text = _slowest(RULES[name], RULE_BUDGET_S)
    assert seconds < RULE_BUDGET_S, f"{name} took {seconds:.2f} s on {text!r}..."
    assert growth < MAX_GROWTH, f"{name} grew {growth:.1f}x for 4x the input on {text!r}..."


def test_whole_normalizer_is_linear() -> None:
    seconds, growth, text = _slowest(normalize_text, NORMALIZER_BUDGET_S)
    assert seconds < NORMALIZER_BUDGET_S, f"took {seconds:.2f} s on {text!r}..."
    assert growth < MAX_GROWTH, f"grew {growth:.1f}x for 4x the input on {text!r}..."


def test_the_old_cubic_date_input_is_fast() -> None:
    assert _seconds(normalize_text, "年" * 2000 + "x") < 0.05


def test_the_check_catches_a_quadratic_pattern() -> None:
    quadratic = re.compile(r"[A-Za-z]++\d{4}")  # restarts inside every run of letters
    seconds, growth, _ = _slowest(lambda text: quadratic.sub("", text), RULE_BUDGET_S)
    assert seconds > RULE_BUDGET_S or growth > MAX_GROWTH
