"""The batch synthesis worker: ``python -m synthesis.worker --batch s3://bucket/key``.

Reads a batch manifest from S3, synthesizes every item, writes each item's
8 kHz G.711 WAV to a content-addressed key (with a 24 kHz master beside it: FLAC by
default, ``--master wav|none`` or ``VOICE_NOTIFY_KEEP_MASTER`` to change) and a
result manifest next to the batch. The same CLI runs on a laptop (the DAG's local
mode) and as the entrypoint of the GPU image. S3 is reached with boto3's standard
environment (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL_S3``, ...), never Airflow.

Per item: resume if its audio key exists; resolve the voice profile and style; put
the spoken AI label first (the template's own first sentence when it is the label);
render each segment through the segment cache; assemble, telephone-process, run the
quality gate. A failing gate is retried once with other seeds, then the fallback
engine renders the notice, then the item fails with a reason code. Bad input fails
the item alone; the batch goes on.

Exit codes tell Airflow what to do:
  0  every item has a result (some may have failed with a reason code)
  65 the batch manifest is unusable: permanent, do not retry
  75 temporary trouble (S3 unreachable, SIGTERM): retry; finished items are resumed
  78 the engine cannot run here (binary, model, voice missing): fix the deployment
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthesis.engines.base import SynthesisEngine
from synthesis.manifest import (
    BatchItem,
    ResultItem,
    dump_lines,
    parse_lines,
    results_key_for,
)
from synthesis.store import BatchStore, TransientStorageError, split_s3_uri
from synthesis.synthesizer import MASTER_FORMATS, BatchSynthesizer, WorkerOptions

__all__ = ["EXIT_BAD_MANIFEST", "EXIT_CONFIG", "EXIT_OK", "EXIT_TRANSIENT", "main"]

log = logging.getLogger("synthesis.worker")

EXIT_OK = 0
EXIT_BAD_MANIFEST = 65
EXIT_TRANSIENT = 75
EXIT_CONFIG = 78


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


# -- the batch ------------------------------------------------------------------


def _load_engines(args: argparse.Namespace) -> tuple[SynthesisEngine, SynthesisEngine | None]:
    from synthesis.engines import make_engine

    options = {"model_dir": args.model_dir, "cosyvoice_root": args.cosyvoice_root}
    engine = make_engine(args.engine, **options)
    engine.load()
    fallback = None
    # The fallback is its own instance even when it is the same engine: it speaks
    # in the standard voice, so a clone that fails its checks is never sent.
    if args.fallback_engine not in ("", "none"):
        fallback = make_engine(args.fallback_engine, **options)
        fallback.load()
    return engine, fallback


class BatchUnusable(Exception):
    """The batch cannot be worked on; ``code`` is the exit code that says why."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _read_items(store: BatchStore, batch_key: str) -> list[BatchItem]:
    try:
        payload = store.read(batch_key)
    except TransientStorageError as exc:
        raise BatchUnusable(EXIT_TRANSIENT, f"cannot read the batch manifest: {exc}") from None
    except Exception as exc:
        raise BatchUnusable(EXIT_BAD_MANIFEST, f"manifest {batch_key} unreadable: {exc}") from None
    try:
        return [BatchItem.from_json(line) for line in parse_lines(payload)]
    except (ValueError, TypeError, KeyError) as exc:
        raise BatchUnusable(EXIT_BAD_MANIFEST, f"manifest {batch_key} malformed: {exc}") from None


def _options(args: argparse.Namespace) -> WorkerOptions:
    return WorkerOptions(
        audio_prefix=args.audio_prefix,
        master_prefix=args.master_prefix,
        segment_prefix=args.segment_prefix,
        voices_prefix=args.voices_prefix,
        law=args.law,
        house_voice=args.house_voice,
        producer=args.producer,
        propagator=args.propagator,
        master_format="none" if args.no_master else args.master,
        similarity_threshold=args.similarity_threshold,
    )


def _synthesize_items(
    synthesizer: BatchSynthesizer, items: list[BatchItem], stop: StopFlag
) -> tuple[list[ResultItem], int]:
    """Every item's result, until done or stopped; the exit code says which."""
    from synthesis.engines import EngineUnavailable

    results: list[ResultItem] = []
    code = EXIT_OK
    try:
        synthesizer.plan(items)
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
        # Every upload confirmed, or the batch is not done (the finally below only
        # flushes what a stopped worker finished, and may not raise).
        synthesizer.drain()
    except TransientStorageError as exc:
        log.error("storage failed mid-batch: %s", exc)
        code = EXIT_TRANSIENT
    except EngineUnavailable as exc:
        log.error("engine became unavailable mid-batch: %s", exc)
        code = EXIT_CONFIG
    finally:
        with contextlib.suppress(TransientStorageError):
            synthesizer.drain()  # a stopped worker still flushes what it finished
        synthesizer.close()
    return results, code


def _summary(batch_key: str, results_key: str, results: list[ResultItem]) -> dict[str, Any]:
    stored = [r for r in results if r.status == "ok" and r.telephone_bytes is not None]
    telephone = sum(r.telephone_bytes or 0 for r in stored)
    master = sum(r.master_bytes or 0 for r in stored)
    return {
        "batch_key": batch_key,
        "results_key": results_key,
        "items": len(results),
        "ok": sum(r.status == "ok" for r in results),
        "failed": sum(r.status == "failed" for r in results),
        "resumed": sum(r.resumed for r in results),
        "fallback": sum(r.fallback for r in results),
        # S3 bytes of the notices' audio (telephone file + master), and per notice.
        "telephone_bytes": telephone,
        "master_bytes": master,
        "bytes_per_notice": round((telephone + master) / len(stored)) if stored else 0,
    }


def run_batch(args: argparse.Namespace, stop: StopFlag) -> int:
    """The whole batch: engines, manifest, every item, the result manifest; an exit code."""
    from synthesis.engines import EngineUnavailable

    if args.master not in MASTER_FORMATS:
        log.error("VOICE_NOTIFY_KEEP_MASTER=%r: not one of %s", args.master, MASTER_FORMATS)
        return EXIT_CONFIG
    bucket, batch_key = split_s3_uri(args.batch)
    results_key = args.results_key or results_key_for(batch_key)
    if args.torch_threads > 0:
        # Post-processing is many small tensor ops: extra threads only contend with the
        # engine (espeak-ng processes, the GPU's feeder) on a small node.
        import torch

        torch.set_num_threads(args.torch_threads)
    try:
        engine, fallback = _load_engines(args)
    except EngineUnavailable as exc:
        log.error("engine unavailable: %s", exc)
        return EXIT_CONFIG
    store = BatchStore(bucket)
    try:
        items = _read_items(store, batch_key)
    except BatchUnusable as exc:
        log.error("%s", exc)
        return exc.code
    synthesizer = BatchSynthesizer(engine, store, _options(args), fallback=fallback)
    results, code = _synthesize_items(synthesizer, items, stop)
    if code != EXIT_OK:
        # The result manifest is published only complete; what was done so far is
        # flushed beside it for the operator, and the retry resumes by audio key.
        with contextlib.suppress(TransientStorageError):
            store.write(results_key + ".partial", dump_lines(results), "application/x-ndjson", {})
        return code
    store.write(results_key, dump_lines(results), "application/x-ndjson", {})
    summary = _summary(batch_key, results_key, results)
    log.info(
        "batch %s: %d ok, %d failed; S3 bytes per notice %d (telephone %d, master %d, %s)",
        batch_key,
        summary["ok"],
        summary["failed"],
        summary["bytes_per_notice"],
        summary["telephone_bytes"],
        summary["master_bytes"],
        "none" if args.no_master else args.master,
    )
    if args.xcom_file:
        Path(args.xcom_file).parent.mkdir(parents=True, exist_ok=True)
        Path(args.xcom_file).write_text(json.dumps(summary))
    print(json.dumps(summary))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m synthesis.worker", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add = parser.add_argument
    add("--batch", required=True, help="s3://bucket/key of the batch manifest")
    add("--results-key", help="result manifest key (default: next to the batch)")
    add("--audio-prefix", default="audio", help="key prefix of the telephone audio files")
    add("--master-prefix", default="masters", help="key prefix of the 24 kHz masters")
    add("--segment-prefix", default="segments", help="key prefix of the segment cache")
    add("--voices-prefix", default="voices", help="key prefix of the voice profiles")
    add(
        "--master",
        choices=MASTER_FORMATS,
        default=os.environ.get("VOICE_NOTIFY_KEEP_MASTER", "flac").strip().lower() or "flac",
        help="how the 24 kHz master is kept: flac (default, lossless), wav (PCM16) or none "
        "(default $VOICE_NOTIFY_KEEP_MASTER)",
    )
    add("--no-master", action="store_true", help="the same as --master none")
    add("--engine", default="espeak", help="synthesis engine: espeak or cosyvoice3")
    add("--fallback-engine", default="espeak", help="engine for notices the first fails (none)")
    add("--model-dir", help="CosyVoice3 model directory (default $VOICE_NOTIFY_MODEL_DIR)")
    add("--cosyvoice-root", help="CosyVoice checkout (default $VOICE_NOTIFY_COSYVOICE_ROOT)")
    add("--house-voice", default="house", help="profile of `standard` items on CosyVoice3")
    add("--law", default="ULAW", choices=("ULAW", "ALAW"), help="G.711 law")
    add("--producer", default="voice-notify", help="ContentProducer of the implicit AI label")
    add("--propagator", default="voice-notify", help="ContentPropagator of the AI label")
    add("--similarity-threshold", type=float, help="override the calibrated threshold")
    add("--torch-threads", type=int, default=1, help="CPU threads of torch (0: torch's default)")
    add("--xcom-file", help="where to write the summary for Airflow's XCom")
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
