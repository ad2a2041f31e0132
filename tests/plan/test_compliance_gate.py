"""The compliance gate on its own: calling hours in the customer's zone, caps, zones."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from voice_notify.plan import compliance
from voice_notify.plan.campaigns import CallingHours, Caps
from voice_notify.plan.compliance import GateResult, PastAttempt
from voice_notify.reasons import Reason

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
HOURS = CallingHours(dt.time(8), dt.time(21), (dt.time(12), dt.time(14)))


def _utc(local: str, zone: zoneinfo.ZoneInfo = SHANGHAI) -> dt.datetime:
    return dt.datetime.fromisoformat(local).replace(tzinfo=zone).astimezone(dt.UTC)


@pytest.mark.parametrize(
    ("local", "kind", "until_local"),
    [
        ("2026-11-26 09:30", GateResult.ALLOW, None),
        ("2026-11-26 07:59", GateResult.WAIT, "2026-11-26 08:00"),
        ("2026-11-26 12:30", GateResult.WAIT, "2026-11-26 14:00"),  # the quiet break
        ("2026-11-26 20:59", GateResult.ALLOW, None),
        ("2026-11-26 21:00", GateResult.WAIT, "2026-11-27 08:00"),  # tomorrow's window
        ("2026-11-26 23:30", GateResult.WAIT, "2026-11-27 08:00"),
    ],
)
def test_calling_hours_are_the_customers_local_time(local, kind, until_local) -> None:
    verdict = compliance.hours_verdict(HOURS, _utc(local), SHANGHAI)
    assert verdict.kind is kind
    if until_local is not None:
        assert verdict.reason == Reason.OUTSIDE_CALLING_HOURS
        expected = _utc(until_local).replace(tzinfo=None)
        assert verdict.until == expected


def test_the_same_instant_is_allowed_in_one_zone_and_waits_in_another() -> None:
    now = _utc("2026-11-26 09:00")  # 09:00 in Beijing is 01:00 in London
    assert compliance.hours_verdict(HOURS, now, SHANGHAI).allowed
    london = compliance.hours_verdict(HOURS, now, zoneinfo.ZoneInfo("Europe/London"))
    assert london.kind is GateResult.WAIT


def _attempts(*minutes_ago: float, now: dt.datetime, notice_type: str = "repayment_reminder"):
    naive = now.astimezone(dt.UTC).replace(tzinfo=None)
    return [
        PastAttempt(naive - dt.timedelta(minutes=m), notice_type, f"k{i}")
        for i, m in enumerate(minutes_ago)
    ]


def test_a_cap_waits_until_its_oldest_counted_attempt_ages_out() -> None:
    now = _utc("2026-11-26 10:00")
    caps = Caps(per_hour=2)
    history = _attempts(50, 10, now=now)
    verdict = compliance.caps_verdict(caps, Caps(), history, "repayment_reminder", now)
    assert verdict.kind is GateResult.WAIT and verdict.reason == Reason.CAP_REACHED
    # The attempt 50 minutes ago leaves the hour in 10 minutes.
    assert verdict.until == now.replace(tzinfo=None) + dt.timedelta(minutes=10)
    one_left = compliance.caps_verdict(caps, Caps(), history[1:], "repayment_reminder", now)
    assert one_left.allowed


def test_type_caps_count_only_attempts_of_that_type() -> None:
    now = _utc("2026-11-26 10:00")
    type_caps = Caps(per_day=1)
    other = _attempts(30, now=now, notice_type="policy_renewal")
    assert compliance.caps_verdict(
        Caps(), type_caps, other, "appointment_confirmation", now
    ).allowed
    same = _attempts(30, now=now, notice_type="appointment_confirmation")
    held = compliance.caps_verdict(Caps(), type_caps, same, "appointment_confirmation", now)
    assert held.kind is GateResult.WAIT


def test_the_fullest_window_decides_when_several_are_full() -> None:
    now = _utc("2026-11-26 10:00")
    caps = Caps(per_minute=1, per_hour=2)
    history = _attempts(40, 0.5, now=now)
    verdict = compliance.caps_verdict(caps, Caps(), history, "repayment_reminder", now)
    # The minute frees in 30 s, the hour in 20 min: the call waits for both.
    assert verdict.until == now.replace(tzinfo=None) + dt.timedelta(minutes=20)


@pytest.mark.parametrize(
    ("crm_zone", "number", "expected"),
    [
        ("Asia/Urumqi", "+8613812345678", "Asia/Urumqi"),  # the CRM's zone wins
        (None, "+8613812345678", "Asia/Shanghai"),  # else the number's region
        (None, "+442079460000", "Europe/London"),
        ("Asia", "+442079460000", "Europe/London"),  # a tzdata folder, not a zone
        ("Not/AZone", None, "Asia/Shanghai"),
        ("../../etc/passwd", None, "Asia/Shanghai"),
        ("", None, "Asia/Shanghai"),
    ],
)
def test_customer_zone_falls_back_from_bad_crm_values(crm_zone, number, expected) -> None:
    assert compliance.customer_zone(crm_zone, number).key == expected
