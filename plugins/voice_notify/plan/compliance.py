"""The compliance gate: may this customer be called now?

One set of rules, used when a notice is planned and again just before it is
dialled (time has passed: the customer may have opted out, the clock may have
left calling hours, other campaigns may have used up the caps). Each check
answers allow, wait (with the earliest time worth trying again) or skip (with
a reason code). Calling hours are real time in the customer's zone: a call
happens now, whatever the run's logical date.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

import phonenumbers
import sqlalchemy as sa
from phonenumbers import timezone as phone_timezone

from voice_notify.db import schema
from voice_notify.db.sql import insert_ignoring_duplicates
from voice_notify.plan.campaigns import CallingHours, Caps
from voice_notify.reasons import Reason

DEFAULT_ZONE = "Asia/Shanghai"


class GateResult(StrEnum):
    """What the compliance gate answers for one customer, now."""

    ALLOW = "allow"
    WAIT = "wait"  # until ``Verdict.until``: calling hours or a cap
    SKIP = "skip"  # for good, with ``Verdict.reason``


@dataclass(frozen=True)
class Verdict:
    """``allow``, ``wait`` until a UTC time, or ``skip`` with a reason code."""

    kind: GateResult
    reason: str | None = None
    until: dt.datetime | None = None  # naive UTC, for wait

    @property
    def allowed(self) -> bool:
        return self.kind is GateResult.ALLOW


ALLOW = Verdict(GateResult.ALLOW)


def skip(reason: str) -> Verdict:
    return Verdict(GateResult.SKIP, reason)


def wait(reason: str, until: dt.datetime) -> Verdict:
    return Verdict(GateResult.WAIT, reason, until.astimezone(dt.UTC).replace(tzinfo=None))


def customer_zone(crm_time_zone: str | None, e164: str | None) -> zoneinfo.ZoneInfo:
    """The customer's zone: the CRM's if valid, else the number's region, else Beijing time."""
    if crm_time_zone:
        try:
            return zoneinfo.ZoneInfo(crm_time_zone)
        # OSError: a name that is a tzdata folder ("Asia") or otherwise unreadable.
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            pass
    if e164:
        try:
            zones = phone_timezone.time_zones_for_number(phonenumbers.parse(e164))
        except phonenumbers.NumberParseException:
            zones = ()
        for name in zones:
            try:
                return zoneinfo.ZoneInfo(name)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                continue
    return zoneinfo.ZoneInfo(DEFAULT_ZONE)


def hours_verdict(hours: CallingHours, now_utc: dt.datetime, zone: zoneinfo.ZoneInfo) -> Verdict:
    """Within calling hours in the customer's zone, or wait for the next window."""
    local = now_utc.astimezone(zone)
    if hours.allows(local.time()):
        return ALLOW
    return wait(Reason.OUTSIDE_CALLING_HOURS, hours.next_start(local))


def caps_verdict(
    global_caps: Caps,
    type_caps: Caps,
    history: Sequence[PastAttempt],
    notice_type: str,
    now_utc: dt.datetime,
) -> Verdict:
    """Within the customer's caps, or wait until the fullest window frees a slot.

    ``history`` holds the customer's earlier attempts across campaigns; type
    caps count only attempts of the same notice type.
    """
    now = now_utc.astimezone(dt.UTC).replace(tzinfo=None)
    until: dt.datetime | None = None
    for caps, of_type in ((global_caps, None), (type_caps, notice_type)):
        for span, limit in caps.windows():
            starts = sorted(
                a.started
                for a in history
                if a.started > now - span and (of_type is None or a.notice_type == of_type)
            )
            if len(starts) >= limit:
                # The window frees a slot when its oldest counted attempt ages out.
                frees_at = starts[len(starts) - limit] + span
                until = frees_at if until is None else max(until, frees_at)
    if until is None:
        return ALLOW
    return wait(Reason.CAP_REACHED, until.replace(tzinfo=dt.UTC))


@dataclass(frozen=True)
class PastAttempt:
    started: dt.datetime  # naive UTC
    notice_type: str | None
    idempotency_key: str


def recent_attempts(
    conn: sa.Connection, customer_ids: Iterable[int], since: dt.datetime
) -> dict[int, list[PastAttempt]]:
    """Each customer's call attempts since ``since`` (naive UTC), across campaigns."""
    ids = sorted({c for c in customer_ids if c is not None})
    history: dict[int, list[PastAttempt]] = defaultdict(list)
    if not ids:
        return history
    attempts, rows = schema.call_attempts, schema.dispatch_ledger
    query = (
        sa.select(
            attempts.c.customer_id,
            attempts.c.dialing_started_at,
            rows.c.notice_type,
            attempts.c.idempotency_key,
        )
        .join(rows, rows.c.id == attempts.c.ledger_id)
        .where(attempts.c.customer_id.in_(ids), attempts.c.dialing_started_at >= since)
    )
    for customer_id, started, notice_type, key in conn.execute(query):
        history[customer_id].append(PastAttempt(started, notice_type, key))
    return history


def do_not_call_numbers(conn: sa.Connection, numbers: Iterable[str]) -> set[str]:
    """Which of these E.164 numbers are on the do-not-call list."""
    wanted = sorted(set(numbers))
    if not wanted:
        return set()
    table = schema.do_not_call
    return set(
        conn.execute(sa.select(table.c.phone_e164).where(table.c.phone_e164.in_(wanted))).scalars()
    )


def add_do_not_call(conn: sa.Connection, e164: str, reason: str, when: dt.datetime) -> None:
    """Put a number on the do-not-call list (no-op if it is there)."""
    stmt = insert_ignoring_duplicates(conn, schema.do_not_call, ("phone_e164",))
    conn.execute(
        stmt, {"phone_e164": e164, "reason": reason, "added_at": when.replace(tzinfo=None)}
    )


def ensure_customer_locks(engine: sa.Engine, customer_ids: Iterable[int | None]) -> None:
    """Create the lock rows these customers lack, each in a transaction of its own.

    Apart from the dial's transaction because concurrent inserts of new rows take gap
    locks on MariaDB, where two dial tasks would deadlock; an existing row is left alone.
    """
    wanted = sorted({c for c in customer_ids if c is not None})
    if not wanted:
        return
    table = schema.customer_dial_locks
    with engine.connect() as conn:
        present = set(
            conn.execute(
                sa.select(table.c.customer_id).where(table.c.customer_id.in_(wanted))
            ).scalars()
        )
    created = dt.datetime(1970, 1, 1)
    for customer_id in wanted:
        if customer_id in present:
            continue
        with engine.begin() as conn:
            conn.execute(
                insert_ignoring_duplicates(conn, table, ("customer_id",)),
                {"customer_id": customer_id, "locked_at": created},
            )


def lock_customer(conn: sa.Connection, customer_id: int, when: dt.datetime) -> None:
    """Hold the customer's lock until ``conn``'s transaction ends.

    An UPDATE of the customer's lock row: a row lock on PostgreSQL and MariaDB, the
    database's write lock on SQLite. Reads after it see every attempt a parallel dial
    committed first; one that comes later waits here for this one to commit.
    """
    table = schema.customer_dial_locks
    updated = conn.execute(
        table.update().where(table.c.customer_id == customer_id).values(locked_at=when)
    ).rowcount
    if updated != 1:
        raise RuntimeError(f"no dial lock row for customer {customer_id}: ensure_customer_locks")


def opted_out_by_key(conn: sa.Connection, customer_id: int, optout_key: str) -> bool:
    """Whether the customer pressed the opt-out key in a call whose end is not written back
    yet (the CRM's flag follows at write-back; until then the key itself decides): in a
    callback (``call_events``), or in a polled or settled outcome (``call_attempts``)."""
    attempts, events = schema.call_attempts, schema.call_events
    by_callback = (
        sa.select(sa.literal(1))
        .select_from(attempts.join(events, events.c.call_id == attempts.c.call_id))
        .where(attempts.c.customer_id == customer_id, events.c.key_pressed == optout_key)
        .limit(1)
    )
    by_outcome = (
        sa.select(sa.literal(1))
        .where(
            attempts.c.customer_id == customer_id,
            sa.or_(attempts.c.key_pressed == optout_key, attempts.c.outcome == "opted_out"),
        )
        .limit(1)
    )
    return (
        conn.execute(by_callback).first() is not None
        or conn.execute(by_outcome).first() is not None
    )
