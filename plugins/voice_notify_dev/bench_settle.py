"""Benchmark: settling 100,000 ended calls in the ledger (PostgreSQL), bulk vs one by one.

``python -m voice_notify_dev.bench_settle`` (``make bench-settle``). Creates a scratch
database on ``VOICE_NOTIFY_BENCH_POSTGRES_URL`` (default: this machine's PostgreSQL),
fills the ledger with N calls in ``dialed`` and their terminal callbacks (a mix of
answered, confirmed, opted out, busy and unanswered calls; busy ones are redialled), then
measures in the same run:

- the naive path: one transaction per call (the attempt, then the ledger row, each a
  conditional UPDATE), on a slice of the calls, scaled to N;
- the path the pipeline uses (``outcomes.settle_calls``): the open calls and their
  callbacks read in chunks, one conditional executemany per chunk.

It prints both, the ratio, and the target (100,000 outcomes settled in <= 60 s beside
gateway latency: callbacks are stored, nothing is polled).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
import uuid

import sqlalchemy as sa

from voice_notify.db import migrate, schema
from voice_notify.db.sql import make_engine
from voice_notify.gateway.base import CallStatus
from voice_notify.plan.campaigns import load_campaign_config
from voice_notify.settings import get_settings
from voice_notify.settle import outcomes

DEFAULT_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
DAY = dt.date(2026, 11, 26)
NOW = dt.datetime(2026, 11, 26, 4, 0, tzinfo=dt.UTC)
# (terminal callback kind, key pressed) by call: answered, keys, busy, no answer, failed.
_ENDINGS = [
    ("completed", None),
    ("completed", "1"),
    ("completed", "9"),
    ("busy", None),
    ("no_answer", None),
    ("failed", None),
]


def _seed(engine: sa.Engine, n: int, offset: int = 0) -> None:
    stamp = dt.datetime(2026, 11, 26, 2, 0)
    types = ["repayment_reminder", "policy_renewal", "pension_arrival"]
    ledger_rows, attempts, events = [], [], []
    for i in range(offset + 1, offset + n + 1):
        call_id = f"call-{i}"
        key = f"vn-{i}-2026-11-26-1"
        kind, pressed = _ENDINGS[i % len(_ENDINGS)]
        ledger_rows.append(
            {
                "id": i,
                "notice_id": i,
                "campaign_date": DAY,
                "customer_id": i,
                "notice_type": types[i % len(types)],
                "locale": "cmn",
                "state": "dialed",
                "attempt": 1,
                "idempotency_key": key,
                "call_id": call_id,
                "created_at": stamp,
                "updated_at": stamp,
            }
        )
        attempts.append(
            {
                "ledger_id": i,
                "notice_id": i,
                "customer_id": i,
                "campaign_date": DAY,
                "attempt": 1,
                "idempotency_key": key,
                "call_id": call_id,
                "dialing_started_at": stamp,
                "dialed_at": stamp,
            }
        )
        events.append(
            {
                "call_id": call_id,
                "kind": "ringing",
                "sequence": 1,
                "idempotency_key": key,
                "received_at": stamp,
            }
        )
        if pressed:
            events.append(
                {
                    "call_id": call_id,
                    "kind": "digits",
                    "sequence": 2,
                    "key_pressed": pressed,
                    "received_at": stamp,
                }
            )
        events.append(
            {
                "call_id": call_id,
                "kind": kind,
                "sequence": 3,
                "idempotency_key": key,
                "duration_s": 30.0,
                "received_at": stamp,
            }
        )
    blank = {"idempotency_key": None, "key_pressed": None, "duration_s": None}
    events = [{**blank, **event} for event in events]
    with engine.begin() as conn:
        for table, rows in (
            (schema.dispatch_ledger, ledger_rows),
            (schema.call_attempts, attempts),
            (schema.call_events, events),
        ):
            for start in range(0, len(rows), 10_000):
                conn.execute(table.insert(), rows[start : start + 10_000])


def _naive(engine: sa.Engine, config, limit: int) -> int:
    """One transaction per call, two conditional UPDATEs, as settling worked before."""
    table, tries = schema.dispatch_ledger, schema.call_attempts
    with engine.connect() as conn:
        rows = outcomes.open_calls(conn, [DAY])[:limit]
        events = outcomes._events_by_call(conn, [r.call_id for r in rows])
    stamp = NOW.replace(tzinfo=None)
    for row in rows:
        status: CallStatus | None = outcomes.status_from_events(row.call_id, events[row.call_id])
        assert status is not None
        outcome = outcomes.outcome_of(status, config.confirm_key, config.optout_key)
        with engine.begin() as conn:
            conn.execute(
                tries.update()
                .where(tries.c.ledger_id == row.id, tries.c.attempt == row.attempt)
                .values(outcome=outcome, key_pressed=status.key_pressed, ended_at=stamp)
            )
            conn.execute(
                table.update()
                .where(table.c.id == row.id, table.c.state == "dialed")
                .values(state="completed", outcome=outcome, ended_at=stamp, updated_at=stamp)
            )
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notices", type=int, default=100_000)
    parser.add_argument("--naive-sample", type=int, default=2_000)
    args = parser.parse_args(argv)
    server = sa.make_url(os.environ.get("VOICE_NOTIFY_BENCH_POSTGRES_URL", DEFAULT_URL))
    name = f"vn_bench_settle_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(server.set(database=name))
    config = load_campaign_config(get_settings().include_dir / "campaigns.yaml")
    try:
        migrate.upgrade(engine)
        sample = min(args.naive_sample, args.notices)
        # The naive path on its own rows (ids past N), so both paths start from 'dialed'.
        _seed(engine, sample, offset=10 * args.notices)
        started = time.perf_counter()
        done = _naive(engine, config, sample)
        naive_s = time.perf_counter() - started
        _seed(engine, args.notices)
        started = time.perf_counter()
        counts = outcomes.settle_calls(engine, [DAY], None, config, NOW)
        bulk_s = time.perf_counter() - started
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    naive_scaled = naive_s / done * args.notices
    print(f"settle {args.notices:,} ended calls (PostgreSQL, callbacks stored)")
    print(
        f"  naive, one transaction per call: {done:,} in {naive_s:.2f} s "
        f"-> {naive_scaled:.1f} s scaled to {args.notices:,}"
    )
    print(
        f"  set-based (settle_calls):        {counts.settled:,} in {bulk_s:.2f} s "
        f"({counts.settled / bulk_s:,.0f}/s), redials {counts.redials:,}"
    )
    print(
        f"  speed-up: {naive_scaled / bulk_s:.1f}x; target <= 60 s: "
        f"{'met' if bulk_s <= 60 else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
