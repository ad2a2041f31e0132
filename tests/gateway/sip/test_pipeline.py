"""The SIP gateway inside the pipeline: dial, reconcile and CRM write-back on SQLite.

And the promise the ledger relies on: a process killed mid-call leaves a call book
that ``find_call`` reads, so the retry looks the call up and never calls again.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.gateway.sip.conftest import needs_baresip
from tests.support.crm_rows import seed_customers, synthesized_rows
from tests.synthesis.text.samples import INCLUDE
from voice_notify import ledger
from voice_notify.db.sql import make_engine
from voice_notify.dial import dialer as dispatch
from voice_notify.dial import ratelimit
from voice_notify.gateway.base import CallRequest, CallState
from voice_notify.gateway.sip.gateway import SipGateway, SipSettings
from voice_notify.plan.campaigns import CallingHours, load_campaign_config
from voice_notify.settle import outcomes as reconcile
from voice_notify.settle import writeback
from voice_notify_dev import demo_crm

pytestmark = [pytest.mark.integration, needs_baresip]

DAY = dt.date(2026, 11, 26)
NOON_UTC = dt.datetime(2026, 11, 26, 4, 0, tzinfo=dt.UTC)
CONFIG = load_campaign_config(INCLUDE / "demo" / "campaigns.yaml")
# One attempt per notice: a redial would dial the busy number again under a new key.
NO_REDIALS = replace(
    CONFIG,
    calling_hours=CallingHours(start=dt.time(0), end=None),
    notice_types={
        k: replace(v, redial=replace(v.redial, max_attempts=1))
        for k, v in CONFIG.notice_types.items()
    },
)
# CRM phones as people type them; +86 138 0000 00NN is what the callee serves.
PHONES = {1: "13800000009", 2: "13800000001", 3: "13800000000", 4: "13800000013"}


@pytest.fixture
def crm(tmp_path: Path):
    engine = make_engine(sa.make_url(f"sqlite:///{tmp_path / 'crm.sqlite'}"))
    seed_customers(engine, PHONES, DAY)
    synthesized_rows(engine, PHONES, DAY, "tone.wav")
    yield engine
    engine.dispose()


def _rows(engine: sa.Engine) -> dict[int, sa.Row]:
    with engine.connect() as conn:
        return {r.notice_id: r for r in ledger.rows_for_date(conn, DAY)}


def test_an_opt_out_key_reaches_the_crm(crm, callee, make_gateway, audio_server, tone_wav):
    url = audio_server.publish(tone_wav, "tone.wav")
    gateway = make_gateway(callee.host, callee.port)
    ctx = dispatch.DialContext(
        gateway=gateway,
        audio_url=lambda key: url,
        config=NO_REDIALS,
        now=lambda: NOON_UTC,
        rate_limiter=ratelimit.RateLimiter(50),
    )
    with crm.connect() as conn:
        rows = ledger.rows_for_date(conn, DAY)
    assert dispatch.dial_rows(crm, crm, rows, ctx).dialed == len(PHONES)
    deadline = time.monotonic() + 60
    while True:
        counts = reconcile.settle_calls(crm, [DAY], gateway, NO_REDIALS, NOON_UTC)
        if counts.still_open == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    with crm.connect() as conn:
        plan = writeback.load_write_back(conn, [DAY])
    writeback.write_back(crm, plan)

    rows = _rows(crm)
    assert {n: r.outcome for n, r in rows.items()} == {
        1: "opted_out",
        2: "confirmed",
        3: "busy",
        4: "completed",
    }
    with crm.connect() as conn:
        opted = {r.id for r in conn.execute(sa.select(demo_crm.customers)) if r.voice_opt_out}
        notices = {
            r.id: (r.status, r.status_reason) for r in conn.execute(sa.select(demo_crm.notices))
        }
        attempts = {
            r.notice_id: r.call_id for r in conn.execute(sa.select(demo_crm.contact_attempts))
        }
    assert opted == {1}
    assert notices[1] == ("delivered", "opted_out")
    assert notices[3] == ("undelivered", "busy")
    # The CRM's call id is the SIP Call-ID the callee saw.
    seen = {c.call_id for c in callee.calls()}
    assert set(attempts.values()) <= seen and len(attempts) == len(PHONES)


_PLACE_AND_HANG = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from voice_notify.gateway.base import CallRequest
    from voice_notify.gateway.sip.gateway import SipGateway, SipSettings
    host, port, state_dir, url = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    gateway = SipGateway(SipSettings(trunk_host=host, trunk_port=port, state_dir=Path(state_dir)))
    status = gateway.place_call(
        CallRequest(to="+8613800000005", idempotency_key="vn-5-2026-11-26-1", audio_url=url)
    )
    print(status.call_id, flush=True)
    time.sleep(600)
    """
)


def test_a_retry_after_a_kill_mid_call_does_not_call_again(
    tmp_path, callee, audio_server, tone_wav
):
    state_dir = tmp_path / "gateway"
    url = audio_server.publish(tone_wav)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(INCLUDE.parent / "plugins"), "."])}
    worker = subprocess.Popen(
        [sys.executable, "-c", _PLACE_AND_HANG, callee.host, str(callee.port), str(state_dir), url],
        stdout=subprocess.PIPE,
        env=env,
        cwd=INCLUDE.parent,
    )
    try:
        call_id = worker.stdout.readline().decode().strip()
        assert call_id
        # Generous for a loaded machine; the kill must come after the answer.
        deadline = time.monotonic() + 30
        while not _answered(state_dir, "vn-5-2026-11-26-1") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _answered(state_dir, "vn-5-2026-11-26-1"), "the callee never answered"
        time.sleep(0.5)  # mid-notice: the tone lasts 4 s
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)

    # The retry, in a new process: the ledger row is still ``dialing``, so it looks up.
    gateway = SipGateway(
        SipSettings(trunk_host=callee.host, trunk_port=callee.port, state_dir=state_dir)
    )
    found = gateway.find_call("vn-5-2026-11-26-1")
    assert found is not None and found.call_id == call_id
    assert (found.state, found.error) == (CallState.FAILED, "interrupted")
    # Even a blind resend with the same key places nothing.
    again = gateway.place_call(
        CallRequest(to="+8613800000005", idempotency_key="vn-5-2026-11-26-1", audio_url=url)
    )
    assert again.call_id == call_id
    # The orphaned baresip got SIGTERM with its parent and hung up: the callee saw one
    # call, ended by the caller long before the 4 s tone was over.
    calls = callee.wait_for_calls(1, timeout_s=30)
    time.sleep(1.0)
    assert [c.call_id for c in callee.calls()] == [call_id]
    assert calls[0].close_reason == "Connection reset by peer"
    assert calls[0].closed_at - calls[0].answered_at < 3.0


def _answered(state_dir: Path, key: str) -> bool:
    book = state_dir / "calls.jsonl"
    if not book.exists():
        return False
    lines = [json.loads(x) for x in book.read_text().splitlines() if x.strip()]
    return any(x["event"] == "answered" and x["key"] == key for x in lines)
