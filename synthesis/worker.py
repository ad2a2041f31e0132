"""The batch synthesis worker: ``python -m synthesis.worker --batch s3://bucket/key``.

Reads a batch manifest from S3, synthesizes every item, writes each item's
8 kHz G.711 WAV to a content-addressed key and a result manifest next to the
batch. The same CLI runs on a laptop (the DAG's local mode) and as the
entrypoint of the GPU image. S3 is reached with boto3's standard environment
(``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL_S3``, ...), never Airflow.

Exit codes tell Airflow what to do:
  0  every item has a result (some may have failed with a reason code)
  65 the batch manifest is unusable: permanent, do not retry
  75 temporary trouble (S3 unreachable, SIGTERM): retry; finished items are resumed
  78 the engine cannot run here (binary, model, voice missing): fix the deployment
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthesis.manifest import (
    BatchItem,
    ResultItem,
    audio_key,
    dump_lines,
    parse_lines,
    results_key_for,
)

log = logging.getLogger("synthesis.worker")

EXIT_OK = 0
EXIT_BAD_MANIFEST = 65
EXIT_TRANSIENT = 75
EXIT_CONFIG = 78


class TransientStorageError(RuntimeError):
    """S3 could not be reached or answered with a server error."""


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"not an s3://bucket/key URI: {uri}")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


class BatchStore:
    """The worker's S3 access: a thin boto3 client wrapper that classifies failures."""

    def __init__(self, bucket: str, client: Any | None = None) -> None:
        import boto3

        self.bucket = bucket
        self._client = client or boto3.client("s3")

    def _call(self, name: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._client, name)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status >= 500:
                raise TransientStorageError(f"{name}: {exc}") from exc
            raise
        except BotoCoreError as exc:  # connection refused, timeouts, DNS
            raise TransientStorageError(f"{name}: {exc}") from exc

    def read(self, key: str) -> bytes:
        return self._call("get_object", Key=key)["Body"].read()

    def head(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            return self._call("head_object", Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def write(self, key: str, data: bytes, content_type: str, metadata: dict[str, str]) -> None:
        self._call("put_object", Key=key, Body=data, ContentType=content_type, Metadata=metadata)


@dataclass
class StopFlag:
    """Set by SIGTERM: finish the current item, flush results, exit for a retry."""

    requested: bool = False
    signals: list[int] = field(default_factory=list)

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: object) -> None:
        self.requested = True
        self.signals.append(signum)


class BatchSynthesizer:
    """Turns batch items into telephone audio, one item at a time, each isolated."""

    def __init__(self, engine: Any, store: BatchStore, audio_prefix: str, law: str) -> None:
        self.engine = engine
        self.store = store
        self.audio_prefix = audio_prefix
        self.law = law

    def process(self, item: BatchItem) -> ResultItem:
        from synthesis.engines.base import SegmentRejected

        key = audio_key(self.engine.version, item, self.audio_prefix)
        base = {"ledger_id": item.ledger_id, "notice_id": item.notice_id, "seed": item.seed}
        existing = self.store.head(key)
        if existing is not None:
            duration = float(existing.get("Metadata", {}).get("duration-s", "0") or 0)
            return ResultItem(
                **base,
                status="ok",
                engine=self.engine.version,
                audio_key=key,
                duration_s=duration,
                resumed=True,
            )
        started = time.perf_counter()
        try:
            wav = self._render(item)
        except SegmentRejected as exc:
            return ResultItem(
                **base,
                status="failed",
                engine=self.engine.version,
                error_code=exc.reason_code,
                detail=exc.detail,
            )
        except TransientStorageError:
            raise
        except Exception as exc:  # one broken item must not stop the batch
            log.exception("notice %s: engine crashed", item.notice_id)
            return ResultItem(
                **base,
                status="failed",
                engine=self.engine.version,
                error_code="engine_crash",
                detail=f"{type(exc).__name__}: {exc}"[:300],
            )
        synth_seconds = time.perf_counter() - started
        self.store.write(
            key,
            wav.wav_bytes,
            "audio/wav",
            {"duration-s": f"{wav.duration_s:.3f}", "engine": self.engine.version},
        )
        return ResultItem(
            **base,
            status="ok",
            engine=self.engine.version,
            audio_key=key,
            duration_s=round(wav.duration_s, 3),
            synth_seconds=round(synth_seconds, 4),
        )

    def _render(self, item: BatchItem):
        from synthesis.audio import encode_g711, join_segments
        from synthesis.engines.base import SegmentRejected
        from synthesis.text import Segment

        if not item.segments:
            raise SegmentRejected("empty_segment", "the item has no segments")
        parts = []
        for raw in item.segments:
            try:
                segment = Segment.from_dict(raw)
            except (KeyError, TypeError, ValueError) as exc:
                raise SegmentRejected("invalid_segment", str(exc)) from exc
            audio = self.engine.synthesize(segment, item.voice, item.seed)
            if audio.size == 0:
                raise SegmentRejected("empty_audio", "the engine produced no samples")
            parts.append((audio, segment.pause_after_ms))
        joined = join_segments(parts, self.engine.sample_rate)
        return encode_g711(joined, self.engine.sample_rate, self.law)


def run_batch(args: argparse.Namespace, stop: StopFlag) -> int:
    from synthesis.engines import EngineUnavailable, make_engine

    bucket, batch_key = split_s3_uri(args.batch)
    results_key = args.results_key or results_key_for(batch_key)
    try:
        engine = make_engine(args.engine)
        engine.load()
    except EngineUnavailable as exc:
        log.error("engine unavailable: %s", exc)
        return EXIT_CONFIG
    store = BatchStore(bucket)
    try:
        payload = store.read(batch_key)
    except TransientStorageError as exc:
        log.error("cannot read the batch manifest: %s", exc)
        return EXIT_TRANSIENT
    except Exception as exc:
        log.error("batch manifest %s unreadable: %s", batch_key, exc)
        return EXIT_BAD_MANIFEST
    try:
        items = [BatchItem.from_json(line) for line in parse_lines(payload)]
    except (ValueError, TypeError, KeyError) as exc:
        log.error("batch manifest %s is malformed: %s", batch_key, exc)
        return EXIT_BAD_MANIFEST

    synthesizer = BatchSynthesizer(engine, store, args.audio_prefix, args.law)
    results: list[ResultItem] = []
    code = EXIT_OK
    try:
        for item in items:
            if stop.requested:
                log.warning("stop requested after %d of %d items", len(results), len(items))
                code = EXIT_TRANSIENT
                break
            result = synthesizer.process(item)
            log.info(
                "notice %s: %s %s",
                item.notice_id,
                result.status,
                result.error_code or ("resumed" if result.resumed else result.audio_key),
            )
            results.append(result)
    except TransientStorageError as exc:
        log.error("storage failed mid-batch: %s", exc)
        code = EXIT_TRANSIENT
    if code != EXIT_OK:
        # Partial results are not published: the retry resumes by audio key
        # and writes the complete result manifest.
        return code
    store.write(results_key, dump_lines(results), "application/x-ndjson", {})
    summary = {
        "results_key": results_key,
        "items": len(results),
        "ok": sum(r.status == "ok" for r in results),
        "failed": sum(r.status == "failed" for r in results),
        "resumed": sum(r.resumed for r in results),
    }
    if args.xcom_file:
        Path(args.xcom_file).parent.mkdir(parents=True, exist_ok=True)
        Path(args.xcom_file).write_text(json.dumps(summary))
    print(json.dumps(summary))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m synthesis.worker", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--batch", required=True, help="s3://bucket/key of the batch manifest")
    parser.add_argument("--results-key", help="result manifest key (default: next to the batch)")
    parser.add_argument("--audio-prefix", default="audio", help="key prefix of the audio files")
    parser.add_argument("--engine", default="espeak", help="synthesis engine (espeak)")
    parser.add_argument("--law", default="ULAW", choices=("ULAW", "ALAW"), help="G.711 law")
    parser.add_argument("--xcom-file", help="where to write the summary for Airflow's XCom")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = build_parser().parse_args(argv)
    stop = StopFlag()
    stop.install()
    try:
        return run_batch(args, stop)
    except ValueError as exc:
        log.error("%s", exc)
        return EXIT_BAD_MANIFEST


if __name__ == "__main__":
    sys.exit(main())
