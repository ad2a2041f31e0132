"""A dialing process killed between ``dialing`` and the gateway's answer.

The child process enters ``dialing`` (committed), sends the call, and is
killed with SIGKILL while the gateway is still holding the request (a slow
audio fetch). The gateway then accepts the call anyway. The retry must find
that call by its idempotency key and never send a second one.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.dial.test_dialer import DAY, _calls, _crm, _ctx, _rows, _synthesized
from voice_notify.dial import dialer as dispatch
from voice_notify.gateway.http import SimulatorGateway
from voice_notify.gateway.twilio import TwilioGateway
from voice_notify_dev.simulator import start_simulator

CHILD = """
import datetime as dt, sys
from dataclasses import replace
from pathlib import Path
import boto3, sqlalchemy as sa
from voice_notify.dial import dialer as dispatch, ratelimit
from voice_notify.plan.campaigns import CallingHours, load_campaign_config
from voice_notify.gateway.http import SimulatorGateway
from voice_notify.gateway.twilio import TwilioGateway

db_url, gateway_url, bucket, include, kind = sys.argv[1:6]
if kind == "twilio":
    gateway = TwilioGateway("AC" + "0" * 32, "token", "+8610123456", base_url=gateway_url,
                            timeout_s=30)
else:
    gateway = SimulatorGateway(gateway_url, timeout_s=30)
client = boto3.client("s3")
config = load_campaign_config(Path(include) / "demo" / "campaigns.yaml")
ctx = dispatch.DialContext(
    gateway=gateway,
    audio_url=lambda key: client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600),
    config=config,
    now=lambda: dt.datetime.now(dt.UTC),  # Twilio's call log is searched by real time
    rate_limiter=ratelimit.RateLimiter(100),
)
engine = sa.create_engine(db_url)
with engine.connect() as conn:
    from voice_notify import ledger
    rows = ledger.rows_for_date(conn, dt.date(2026, 11, 26))
dispatch.dial_rows(engine, engine, rows, ctx)
"""


def _wait_for_state(engine: sa.Engine, state: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(r.state == state for r in _rows(engine).values()):
            return
        time.sleep(0.05)
    raise AssertionError(f"no row reached {state}")


TWILIO = {"twilio_account_sid": "AC" + "0" * 32, "twilio_auth_token": "token"}


def _gateway(kind: str, url: str):
    if kind == "twilio":
        return TwilioGateway(
            TWILIO["twilio_account_sid"], "token", "+8610123456", base_url=url, timeout_s=5
        )
    return SimulatorGateway(url)


# Twilio has no idempotency keys: a blind resend would make a second call there,
# so only a real lookup (by number and time) passes with it.
@pytest.mark.parametrize("kind", ["http", "twilio"])
def test_a_killed_dialer_never_calls_twice(
    kind: str, tmp_path: Path, s3_bucket: str, audio_url
) -> None:
    db_url = f"sqlite:///{tmp_path / 'crm.sqlite'}"
    engine = sa.create_engine(db_url)
    _crm(engine, n=1)
    _synthesized(engine, [1])
    state_dir = tmp_path / "gateway"
    include = Path(__file__).resolve().parents[2] / "include"
    with start_simulator(
        state_dir,
        seed=5,
        call_seconds=0.2,
        faults="slow_audio_fetch=1",
        fault_delay_s=2,
        **TWILIO,
    ) as slow:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, db_url, slow.url, s3_bucket, str(include), kind],
            env=dict(os.environ),
        )
        _wait_for_state(engine, "dialing", 30)
        time.sleep(0.5)  # the request is at the gateway, which holds it
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        assert _rows(engine)[1].state == "dialing"  # died before recording any answer
        deadline = time.monotonic() + 10
        while not (state_dir / "calls.jsonl").exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # the gateway accepts the call after all
        assert len(_calls(slow)) == 1
    # The retry, against the same gateway state (now without faults).
    with start_simulator(
        state_dir, seed=5, call_seconds=0.2, faults="", **TWILIO
    ) as gateway_process:
        gateway = _gateway(kind, gateway_process.url)
        rows = list(_rows(engine).values())
        # The retry comes after Airflow's retry delay, past the resume grace.
        retry_at = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)
        counts = dispatch.dial_rows(engine, engine, rows, _ctx(gateway, audio_url, now=retry_at))
        assert counts.dialed == 1
        calls = _calls(gateway_process)
    assert len(calls) == 1
    if kind == "http":
        assert calls[0]["idempotency_key"] == dispatch.idempotency_key(1, DAY, 1)
    row = _rows(engine)[1]
    assert (row.state, row.call_id) == ("dialed", calls[0]["call_id"])
    with engine.connect() as conn:
        attempts = conn.execute(sa.text("SELECT call_id FROM call_attempts")).scalars().all()
    assert attempts == [calls[0]["call_id"]]
    assert row.dialing_started_at <= row.dialed_at
