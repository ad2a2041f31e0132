"""Golden files: one per normalization rule, ``input => expected`` per line."""

from __future__ import annotations

import pathlib

import pytest

from synthesis.text.normalize import normalize_text
from synthesis.text.normalize.english import normalize_en
from tests.synthesis.text.samples import DATA

RULES = ("cardinal", "date", "decimal", "digits", "fraction", "math", "measure", "money",
         "percent", "range", "score", "symbols", "time")  # fmt: skip


def _cases(path: pathlib.Path) -> list[tuple[str, str]]:
    cases = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            source, expected = line.split(" => ")
            cases.append((source, expected))
    return cases


def test_every_rule_module_has_a_golden_file() -> None:
    rule_dir = pathlib.Path(__file__).resolve().parents[3] / "synthesis" / "text" / "normalize"
    modules = {p.stem for p in rule_dir.glob("*.py")} - {"__init__", "english"}
    assert modules == set(RULES)
    for rule in RULES:
        assert len(_cases(DATA / f"{rule}.txt")) >= 3, rule


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param(s, e, id=f"{rule}:{s}")
        for rule in RULES
        for s, e in _cases(DATA / f"{rule}.txt")
    ],
)
def test_golden(source: str, expected: str) -> None:
    assert normalize_text(source) == expected


@pytest.mark.parametrize(("source", "expected"), _cases(DATA / "english.txt"))
def test_english_golden(source: str, expected: str) -> None:
    assert normalize_en(source) == expected


def test_decimal_money_style() -> None:
    assert normalize_text("￥3280.50", "decimal") == "三千二百八十点五元"
    assert normalize_text("63.89元", "decimal") == "六十三点八九元"
