from __future__ import annotations

import random

import pytest

from voice_notify import phone
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


# --- digits of any script: an explicit rule, not whatever the parser accepts -------------


@pytest.mark.parametrize(
    "raw",
    [
        "１３８１２３４５６７８",  # full-width, as a Chinese input method types
        "＋８６　１３８－１２３４－５６７８",  # full-width plus, dash and ideographic space
    ],
)
def test_full_width_numbers_are_folded_to_ascii(raw: str) -> None:
    assert to_e164(raw) == "+8613812345678"


@pytest.mark.parametrize(
    "raw",
    [
        "١٣٨١٢٣٤٥٦٧٨",  # Arabic-Indic
        "۱۳۸۱۲۳۴۵۶۷۸",  # Extended Arabic-Indic (Persian)
        "१३८१२३४५६७८",  # Devanagari
        "138１２３４٥٦٧٨",  # mixed scripts
        "¹³⁸¹²³⁴⁵⁶⁷⁸",  # superscripts
        "①③⑧12345678",  # circled
        "一三八12345678",  # CJK numerals
    ],
)
def test_digits_of_other_scripts_are_refused_with_their_own_reason(raw: str) -> None:
    from voice_notify.phone import NonAsciiDigits

    with pytest.raises(NonAsciiDigits) as refused:
        to_e164(raw)
    assert refused.value.reason == "phone_non_ascii_digits"


@pytest.mark.parametrize(
    "raw", ["1-800-FLOWERS", "138ABCD5678", "138 1234 5678 ext 9", "138\n12345678", 13812345678.0]
)
def test_letters_and_other_characters_are_invalid(raw) -> None:
    with pytest.raises(InvalidPhoneNumber) as refused:
        to_e164(raw)
    assert refused.value.reason == "invalid_phone"


def test_an_integer_field_is_read_as_its_digits() -> None:
    assert to_e164(13812345678) == "+8613812345678"


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("１３８１２３４５６７８", "*******５６７８"),
        ("١٣٨١٢٣٤٥٦٧٨", "*******٥٦٧٨"),
        ("¹³⁸¹²³⁴⁵⁶⁷⁸", "*******⁵⁶⁷⁸"),
        ("138\n1234\x1b[2J5678", "***\\x0a****\\x1b[*J5678"),
    ],
)
def test_masking_hides_digits_of_every_script_and_escapes_controls(raw: str, masked: str) -> None:
    assert mask_phone(raw) == masked


def test_numbers_in_free_text_are_redacted() -> None:
    from voice_notify.phone import redact_numbers

    url = "GET /Calls.json?To=%2B8613812345678&StartTime%3E=x failed\nforged line"
    redacted = redact_numbers(url)
    assert "13812345678" not in redacted and "8613812345678" not in redacted
    assert "\n" not in redacted and "5678" in redacted
    assert redact_numbers("call +86 138 1234 5678 and ١٣٨١٢٣٤٥٦٧٨") == (
        "call +** *** **** 5678 and *******٥٦٧٨"
    )


def test_plainly_written_chinese_mobiles_read_as_the_full_parse_reads_them() -> None:
    # to_e164 skips phonenumbers' general parse for them; every prefix 100-199 (the
    # carrier-select ones, which parsing may strip, included) in the formats CRMs hold.
    rng = random.Random(13)

    def outcome(read, text):
        try:
            return read(text)
        except phone.InvalidPhoneNumber as exc:
            return type(exc)

    for prefix in range(100, 200):
        for _ in range(20):
            digits = f"{prefix}{rng.randrange(10**8):08d}"
            for raw in (
                digits,
                f"{digits[:3]}-{digits[3:7]}-{digits[7:]}",
                f"+86 {digits[:3]} {digits[3:7]} {digits[7:]}",
                f"0086{digits}",
                f"{digits} -",
            ):
                parsed = raw.replace("0086", "+86", 1) if raw.startswith("00") else raw
                assert outcome(phone.to_e164, raw) == outcome(
                    lambda text: phone._parsed_e164(text, "CN"), parsed
                ), raw


def test_a_chinese_mobile_matching_the_mobile_pattern_is_valid_as_phonenumbers_finds() -> None:
    # The metadata's general and mobile patterns decide most numbers without
    # is_valid_number's walk through every number type: the same answer for every
    # five-digit beginning 10000-19999, with random tails.
    import phonenumbers

    rng = random.Random(17)
    fast = 0
    for head in range(10000, 20000):
        for _ in range(3):
            national = f"{head}{rng.randrange(10**6):06d}"
            number = phonenumbers.PhoneNumber(country_code=86, national_number=int(national))
            valid = phonenumbers.is_valid_number(number)
            try:
                assert phone._valid_cn_mobile(national) == "+86" + national and valid, national
            except phone.InvalidPhoneNumber:
                assert not valid, national
            fast += all(p.fullmatch(national) for p, _ in phone._cn_mobile_descs())
    assert fast > 10000  # the patterns do decide a good share
