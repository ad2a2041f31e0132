"""The SIP call service inside the pipeline: dial, reconcile and CRM write-back on SQLite.

And what the service exists for: calls outlive the process that placed them (Airflow 3
ends a finished task's process with ``os._exit``), and a service that dies mid-call
settles what it carried honestly when it comes back, keeping a key already pressed and
never dialling again.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.gateway.sip.conftest import SECRET, needs_baresip
from tests.support.crm_rows import seed_customers, synthesized_rows
from tests.synthesis.text.samples import INCLUDE
from voice_notify import ledger
from voice_notify.db import schema
from voice_notify.db.sql import make_engine
from voice_notify.dial import dialer as dispatch
from voice_notify.dial import ratelimit
from voice_notify.gateway.base import CallRequest, CallState
from voice_notify.gateway.sip.audio import read_pcm
from voice_notify.gateway.sip.gateway import SipGateway
from voice_notify.plan.campaigns import CallingHours, load_campaign_config
from voice_notify.settle import outcomes as reconcile
from voice_notify.settle import writeback
from voice_notify_dev import demo_crm
from voice_notify_dev.localrun import start_sip_service
from voice_notify_dev.sip_callee import CalleeBehaviour, compare_answered_calls

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
EXPECTED = {1: "opted_out", 2: "confirmed", 3: "busy", 4: "completed"}
SERVICE_OPTIONS = {
    "setup-timeout-s": 2,
    "ring-timeout-s": 5,
    "dtmf-grace-s": 1,
    "heartbeat-s": 0.5,
    "lease-s": 3,
    "rtp-ports": "42000-42999",
}


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


def _settle_and_write_back(crm: sa.Engine, gateway, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        counts = reconcile.settle_calls(crm, [DAY], gateway, NO_REDIALS, NOON_UTC)
        if counts.still_open == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    with crm.connect() as conn:
        plan = writeback.load_write_back(conn, [DAY])
    writeback.write_back(crm, plan)


def _assert_the_crm_has_every_outcome(crm: sa.Engine) -> None:
    assert {n: r.outcome for n, r in _rows(crm).items()} == EXPECTED
    with crm.connect() as conn:
        opted = {r.id for r in conn.execute(sa.select(demo_crm.customers)) if r.voice_opt_out}
        notices = {
            r.id: (r.status, r.status_reason) for r in conn.execute(sa.select(demo_crm.notices))
        }
    assert opted == {1}
    assert notices[1] == ("delivered", "opted_out")
    assert notices[3] == ("undelivered", "busy")


def _sip_call_ids(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as conn:
        query = sa.select(schema.sip_calls.c.call_id, schema.sip_calls.c.sip_call_id)
        return dict(conn.execute(query).all())


def _dial_context(gateway, url: str) -> dispatch.DialContext:
    return dispatch.DialContext(
        gateway=gateway,
        audio_url=lambda key: url,
        config=NO_REDIALS,
        now=lambda: NOON_UTC,
        rate_limiter=ratelimit.RateLimiter(50),
    )


def test_an_opt_out_key_reaches_the_crm(crm, callee, make_service, audio_server, tone_wav):
    url = audio_server.publish(tone_wav, "tone.wav")
    running = make_service(callee.host, callee.port, engine=crm)
    with crm.connect() as conn:
        rows = ledger.rows_for_date(conn, DAY)
    counts = dispatch.dial_rows(crm, crm, rows, _dial_context(running.gateway, url))
    assert counts.dialed == len(PHONES)
    _settle_and_write_back(crm, running.gateway)
    _assert_the_crm_has_every_outcome(crm)
    with crm.connect() as conn:
        attempts = {
            r.notice_id: r.call_id for r in conn.execute(sa.select(demo_crm.contact_attempts))
        }
    # The CRM's call id is the service's; its call book names the SIP Call-ID the callee saw.
    seen = {c.call_id for c in callee.calls()}
    sip_ids = _sip_call_ids(crm)
    assert {sip_ids[a] for a in attempts.values()} <= seen and len(attempts) == len(PHONES)


# What Airflow 3's task supervisor does to a finished task: os._exit, no thread waited for.
_DIAL_AND_EXIT = textwrap.dedent(
    """
    import datetime as dt, json, os, sys
    from dataclasses import replace
    from voice_notify import ledger
    from voice_notify.db.sql import make_engine
    from voice_notify.dial import dialer, ratelimit
    from voice_notify.gateway.sip.gateway import SipGateway
    from tests.gateway.sip.test_pipeline import DAY, NO_REDIALS, NOON_UTC

    db_url, service_url, secret, audio_url = sys.argv[1:5]
    engine = make_engine(db_url)
    ctx = dialer.DialContext(
        gateway=SipGateway(service_url, secret),
        audio_url=lambda key: audio_url,
        config=NO_REDIALS,
        now=lambda: NOON_UTC,
        rate_limiter=ratelimit.RateLimiter(50),
    )
    with engine.connect() as conn:
        rows = ledger.rows_for_date(conn, DAY)
    counts = dialer.dial_rows(engine, engine, rows, ctx)
    print(json.dumps(counts.as_dict()), flush=True)
    os._exit(0)
    """
)


def _child_env() -> dict[str, str]:
    root = INCLUDE.parent
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "plugins"), str(root)])}


def test_calls_outlive_the_task_process_that_placed_them(
    tmp_path, crm, callee, audio_server, tone_wav
):
    """The dial step runs in a process that ends with os._exit right after placing the
    calls: every answered call still plays to the end, and every key reaches the CRM."""
    url = audio_server.publish(tone_wav, "tone.wav")
    db_url = crm.url.render_as_string(hide_password=False)
    with start_sip_service(
        tmp_path / "service",
        db_url=db_url,
        trunk_host=callee.host,
        trunk_port=callee.port,
        secret=SECRET,
        options=SERVICE_OPTIONS,
    ) as service:
        child = subprocess.run(
            [sys.executable, "-c", _DIAL_AND_EXIT, db_url, service.url, SECRET, url],
            capture_output=True,
            text=True,
            env=_child_env(),
            cwd=INCLUDE.parent,
            timeout=60,
        )
        assert child.returncode == 0, child.stderr[-3000:]
        assert json.loads(child.stdout.splitlines()[-1])["dialed"] == len(PHONES)
        # The process that placed them is gone; the calls are not.
        gateway = SipGateway(service.url, SECRET)
        _settle_and_write_back(crm, gateway)
    _assert_the_crm_has_every_outcome(crm)
    answered = callee.wait_for_calls(len(PHONES), timeout_s=10)
    assert len(answered) == len(PHONES)
    sip_ids = _sip_call_ids(crm)
    sent = {sip_ids[r.call_id]: tone_wav for r in _rows(crm).values()}
    matches = compare_answered_calls(callee.state_dir, sent)
    assert len(matches) == 3  # busy never answered
    for match in matches:
        # Every frame of the notice arrived: played to the end.
        assert match.matches, match.as_dict()


def test_a_restarted_service_settles_what_it_carried_and_never_dials_again(
    tmp_path, ledger_engine, callee, audio_server
):
    import io

    import numpy as np
    import soundfile as sf

    # A notice long enough to be cut: the customer presses 9 one second in.
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(8 * 8000) / 8000)
    buffer = io.BytesIO()
    sf.write(buffer, tone, 8000, subtype="ULAW", format="WAV")
    url = audio_server.publish(buffer.getvalue())
    opt_out, listener, waiting = "+8613900000031", "+8613900000033", "+8613900000035"
    callee.add_numbers(
        [opt_out, listener, waiting],
        {
            opt_out: CalleeBehaviour("opt_out", "opted_out", rings=0, key="9", key_after_s=1.0),
            listener: CalleeBehaviour("listen", "completed", rings=0),
            waiting: CalleeBehaviour("listen", "completed", rings=0),
        },
    )
    db_url = ledger_engine.url.render_as_string(hide_password=False)
    options = {**SERVICE_OPTIONS, "max-calls": 2}
    start = {
        "db_url": db_url,
        "trunk_host": callee.host,
        "trunk_port": callee.port,
        "secret": SECRET,
        "name": "sip-restart",
        "options": options,
    }
    requests = {
        number: CallRequest(to=number, idempotency_key=f"vn-{n}-2026-11-26-1", audio_url=url)
        for n, number in enumerate((opt_out, listener, waiting))
    }
    service = start_sip_service(tmp_path / "service", **start)
    try:
        gateway = SipGateway(service.url, SECRET)
        placed = {n: gateway.place_call(r).call_id for n, r in requests.items()}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with ledger_engine.connect() as conn:
                book = {r.call_id: r for r in conn.execute(sa.select(schema.sip_calls)).all()}
            if book[placed[opt_out]].digits == "9" and book[placed[listener]].answered_at:
                break
            time.sleep(0.05)
        assert book[placed[opt_out]].digits == "9", "the key never reached the call book"
        assert book[placed[waiting]].dialed_at is None  # two lines: it waits in the queue
    finally:
        service.kill()  # mid-call, mid-notice: as a crashed node would
    restarted = start_sip_service(tmp_path / "service", **start)
    try:
        gateway = SipGateway(restarted.url, SECRET)
        statuses = {n: gateway.find_call(r.idempotency_key) for n, r in requests.items()}
        # A blind resend with the same key places nothing.
        again = gateway.place_call(requests[waiting])
    finally:
        restarted.stop()
    assert (statuses[opt_out].state, statuses[opt_out].key_pressed) == (CallState.COMPLETED, "9")
    assert statuses[opt_out].error == "interrupted"
    assert reconcile.outcome_of(statuses[opt_out], "1", "9") == "opted_out"
    assert (statuses[listener].state, statuses[listener].error) == (
        CallState.FAILED,
        "interrupted",
    )
    assert (statuses[waiting].state, statuses[waiting].error) == (
        CallState.CANCELED,
        "not_dialed",
    )
    assert again.call_id == placed[waiting] and again.state is CallState.CANCELED
    # The callee saw the two calls that were on the line, each hung up when the service
    # died (its baresip processes got SIGTERM with it), and nothing after the restart.
    calls = callee.wait_for_calls(2, timeout_s=15)
    time.sleep(1.0)
    assert len(callee.calls()) == 2
    for call in calls:
        assert call.closed_at - call.answered_at < 7.0  # well before the 8 s notice ended
    recordings = [read_pcm(callee.state_dir / c.recording) for c in calls if c.recording]
    assert recordings and all(r.size < 8 * 8000 for r in recordings)


def test_another_replica_settles_the_calls_of_one_that_died(
    tmp_path, ledger_engine, callee, audio_server, tone_wav
):
    """A replica that dies and does not come back: once its heartbeat is older than the
    lease (and the survivor has been alive that long), the survivor settles its calls."""
    db_url = ledger_engine.url.render_as_string(hide_password=False)
    common = {
        "db_url": db_url,
        "trunk_host": callee.host,
        "trunk_port": callee.port,
        "secret": SECRET,
        "options": SERVICE_OPTIONS,  # heartbeat 0.5 s, lease 3 s
    }
    url = audio_server.publish(tone_wav)
    request = CallRequest(to="+8613800000005", idempotency_key="vn-5-2026-11-26-1", audio_url=url)
    doomed = start_sip_service(tmp_path / "a", name="sip-a", **common)
    survivor = start_sip_service(tmp_path / "b", name="sip-b", **common)
    try:
        call_id = SipGateway(doomed.url, SECRET).place_call(request).call_id
        time.sleep(0.5)
        doomed.kill()
        gateway = SipGateway(survivor.url, SECRET)
        deadline = time.monotonic() + 20
        while not (status := gateway.call_status(call_id)).terminal:
            assert time.monotonic() < deadline, "the dead replica's call was never settled"
            time.sleep(0.2)
        assert status.error in ("interrupted", "not_dialed")
        # The survivor knows the key: a resend places nothing.
        assert gateway.place_call(request).call_id == call_id
    finally:
        survivor.stop()
        doomed.stop()
    time.sleep(0.5)
    assert len(callee.calls()) <= 1


def test_a_second_live_replica_under_one_name_is_refused(tmp_path, ledger_engine, callee):
    """Two replicas given one name would settle each other's calls as interrupted:
    the second refuses to start, and says which name and host; once the first has
    stopped, the name is free again."""
    common = {
        "db_url": ledger_engine.url.render_as_string(hide_password=False),
        "trunk_host": callee.host,
        "trunk_port": callee.port,
        "secret": SECRET,
        "name": "sip-twin",
        "options": SERVICE_OPTIONS,
    }
    first = start_sip_service(tmp_path / "a", **common)
    try:
        with pytest.raises(RuntimeError) as refused:
            start_sip_service(tmp_path / "b", startup_timeout_s=20, **common)
        assert "another live call service runs under the name 'sip-twin'" in str(refused.value)
        assert SipGateway(first.url, SECRET).find_call("vn-0-2026-11-26-1") is None  # unharmed
    finally:
        first.stop()
    again = start_sip_service(tmp_path / "b", **common)
    again.stop()
