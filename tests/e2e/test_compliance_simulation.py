"""A seeded, randomized simulation of two days of dialing over 10,000 customers.

The real plan/dial/reconcile code runs against a real SQLite CRM and ledger;
only the telephone network is replaced, by a recording gateway that answers
at once (some callees press the opt-out key). The invariants are then checked
from the gateway's own record, independently of the code under test: no call
outside calling hours in the customer's zone, none to an opted-out or
do-not-call number, none over a cap, none in a voice without valid consent.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
import sqlalchemy as sa

from voice_notify import ledger
from voice_notify.db import migrate, schema
from voice_notify.dial import dialer as dispatch
from voice_notify.dial import ratelimit
from voice_notify.gateway.base import CallRequest, CallState, CallStatus
from voice_notify.ledger import LedgerState
from voice_notify.plan import batches, compliance, voices
from voice_notify.plan import eligibility as planning
from voice_notify.plan.campaigns import load_campaign_config
from voice_notify.report import audit
from voice_notify.settle import outcomes as reconcile
from voice_notify.settle import writeback
from voice_notify.voices import registry as voice_profiles
from voice_notify_dev import demo_crm

CUSTOMERS = 10_000
DAY = dt.date(2026, 11, 26)
START = dt.datetime(2026, 11, 26, 0, 0, tzinfo=dt.UTC)
PASSES = 48 * 2  # every 30 minutes for two days
_PRODUCTION = load_campaign_config(
    Path(__file__).resolve().parents[2] / "include" / "campaigns.yaml"
)
# Every notice in a cloned agent voice, and none without a consent that covers it.
CONFIG = replace(
    _PRODUCTION,
    notice_types={
        name: replace(cfg, voice_profile="auto", standard_voice_fallback=False)
        for name, cfg in _PRODUCTION.notice_types.items()
    },
)
LOCALES = ["cmn", "cmn", "cmn", "yue", "en"]
ZONES = [
    "Asia/Shanghai",
    "Asia/Urumqi",
    "Asia/Hong_Kong",
    "Europe/London",
    "America/New_York",
    "Australia/Sydney",
    None,  # None: from the number's region
]
FOREIGN = {"Europe/London": "+447911{:06d}", "America/New_York": "+12127{:06d}"}


@dataclass
class RecordingGateway:
    """The telephone network: records every call and answers it at once."""

    rng: random.Random
    name: str = "recording"
    calls: list[dict] = field(default_factory=list)
    by_key: dict[str, CallStatus] = field(default_factory=dict)
    now: dt.datetime = START

    def place_call(self, request: CallRequest) -> CallStatus:
        if request.idempotency_key in self.by_key:
            return self.by_key[request.idempotency_key]
        roll = self.rng.random()
        state, key = (
            (CallState.COMPLETED, "9")
            if roll < 0.05
            else (CallState.NO_ANSWER, None)
            if roll < 0.2
            else (CallState.COMPLETED, None)
        )
        status = CallStatus(f"call-{len(self.calls)}", request.idempotency_key, state, key)
        self.by_key[request.idempotency_key] = status
        self.calls.append(
            {"to": request.to, "at": self.now, "notice_id": int(request.metadata["notice_id"])}
        )
        return status

    def find_call(self, idempotency_key, *, to=None, since=None):
        return self.by_key.get(idempotency_key)

    def call_status(self, call_id: str) -> CallStatus:
        return next(s for s in self.by_key.values() if s.call_id == call_id)


def _voices(conn: sa.Connection, rng: random.Random) -> None:
    """Agent voices whose consents are valid, expired, revoked, not yet granted or narrow."""
    types = sorted(CONFIG.notice_types)
    for n in range(16):
        profile_id = f"agent-{n:02d}"
        scope_types = tuple(rng.sample(types, rng.randint(1, len(types))))
        scope_locales = tuple(rng.sample(["cmn", "yue", "en"], rng.randint(1, 2)))
        voice_profiles.upsert_profile(
            conn,
            voice_profiles.ProfileSpec(profile_id, f"坐席{n}", "cmn", scope_locales, scope_types),
            DAY - dt.timedelta(days=30),
        )
        kind = n % 5  # 0 and 4 valid; 1 not yet granted; 2 expired; 3 revoked
        granted = DAY + dt.timedelta(days=3) if kind == 1 else DAY - dt.timedelta(days=30)
        expires = DAY - dt.timedelta(days=1) if kind == 2 else None
        consent_id = f"consent-{n:02d}"
        voice_profiles.record_consent(
            conn,
            voice_profiles.ConsentRecord(
                consent_id,
                profile_id,
                f"坐席{n}",
                granted,
                tuple(rng.sample(scope_types, 1)),
                scope_locales,
                f"dms://consents/{n}",
                expires,
            ),
        )
        if kind == 3:
            voice_profiles.revoke_consent(
                conn, consent_id, START - dt.timedelta(hours=1), "withdrawn"
            )


def _populate(engine: sa.Engine, rng: random.Random) -> dict[int, dict]:
    """Customers, notices planned with their voices, opt-outs and the do-not-call list."""
    demo_crm.create_schema(engine)
    migrate.upgrade(engine)
    customers, notices, decisions, blocked = [], [], [], []
    notice_id = 0
    for cid in range(1, CUSTOMERS + 1):
        zone = rng.choice(ZONES)
        phone = (
            FOREIGN[zone].format(cid % 1000)
            if zone in FOREIGN and rng.random() < 0.5
            else (f"1{rng.choice('3589')}{rng.randrange(10**9):09d}")
        )
        customers.append(
            {
                "id": cid,
                "name": "客户",
                "phone": phone,
                "time_zone": zone or "",
                "voice_opt_out": rng.random() < 0.05,
            }
        )
        if rng.random() < 0.03:
            blocked.append(phone)
        locale = rng.choice(LOCALES)
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            notice_id += 1
            notice_type = rng.choice(sorted(CONFIG.notice_types))
            notices.append(
                {
                    "id": notice_id,
                    "customer_id": cid,
                    "notice_type": notice_type,
                    "variables": "{}",
                    "due_date": DAY,
                }
            )
            decisions.append(planning.Decision(notice_id, cid, notice_type, locale, None))
    with engine.begin() as conn:
        conn.execute(demo_crm.customers.insert(), customers)
        conn.execute(demo_crm.notices.insert(), notices)
        _voices(conn, rng)
        book = voice_profiles.load_consent_book(conn)
        decisions = voices.assign_voices(decisions, book, CONFIG, DAY)
        waiting = batches.record_decisions(conn, decisions, DAY)
        by_notice = {d.notice_id: d for d in decisions}
        for row in waiting:
            audit.record_voice_choice(
                conn, row.id, row.notice_id, DAY, by_notice[row.notice_id].consent
            )
        conn.execute(
            schema.dispatch_ledger.update()
            .where(schema.dispatch_ledger.c.state == "planned")
            .values(state="synthesized", audio_key="audio/x.wav")
        )
        for phone in blocked:
            e164 = phone if phone.startswith("+") else "+86" + phone
            compliance.add_do_not_call(conn, e164, "regulator_list", START)
    skipped = [d.reason_code for d in decisions if not d.planned]
    assert skipped and set(skipped) <= set(voice_profiles.REASON_CODES), set(skipped)
    return {c["id"]: c for c in customers}


@pytest.mark.simulation
def test_two_days_of_dialing_never_break_the_rules(tmp_path: Path) -> None:
    rng = random.Random(20261126)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'sim.sqlite'}")
    customers = _populate(engine, rng)
    gateway = RecordingGateway(random.Random(7))
    opted_out_at: dict[int, dt.datetime] = {}
    with engine.connect() as conn:
        owner_of = dict(
            conn.execute(sa.select(demo_crm.notices.c.id, demo_crm.notices.c.customer_id)).all()
        )
    for n in range(PASSES):
        now = START + dt.timedelta(minutes=30 * n)
        gateway.now = now
        ctx = dispatch.DialContext(
            gateway=gateway,
            audio_url=lambda key: f"https://audio.example/{key}",
            config=CONFIG,
            now=lambda now=now: now,
            rate_limiter=ratelimit.RateLimiter(0),
        )
        with engine.connect() as conn:
            due = [
                r
                for r in ledger.rows_for_date(conn, DAY, [LedgerState.SYNTHESIZED])
                if r.next_attempt_at is None or r.next_attempt_at <= now.replace(tzinfo=None)
            ]
        dispatch.dial_rows(engine, engine, due, ctx)
        reconcile.settle_calls(engine, [DAY], gateway, CONFIG, now)
        with engine.connect() as conn:
            plan = writeback.load_write_back(conn, [DAY])
        # Opt-outs reach the CRM between passes (the full write-back runs at the end).
        writeback.write_back(engine, writeback.WriteBack([], [], plan.opt_outs))
        for opt_out in plan.opt_outs:
            opted_out_at.setdefault(owner_of[opt_out["notice_id"]], now)
    with engine.connect() as conn:
        writeback.write_back(engine, writeback.load_write_back(conn, [DAY]))

    calls = gateway.calls
    assert len(calls) > 5_000, "the simulation should place many calls"
    with engine.connect() as conn:
        dnc = set(conn.execute(sa.select(schema.do_not_call.c.phone_e164)).scalars())
        notice_types = dict(
            conn.execute(sa.select(demo_crm.notices.c.id, demo_crm.notices.c.notice_type)).all()
        )
        owner_of = dict(
            conn.execute(sa.select(demo_crm.notices.c.id, demo_crm.notices.c.customer_id)).all()
        )
    per_customer: dict[int, list[tuple[dt.datetime, str]]] = defaultdict(list)
    for call in calls:
        customer = customers[owner_of[call["notice_id"]]]
        # Calling hours, in the customer's zone (the CRM's, else the number's region).
        zone = compliance.customer_zone(customer["time_zone"], call["to"])
        local = call["at"].astimezone(zone).time()
        assert CONFIG.calling_hours.allows(local), (call, str(zone))
        assert not customer["voice_opt_out"]
        assert call["to"] not in dnc
        opted = opted_out_at.get(customer["id"])
        assert opted is None or call["at"] <= opted
        per_customer[customer["id"]].append((call["at"], notice_types[call["notice_id"]]))
    for customer_id, history in per_customer.items():
        _assert_within_caps(sorted(history), customer_id)
    _assert_called_only_in_consented_voices(engine, calls, notice_types)
    with engine.connect() as conn:
        states = ledger.count_by_state(conn, DAY)
        reasons = dict(
            conn.execute(
                sa.select(schema.dispatch_ledger.c.reason_code, sa.func.count()).group_by(
                    schema.dispatch_ledger.c.reason_code
                )
            ).all()
        )
    # The figures the closing note quotes (pytest -s shows them).
    print(f"\nsimulation: {CUSTOMERS} customers, {len(owner_of)} notices, {len(calls)} calls")
    print(f"  ledger states: {states}")
    print(f"  reasons: {dict(sorted((k or '-', v) for k, v in reasons.items()))}")


def _assert_called_only_in_consented_voices(engine, calls, notice_types) -> None:
    """Each call's voice had a consent valid on DAY, covering its notice type and locale."""
    with engine.connect() as conn:
        consents = {r.consent_id: r for r in conn.execute(sa.select(schema.voice_consents))}
        voices = {r.notice_id: r for r in conn.execute(sa.select(schema.notice_voice_audit))}
        locales = dict(
            conn.execute(
                sa.select(schema.dispatch_ledger.c.notice_id, schema.dispatch_ledger.c.locale)
            ).all()
        )
    for call in calls:
        voice = voices[call["notice_id"]]
        consent = consents[voice.consent_id]
        assert consent.profile_id == voice.voice_profile
        assert consent.granted_on <= DAY and (
            consent.expires_on is None or consent.expires_on > DAY
        )
        assert consent.revoked_at is None
        assert notice_types[call["notice_id"]] in json.loads(consent.notice_types)
        assert locales[call["notice_id"]] in json.loads(consent.locales)


def _assert_within_caps(history: list[tuple[dt.datetime, str]], customer_id: int) -> None:
    checks = [(CONFIG.caps, None)] + [(cfg.caps, name) for name, cfg in CONFIG.notice_types.items()]
    for caps, of_type in checks:
        times = [t for t, kind in history if of_type is None or kind == of_type]
        for span, limit in caps.windows():
            for i, start in enumerate(times):
                within = [t for t in times[i:] if t < start + span]
                assert len(within) <= limit, (customer_id, of_type, span, limit, within)


def test_zones_come_from_the_crm_then_the_number() -> None:
    assert compliance.customer_zone("Europe/London", "+8613812345678") == zoneinfo.ZoneInfo(
        "Europe/London"
    )
    assert compliance.customer_zone("", "+12025550123").key.startswith("America/")
    assert compliance.customer_zone("Not/AZone", "+8613812345678").key == "Asia/Shanghai"
