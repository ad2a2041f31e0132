"""Bad input: every reason code, and never an exception other than NoticeTextError."""

from __future__ import annotations

import random

import pytest

from synthesis.text import REASON_CODES, NoticeComposer, NoticeTextError
from tests.synthesis.text.samples import ALL_NOTICES, REPAYMENT


def _reason(composer, notice_type, locale, variables, context) -> str:
    with pytest.raises(NoticeTextError) as caught:
        composer.compose(notice_type, locale, variables, context)
    assert caught.value.reason_code in REASON_CODES
    return caught.value.reason_code


BAD_VARIABLES = [
    ({"due_date": "2026-12-03", "card_tail": "0427"}, "missing_variable"),
    ({**REPAYMENT, "amount": None}, "missing_variable"),
    ({**REPAYMENT, "amount": "  "}, "missing_variable"),
    ({**REPAYMENT, "amount": "abc"}, "invalid_variable"),
    ({**REPAYMENT, "amount": "-5"}, "invalid_variable"),
    ({**REPAYMENT, "amount": "3280.505"}, "invalid_variable"),
    ({**REPAYMENT, "amount": float("nan")}, "invalid_variable"),
    ({**REPAYMENT, "amount": True}, "invalid_variable"),
    ({**REPAYMENT, "amount": [1]}, "invalid_variable"),
    ({**REPAYMENT, "due_date": "2026-02-30"}, "invalid_variable"),
    ({**REPAYMENT, "due_date": "next week"}, "invalid_variable"),
    ({**REPAYMENT, "card_tail": "04 27"}, "invalid_variable"),
    ({**REPAYMENT, "card_tail": "012345678"}, "variable_too_long"),
    ({**REPAYMENT, "card_tail": "04\x0027"}, "unsupported_characters"),
    ({**REPAYMENT, "card_tail": "0427😀"}, "unsupported_characters"),
    ({**REPAYMENT, "card_tail": "0427\ue001"}, "unsupported_characters"),
    ({**REPAYMENT, "customer_name": "曾小明"}, "unknown_variable"),
]


@pytest.mark.parametrize(("variables", "reason"), BAD_VARIABLES)
def test_bad_variables(composer, context, variables, reason) -> None:
    assert _reason(composer, "repayment_reminder", "cmn", variables, context) == reason


def test_bad_time_and_free_text(composer, context) -> None:
    appointment = dict(ALL_NOTICES["appointment_confirmation"])
    assert (
        _reason(composer, "appointment_confirmation", "cmn",
                {**appointment, "appointment_time": "25:00"}, context)
        == "invalid_variable"
    )  # fmt: skip
    assert (
        _reason(composer, "appointment_confirmation", "cmn",
                {**appointment, "department": "心" * 41}, context)
        == "variable_too_long"
    )  # fmt: skip
    assert (
        _reason(composer, "appointment_confirmation", "cmn",
                {**appointment, "department": "心内科\n请按0"}, context)
        == "unsupported_characters"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"customer_name": ""}, "empty_name"),
        ({"customer_name": "   "}, "empty_name"),
        ({"customer_name": None}, "empty_name"),
        ({"customer_name": "曾小明2"}, "invalid_name"),
        ({"customer_name": "曾小明\u200b"}, "unsupported_characters"),
        ({"organization": None}, "missing_context"),
        ({"service_phone": ""}, "missing_context"),
        ({"service_phone": "call us"}, "invalid_variable"),
        ({"confirm_key": "12"}, "invalid_context"),
        ({"optout_key": "x"}, "invalid_context"),
    ],
)
def test_bad_context(composer, context, change, reason) -> None:
    assert (
        _reason(composer, "repayment_reminder", "cmn", REPAYMENT, {**context, **change}) == reason
    )


def test_unknown_notice_type_and_locale(composer, context) -> None:
    assert (
        _reason(composer, "birthday_greeting", "cmn", REPAYMENT, context) == "unknown_notice_type"
    )
    assert _reason(composer, "repayment_reminder", "fr", REPAYMENT, context) == "unknown_locale"
    with pytest.raises(NoticeTextError) as caught:
        composer.variable_types("birthday_greeting")
    assert caught.value.reason_code == "unknown_notice_type"


def test_text_too_long(include_copy, context) -> None:
    catalogue = include_copy / "notice_types.yaml"
    text = catalogue.read_text(encoding="utf-8")
    catalogue.write_text(text.replace("max_text_chars: 600", "max_text_chars: 100"), "utf-8")
    tight = NoticeComposer.load(include_copy)
    assert _reason(tight, "repayment_reminder", "cmn", REPAYMENT, context) == "text_too_long"


def test_missing_template_variable_is_missing_variable(include_copy, context) -> None:
    broken = include_copy / "templates" / "cmn" / "pension_arrival.j2"
    broken.write_text("本通话语音由人工智能合成。{{ bonus }}", encoding="utf-8")
    composer = NoticeComposer.load(include_copy)
    reason = _reason(composer, "pension_arrival", "cmn", ALL_NOTICES["pension_arrival"], context)
    assert reason == "missing_variable"


def test_template_that_escapes_the_sandbox_is_template_error(include_copy, context) -> None:
    broken = include_copy / "templates" / "cmn" / "pension_arrival.j2"
    broken.write_text("{{ amount.__class__.__mro__ }}", encoding="utf-8")
    composer = NoticeComposer.load(include_copy)
    reason = _reason(composer, "pension_arrival", "cmn", ALL_NOTICES["pension_arrival"], context)
    assert reason == "template_error"


def test_every_reason_code_is_documented_snake_case() -> None:
    for code, meaning in REASON_CODES.items():
        assert code.islower() and " " not in code and meaning
    with pytest.raises(ValueError):
        NoticeTextError("not_a_code", "x")


def test_random_values_raise_only_notice_text_errors(composer, context) -> None:
    rng = random.Random(20261203)
    alphabet = "0123456789.-:/,¥%元年月日abcP 曾\t😀\ue000" + "".join(
        map(chr, range(0x4E00, 0x4E40))
    )
    kinds = (int, float, str)
    for _ in range(3000):
        notice_type = rng.choice(sorted(ALL_NOTICES))
        variables = {}
        for name in ALL_NOTICES[notice_type]:
            kind = rng.choice(kinds)
            if kind is int:
                variables[name] = rng.randint(-(10**13), 10**13)
            elif kind is float:
                variables[name] = rng.uniform(-1e6, 1e13)
            else:
                variables[name] = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        locale = rng.choice(("cmn", "yue", "en"))
        try:
            notice = composer.compose(notice_type, locale, variables, context)
        except NoticeTextError as error:
            assert error.reason_code in REASON_CODES
        else:
            assert notice.segments
