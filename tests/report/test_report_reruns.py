"""A report that stays true: the same date gives the same report however often it runs.

A second ``make demo`` for a date starts with an empty S3 (its endpoint keeps state in
memory): the report used to be rebuilt from the result manifests there and came out
with zero synthesized items, no cache share and no fallback figures. It is now built from
the ledger database alone.
"""

from __future__ import annotations

import json
import uuid

from tests.support import pipeline
from voice_notify.airflow import storage, tasks


def _stored(key: str) -> dict:
    return json.loads(storage.read_bytes(key))


def test_a_second_run_of_the_date_with_an_empty_s3_gives_the_same_report(campaign_run) -> None:
    first = campaign_run.first_report
    assert first["notices"] > 20 and first["calls"] > 0
    synthesis = first["synthesis"]
    assert synthesis["items"] > 0 and synthesis["ok"] > 0
    assert synthesis["speech_audio_s"] > 0 and synthesis["cache_rate"] is not None
    assert synthesis["fallback_rate"] is not None

    fresh = f"vn-again-{uuid.uuid4().hex[:8]}"
    pipeline.publish_voices(campaign_run, fresh)
    with campaign_run.environment(bucket=fresh):
        again = pipeline.run_date(campaign_run)
    assert again == first  # byte for byte the same dictionary, items included
    assert json.dumps(again, sort_keys=False) == json.dumps(first, sort_keys=False)


def test_rerunning_one_batch_and_the_report_task_changes_nothing(campaign_run) -> None:
    day = campaign_run.campaign_date
    with campaign_run.environment():
        batch_key = storage.batch_key(day, "all", 0)
        # A cleared synthesize and dial of batch 0: the worker resumes every item (its
        # audio exists) and the dial step has no planned row left to record.
        results_key = tasks.synthesize_locally(batch_key)
        resumed = tasks.dial(day, batch_key, results_key, dry_run=False)
        assert resumed["synthesized"] == 0 and resumed.get("dialed", 0) == 0
        report = tasks.report(day)
        again = tasks.report(day)
        assert _stored(report["key"]) == campaign_run.first_report
        assert again == report
