from __future__ import annotations

import json
import re

from synthesis.text import ComposedNotice, NoticeComposer, Segment
from synthesis.text.ir import MAX_SEGMENT_CHARS
from tests.synthesis.text.samples import ALL_NOTICES, APPOINTMENT, POLICY, REPAYMENT

LOCALES = ("cmn", "yue", "en")


def test_repayment_reminder_mandarin_text(composer: NoticeComposer, context) -> None:
    notice = composer.compose("repayment_reminder", "cmn", REPAYMENT, context)
    assert isinstance(notice, ComposedNotice)
    assert notice.display_text == (
        "本通话语音由人工智能合成。曾小明您好，这里是招商银行。"
        "您尾号零四二七的信用卡本期应还款三千二百八十元五角，最后还款日为二零二六年十二月三日，"
        "请您按时还款。如已还款请忽略本提醒，确认收到请按一。如有疑问，请致电九五五五五。"
        "如不希望再接到此类语音通知，请按九。"
    )


def test_disclosure_is_the_first_segment_in_every_locale(composer, context) -> None:
    for notice_type, variables in ALL_NOTICES.items():
        for locale in LOCALES:
            first = composer.compose(notice_type, locale, variables, context).segments[0]
            if locale == "en":
                assert "artificial intelligence" in first.text
            else:
                assert "人工智能" in first.text and "合成" in first.text


def test_every_template_names_caller_customer_confirm_and_optout(composer, context) -> None:
    context = {**context, "organization": "华夏保险", "confirm_key": "3", "optout_key": "8"}
    for notice_type, variables in ALL_NOTICES.items():
        for locale in ("cmn", "yue"):
            text = composer.compose(notice_type, locale, variables, context).display_text
            assert "华夏保险" in text and "曾小明" in text
            assert "按三" in text and "按八" in text
        english = composer.compose(notice_type, "en", variables, context).display_text
        assert "press three" in english and "press eight" in english
        assert "Zeng Xiaoming" in english


def test_segments_have_no_digits_or_currency_signs(composer, context) -> None:
    for notice_type, variables in ALL_NOTICES.items():
        for locale in LOCALES:
            for segment in composer.compose(notice_type, locale, variables, context).segments:
                assert not re.search(r"[0-9０-９¥￥$€£%]", segment.text), segment.text
                assert len(segment.text) <= MAX_SEGMENT_CHARS


def test_display_text_is_the_join_of_segments(composer, context) -> None:
    notice = composer.compose("policy_renewal", "cmn", POLICY, context)
    assert notice.display_text == "".join(s.text for s in notice.segments)
    english = composer.compose("policy_renewal", "en", POLICY, context)
    assert english.display_text == " ".join(s.text for s in english.segments)


def test_name_override_carries_surname_reading(composer, context) -> None:
    notice = composer.compose("repayment_reminder", "cmn", REPAYMENT, context)
    greeting = notice.segments[1]
    assert greeting.text.startswith("曾小明")
    assert (0, 3, "zēng xiǎo míng") in greeting.overrides


def test_lexicon_words_become_overrides(composer, context) -> None:
    notice = composer.compose("repayment_reminder", "cmn", REPAYMENT, context)
    found = {
        segment.text[start:end]: reading
        for segment in notice.segments
        for start, end, reading in segment.overrides
    }
    assert found["还款"] == "huán kuǎn"
    assert found["银行"] == "yín háng"


def test_decimal_money_style(decimal_composer, context) -> None:
    text = decimal_composer.compose("repayment_reminder", "cmn", REPAYMENT, context).display_text
    assert "三千二百八十点五元" in text


def test_appointment_time_and_department(composer, context) -> None:
    text = composer.compose("appointment_confirmation", "cmn", APPOINTMENT, context).display_text
    assert "二零二六年十二月三日十五点三十分的心内科门诊" in text


def test_policy_number_read_one_by_one(composer, context) -> None:
    text = composer.compose("policy_renewal", "cmn", POLICY, context).display_text
    assert "保单P二零二六A零八幺五" in text
    assert "一千二百八十八元零五分" in text


def test_cantonese_uses_traditional_number_words(composer, context) -> None:
    notice = composer.compose("pension_arrival", "yue", {**ALL_NOTICES["pension_arrival"]}, context)
    assert "兩千元" in notice.display_text
    assert all(segment.lang == "yue" and not segment.overrides for segment in notice.segments)


def test_english_values(composer, context) -> None:
    text = composer.compose("repayment_reminder", "en", REPAYMENT, context).display_text
    assert "three thousand two hundred eighty yuan and fifty fen" in text
    assert "ending in zero four two seven" in text
    assert "December third, twenty twenty-six" in text


def test_numeric_json_values_are_accepted(composer, context) -> None:
    as_string = composer.compose("repayment_reminder", "cmn", REPAYMENT, context)
    as_number = composer.compose(
        "repayment_reminder", "cmn", {**REPAYMENT, "amount": 3280.5}, context
    )
    assert as_string == as_number


def test_segment_round_trips_through_json(composer, context) -> None:
    for segment in composer.compose("repayment_reminder", "cmn", REPAYMENT, context).segments:
        assert Segment.from_dict(json.loads(json.dumps(segment.to_dict()))) == segment


def test_pauses_after_sentences_and_none_at_the_end(composer, context) -> None:
    segments = composer.compose("repayment_reminder", "cmn", REPAYMENT, context).segments
    assert [s.pause_after_ms for s in segments[:-1]] == [400] * (len(segments) - 1)
    assert segments[-1].pause_after_ms == 0


def test_long_sentence_splits_at_clauses_not_inside_values(composer, context) -> None:
    department = "，".join(["心血管内科专家特需门诊"] * 3)  # 35 chars, clause marks inside
    context = {**context, "organization": "北京协和医院国际医疗部特需门诊预约中心服务台"}
    variables = {**APPOINTMENT, "department": department}
    notice = composer.compose("appointment_confirmation", "cmn", variables, context)
    assert all(len(s.text) <= MAX_SEGMENT_CHARS for s in notice.segments)
    assert "".join(s.text for s in notice.segments) == notice.display_text


def test_composer_exposes_the_catalogue(composer: NoticeComposer) -> None:
    assert composer.notice_types == {
        "repayment_reminder",
        "appointment_confirmation",
        "pension_arrival",
        "policy_renewal",
    }
    assert composer.variable_types("repayment_reminder") == {
        "amount": "money",
        "due_date": "date",
        "card_tail": "code",
    }


def test_compound_surname_in_context(composer, context) -> None:
    notice = composer.compose(
        "pension_arrival",
        "cmn",
        ALL_NOTICES["pension_arrival"],
        {**context, "customer_name": "尉迟恭"},
    )
    assert (0, 3, "yù chí gōng") in notice.segments[1].overrides
