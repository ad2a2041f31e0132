"""No phone number in any log line, in any script of digits; data never forges a line.

The plan, dial and settle steps run on customers whose numbers are written in several
scripts and whose CRM fields hold newlines and escape sequences; every log record of
every logger is then searched for the numbers (read back to ASCII digits, separators
dropped) and for line breaks.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import unicodedata
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

from synthesis.text import NoticeComposer
from tests.support.crm_rows import seed_customers, synthesized_rows
from voice_notify import ledger
from voice_notify.dial import dialer as dispatch
from voice_notify.dial import ratelimit
from voice_notify.extract import due_notices
from voice_notify.gateway.http import SimulatorGateway
from voice_notify.gateway.twilio import TwilioGateway
from voice_notify.plan import eligibility
from voice_notify.plan.campaigns import CallingHours, load_campaign_config
from voice_notify.settle import outcomes
from voice_notify_dev.localrun import free_port

INCLUDE = Path(__file__).resolve().parents[2] / "include"
DAY = dt.date(2026, 11, 26)
NOON_UTC = dt.datetime(2026, 11, 26, 4, 0, tzinfo=dt.UTC)
CONFIG = replace(
    load_campaign_config(INCLUDE / "demo" / "campaigns.yaml"),
    calling_hours=CallingHours(start=dt.time(0), end=None),
)
PHONES = {
    1: "13812340001",
    2: "１３８１２３４０００２",  # full-width: folded, called
    3: "١٣٨١٢٣٤٠٠٠٣",  # Arabic-Indic: refused
    4: "१३८१२३४०००४",  # Devanagari: refused
    5: "138 1234 0005\nINFO forged: customer 13812340005 opted in",
    6: "+86 138-1234-0006",
    7: "¹³⁸¹²³⁴⁰⁰⁰⁷",  # superscripts: refused
}


def _digits(text: str) -> str:
    """Every digit of ``text``, in any script, as ASCII; everything else dropped."""
    out = []
    for char in text:
        value = unicodedata.digit(char, None)
        if value is not None:
            out.append(str(value))
    return "".join(out)


def _leaks(message: str) -> list[str]:
    digits = _digits(message)
    return [p for p in ("1381234",) if p in digits]


@pytest.fixture
def audio_url(tmp_path):
    """A tone served over loopback HTTP, as S3 serves presigned URLs."""
    import functools
    import http.server
    import threading

    import numpy as np
    import soundfile as sf

    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)
    sf.write(tmp_path / "tone.wav", tone, 8000, subtype="ULAW")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True).start()
    yield lambda key: f"http://127.0.0.1:{server.server_address[1]}/tone.wav"
    server.shutdown()
    server.server_close()


@pytest.fixture
def crm(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'crm.sqlite'}")
    seed_customers(engine, PHONES, DAY)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE notices SET notice_type = :t WHERE id = 6"), {"t": "x\r\nERROR forged"}
        )
    yield engine
    engine.dispose()


def test_no_log_line_holds_a_number_or_a_forged_line(crm, simulator, audio_url, caplog):
    caplog.set_level(logging.DEBUG)
    composer = NoticeComposer.load(INCLUDE)
    with crm.connect() as conn:
        notices = [json.loads(json.dumps(r, default=str)) for r in due_notices(conn, DAY, CONFIG)]
    decisions = eligibility.decide_all(
        notices, DAY, CONFIG.notice_types_of("all"), composer, CONFIG
    )
    reasons = {d.notice_id: d.reason_code for d in decisions}
    assert reasons[3] == reasons[4] == reasons[7] == "phone_non_ascii_digits"
    assert reasons[5] == "invalid_phone"
    # The readable numbers pass the phone check (their notices may fail on text).
    assert {reasons[1], reasons[2]}.isdisjoint({"invalid_phone", "phone_non_ascii_digits"})
    # Dial the planned ones and a refused one (the CRM is read again at dial time).
    rows = synthesized_rows(crm, [1, 2, 3, 6], DAY, "audio/tone.wav")
    ctx = dispatch.DialContext(
        gateway=SimulatorGateway(simulator.url),
        audio_url=audio_url,
        config=CONFIG,
        now=lambda: NOON_UTC,
        rate_limiter=ratelimit.RateLimiter(100),
        retry_initial_s=0.01,
    )
    counts = dispatch.dial_rows(crm, crm, rows, ctx)
    assert counts.dialed == 3 and counts.reasons == {"phone_non_ascii_digits": 1}
    outcomes.settle_calls(crm, [DAY], ctx.gateway, CONFIG, NOON_UTC)
    # A Twilio look-up that fails: its exception once carried the URL with the number.
    twilio = TwilioGateway(
        "AC" + "0" * 32,
        "token",
        "+8610123456",
        base_url=f"http://127.0.0.1:{free_port()}",
        timeout_s=0.5,
    )
    with crm.begin() as conn:
        conn.execute(sa.text("UPDATE notices SET status = 'due'"))
    late = [r for r in synthesized_rows(crm, [7], DAY, "audio/tone.wav") if r.notice_id == 7]
    with crm.begin() as conn:
        conn.execute(sa.text("UPDATE customers SET phone = '13812340007' WHERE id = 7"))
    counts = dispatch.dial_rows(crm, crm, late, replace(ctx, gateway=twilio, place_attempts=2))
    assert counts.left_for_reconcile == 1
    with crm.connect() as conn:
        stuck = [r for r in ledger.rows_for_date(conn, DAY) if r.notice_id == 7]
    later = replace(
        ctx, gateway=twilio, place_attempts=2, now=lambda: NOON_UTC + dt.timedelta(hours=1)
    )
    dispatch.dial_rows(crm, crm, stuck, later)

    messages = [r.getMessage() for r in caplog.records]
    messages += [r.exc_text or "" for r in caplog.records]
    assert any("twilio" in m for m in messages)
    leaked = [m for m in messages if _leaks(m)]
    assert leaked == []
    assert [m for m in messages if re.search(r"[\r\n]", m) and "Traceback" not in m] == []
