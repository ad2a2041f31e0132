"""The campaign report of a large date: how long ``load_report`` + ``render`` take.

Fills a ledger database (``--url``, default a SQLite file) with ``--notices`` ledger rows
of one date, a call attempt for each called notice (a second for a quarter of them), and
an audit row per planned notice with synthesis figures, then builds the report three
times and prints the build seconds (query, aggregate) and the page render seconds.

    python -m voice_notify_dev.bench_report --notices 100000 [--url postgresql+psycopg2://...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from voice_notify.db import migrate, schema
from voice_notify.db.sql import make_engine
from voice_notify.report.campaign import load_report
from voice_notify.report.html import render

DAY = dt.date(2026, 11, 26)
_TYPES = ("repayment_reminder", "appointment_confirmation", "pension_arrival", "policy_renewal")
_OUTCOMES = ("completed", "confirmed", "opted_out", "no_answer", "busy", "answering_machine")
_SKIPS = ("invalid_phone", "opted_out", "missing_variable", "voice_consent_scope")


def fill(engine: sa.Engine, notices: int, seed: int = 7) -> None:
    """``notices`` ledger rows of ``DAY`` with attempts and audit rows (bulk inserts)."""
    rng = random.Random(seed)
    now = dt.datetime(2026, 11, 26, 8)
    ledger, attempts, audit = [], [], []
    for n in range(1, notices + 1):
        skipped = rng.random() < 0.12
        outcome = None if skipped else rng.choice(_OUTCOMES)
        state = "skipped" if skipped else ("completed" if outcome in _OUTCOMES[:3] else "failed")
        ledger.append(
            {
                "id": n,
                "notice_id": n,
                "campaign_date": DAY,
                "customer_id": n,
                "notice_type": _TYPES[n % 4],
                "locale": ("cmn", "cmn", "yue", "en")[n % 4],
                "state": state,
                "reason_code": rng.choice(_SKIPS) if skipped else None,
                "outcome": outcome,
                "attempt": 1,
                "audio_key": None if skipped else f"audio/{n % 256:02x}/{n:064x}.wav",
                "batch_key": f"campaigns/{DAY}/all/batches/batch-{n // 500:04d}.jsonl",
                "created_at": now,
                "updated_at": now,
            }
        )
        if skipped:
            continue
        for attempt in (1, 2) if n % 4 == 0 else (1,):
            attempts.append(
                {
                    "ledger_id": n,
                    "notice_id": n,
                    "customer_id": n,
                    "campaign_date": DAY,
                    "attempt": attempt,
                    "idempotency_key": f"vn-{n}-{DAY}-{attempt}",
                    "gateway": "simulator",
                    "call_id": f"c-{n}-{attempt}",
                    "outcome": outcome,
                    "dialing_started_at": now,
                }
            )
        audit.append(
            {
                "ledger_id": n,
                "notice_id": n,
                "campaign_date": DAY,
                "voice_profile": f"agent-{n % 5}",
                "emotion": ("normal", "warm", "serious")[n % 3],
                "engine": "cosyvoice3",
                "fallback": n % 40 == 0,
                "resumed": False,
                "synthesis_status": "ok",
                "synth_seconds": 1.5,
                "engine_seconds": 1.2,
                "speech_audio_s": 22.0,
                "cached_audio_s": 6.0,
                "duration_s": 24.0,
                "updated_at": now,
            }
        )
    with engine.begin() as conn:
        for table, rows in (
            (schema.dispatch_ledger, ledger),
            (schema.call_attempts, attempts),
            (schema.notice_voice_audit, audit),
        ):
            for start in range(0, len(rows), 10000):
                conn.execute(table.insert(), rows[start : start + 10000])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notices", type=int, default=100_000)
    parser.add_argument("--url", default=None, help="an empty ledger database (default: SQLite)")
    args = parser.parse_args(argv)
    url = args.url or f"sqlite:///{Path(tempfile.mkdtemp()) / 'ledger.sqlite'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    started = time.perf_counter()
    fill(engine, args.notices)
    print(f"filled {args.notices:,} ledger rows in {time.perf_counter() - started:.1f} s")
    for run in range(3):
        started = time.perf_counter()
        with engine.connect() as conn:
            report = load_report(conn, DAY)
        built = time.perf_counter() - started
        started = time.perf_counter()
        page = render(report)
        rendered = time.perf_counter() - started
        print(
            f"run {run + 1}: report of {report['notices']:,} notices built in {built:.2f} s, "
            f"page rendered in {rendered:.2f} s ({len(page):,} bytes), "
            f"{engine.dialect.name}"
        )
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
