"""Caps under parallelism: four dial tasks at once, each dialling its own batch, on
customers who have a notice in every batch. No customer gets more calls than the cap."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import replace

import sqlalchemy as sa

from tests.dial.test_dialer import DAY, DEMO_CONFIG, _crm, _ctx, _synthesized
from voice_notify import ledger
from voice_notify.db import schema
from voice_notify.db.sql import make_engine
from voice_notify.dial import dialer
from voice_notify.gateway.http import SimulatorGateway
from voice_notify.plan.campaigns import Caps
from voice_notify.reasons import Reason

CUSTOMERS = 12
BATCHES = 4  # one notice of every customer in each batch


def _stock(engine: sa.Engine) -> dict[int, list[sa.Row]]:
    """Customers 1..12, each with a notice in each of four batches; rows by batch."""
    notices = CUSTOMERS * BATCHES
    _crm(engine, n=notices)
    _synthesized(engine, range(1, notices + 1))
    owner = {n: (n - 1) % CUSTOMERS + 1 for n in range(1, notices + 1)}
    batch = {n: (n - 1) // CUSTOMERS for n in range(1, notices + 1)}
    table = schema.dispatch_ledger
    with engine.begin() as conn:
        for notice, customer in owner.items():
            conn.execute(
                table.update()
                .where(table.c.notice_id == notice)
                .values(customer_id=customer, batch_key=f"batch-{batch[notice]}")
            )
            conn.execute(
                sa.text("UPDATE notices SET customer_id = :c WHERE id = :n"),
                {"c": customer, "n": notice},
            )
        rows = ledger.rows_for_date(conn, DAY)
    by_batch: dict[int, list[sa.Row]] = {}
    for row in rows:
        by_batch.setdefault(int(row.batch_key.rsplit("-", 1)[1]), []).append(row)
    return by_batch


def test_four_parallel_dial_tasks_never_exceed_a_cap(db_url, simulator, audio_url) -> None:
    setup = make_engine(db_url)
    by_batch = _stock(setup)
    gateway = SimulatorGateway(simulator.url)
    config = replace(DEMO_CONFIG, caps=Caps(per_minute=1, per_hour=5))
    results: dict[int, dialer.DialCounts] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(BATCHES)

    def dial_task(batch: int) -> None:
        # Its own engine (its own connections), as a task on another worker has.
        engine = make_engine(db_url)
        try:
            start.wait(timeout=30)
            results[batch] = dialer.dial_rows(
                engine, engine, by_batch[batch], _ctx(gateway, audio_url, config=config)
            )
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=dial_task, args=(b,)) for b in range(BATCHES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert errors == []
    with setup.connect() as conn:
        attempts = conn.execute(sa.select(schema.call_attempts.c.customer_id)).scalars().all()
    per_customer = Counter(attempts)
    # The per-minute cap of 1: exactly one call per customer, whichever task won.
    assert per_customer == Counter({c: 1 for c in range(1, CUSTOMERS + 1)})
    assert sum(r.dialed for r in results.values()) == CUSTOMERS
    waited = sum(r.reasons.get(Reason.CAP_REACHED, 0) for r in results.values())
    assert waited == CUSTOMERS * (BATCHES - 1)
    setup.dispose()
