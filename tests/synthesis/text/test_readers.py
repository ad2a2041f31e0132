"""Typed readers: each value type read by what it is, per locale."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from synthesis.text.normalize import english
from synthesis.text.normalize.cardinal import count
from synthesis.text.normalize.date import date, parse_date
from synthesis.text.normalize.digits import phone
from synthesis.text.normalize.money import money, parse_amount
from synthesis.text.normalize.time import clock, parse_time


@pytest.mark.parametrize(
    ("raw", "jiao_fen", "decimal_style"),
    [
        ("3280.50", "三千二百八十元五角", "三千二百八十点五元"),
        (3280.5, "三千二百八十元五角", "三千二百八十点五元"),
        ("3280.05", "三千二百八十元零五分", "三千二百八十点零五元"),
        ("3,280.00", "三千二百八十元", "三千二百八十元"),
        ("¥0.35", "三角五分", "零点三五元"),
        (2, "两元", "二元"),
        (2000, "两千元", "二千元"),
        ("20.2", "二十元两角", "二十点二元"),
        (100000000, "一亿元", "一亿元"),
    ],
)
def test_money_styles(raw, jiao_fen, decimal_style) -> None:
    amount = parse_amount(raw)
    assert money(amount, "yuan-jiao-fen") == jiao_fen
    assert money(amount, "decimal") == decimal_style


@pytest.mark.parametrize("raw", ["abc", "-1", "1.234", "1e5", "", "1,23", float("inf"), True])
def test_bad_amounts(raw) -> None:
    with pytest.raises(ValueError):
        parse_amount(raw)


def test_dates_and_times() -> None:
    assert date(parse_date("2026-12-03")) == "二零二六年十二月三日"
    assert date(parse_date("2030/1/20")) == "二零三零年一月二十日"
    assert parse_date(dt.date(2026, 2, 28)) == dt.date(2026, 2, 28)
    assert clock(*parse_time("15:30")[:2]) == "十五点三十分"
    assert clock(*parse_time("9:05")[:2]) == "九点零五分"
    assert clock(*parse_time("08:00")[:2]) == "八点"
    for bad in ("2026-13-01", "2026-02-29", "03/12/2026"):
        with pytest.raises(ValueError):
            parse_date(bad)
    for bad in ("24:00", "15:60", "1530"):
        with pytest.raises(ValueError):
            parse_time(bad)


def test_phone_uses_yao_and_counts_use_liang() -> None:
    assert phone("010-8888 1234") == "零幺零八八八八幺二三四"
    assert phone("95511", yao=False) == "九五五一一"
    assert count(2, measure_word="个") == "两个"
    assert count(12) == "十二"
    assert count(2000) == "两千"
    assert count(20000) == "两万"
    assert count(22) == "二十二"


def test_english_readers() -> None:
    assert english.money_en(Decimal("3280.50")) == (
        "three thousand two hundred eighty yuan and fifty fen"
    )
    assert english.money_en(Decimal("0.05")) == "five fen"
    assert english.date_en(dt.date(2026, 12, 3)) == "December third, twenty twenty-six"
    assert english.date_en(dt.date(2030, 1, 22)) == "January twenty-second, twenty thirty"
    assert english.time_en(15, 30) == "three thirty PM"
    assert english.time_en(9, 5) == "nine oh five AM"
    assert english.time_en(12, 0) == "twelve noon"
    assert english.digits_en("P20") == "P two zero"


def test_percent_and_count_variables(composer) -> None:
    readers = composer._readers
    assert readers.read("rate", "percent", "3.85%", "cmn")[0] == "百分之三点八五"
    assert readers.read("rate", "percent", 12, "en")[0] == "twelve percent"
    assert readers.read("visits", "count", 2, "cmn")[0] == "两"
    assert readers.read("visits", "count", "21", "en")[0] == "twenty-one"
