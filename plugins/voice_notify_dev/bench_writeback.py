"""Benchmark: CRM write-back of 100,000 call outcomes into PostgreSQL.

``python -m voice_notify_dev.bench_writeback`` (``make bench-writeback``). Creates a
scratch database on the server named by ``VOICE_NOTIFY_BENCH_POSTGRES_URL``
(default: this machine's PostgreSQL), fills a demo CRM with N notices, then
measures in the same run:

- the naive path: one transaction per outcome, one statement at a time, on a
  slice of the outcomes (a full naive run takes minutes), scaled to N;
- the bulk path the pipeline uses (``writeback.write_back``) on all N.

It prints both, the ratio, and the targets (bulk <= 30 s, >= 20x naive).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
import uuid

import sqlalchemy as sa

from voice_notify.db.sql import make_engine
from voice_notify.settle import writeback
from voice_notify_dev import demo_crm

DEFAULT_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
DAY = dt.date(2026, 11, 26)


def _plan(n: int) -> writeback.WriteBack:
    started = dt.datetime(2026, 11, 26, 2, 0)
    outcomes = ["completed", "confirmed", "no_answer", "busy", "opted_out", "call_failed"]
    attempts, statuses, opt_outs = [], [], []
    for i in range(1, n + 1):
        outcome = outcomes[i % len(outcomes)]
        attempts.append(
            {
                "notice_id": i,
                "campaign_date": DAY,
                "attempt_no": 1,
                "call_id": f"call-{i}",
                "outcome": outcome,
                "key_pressed": "9" if outcome == "opted_out" else None,
                "audio_key": f"audio/{i % 256:02x}/{i:064x}.wav",
                "dialed_at": started,
                "ended_at": started + dt.timedelta(seconds=40),
            }
        )
        delivered = outcome in ("completed", "confirmed", "opted_out")
        statuses.append(
            {
                "notice_id": i,
                "status": "delivered" if delivered else "undelivered",
                "status_reason": outcome,
                "status_updated_at": started,
            }
        )
        if outcome == "opted_out":
            opt_outs.append({"notice_id": i})
    return writeback.WriteBack(attempts, statuses, opt_outs)


def _fill_crm(engine: sa.Engine, n: int) -> None:
    demo_crm.create_schema(engine)
    with engine.begin() as conn:
        conn.execute(
            demo_crm.customers.insert(),
            [{"id": i, "name": "张三", "phone": "13812345678"} for i in range(1, n + 1)],
        )
        conn.execute(
            demo_crm.notices.insert(),
            [
                {
                    "id": i,
                    "customer_id": i,
                    "notice_type": "pension_arrival",
                    "variables": json.dumps({"amount": "100"}),
                    "due_date": DAY,
                }
                for i in range(1, n + 1)
            ],
        )


def _reset(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM contact_attempts"))
        conn.execute(sa.text("UPDATE notices SET status = 'due', status_reason = NULL"))
        conn.execute(sa.text("UPDATE customers SET voice_opt_out = FALSE"))


def _naive(engine: sa.Engine, plan: writeback.WriteBack) -> None:
    """The path the bulk one replaces: per outcome, a transaction and one statement per row."""
    from sqlalchemy.dialects.postgresql import insert

    attempts_table = demo_crm.contact_attempts
    upsert = insert(attempts_table)
    upsert = upsert.on_conflict_do_update(
        constraint="uq_contact_attempt",
        set_={c: upsert.excluded[c] for c in ("call_id", "outcome", "key_pressed", "ended_at")},
    )
    status = (
        demo_crm.notices.update()
        .where(demo_crm.notices.c.id == sa.bindparam("notice_id"))
        .where(demo_crm.notices.c.status == "due")
        .values(
            status=sa.bindparam("status"),
            status_reason=sa.bindparam("status_reason"),
            status_updated_at=sa.bindparam("status_updated_at"),
        )
    )
    opt_out = (
        demo_crm.customers.update()
        .where(demo_crm.customers.c.id == sa.bindparam("notice_id"))
        .values(voice_opt_out=True)
    )
    opted = {o["notice_id"] for o in plan.opt_outs}
    for attempt, notice in zip(plan.attempts, plan.statuses, strict=True):
        with engine.begin() as conn:
            conn.execute(upsert, attempt)
            conn.execute(status, notice)
            if attempt["notice_id"] in opted:
                conn.execute(opt_out, {"notice_id": attempt["notice_id"]})


def run(server_url: str, n: int, naive_n: int) -> dict[str, float]:
    server = sa.make_url(server_url)
    name = f"vn_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(server.set(database=name))
    try:
        _fill_crm(engine, n)
        plan = _plan(n)
        naive_slice = writeback.WriteBack(
            plan.attempts[:naive_n],
            plan.statuses[:naive_n],
            [o for o in plan.opt_outs if o["notice_id"] <= naive_n],
        )
        started = time.perf_counter()
        _naive(engine, naive_slice)
        naive_s = time.perf_counter() - started
        _reset(engine)
        started = time.perf_counter()
        counts = writeback.write_back(engine, plan)
        bulk_s = time.perf_counter() - started
        with engine.connect() as conn:
            written = conn.execute(sa.text("SELECT count(*) FROM contact_attempts")).scalar()
            settled = conn.execute(
                sa.text("SELECT count(*) FROM notices WHERE status <> 'due'")
            ).scalar()
        if written != n or settled != n or counts["attempts"] != n:
            raise RuntimeError(f"bulk write-back incomplete: {written} attempts, {settled} notices")
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    naive_scaled = naive_s * n / naive_n
    return {
        "outcomes": n,
        "bulk_s": bulk_s,
        "bulk_rows_per_s": n / bulk_s,
        "naive_slice": naive_n,
        "naive_slice_s": naive_s,
        "naive_scaled_s": naive_scaled,
        "speedup": naive_scaled / bulk_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outcomes", type=int, default=100_000)
    parser.add_argument("--naive-slice", type=int, default=5_000)
    args = parser.parse_args(argv)
    url = os.environ.get("VOICE_NOTIFY_BENCH_POSTGRES_URL", DEFAULT_URL)
    figures = run(url, args.outcomes, min(args.naive_slice, args.outcomes))
    print(f"write-back of {figures['outcomes']:,} outcomes into PostgreSQL")
    print(
        f"  bulk (pipeline):   {figures['bulk_s']:.2f} s  "
        f"({figures['bulk_rows_per_s']:,.0f} outcomes/s)   target <= 30 s"
    )
    print(
        f"  row by row:        {figures['naive_slice_s']:.2f} s for {figures['naive_slice']:,}"
        f" -> {figures['naive_scaled_s']:.1f} s scaled to {figures['outcomes']:,}"
    )
    print(f"  speed-up:          {figures['speedup']:.1f}x   target >= 20x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
