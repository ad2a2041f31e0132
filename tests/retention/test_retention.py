"""Audio retention against real S3 and each ledger database backend."""

from __future__ import annotations

import datetime as dt

import boto3
import pytest
import sqlalchemy as sa

from voice_notify import retention
from voice_notify.db import migrate, schema


def _put(client, bucket: str, keys: list[str]) -> None:
    for key in keys:
        client.put_object(Bucket=bucket, Key=key, Body=b"RIFF" + key.encode())


def _ledger_row(conn, notice_id: int, state: str, audio_key: str) -> None:
    now = dt.datetime(2026, 11, 1)
    conn.execute(
        schema.dispatch_ledger.insert(),
        {
            "notice_id": notice_id,
            "campaign_date": dt.date(2026, 11, 1),
            "state": state,
            "audio_key": audio_key,
            "created_at": now,
            "updated_at": now,
        },
    )


@pytest.fixture
def stocked(db_engine, s3_bucket):
    """Audio, masters, segments and non-audio objects, and two ledger rows."""
    client = boto3.client("s3")
    audio = ["audio/aa/a1.wav", "audio/bb/b2.wav", "audio/cc/c3.wav"]
    _put(client, s3_bucket, [*audio, "masters/aa/a1.flac", "segments/dd/d4.wav"])
    _put(client, s3_bucket, ["voices/agent/prompt.wav", "reports/2026-11-01/report.json"])
    migrate.upgrade(db_engine)
    with db_engine.begin() as conn:
        _ledger_row(conn, 1, "completed", "audio/aa/a1.wav")
        _ledger_row(conn, 2, "synthesized", "audio/bb/b2.wav")  # still to be dialled
    return client


def test_cutoff_comes_from_the_logical_date() -> None:
    assert retention.cutoff_for(dt.date(2026, 11, 26), 90) == dt.datetime(
        2026, 8, 28, tzinfo=dt.UTC
    )
    with pytest.raises(ValueError):
        retention.cutoff_for(dt.date(2026, 11, 26), 0)


def test_purge_deletes_old_audio_keeps_the_ledger_and_is_idempotent(
    db_engine, s3_bucket, stocked
) -> None:
    client = stocked
    today = dt.datetime.now(dt.UTC).date()
    # A logical date whose cutoff is before the objects were written: nothing goes.
    recent = retention.purge_audio(db_engine, client, s3_bucket, today, 30)
    assert (recent.examined, recent.deleted) == (5, 0)
    # 100 days on, with 90 days kept, every audio object is past the cutoff.
    later = today + dt.timedelta(days=100)
    result = retention.purge_audio(db_engine, client, s3_bucket, later, 90)
    assert (result.examined, result.deleted, result.kept_in_use) == (5, 4, 1)
    left = {o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"]}
    assert left == {
        "audio/bb/b2.wav",  # its notice is not settled yet
        "voices/agent/prompt.wav",
        "reports/2026-11-01/report.json",
        f"retention/{today.isoformat()}/deleted.jsonl",  # every run leaves its list
        f"retention/{later.isoformat()}/deleted.jsonl",
    }
    with db_engine.connect() as conn:
        deletions = conn.execute(
            sa.select(schema.audio_deletions.c.object_key, schema.audio_deletions.c.deleted_at)
        ).all()
        assert sorted(k for k, _ in deletions) == [
            "audio/aa/a1.wav",
            "audio/cc/c3.wav",
            "masters/aa/a1.flac",
            "segments/dd/d4.wav",
        ]
        assert all(when is not None for _, when in deletions)
        # The ledger keeps its rows and their audio keys.
        assert conn.execute(
            sa.select(schema.dispatch_ledger.c.audio_key).order_by(schema.dispatch_ledger.c.id)
        ).scalars().all() == ["audio/aa/a1.wav", "audio/bb/b2.wav"]
    manifest = client.get_object(Bucket=s3_bucket, Key=result.manifest_key)["Body"].read()
    assert manifest.count(b"\n") == 4 and b'"deleted": true' in manifest
    again = retention.purge_audio(db_engine, client, s3_bucket, later, 90)
    assert (again.deleted, again.examined) == (0, 1)
    assert client.get_object(Bucket=s3_bucket, Key=again.manifest_key)["Body"].read() == manifest


def test_the_dag_task_reads_settings_and_connections(tmp_path, s3_bucket, s3_endpoint, monkeypatch):
    import json
    import uuid

    from voice_notify.airflow import storage, tasks
    from voice_notify.settings import get_settings

    suffix = uuid.uuid4().hex[:8].upper()
    db_path = tmp_path / "ledger.sqlite"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_LEDGER_{suffix}", json.dumps({"conn_type": "sqlite", "host": str(db_path)})
    )
    monkeypatch.setenv(f"AIRFLOW_CONN_S3_{suffix}", s3_endpoint.connection_json())
    monkeypatch.setenv("VOICE_NOTIFY_LEDGER_CONN_ID", f"ledger_{suffix.lower()}")
    monkeypatch.setenv("VOICE_NOTIFY_S3_CONN_ID", f"s3_{suffix.lower()}")
    monkeypatch.setenv("VOICE_NOTIFY_BUCKET", s3_bucket)
    monkeypatch.setenv("VOICE_NOTIFY_AUDIO_RETENTION_DAYS", "7")
    get_settings.cache_clear()
    storage.s3_hook.cache_clear()
    try:
        _put(boto3.client("s3"), s3_bucket, ["audio/aa/old.wav"])
        later = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=8)
        result = tasks.purge_audio(later)
        assert (result["retention_days"], result["deleted"]) == (7, 1)
        monkeypatch.setenv("VOICE_NOTIFY_AUDIO_RETENTION_DAYS", "0")
        get_settings.cache_clear()
        with pytest.raises(ValueError, match="AUDIO_RETENTION_DAYS"):
            get_settings()
    finally:
        get_settings.cache_clear()
        storage.s3_hook.cache_clear()
