"""Task functions run here through Airflow Connections given as environment variables."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa


@pytest.fixture
def task_connections(
    tmp_path: Path, s3_bucket, s3_endpoint, monkeypatch: pytest.MonkeyPatch
) -> Iterator[sa.Engine]:
    """A SQLite ledger and the session's S3 as the tasks' Connections (fresh names, so
    no cached hook or engine of another test answers); yields the ledger's engine."""
    from voice_notify.airflow import hooks, storage
    from voice_notify.settings import get_settings

    suffix = uuid.uuid4().hex[:8]
    db_path = tmp_path / "ledger.sqlite"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_LEDGER_{suffix.upper()}",
        json.dumps({"conn_type": "sqlite", "host": str(db_path)}),
    )
    monkeypatch.setenv(f"AIRFLOW_CONN_S3_{suffix.upper()}", s3_endpoint.connection_json())
    monkeypatch.setenv("VOICE_NOTIFY_LEDGER_CONN_ID", f"ledger_{suffix}")
    monkeypatch.setenv("VOICE_NOTIFY_S3_CONN_ID", f"s3_{suffix}")
    monkeypatch.setenv("VOICE_NOTIFY_BUCKET", s3_bucket)
    get_settings.cache_clear()
    storage.s3_hook.cache_clear()
    yield sa.create_engine(f"sqlite:///{db_path}")
    get_settings.cache_clear()
    storage.s3_hook.cache_clear()
    hooks.dispose_engines()
