from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from synthesis.text import NoticeComposer, Segment
from tests.support.crm_rows import due_notice
from voice_notify import ledger
from voice_notify.db import migrate
from voice_notify.ledger import LedgerState
from voice_notify.plan import batches
from voice_notify.plan import eligibility as planning
from voice_notify.plan.campaigns import load_campaign_config
from voice_notify.reasons import Reason

INCLUDE = Path(__file__).resolve().parents[2] / "include"
DAY = dt.date(2026, 11, 26)


@pytest.fixture(scope="module")
def composer() -> NoticeComposer:
    return NoticeComposer.load(INCLUDE)


@pytest.fixture(scope="module")
def config():
    return load_campaign_config(INCLUDE / "campaigns.yaml")


def _notice(notice_id: int = 1, **overrides) -> dict:
    return due_notice(notice_id, DAY, **overrides)


def test_an_eligible_notice_is_planned_with_speech_segments(composer, config) -> None:
    decision = planning.decide(_notice(), composer, config)
    assert decision.planned and decision.locale == "cmn"
    segments = [Segment.from_dict(s) for s in decision.segments]
    spoken = "".join(s.text for s in segments)
    assert "曾小明" in spoken and "人工智能" in spoken
    assert "三千二百八十元五角" in spoken
    assert not any(ch.isdigit() for ch in spoken)
    assert all(len(s.text) <= 200 for s in segments)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"voice_opt_out": True}, Reason.OPTED_OUT),
        ({"phone": "138-1234-56"}, Reason.INVALID_PHONE),
        ({"phone": None}, Reason.INVALID_PHONE),
        ({"notice_type": "loan_offer"}, Reason.UNKNOWN_NOTICE_TYPE),
        ({"notice_type": None}, Reason.UNKNOWN_NOTICE_TYPE),
        ({"variables": "{not json"}, Reason.INVALID_VARIABLES_JSON),
        (
            {"variables": json.dumps({"due_date": "2026-11-26", "card_tail": "1"})},
            "missing_variable",
        ),
        (
            {
                "variables": json.dumps(
                    {"amount": "三千块", "due_date": "2026-11-26", "card_tail": "1"}
                )
            },
            "invalid_variable",
        ),
    ],
)
def test_ineligible_notices_are_skipped_with_a_reason(composer, config, overrides, reason) -> None:
    decision = planning.decide(_notice(**overrides), composer, config)
    assert not decision.planned
    assert decision.reason_code == reason


def test_cantonese_and_english_customers_get_their_locale(composer, config) -> None:
    assert planning.decide(_notice(preferred_dialect="cantonese"), composer, config).locale == "yue"
    assert planning.decide(_notice(preferred_dialect="english"), composer, config).locale == "en"
    assert planning.decide(_notice(preferred_dialect="sichuan"), composer, config).locale == "cmn"


def test_the_look_ahead_window_depends_on_the_notice_type(config) -> None:
    repayment = config.notice_types["repayment_reminder"].lookahead_days
    inside = _notice(due_date=(DAY + dt.timedelta(days=repayment)).isoformat())
    outside = _notice(due_date=(DAY + dt.timedelta(days=repayment + 1)).isoformat())
    past = _notice(due_date=(DAY - dt.timedelta(days=1)).isoformat())
    assert planning.in_window(inside, DAY, config)
    assert not planning.in_window(outside, DAY, config)
    assert not planning.in_window(past, DAY, config)
    assert planning.in_window(_notice(notice_type="loan_offer", due_date="2030-01-01"), DAY, config)


def test_a_campaign_keeps_its_own_notice_types(composer, config) -> None:
    notices = [_notice(1), _notice(2, notice_type="pension_arrival"), _notice(3, notice_type="x")]
    decisions = planning.decide_all(notices, DAY, ("repayment_reminder",), composer, config)
    assert [d.notice_id for d in decisions] == [1, 3]


def test_a_replan_keeps_decisions_and_skips_newly_ineligible_rows(
    tmp_path, composer, config
) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    migrate.upgrade(engine)
    first = [planning.decide(_notice(i), composer, config) for i in (1, 2, 3)]
    with engine.begin() as conn:
        waiting = batches.record_decisions(conn, first, DAY)
        assert [r.notice_id for r in waiting] == [1, 2, 3]
        ledger.transition(conn, waiting[0].id, LedgerState.SYNTHESIZED, audio_key="a")
    # Notice 2's customer opted out before the re-run.
    second = [
        planning.decide(_notice(1), composer, config),
        planning.decide(_notice(2, voice_opt_out=True), composer, config),
        planning.decide(_notice(3), composer, config),
    ]
    with engine.begin() as conn:
        waiting = batches.record_decisions(conn, second, DAY)
        assert [r.notice_id for r in waiting] == [3]
        states = {r.notice_id: (r.state, r.reason_code) for r in ledger.rows_for_date(conn, DAY)}
    assert states == {
        1: ("synthesized", None),
        2: ("skipped", Reason.OPTED_OUT),
        3: ("planned", None),
    }


def test_batches_are_deterministic_and_bounded(tmp_path, composer, config) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    migrate.upgrade(engine)
    decisions = [planning.decide(_notice(i), composer, config) for i in range(1, 8)]
    with engine.begin() as conn:
        waiting = batches.record_decisions(conn, decisions, DAY)
    items = batches.batch_items(waiting, {d.notice_id: d for d in decisions}, DAY)
    chunks = batches.chunk(items, 3)
    assert [len(b) for b in chunks] == [3, 3, 1]
    again = batches.batch_items(waiting, {d.notice_id: d for d in decisions}, DAY)
    assert [i.to_json() for i in again] == [i.to_json() for i in items]
    assert len({i.seed for i in items}) == len(items)
    with pytest.raises(ValueError):
        batches.chunk(items, 0)


def test_a_consent_basis_needs_the_customers_consent(composer, config) -> None:
    from dataclasses import replace

    consent_based = replace(
        config,
        notice_types={
            **config.notice_types,
            "repayment_reminder": replace(
                config.notice_types["repayment_reminder"], consent_basis="consent"
            ),
        },
    )
    refused = planning.decide(_notice(), composer, consent_based)
    assert refused.reason_code == Reason.NO_CUSTOMER_CONSENT
    assert planning.decide(_notice(voice_consent=True), composer, consent_based).planned
    assert planning.decide(_notice(), composer, config).planned  # basis: contract


def test_every_notice_type_declares_a_legal_basis(tmp_path) -> None:
    text = (INCLUDE / "campaigns.yaml").read_text(encoding="utf-8")
    broken = tmp_path / "campaigns.yaml"
    broken.write_text(text.replace("consent_basis: legal_obligation", ""), encoding="utf-8")
    with pytest.raises(ValueError, match="consent_basis"):
        load_campaign_config(broken)
