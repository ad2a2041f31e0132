"""The plan task through Airflow Connections (a SQLite ledger, moto's S3): a re-run returns
the same batches, the extract is read as a stream, the mapped tasks stay bounded."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from synthesis.manifest import BatchItem
from tests.support.crm_rows import due_notice
from voice_notify import ledger
from voice_notify.airflow import storage, tasks

REPO = Path(__file__).resolve().parents[2]
DAY = dt.date(2026, 11, 26)


@pytest.fixture
def plan_env(task_connections, monkeypatch: pytest.MonkeyPatch):
    from voice_notify.settings import get_settings

    monkeypatch.setenv("VOICE_NOTIFY_INCLUDE_DIR", str(REPO / "include"))
    monkeypatch.setenv("VOICE_NOTIFY_CAMPAIGNS_FILE", str(REPO / "include" / "campaigns.yaml"))
    monkeypatch.setenv("VOICE_NOTIFY_SYNTHESIS_SLOTS", "2")
    get_settings.cache_clear()
    yield task_connections
    get_settings.cache_clear()


def _notice(notice_id: int, name: str = "曾小明") -> dict:
    return due_notice(notice_id, DAY, customer_name=name)


def _write_extract(notices: list[dict]) -> str:
    return storage.write_jsonl(storage.due_notices_key(DAY, "banking"), notices)


def test_the_extract_is_streamed_line_by_line_across_reads(plan_env) -> None:
    # Over two megabytes: lines cross the reads' boundaries; U+2028 stays inside its line.
    notices = [_notice(i, name="曾\u2028小明" + "明" * 40) for i in range(1, 9001)]
    key = _write_extract(notices)
    assert list(storage.read_jsonl(key)) == notices


def test_a_second_plan_returns_the_same_batches(plan_env) -> None:
    key = _write_extract([_notice(i) for i in range(1, 121)])
    first = tasks.plan(DAY, "banking", key, 50)
    # 120 notices, 2 synthesis slots: batches of 50 (no smaller needed), in order.
    assert first == [storage.batch_key(DAY, "banking", i) for i in range(3)]
    with plan_env.connect() as conn:
        members = {r.notice_id: r.batch_key for r in ledger.rows_for_date(conn, DAY)}
    manifests = {k: storage.read_bytes(k) for k in first}
    items = [
        BatchItem.from_json(line)
        for k in first
        for line in manifests[k].decode().split("\n")
        if line
    ]
    assert [i.notice_id for i in items] == list(range(1, 121))

    assert tasks.plan(DAY, "banking", key, 50) == first
    with plan_env.connect() as conn:
        assert {r.notice_id: r.batch_key for r in ledger.rows_for_date(conn, DAY)} == members
    assert {k: storage.read_bytes(k) for k in first} == manifests


def test_a_large_campaign_maps_no_more_than_half_of_max_map_length(
    plan_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "8")
    key = _write_extract([_notice(i) for i in range(1, 201)])
    keys = tasks.plan(DAY, "banking", key, 10)
    assert len(keys) == 4  # 200 notices into at most 8 // 2 batches: 50 each
    monkeypatch.setenv("VOICE_NOTIFY_MAX_BATCH_SIZE", "20")
    from voice_notify.settings import get_settings

    get_settings.cache_clear()
    key = storage.write_jsonl(
        storage.due_notices_key(DAY, "banking"), [_notice(i) for i in range(1, 401)]
    )
    with pytest.raises(ValueError, match="VOICE_NOTIFY_MAX_BATCH_SIZE"):
        tasks.plan(DAY, "banking", key, 10)
