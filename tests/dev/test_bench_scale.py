"""``make bench-scale`` at a tiny size: every stage runs and its figures add up."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from voice_notify_dev import bench_scale

NOTICES, SAMPLE, BATCH = 300, 10, 50


@pytest.mark.integration
def test_a_tiny_bench_prints_every_stage_and_its_counts_add_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # PostgreSQL where the suite has a server (a scratch database, dropped), else SQLite.
    url = os.environ.get("VOICE_NOTIFY_TEST_POSTGRES_URL") or f"sqlite:///{tmp_path / 'crm.db'}"
    out = tmp_path / "figures.json"
    argv = ["--notices", str(NOTICES), "--synthesize-sample", str(SAMPLE)]
    argv += ["--batch-size", str(BATCH), "--url", url, "--json", str(out)]
    assert bench_scale.main(argv) == 0
    printed = capsys.readouterr().out
    figures = json.loads(out.read_text())
    stages = {s["stage"]: s for s in figures["stages"]}
    assert list(stages) == [
        "seed",
        "extract",
        "plan",
        "synthesize",
        "synthesize, all items*",
        "synthesize (reuse)",
        "dial",
        "settle",
        "redials",
        "write_back",
        "report",
    ]
    for name, stage in stages.items():
        assert name in printed
        assert stage["wall_s"] > 0 and stage["peak_rss_mib"] > 10, name

    assert stages["seed"]["rows"] == stages["extract"]["rows"] == NOTICES
    assert stages["plan"]["rows"] == stages["report"]["rows"] == NOTICES
    report = figures["report"]
    assert sum(report["by_state"].values()) == NOTICES

    planned = figures["synthesis"]["planned"]
    skipped = report["by_state"].get("skipped", 0)
    batches = math.ceil(planned / BATCH)
    assert figures["batches"] == batches
    assert figures["task_instances"] == 2 * batches + 5
    assert stages["synthesize"]["task_instances"] == stages["dial"]["task_instances"] == batches
    # The sample is whole batches: the first one here; the rest reuse its audio.
    assert stages["synthesize"]["rows"] == BATCH
    assert stages["synthesize"]["rows"] + stages["synthesize (reuse)"]["rows"] == planned
    assert stages["synthesize, all items*"]["extrapolated"]
    assert stages["synthesize, all items*"]["rows"] == planned
    assert stages["synthesize"]["s3_bytes"] > 0

    # Every planned notice dialled once (a few stopped by the gate at dial time are
    # skipped); redials come from the redials stage; the report counts them all.
    dialled = stages["dial"]["rows"]
    assert planned - skipped <= dialled <= planned
    redials = report["calls"] - dialled
    assert f"redials ({redials:,})" in stages["redials"]["note"]
    # Every call settled: the dial stage's by the settle pass (some may still ring then).
    assert 0 < stages["settle"]["rows"] <= dialled
    assert stages["settle"]["rows"] + stages["redials"]["rows"] == report["calls"]
    assert "targets:" in printed
    for name in ("plan", "settle", "report"):
        assert f"  {name}: " in printed and "(target <=" in printed
    assert set(report["by_state"]) <= {"completed", "failed", "skipped"}

    compared = {row["figure"]: row for row in figures["capacity"]["compared"]}
    assert compared["call attempts"]["measured"] == report["calls"]
    assert compared["call attempts"]["predicted"] == pytest.approx(report["calls"], abs=0.5)
    assert figures["capacity"]["deployment"]["inputs"]["notices"] == planned
    assert "capacity plan for this date as deployed" in printed
    assert "time to last call" in printed


def test_a_target_is_met_only_at_or_under_its_figures() -> None:
    stages = [
        {"stage": "plan", "wall_s": 19.9, "peak_rss_mib": 501.0},
        {"stage": "settle", "wall_s": 60.0, "peak_rss_mib": 900.0},
        {"stage": "report", "wall_s": 10.1, "peak_rss_mib": 100.0},
    ]
    lines = bench_scale.target_lines(stages)
    assert [line.split(":")[0].strip() for line in lines] == ["plan", "settle", "report"]
    assert [line.endswith(": met") for line in lines] == [False, True, False]
