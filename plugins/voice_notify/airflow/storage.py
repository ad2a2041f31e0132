"""S3 access for the Airflow side: batches, results, audio URLs, reports.

Everything goes through the amazon provider's ``S3Hook`` and the Connection
named by ``VOICE_NOTIFY_S3_CONN_ID`` (credentials and endpoint live there).
Keys are deterministic per campaign date, so a re-run writes the same keys.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from typing import Any

from voice_notify.settings import get_settings


@cache
def s3_hook():
    """The S3Hook of this process (one client, reused)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=get_settings().s3_conn_id)


def ensure_bucket() -> str:
    """Create the bucket where it does not exist (the demo's local endpoint starts empty)."""
    bucket = get_settings().bucket
    hook = s3_hook()
    if not hook.check_for_bucket(bucket):
        hook.create_bucket(bucket_name=bucket)
    return bucket


def campaign_prefix(campaign_date: dt.date, campaign: str) -> str:
    return f"campaigns/{campaign_date.isoformat()}/{campaign}"


def due_notices_key(campaign_date: dt.date, campaign: str) -> str:
    return f"{campaign_prefix(campaign_date, campaign)}/due_notices.jsonl"


def batch_key(campaign_date: dt.date, campaign: str, index: int) -> str:
    return f"{campaign_prefix(campaign_date, campaign)}/batches/batch-{index:04d}.jsonl"


def report_key(campaign_date: dt.date) -> str:
    """The report of a campaign date (all its notices, whichever run or redial settled them)."""
    return f"reports/{campaign_date.isoformat()}/report.json"


def write_bytes(key: str, data: bytes) -> str:
    """Write (or rewrite) a derived object; the key is deterministic, so rewriting is safe."""
    s3_hook().load_bytes(data, key=key, bucket_name=get_settings().bucket, replace=True)
    return key


def put_bytes(key: str, data: bytes) -> str:
    """Write (or rewrite) a small derived object in one PUT, without the multipart transfer
    machinery; safe from several threads (one client, made before they start)."""
    client = s3_hook().get_conn()
    client.put_object(Bucket=get_settings().bucket, Key=key, Body=data)
    return key


#: What ``write_jsonl`` holds in memory before it spools to disk.
SPOOL_BYTES = 16 << 20


def write_jsonl(key: str, rows: Iterable[Mapping[str, Any]]) -> str:
    """Write the rows as JSON lines, streamed: the lines go into a spooled temporary file
    (in memory up to 16 MiB, then on disk) and up in one managed (multipart) transfer, so
    an extract of 500,000 notices is never in memory at once."""
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        for row in rows:
            spool.write((json.dumps(row, ensure_ascii=False, default=str) + "\n").encode())
        spool.seek(0)
        s3_hook().load_file_obj(spool, key=key, bucket_name=get_settings().bucket, replace=True)
    return key


def read_bytes(key: str) -> bytes:
    obj = s3_hook().get_key(key, bucket_name=get_settings().bucket)
    return obj.get()["Body"].read()


def read_jsonl(key: str) -> Iterator[dict[str, Any]]:
    """The object's JSON lines, streamed: a megabyte of the body in memory at a time.

    Lines end at ``\n`` only (JSON escapes it inside strings); a CRM value holding
    another line separator (U+2028, a form feed) stays inside its line.
    """
    return map(json.loads, read_lines(key))


def read_lines(key: str) -> Iterator[bytes]:
    """:func:`read_jsonl`'s lines as bytes, not yet parsed (the plan's workers parse them)."""
    obj = s3_hook().get_key(key, bucket_name=get_settings().bucket)
    body = obj.get()["Body"]
    pending = b""
    try:
        for part in body.iter_chunks(chunk_size=1 << 20):
            lines = (pending + part).split(b"\n")
            pending = lines.pop()
            for line in lines:
                if line.strip():
                    yield line
        if pending.strip():
            yield pending
    finally:
        body.close()


def presigned_audio_url(key: str) -> str:
    """A GET URL for the gateway; it outlives the worst-case queue time (settings)."""
    settings = get_settings()
    return s3_hook().generate_presigned_url(
        client_method="get_object",
        params={
            "Bucket": settings.bucket,
            "Key": key,
            "ResponseContentType": "audio/wav",
        },
        expires_in=settings.presign_expiry_s,
    )


def worker_environment() -> dict[str, str]:
    """boto3's standard variables for a worker process, from the S3 Connection."""
    hook = s3_hook()
    credentials = hook.get_credentials()
    conn = hook.get_connection(get_settings().s3_conn_id)
    extra = conn.extra_dejson
    env = {
        "AWS_ACCESS_KEY_ID": credentials.access_key or "",
        "AWS_SECRET_ACCESS_KEY": credentials.secret_key or "",
        "AWS_DEFAULT_REGION": extra.get("region_name", "us-east-1"),
    }
    if credentials.token:
        env["AWS_SESSION_TOKEN"] = credentials.token
    endpoint = extra.get("endpoint_url") or extra.get("service_config", {}).get("s3", {}).get(
        "endpoint_url"
    )
    if endpoint:
        env["AWS_ENDPOINT_URL_S3"] = endpoint
    return env
