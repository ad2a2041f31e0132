"""Synthesis benchmarks and the similarity calibration; they print, they do not assert.

    python -m voice_notify_dev.bench_synthesis overhead [--items 500]
        worker overhead per item (espeak-ng)
    python -m voice_notify_dev.bench_synthesis cache [--date D]
        segment cache vs whole-notice cache
    python -m voice_notify_dev.bench_synthesis calibrate
        speaker-similarity threshold

Each starts a local S3 endpoint (moto's server, as the demo does) and uses the demo
CRM's notices (``voice_notify_dev.demo_crm``) composed by the real frontend.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from synthesis.manifest import BatchItem, ResultItem, VoiceSpec, item_seed


def demo_items(date: dt.date, *, whole_crm: bool, customers: int = 600) -> list[BatchItem]:
    """Planned notices of the demo CRM: the campaign of ``date``, or every valid notice."""
    from synthesis.instructs import include_dir
    from synthesis.text import NoticeComposer
    from voice_notify.plan import eligibility as planning
    from voice_notify.plan.campaigns import load_campaign_config
    from voice_notify_dev import demo_crm

    config = load_campaign_config(include_dir() / "campaigns.yaml")
    composer = NoticeComposer.load(include_dir())
    customer_rows, notice_rows = demo_crm.generate(
        demo_crm.SeedSpec(anchor_date=date, customers=customers)
    )
    by_id = {c["id"]: c for c in customer_rows}
    notices = []
    for row in notice_rows:
        customer = by_id.get(row["customer_id"], {})
        notices.append(
            {
                "notice_id": row["id"],
                "customer_id": row["customer_id"],
                "notice_type": row["notice_type"],
                "due_date": row["due_date"],
                "variables": row["variables"],
                "customer_name": customer.get("name"),
                "phone": customer.get("phone"),
                "preferred_dialect": customer.get("preferred_dialect"),
                "voice_opt_out": customer.get("voice_opt_out"),
            }
        )
    if whole_crm:
        decisions = [planning.decide(n, composer, config) for n in notices]
    else:
        decisions = planning.decide_all(
            notices, date, config.notice_types_of("all"), composer, config
        )
    return [
        BatchItem(
            ledger_id=d.notice_id,
            notice_id=d.notice_id,
            campaign_date=date.isoformat(),
            notice_type=d.notice_type,
            locale=d.locale,
            segments=list(d.segments),
            voice=VoiceSpec(),
            seed=item_seed(d.notice_id, date.isoformat()),
        )
        for d in decisions
        if d.planned
    ]


@contextmanager
def local_bucket() -> Iterator[Any]:
    """A fresh bucket on a local moto S3 server, with boto3's environment pointing at it."""
    import os

    import boto3

    from synthesis.store import BatchStore
    from voice_notify_dev.localrun import start_s3

    with tempfile.TemporaryDirectory(prefix="vn-bench-") as tmp:
        endpoint = start_s3(Path(tmp) / "s3.log")
        saved = dict(os.environ)
        os.environ.update(
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ENDPOINT_URL_S3=endpoint.url,
            NO_PROXY="127.0.0.1,localhost",
        )
        try:
            boto3.client("s3").create_bucket(Bucket="vn-bench")
            yield BatchStore("vn-bench")
        finally:
            os.environ.clear()
            os.environ.update(saved)
            endpoint.stop()


def _engine(name: str = "espeak") -> Any:
    import torch

    from synthesis.engines import make_engine

    torch.set_num_threads(1)  # as the worker CLI does by default
    engine = make_engine(name)
    engine.load()
    return engine


def _run(synthesizer: Any, items: list[BatchItem]) -> tuple[list[ResultItem], float]:
    started = time.perf_counter()
    synthesizer.plan(items)
    results = [synthesizer.process(item) for item in items]
    synthesizer.drain()
    elapsed = time.perf_counter() - started
    synthesizer.close()
    return results, elapsed


def bench_overhead(count: int, date: dt.date) -> dict[str, float]:
    """Wall time per item minus engine time, over one batch of ``count`` items."""
    from synthesis.synthesizer import BatchSynthesizer, WorkerOptions

    pool = demo_items(date, whole_crm=True, customers=max(600, count + 200))
    items = (pool * (count // len(pool) + 1))[:count]
    items = [
        BatchItem(**{**item.__dict__, "ledger_id": index, "notice_id": index})
        for index, item in enumerate(items, start=1)
    ]
    with local_bucket() as store:
        engine = _engine()
        warm = BatchSynthesizer(engine, store, WorkerOptions(audio_prefix="warm"))
        _run(warm, items[:3])  # torch and kernels warm, as after the first item of a batch
        synthesizer = BatchSynthesizer(engine, store, WorkerOptions())
        results, wall = _run(synthesizer, items)
    engine_s = sum(r.engine_seconds for r in results)
    ok = sum(r.status == "ok" for r in results)
    figures = {
        "items": len(results),
        "ok": ok,
        "wall_s": round(wall, 2),
        "engine_s": round(engine_s, 2),
        "overhead_ms_per_item": round((wall - engine_s) * 1000 / len(results), 1),
        "engine_ms_per_item": round(engine_s * 1000 / len(results), 1),
        "audio_s_per_item": round(statistics.mean(r.duration_s or 0 for r in results), 2),
    }
    print("worker overhead (everything but engine time), espeak-ng, one batch:")
    for name, value in figures.items():
        print(f"  {name:24} {value}")
    print("  target                   <= 30 ms per item")
    return figures


def bench_cache(date: dt.date, batch_size: int) -> dict[str, float]:
    """Audio-seconds served by the segment cache on the demo campaign of ``date``."""
    from synthesis.synthesizer import BatchSynthesizer, WorkerOptions

    items = demo_items(date, whole_crm=False)
    batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    results: list[ResultItem] = []
    with local_bucket() as store:
        engine = _engine()
        for batch in batches:  # one worker process per batch, as the DAG runs them
            batch_results, _ = _run(BatchSynthesizer(engine, store, WorkerOptions()), batch)
            results.extend(batch_results)
    ok = [r for r in results if r.status == "ok"]
    speech = sum(r.speech_audio_s for r in ok)
    from_segments = sum(r.cached_audio_s for r in ok)
    whole = sum(r.speech_audio_s for r in ok if r.resumed)
    figures = {
        "notices": len(items),
        "batches": len(batches),
        "ok": len(ok),
        "speech_audio_s": round(speech, 1),
        "segment_cache_share": round(from_segments / speech, 3) if speech else 0.0,
        "whole_notice_cache_share": round(whole / speech, 3) if speech else 0.0,
    }
    print(f"audio-seconds served from cache, demo campaign {date} (batch size {batch_size}):")
    for name, value in figures.items():
        print(f"  {name:26} {value}")
    print("  target (segment cache)     >= 0.30")
    return figures


def calibrate(date: dt.date, notices: int = 12) -> dict[str, Any]:
    """Cosines of notices against profile prompts, same speaker vs other speakers."""
    from synthesis.audio import MASTER_RATE
    from synthesis.instructs import include_dir
    from synthesis.qc import SpeakerEncoder, cosine
    from synthesis.synthesizer import BatchSynthesizer, WorkerOptions
    from synthesis.voices import publish_demo_profiles

    items = demo_items(date, whole_crm=True)
    items = [i for i in items if i.locale == "cmn"][:notices]
    encoder = SpeakerEncoder()
    same: list[float] = []
    other: list[float] = []
    with local_bucket() as store:
        engine = _engine()
        profiles = publish_demo_profiles(store, engine, include_dir())
        synthesizer = BatchSynthesizer(
            engine, store, WorkerOptions(write_master=False), speaker_encoder=encoder
        )
        references = {}
        for profile in profiles:
            voice = synthesizer.voices.resolve(profile)
            references[profile] = encoder.embed(voice.prompt_audio, voice.prompt_rate)
        for profile in profiles:
            voice = synthesizer.voices.resolve(profile)
            for item in items:
                segments = synthesizer._segments(item)
                rendition = synthesizer._render(item, engine, voice, None, segments, 0, [])
                embedding = encoder.embed(rendition.master, MASTER_RATE)
                for reference_profile, reference in references.items():
                    value = cosine(embedding, reference)
                    (same if reference_profile == profile else other).append(value)
    threshold = round((min(same) + max(other)) / 2, 2)
    figures = {
        "profiles": profiles,
        "notices_per_profile": len(items),
        "same_min": round(min(same), 3),
        "same_mean": round(statistics.mean(same), 3),
        "same_max": round(max(same), 3),
        "other_min": round(min(other), 3),
        "other_mean": round(statistics.mean(other), 3),
        "other_max": round(max(other), 3),
        "midpoint_threshold": threshold,
    }
    print("speaker similarity (resemblyzer cosine), notice vs profile prompt:")
    for name, value in figures.items():
        print(f"  {name:20} {value}")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m voice_notify_dev.bench_synthesis", description=__doc__
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("what", choices=("overhead", "cache", "calibrate", "all"))
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--date", type=dt.date.fromisoformat, default=dt.date(2026, 11, 26))
    parser.add_argument("--batch-size", type=int, default=50)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.what in ("overhead", "all"):
        bench_overhead(args.items, args.date)
    if args.what in ("cache", "all"):
        bench_cache(args.date, args.batch_size)
    if args.what in ("calibrate", "all"):
        calibrate(args.date)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
