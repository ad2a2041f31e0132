"""The registry's consent decisions, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from tests.voices.conftest import ALL_TYPES, DAY
from voice_notify.db import schema
from voice_notify.voices import registry as vp


def _profile(conn, profile_id, locales=("cmn",), types=ALL_TYPES, status=vp.ProfileStatus.ACTIVE):
    spec = vp.ProfileSpec(profile_id, f"speaker of {profile_id}", "cmn", locales, types)
    vp.upsert_profile(conn, spec, DAY, status)
    return spec


def _consent(
    conn,
    consent_id,
    profile_id,
    *,
    granted=dt.date(2026, 1, 1),
    expires=None,
    locales=("cmn",),
    types=ALL_TYPES,
):
    return vp.record_consent(
        conn,
        vp.ConsentRecord(
            consent_id=consent_id,
            profile_id=profile_id,
            consented_by=f"speaker of {profile_id}",
            granted_on=granted,
            expires_on=expires,
            notice_types=types,
            locales=locales,
            document_ref=f"dms://consents/{consent_id}",
        ),
    )


def test_valid_consent_allows_and_names_the_consent(registry: sa.Engine) -> None:
    with registry.begin() as conn:
        _profile(conn, "agent-a")
        assert _consent(conn, "c-a", "agent-a")
        assert not _consent(conn, "c-a", "agent-a")  # a consent id is stored once
        decision = vp.consent_for(conn, "agent-a", "repayment_reminder", "cmn", DAY)
    assert decision == vp.ConsentDecision(True, None, "agent-a", "c-a")


def test_each_refusal_has_its_reason(registry: sa.Engine) -> None:
    with registry.begin() as conn:
        _profile(conn, "no-consent")
        _profile(conn, "future")
        _consent(conn, "c-future", "future", granted=DAY + dt.timedelta(days=1))
        _profile(conn, "expiring")
        _consent(conn, "c-exp", "expiring", expires=DAY)
        _profile(conn, "narrow", locales=("cmn", "yue"))
        _consent(conn, "c-narrow", "narrow", types=("repayment_reminder",), locales=("cmn",))
        _profile(conn, "retired", status=vp.ProfileStatus.INACTIVE)
        _consent(conn, "c-retired", "retired")
        spec = _profile(conn, "denied")
        _consent(conn, "c-denied", "denied")
        vp.deny_profile(conn, spec, DAY, "denylist_voice")

        def reason(profile, notice_type="repayment_reminder", locale="cmn", on=DAY):
            decision = vp.consent_for(conn, profile, notice_type, locale, on)
            assert not decision.allowed
            return decision.reason_code, decision.consent_id

        assert reason("nobody") == ("voice_profile_unknown", None)
        assert reason("no-consent") == ("voice_consent_missing", None)
        assert reason("future") == ("voice_consent_missing", None)
        # Expiry is exclusive: valid the day before, expired on the day.
        assert reason("expiring") == ("voice_consent_expired", "c-exp")
        before = vp.consent_for(
            conn, "expiring", "repayment_reminder", "cmn", DAY - dt.timedelta(1)
        )
        assert before.allowed
        assert reason("narrow", notice_type="pension_arrival") == (
            "voice_consent_scope",
            "c-narrow",
        )
        # The profile speaks yue but the speaker consented to cmn only.
        assert reason("narrow", locale="yue") == ("voice_consent_scope", "c-narrow")
        # Exact locales: cmn does not cover a dialect.
        assert reason("narrow", locale="cmn-sichuan") == ("voice_consent_scope", "c-narrow")
        assert reason("retired") == ("voice_profile_inactive", None)
        assert reason("denied") == ("voice_profile_denied", None)
        # A denied profile cannot be re-activated.
        assert not vp.set_status(conn, "denied", vp.ProfileStatus.ACTIVE, "try")
        assert reason("denied") == ("voice_profile_denied", None)
    assert set(vp.REASON_CODES) >= {
        "voice_profile_unknown",
        "voice_consent_missing",
        "voice_consent_expired",
        "voice_consent_revoked",
        "voice_consent_scope",
        "voice_profile_denied",
    }


def test_revocation_takes_effect_on_the_next_plan_for_any_date(registry: sa.Engine) -> None:
    with registry.begin() as conn:
        _profile(conn, "agent-a")
        _profile(conn, "agent-b")
        _consent(conn, "c-a", "agent-a")
        _consent(conn, "c-b", "agent-b")
    with registry.connect() as conn:
        assert vp.choose_profile(conn, "policy_renewal", "cmn", DAY).profile_id == "agent-a"
    when = dt.datetime(2026, 11, 26, 9, 30, tzinfo=dt.UTC)
    with registry.begin() as conn:
        assert vp.revoke_consent(conn, "c-a", when, "speaker left the bank")
        assert not vp.revoke_consent(conn, "c-a", when, "again")
        assert not vp.revoke_consent(conn, "no-such-consent", when, "x")
    with registry.connect() as conn:
        # A backfill of an earlier date does not bring the voice back.
        earlier = vp.consent_for(conn, "agent-a", "policy_renewal", "cmn", DAY - dt.timedelta(30))
        assert (earlier.allowed, earlier.reason_code) == (False, "voice_consent_revoked")
        chosen = vp.choose_profile(conn, "policy_renewal", "cmn", DAY, preferred="agent-a")
        assert chosen == vp.ConsentDecision(True, None, "agent-b", "c-b")
        row = conn.execute(
            sa.select(schema.voice_consents).where(schema.voice_consents.c.consent_id == "c-a")
        ).one()
    assert row.revoked_at == dt.datetime(2026, 11, 26, 9, 30)
    assert row.revoked_reason == "speaker left the bank"


def test_a_renewed_consent_replaces_an_expired_one(registry: sa.Engine) -> None:
    with registry.begin() as conn:
        _profile(conn, "agent-a")
        _consent(
            conn, "c-2025", "agent-a", granted=dt.date(2025, 1, 1), expires=dt.date(2026, 1, 1)
        )
        _consent(conn, "c-2026", "agent-a", granted=dt.date(2026, 6, 1))
        decide = lambda on: vp.consent_for(conn, "agent-a", "pension_arrival", "cmn", on)  # noqa: E731
        assert decide(dt.date(2025, 6, 1)) == vp.ConsentDecision(True, None, "agent-a", "c-2025")
        assert decide(dt.date(2026, 3, 1)).reason_code == "voice_consent_expired"
        assert decide(DAY) == vp.ConsentDecision(True, None, "agent-a", "c-2026")


def test_choose_profile_is_deterministic_with_preferred_first(registry: sa.Engine) -> None:
    with registry.begin() as conn:
        for name in ("agent-c", "agent-a", "agent-b"):
            _profile(conn, name, locales=("cmn", "yue"))
            _consent(conn, f"c-{name}", name, locales=("cmn", "yue"))
        _profile(conn, "agent-en", locales=("en",))
        _consent(conn, "c-en", "agent-en", locales=("en",), expires=DAY)
    with registry.connect() as conn:
        picks = {vp.choose_profile(conn, "repayment_reminder", "yue", DAY) for _ in range(3)}
        assert picks == {vp.ConsentDecision(True, None, "agent-a", "c-agent-a")}
        preferred = vp.choose_profile(conn, "repayment_reminder", "cmn", DAY, preferred="agent-c")
        assert preferred.profile_id == "agent-c"
        # An unknown preferred voice falls back to the registry.
        fallback = vp.choose_profile(conn, "repayment_reminder", "cmn", DAY, preferred="ghost")
        assert fallback.profile_id == "agent-a"
        # Nobody speaks English today: the refusal that came closest (expired).
        none = vp.choose_profile(conn, "repayment_reminder", "en", DAY)
        assert (none.allowed, none.reason_code, none.profile_id) == (
            False,
            "voice_consent_expired",
            "agent-en",
        )


def test_choose_profile_with_an_empty_registry(registry: sa.Engine) -> None:
    with registry.connect() as conn:
        decision = vp.choose_profile(conn, "repayment_reminder", "cmn", DAY)
    assert decision == vp.ConsentDecision(False, "voice_profile_unknown", "", None)


def test_consent_book_answers_like_the_functions(registry: sa.Engine) -> None:
    with registry.begin() as conn:
        _profile(conn, "agent-a")
        _consent(conn, "c-a", "agent-a", types=("repayment_reminder",))
        book = vp.load_consent_book(conn)
        for notice_type in ALL_TYPES:
            assert book.consent_for("agent-a", notice_type, "cmn", DAY) == vp.consent_for(
                conn, "agent-a", notice_type, "cmn", DAY
            )


@pytest.mark.parametrize(
    "bad",
    [
        {"profile_id": "Bad Id"},
        {"speaker": " "},
        {"locales": ()},
    ],
)
def test_profile_spec_validation(bad) -> None:
    fields = {
        "profile_id": "agent-a",
        "speaker": "A",
        "language": "cmn",
        "locales": ("cmn",),
        "notice_types": ALL_TYPES,
    }
    with pytest.raises(ValueError):
        vp.ProfileSpec(**{**fields, **bad})


def test_consent_must_expire_after_it_is_granted() -> None:
    with pytest.raises(ValueError):
        vp.ConsentRecord("c", "a", "A", DAY, ALL_TYPES, ("cmn",), "doc", expires_on=DAY)
