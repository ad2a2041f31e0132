from __future__ import annotations

import pytest

from voice_notify.phone import InvalidPhoneNumber, mask_phone, to_e164


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("13812345678", "+8613812345678"),
        ("+86 138 1234 5678", "+8613812345678"),
        ("138-1234-5678", "+8613812345678"),
        ("0086 13812345678", "+8613812345678"),
        ("010-8888 6666", "+861088886666"),
        ("+1 650 253 0000", "+16502530000"),
    ],
)
def test_dialable_numbers_become_e164(raw: str, e164: str) -> None:
    assert to_e164(raw) == e164


@pytest.mark.parametrize(
    "raw", ["138-1234-56", "not a number", "", None, "+1 555 0100", "0000000000"]
)
def test_malformed_numbers_are_rejected(raw: str | None) -> None:
    with pytest.raises(InvalidPhoneNumber):
        to_e164(raw)


def test_masking_hides_all_but_the_last_four_digits() -> None:
    assert mask_phone("+8613812345678") == "+86*******5678"
    assert mask_phone("138-1234-5678") == "***-****-5678"
    assert mask_phone(None) == "<none>"
