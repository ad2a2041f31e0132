"""The synthesis worker CLI against a real S3 endpoint and real espeak-ng."""

from __future__ import annotations

import io
import json
from pathlib import Path

import boto3
import numpy as np
import pytest
import soundfile as sf

from synthesis import labels, worker
from synthesis.manifest import BatchItem, ResultItem, item_seed, parse_results
from synthesis.text import NoticeComposer

INCLUDE = Path(__file__).resolve().parents[2] / "include"
BATCH_KEY = "campaigns/2026-11-26/all/batches/batch-0000.jsonl"
RESULTS_KEY = "campaigns/2026-11-26/all/results/batch-0000.jsonl"


def _items() -> list[BatchItem]:
    composer = NoticeComposer.load(INCLUDE)
    context = {
        "organization": "示例银行",
        "service_phone": "95555",
        "customer_name": "单丽",
        "confirm_key": "1",
        "optout_key": "9",
    }
    variables = {"amount": "1200.00", "arrival_date": "2026-11-26"}
    items = []
    for notice_id, locale in ((1, "cmn"), (2, "yue"), (3, "en")):
        composed = composer.compose("pension_arrival", locale, variables, context)
        items.append(
            BatchItem(
                ledger_id=100 + notice_id,
                notice_id=notice_id,
                campaign_date="2026-11-26",
                notice_type="pension_arrival",
                locale=locale,
                segments=[s.to_dict() for s in composed.segments],
                seed=item_seed(notice_id, "2026-11-26"),
            )
        )
    return items


def _put_batch(bucket: str, items: list[BatchItem], extra_lines: str = "") -> None:
    body = "".join(i.to_json() + "\n" for i in items) + extra_lines
    boto3.client("s3").put_object(Bucket=bucket, Key=BATCH_KEY, Body=body.encode())


def _results(bucket: str) -> dict[int, ResultItem]:
    body = boto3.client("s3").get_object(Bucket=bucket, Key=RESULTS_KEY)["Body"].read()
    return parse_results(body)


def test_a_batch_becomes_telephone_audio(s3_bucket: str, tmp_path: Path) -> None:
    _put_batch(s3_bucket, _items())
    xcom = tmp_path / "return.json"
    code = worker.main(["--batch", f"s3://{s3_bucket}/{BATCH_KEY}", "--xcom-file", str(xcom)])
    assert code == worker.EXIT_OK
    summary = json.loads(xcom.read_text())
    assert summary["ok"] == 3
    assert (summary["batch_key"], summary["results_key"]) == (BATCH_KEY, RESULTS_KEY)
    results = _results(s3_bucket)
    assert {r.status for r in results.values()} == {"ok"}
    client = boto3.client("s3")
    for result in results.values():
        assert result.audio_key.startswith("audio/") and result.audio_key.endswith(".wav")
        data = client.get_object(Bucket=s3_bucket, Key=result.audio_key)["Body"].read()
        info = sf.info(io.BytesIO(data))
        assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "ULAW")
        audio, _ = sf.read(io.BytesIO(data))
        assert np.sqrt(np.mean(audio**2)) > 0.01  # speech, not silence
        assert abs(info.duration - result.duration_s) < 0.01
        assert info.duration > 3
        # Both AI labels: the disclosure spoken first, the AIGC metadata in the file.
        assert result.labels["source"] == "template"
        assert labels.in_rate_window(result.labels["rate_per_min"])
        assert labels.read_implicit_label(data)["ProduceID"] == str(result.ledger_id)
        assert result.qc["loudness_lufs"] is not None and not result.fallback
        # The master is kept as FLAC by default: lossless 24 kHz PCM16, the same label.
        assert result.master_key.startswith("masters/") and result.master_key.endswith(".flac")
        stored = client.get_object(Bucket=s3_bucket, Key=result.master_key)
        master = stored["Body"].read()
        assert stored["ContentType"] == "audio/flac"
        info = sf.info(io.BytesIO(master))
        assert (info.format, info.subtype, info.samplerate) == ("FLAC", "PCM_16", 24000)
        assert labels.read_implicit_label(master) == labels.read_implicit_label(data)
        assert (result.telephone_bytes, result.master_bytes) == (len(data), len(master))
    stored = sum(r.telephone_bytes + r.master_bytes for r in results.values())
    assert summary["bytes_per_notice"] == round(stored / 3)
    assert summary["master_bytes"] == sum(r.master_bytes for r in results.values())


@pytest.mark.parametrize("how", ["option", "environment"])
def test_masters_are_kept_as_wav_or_not_at_all(s3_bucket: str, monkeypatch, how: str) -> None:
    _put_batch(s3_bucket, _items()[:1])
    client = boto3.client("s3")
    kept = []
    for setting in ("flac", "wav", "none"):
        args = ["--batch", f"s3://{s3_bucket}/{BATCH_KEY}", "--audio-prefix", f"audio-{setting}"]
        if how == "option":
            args += ["--master", setting]
        else:
            monkeypatch.setenv("VOICE_NOTIFY_KEEP_MASTER", setting)
        assert worker.main(args) == worker.EXIT_OK
        (result,) = _results(s3_bucket).values()
        kept.append(result)
    flac, wav, none = kept
    assert flac.master_key.endswith(".flac") and wav.master_key.endswith(".wav")
    data = client.get_object(Bucket=s3_bucket, Key=wav.master_key)["Body"].read()
    assert sf.info(io.BytesIO(data)).format == "WAV" and len(data) == wav.master_bytes
    assert flac.master_bytes < wav.master_bytes
    assert (none.master_key, none.master_bytes) == (None, None)
    # The telephone file is what dialing needs: the same whatever becomes of the master.
    phone = [client.get_object(Bucket=s3_bucket, Key=r.audio_key)["Body"].read() for r in kept]
    assert phone[0] == phone[1] == phone[2]
    assert flac.telephone_bytes == len(phone[0]) == none.telephone_bytes


def test_an_unknown_master_setting_is_a_configuration_error(s3_bucket: str, monkeypatch) -> None:
    _put_batch(s3_bucket, _items()[:1])
    monkeypatch.setenv("VOICE_NOTIFY_KEEP_MASTER", "mp3")
    assert worker.main(["--batch", f"s3://{s3_bucket}/{BATCH_KEY}"]) == worker.EXIT_CONFIG


def test_alaw_is_selectable(s3_bucket: str) -> None:
    _put_batch(s3_bucket, _items()[:1])
    args = ["--batch", f"s3://{s3_bucket}/{BATCH_KEY}", "--law", "ALAW", "--no-master"]
    assert worker.main(args) == worker.EXIT_OK
    (result,) = _results(s3_bucket).values()
    data = boto3.client("s3").get_object(Bucket=s3_bucket, Key=result.audio_key)["Body"].read()
    assert sf.info(io.BytesIO(data)).subtype == "ALAW"
    assert result.master_key is None


def test_a_rerun_resumes_by_content_address(s3_bucket: str) -> None:
    _put_batch(s3_bucket, _items())
    assert worker.main(["--batch", f"s3://{s3_bucket}/{BATCH_KEY}"]) == worker.EXIT_OK
    first = _results(s3_bucket)
    assert worker.main(["--batch", f"s3://{s3_bucket}/{BATCH_KEY}"]) == worker.EXIT_OK
    second = _results(s3_bucket)
    assert all(r.resumed for r in second.values())
    # A resumed item still reports what its notice keeps in S3.
    assert {k: (r.telephone_bytes, r.master_bytes) for k, r in first.items()} == {
        k: (r.telephone_bytes, r.master_bytes) for k, r in second.items()
    }
    assert {k: r.audio_key for k, r in first.items()} == {k: r.audio_key for k, r in second.items()}


def test_a_broken_item_fails_alone(s3_bucket: str) -> None:
    items = _items()
    empty = BatchItem(
        ledger_id=900,
        notice_id=9,
        campaign_date="2026-11-26",
        notice_type="x",
        locale="cmn",
        segments=[],
    )
    bad_segment = BatchItem(
        ledger_id=901,
        notice_id=10,
        campaign_date="2026-11-26",
        notice_type="x",
        locale="cmn",
        segments=[{"no": "text"}],
    )
    _put_batch(s3_bucket, [items[0], empty, bad_segment, items[1]])
    assert worker.main(["--batch", f"s3://{s3_bucket}/{BATCH_KEY}"]) == worker.EXIT_OK
    results = _results(s3_bucket)
    assert results[items[0].ledger_id].status == "ok"
    assert results[items[1].ledger_id].status == "ok"
    assert (results[900].status, results[900].error_code) == ("failed", "empty_segment")
    assert (results[901].status, results[901].error_code) == ("failed", "invalid_segment")


def test_a_malformed_manifest_is_a_permanent_failure(s3_bucket: str) -> None:
    _put_batch(s3_bucket, _items(), extra_lines="{this is not json\n")
    assert worker.main(["--batch", f"s3://{s3_bucket}/{BATCH_KEY}"]) == worker.EXIT_BAD_MANIFEST
    missing = "campaigns/2026-11-26/all/batches/batch-9999.jsonl"
    assert worker.main(["--batch", f"s3://{s3_bucket}/{missing}"]) == worker.EXIT_BAD_MANIFEST


def test_an_unreachable_store_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    from voice_notify_dev.localrun import free_port

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    code = worker.main(["--batch", f"s3://nowhere/{BATCH_KEY}"])
    assert code == worker.EXIT_TRANSIENT


def test_an_unknown_engine_is_a_configuration_error(s3_bucket: str) -> None:
    _put_batch(s3_bucket, _items())
    code = worker.main(["--batch", f"s3://{s3_bucket}/{BATCH_KEY}", "--engine", "nope"])
    assert code == worker.EXIT_CONFIG
