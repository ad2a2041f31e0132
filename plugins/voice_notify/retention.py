"""Audio retention: delete rendered audio older than the configured days, keep the ledger.

Audio objects are the telephone files (``audio/``), their 24 kHz masters
(``masters/``, ``.flac`` or ``.wav``; none when the worker keeps no master) and the
segment cache (``segments/``): all of them may hold a
customer's name or amounts. An object goes when its ``LastModified`` is before the
cutoff: midnight UTC of the run's logical date minus
``VOICE_NOTIFY_AUDIO_RETENTION_DAYS``. The wall clock plays no part, so a rerun or a
backfill of a date deletes exactly what that date's run would have.

Audio still needed is kept whatever its age: the ``audio_key`` of every ledger row
not yet settled (planned, synthesized, dialing, dialed).

Every deletion is recorded in ``audio_deletions`` (key, its ``LastModified``, size,
cutoff, logical date) before the object is deleted, and marked done after, so a run
that dies half way is finished by the next one; the run's record also goes to
``retention/<date>/deleted.jsonl``. The ledger rows keep their ``audio_key``: the
audit view shows when that audio was deleted.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa

from voice_notify import ledger
from voice_notify.db import schema
from voice_notify.db.sql import insert_ignoring_duplicates

log = logging.getLogger(__name__)

AUDIO_PREFIXES = ("audio/", "masters/", "segments/")
_DELETE_BATCH = 1000  # S3 DeleteObjects takes at most 1,000 keys


def _utcnow() -> dt.datetime:
    # Audit timestamps only; what to delete follows the logical date.
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def cutoff_for(logical_date: dt.date, retention_days: int) -> dt.datetime:
    """Midnight UTC ``retention_days`` before the logical date (aware)."""
    if retention_days < 1:
        raise ValueError("retention_days must be at least 1")
    day = logical_date - dt.timedelta(days=retention_days)
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


@dataclass(frozen=True)
class RetentionResult:
    logical_date: str
    cutoff: str
    retention_days: int
    examined: int
    deleted: int
    kept_in_use: int
    bytes_deleted: int
    manifest_key: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _audio_objects(s3_client: Any, bucket: str, prefixes: Sequence[str]) -> Iterator[dict]:
    paginator = s3_client.get_paginator("list_objects_v2")
    for prefix in prefixes:
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            yield from page.get("Contents", [])


def audio_in_use(conn: sa.Connection) -> set[str]:
    """Audio keys of ledger rows that are not settled yet (still to be dialled)."""
    table = schema.dispatch_ledger
    open_states = [s.value for s in ledger.LedgerState if not s.terminal]
    query = sa.select(table.c.audio_key).where(
        table.c.state.in_(open_states), table.c.audio_key.is_not(None)
    )
    return set(conn.execute(query).scalars())


def _naive(moment: dt.datetime) -> dt.datetime:
    # Whole seconds: MariaDB's DATETIME drops fractions, and the key is compared later.
    naive = moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment
    return naive.replace(microsecond=0)


def purge_audio(
    engine: sa.Engine,
    s3_client: Any,
    bucket: str,
    logical_date: dt.date,
    retention_days: int,
    *,
    prefixes: Sequence[str] = AUDIO_PREFIXES,
) -> RetentionResult:
    """Delete audio older than the cutoff of ``logical_date``; record every deletion.

    Idempotent: a second run for the same date finds nothing left to delete and
    rewrites the same manifest.

    :param retention_days: days of audio kept before the logical date
    :param s3_client: a boto3 S3 client (in Airflow: ``S3Hook(...).get_conn()``)
    """
    cutoff = cutoff_for(logical_date, retention_days)
    with engine.connect() as conn:
        in_use = audio_in_use(conn)
    examined = kept = 0
    expired: list[dict] = []
    for obj in _audio_objects(s3_client, bucket, prefixes):
        examined += 1
        if obj["LastModified"] >= cutoff:
            continue
        if obj["Key"] in in_use:
            kept += 1
            continue
        expired.append(obj)
    deleted = size = 0
    for start in range(0, len(expired), _DELETE_BATCH):
        batch = expired[start : start + _DELETE_BATCH]
        _record(engine, batch, cutoff, logical_date)
        gone = _delete(s3_client, bucket, [o["Key"] for o in batch])
        _confirm(engine, [o for o in batch if o["Key"] in gone])
        deleted += len(gone)
        size += sum(o.get("Size", 0) for o in batch if o["Key"] in gone)
    manifest_key = _write_manifest(engine, s3_client, bucket, logical_date)
    result = RetentionResult(
        logical_date.isoformat(),
        cutoff.isoformat(),
        retention_days,
        examined,
        deleted,
        kept,
        size,
        manifest_key,
    )
    log.info("audio retention %s: %s", logical_date, result.as_dict())
    return result


def _record(
    engine: sa.Engine, batch: Sequence[dict], cutoff: dt.datetime, logical_date: dt.date
) -> None:
    now = _utcnow()
    rows = [
        {
            "object_key": o["Key"],
            "last_modified": _naive(o["LastModified"]),
            "size_bytes": o.get("Size"),
            "cutoff": _naive(cutoff),
            "logical_date": logical_date,
            "recorded_at": now,
        }
        for o in batch
    ]
    with engine.begin() as conn:
        stmt = insert_ignoring_duplicates(
            conn, schema.audio_deletions, ("object_key", "last_modified")
        )
        conn.execute(stmt, rows)


def _delete(s3_client: Any, bucket: str, keys: Sequence[str]) -> set[str]:
    """Delete keys; returns those S3 confirmed. Errors on some keys raise (a retry resumes)."""
    response = s3_client.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": False}
    )
    errors = response.get("Errors") or []
    if errors:
        raise RuntimeError(f"S3 refused to delete {len(errors)} audio objects: {errors[:3]}")
    return {d["Key"] for d in response.get("Deleted", [])}


def _confirm(engine: sa.Engine, batch: Sequence[dict]) -> None:
    now = _utcnow()
    with engine.begin() as conn:
        for o in batch:
            conn.execute(
                schema.audio_deletions.update()
                .where(
                    schema.audio_deletions.c.object_key == o["Key"],
                    schema.audio_deletions.c.last_modified == _naive(o["LastModified"]),
                    schema.audio_deletions.c.deleted_at.is_(None),
                )
                .values(deleted_at=now)
            )


def manifest_key_for(logical_date: dt.date) -> str:
    return f"retention/{logical_date.isoformat()}/deleted.jsonl"


def _write_manifest(engine: sa.Engine, s3_client: Any, bucket: str, logical_date: dt.date) -> str:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(schema.audio_deletions)
            .where(schema.audio_deletions.c.logical_date == logical_date)
            .order_by(schema.audio_deletions.c.object_key)
        ).all()
    body = "".join(
        json.dumps(
            {
                "key": r.object_key,
                "last_modified": r.last_modified.isoformat(),
                "size_bytes": r.size_bytes,
                "cutoff": r.cutoff.isoformat(),
                "deleted": r.deleted_at is not None,
            }
        )
        + "\n"
        for r in rows
    )
    key = manifest_key_for(logical_date)
    s3_client.put_object(
        Bucket=bucket, Key=key, Body=body.encode("utf-8"), ContentType="application/jsonl"
    )
    return key
