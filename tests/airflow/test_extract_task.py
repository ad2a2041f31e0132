"""The extract task on each CRM backend: the due notices streamed from a server-side cursor
into S3 as JSON lines, every one of them, whatever the size."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from voice_notify.airflow import hooks, storage, tasks
from voice_notify_dev import demo_crm, localrun

DAY = dt.date(2026, 11, 26)


@pytest.fixture
def crm_connection(task_connections, db_engine, db_url, monkeypatch: pytest.MonkeyPatch):
    from voice_notify.settings import get_settings

    suffix = uuid.uuid4().hex[:8]
    monkeypatch.setenv(f"AIRFLOW_CONN_CRM_{suffix.upper()}", localrun.crm_connection_json(db_url))
    monkeypatch.setenv("VOICE_NOTIFY_CRM_CONN_ID", f"crm_{suffix}")
    get_settings.cache_clear()
    yield db_engine
    hooks.dispose_engines()
    get_settings.cache_clear()


def test_the_extract_writes_every_due_notice_streamed(crm_connection, monkeypatch) -> None:
    monkeypatch.setattr(storage, "SPOOL_BYTES", 64 << 10)  # spools to disk after 64 KiB
    seeded = demo_crm.seed(
        crm_connection,
        demo_crm.SeedSpec(anchor_date=DAY, customers=6_000, due_days=(0, 1), dirty_rows=False),
    )
    with crm_connection.connect() as conn:
        due = conn.execute(
            sa.select(sa.func.count())
            .select_from(demo_crm.notices)
            .where(demo_crm.notices.c.status == "due", demo_crm.notices.c.due_date == DAY)
        ).scalar_one()
    assert seeded and due == 6_000  # more than one cursor fetch (5,000 rows each)
    result = tasks.extract(DAY, "all")
    lines = list(storage.read_jsonl(result["key"]))
    assert result["count"] == len(lines) == due
    assert len({line["notice_id"] for line in lines}) == due
    # Ordered by customer: a customer's notices reach the plan together.
    customers = [line["customer_id"] for line in lines]
    assert customers == sorted(customers)
