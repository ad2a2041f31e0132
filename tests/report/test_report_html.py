"""The campaign report: the JSON's new sections and the offline HTML page."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from voice_notify.report.campaign import campaign_report, frames_from_records
from voice_notify.report.html import render

DAY = dt.date(2026, 11, 26)
LEDGER = ("id", "notice_id", "notice_type", "locale", "state", "reason_code", "outcome")
LEDGER += ("audio_key",)


def _campaign():
    rows = [
        (1, 101, "repayment_reminder", "cmn", "completed", None, "confirmed", "audio/a.wav"),
        (2, 102, "repayment_reminder", "cmn", "failed", "no_answer", "no_answer", "audio/b"),
        (3, 103, "pension_arrival", "yue", "completed", None, "completed", "audio/c.wav"),
        (4, 104, "pension_arrival", "yue", "skipped", "opted_out", None, None),
        (5, 105, "policy_renewal", "en", "skipped", "invalid_phone", None, None),
        (6, 106, "policy_renewal", "cmn", "synthesized", None, None, "audio/d.wav"),
    ]
    attempts = [
        {"ledger_id": 1, "attempt": 1, "call_id": "c1", "outcome": "confirmed"},
        {"ledger_id": 2, "attempt": 1, "call_id": "c2", "outcome": "no_answer"},
        {"ledger_id": 2, "attempt": 2, "call_id": "c3", "outcome": "no_answer"},
        {"ledger_id": 3, "attempt": 1, "call_id": "c4", "outcome": "completed"},
    ]
    synthesis = [
        {"ledger_id": 1, "voice_profile": "agent-a", "emotion": "serious",
         "synthesis_status": "ok", "engine": "cosyvoice3", "fallback": False, "resumed": False,
         "duration_s": 10.0, "synth_seconds": 2.0, "speech_audio_s": 10.0,
         "cached_audio_s": 4.0, "engine_seconds": 1.5},
        {"ledger_id": 2, "voice_profile": "agent-a", "emotion": "serious",
         "synthesis_status": "ok", "engine": "espeak", "fallback": True, "resumed": False,
         "duration_s": 8.0, "synth_seconds": 0.5, "speech_audio_s": 8.0, "cached_audio_s": 0.0},
        {"ledger_id": 3, "voice_profile": "standard", "synthesis_status": "ok",
         "engine": "cosyvoice3", "resumed": True, "duration_s": 9.0},
        {"ledger_id": 6, "voice_profile": "agent-b", "emotion": "normal",
         "synthesis_status": "failed", "engine": "cosyvoice3", "error_code": "qc_similarity",
         "synth_seconds": 1.0},
        # Chosen at plan time, not synthesized yet: a voice, no synthesis figures.
        {"ledger_id": 7, "voice_profile": "agent-b", "emotion": "warm"},
    ]  # fmt: skip
    return [dict(zip(LEDGER, r, strict=True)) for r in rows], attempts, synthesis


def _report(synthesis: bool = True):
    rows, attempts, results = _campaign()
    return campaign_report(frames_from_records(rows, attempts, results if synthesis else []), DAY)


def test_report_rates_and_synthesis_figures() -> None:
    body = _report()
    cmn = body["rates_by_locale"]["cmn"]
    assert (cmn["notices"], cmn["called"], cmn["reached"]) == (3, 2, 1)
    assert cmn["reached_rate"] == 0.5 and cmn["call_rate"] == 0.6667
    assert body["rates_by_locale"]["yue"]["reached_rate"] == 1.0
    assert body["rates_by_notice_type"]["policy_renewal"]["reached_rate"] is None
    synthesis = body["synthesis"]
    assert (synthesis["items"], synthesis["ok"], synthesis["failed"]) == (4, 3, 1)
    assert synthesis["fallback_rate"] == 0.3333  # 1 of 3 rendered ok
    assert synthesis["cache_rate"] == round(4.0 / 18.0, 4)  # resumed items excluded
    assert synthesis["synth_seconds"] == 3.5
    assert synthesis["by_error"] == {"qc_similarity": 1}
    # The fields the JSON had before are unchanged.
    assert body["by_outcome"] == {"completed": 1, "confirmed": 1, "no_answer": 1}
    assert body["calls"] == 4 and body["notices"] == 6
    assert body["voices"] == {
        "agent-a": {"serious": 2},
        "agent-b": {"normal": 1, "warm": 1},
        "standard": {"-": 1},
    }
    assert body["items"][0] == {
        "notice_id": 101,
        "notice_type": "repayment_reminder",
        "state": "completed",
        "reason_code": None,
        "outcome": "confirmed",
        "audio_key": "audio/a.wav",
    }
    json.dumps(body)  # plain Python values only


def test_html_is_self_contained_with_inline_svg_charts() -> None:
    page = render(_report())
    assert page.startswith("<!DOCTYPE html>") and "campaign 2026-11-26" in page
    assert "<script" not in page.lower()
    # Nothing to fetch: no external URL anywhere (the SVG namespace is an identifier).
    urls = set(re.findall(r"https?://[^\s\"'<>]+", page)) - {"http://www.w3.org/2000/svg"}
    assert urls == set()
    svgs = re.findall(r"<svg.*?</svg>", page, flags=re.S)
    assert len(svgs) >= 6
    for svg in svgs:
        ET.fromstring(svg)  # each chart is well-formed XML
    for text in ("opted_out", "invalid_phone", "qc_similarity", "yue", "pension_arrival"):
        assert text in page
    assert "33.3 %" in page  # the fallback rate tile


def test_html_escapes_what_it_shows() -> None:
    rows, attempts, _ = _campaign()
    bad = (9, 109, "<b>x</b>", "cmn", "skipped", "<script>", None, None)
    rows.append(dict(zip(LEDGER, bad, strict=True)))
    page = render(campaign_report(frames_from_records(rows, attempts), DAY))
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "No synthesis results" in page


def test_page_renders_offline_in_headless_chromium(tmp_path: Path) -> None:
    # `make test` installs chromium (system-deps): missing means a broken setup.
    assert shutil.which("chromium"), "chromium is not installed; run `make system-deps`"
    page = tmp_path / "report.html"
    page.write_text(render(_report()), encoding="utf-8")
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            "chromium", "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,1600", f"--screenshot={shot}", page.as_uri(),
        ],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    pixels = _read_png(shot.read_bytes()).astype(np.int16)
    assert pixels.shape[:2] == (1600, 1200)
    # Not a blank page: the bars' colours are there (the completed green, among others).
    green = np.all(np.abs(pixels - np.array([0x2E, 0x7D, 0x32])) < 8, axis=-1)
    assert green.sum() > 200


def _read_png(data: bytes) -> np.ndarray:
    """Pixels of an 8-bit RGB or RGBA PNG (what Chromium writes), without an image library."""
    import struct
    import zlib

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        chunks.setdefault(kind, []).append(data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][0][:10])
    assert depth == 8 and color in (2, 6)
    channels = 3 if color == 2 else 4
    raw = zlib.decompress(b"".join(chunks[b"IDAT"]))
    stride = width * channels
    out = np.zeros((height, stride), dtype=np.uint8)
    previous = np.zeros(stride, dtype=np.int32)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], np.frombuffer(raw[start + 1 : start + 1 + stride], np.uint8)
        line = line.astype(np.int32)
        if kind == 2:
            line = (line + previous) & 0xFF
        elif kind in (1, 3, 4):  # these depend on the left neighbour: decode per byte
            line = line.copy()
            for x in range(stride):
                left = line[x - channels] if x >= channels else 0
                up, corner = previous[x], previous[x - channels] if x >= channels else 0
                if kind == 1:
                    predictor = left
                elif kind == 3:
                    predictor = (left + up) // 2
                else:
                    p = left + up - corner
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                    predictor = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[x] = (line[x] + predictor) & 0xFF
        out[y] = line
        previous = line
    return out.reshape(height, width, channels)[:, :, :3]


def test_report_shows_each_batch_and_how_far_it_got() -> None:
    rows, attempts, results = _campaign()
    first, second = (f"campaigns/{DAY}/all/batches/batch-{n:04d}.jsonl" for n in (0, 1))
    for row in rows:
        row["batch_key"] = (
            None if row["state"] == "skipped" else (first if row["id"] <= 2 else second)
        )
    body = campaign_report(frames_from_records(rows, attempts, results), DAY)
    assert body["batches"] == [
        {"batch": "batch-0000", "notices": 2, "ended": 2,
         "by_state": {"completed": 1, "failed": 1}},
        {"batch": "batch-0001", "notices": 2, "ended": 1,
         "by_state": {"completed": 1, "synthesized": 1}},
    ]  # fmt: skip
    page = render(body)
    assert "<h2>Batches</h2>" in page and "batch-0001" in page and "synthesized 1" in page
    assert _report()["batches"] == []  # no batch keys recorded: no batch rows
