"""Infrastructure faults during dialing: the ledger's PostgreSQL connections killed
mid-dial (``pg_terminate_backend``), and the S3 endpoint down for a while.

Whatever fails, the invariant is the ledger's: each notice is called exactly once in
the end, no call is lost, and what fails is retried (by the task, by the reconcile DAG,
by the dial step's own per-call retries) rather than dropped.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import threading
import uuid
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import POSTGRES_ENV, _fresh_database, drop_database
from tests.dial.test_dialer import DAY, NOON_UTC, _calls, _crm, _ctx, _rows, _synthesized
from voice_notify.db import schema
from voice_notify.db.sql import make_engine
from voice_notify.dial import dialer as dispatch
from voice_notify.gateway.http import SimulatorGateway
from voice_notify_dev.simulator import start_simulator


class TcpProxy:
    """A TCP relay in front of a service that can be switched off and on (an outage)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = threading.Event()
        self.up.set()
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def down(self) -> None:
        self.up.clear()
        with self._lock:
            for sock in self._open:
                sock.close()
            self._open.clear()

    def back(self) -> None:
        self.up.set()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up.is_set():
                client.close()  # the endpoint is down: refused mid-handshake
                continue
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.close()

    def close(self) -> None:
        self.down()
        self.listener.close()


def _assert_each_notice_called_once(engine: sa.Engine, simulator, notices: int) -> None:
    calls = _calls(simulator)
    per_key = Counter(c["idempotency_key"] for c in calls)
    assert calls and max(per_key.values()) == 1, per_key.most_common(3)
    per_notice = Counter(c["metadata"]["notice_id"] for c in calls)
    assert len(per_notice) == notices and max(per_notice.values()) == 1
    rows = _rows(engine)
    assert {r.state for r in rows.values()} == {"dialed"}
    assert {r.call_id for r in rows.values()} == {c["call_id"] for c in calls}
    with engine.connect() as conn:
        attempts = conn.execute(sa.select(schema.call_attempts)).all()
    assert len(attempts) == notices and {a.call_id for a in attempts} == {
        c["call_id"] for c in calls
    }


# --- PostgreSQL connections killed mid-dial -----------------------------------------------


@pytest.fixture
def pg_engine():
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        pytest.skip(f"{POSTGRES_ENV} is not set; CI sets it (see .ci/run)")
    url = _fresh_database(server, f"vn_sip_{uuid.uuid4().hex[:8]}")
    engine = make_engine(url)
    yield engine
    engine.dispose()
    drop_database(url)


class BackendKiller(threading.Thread):
    """Terminates every other connection to the database, again and again."""

    def __init__(self, engine: sa.Engine, every_s: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.admin = sa.create_engine(
            sa.make_url(os.environ[POSTGRES_ENV]), isolation_level="AUTOCOMMIT"
        )
        self.database = engine.url.database
        self.every_s = every_s
        self.stop = threading.Event()
        self.killed = 0

    def run(self) -> None:
        with self.admin.connect() as conn:
            while not self.stop.wait(self.every_s):
                self.killed += len(
                    conn.execute(
                        sa.text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = :db AND pid <> pg_backend_pid()"
                        ),
                        {"db": self.database},
                    ).all()
                )
        self.admin.dispose()


def test_killed_database_connections_lose_and_double_no_call(pg_engine, simulator, audio_url):
    notices = 30
    _crm(pg_engine, n=notices)
    rows = _synthesized(pg_engine, range(1, notices + 1))
    gateway = SimulatorGateway(simulator.url)
    killer = BackendKiller(pg_engine)
    killer.start()
    figures = Counter()
    try:
        # The dial task, with its connections killed under it; a task that fails
        # (the database looks down) is retried by Airflow.
        for _ in range(3):
            try:
                counts = dispatch.dial_rows(
                    pg_engine, pg_engine, rows, _ctx(gateway, audio_url, now=NOON_UTC)
                )
                figures.update(dialed=counts.dialed, db_errors=counts.db_errors)
                break
            except sa.exc.DBAPIError:
                figures["task_failures"] += 1
                rows = list(_rows(pg_engine).values())
    finally:
        killer.stop.set()
        killer.join()
    assert killer.killed > 0
    figures["connections_killed"] = killer.killed
    # The reconcile DAG's passes, later: whatever was left is looked up, then placed.
    for n in range(1, 4):
        later = NOON_UTC + dt.timedelta(minutes=2 * n)
        open_rows = [r for r in _rows(pg_engine).values() if r.state != "dialed"]
        if not open_rows:
            break
        counts = dispatch.dial_rows(
            pg_engine, pg_engine, open_rows, _ctx(gateway, audio_url, now=later)
        )
        assert counts.gateway_down is False
        figures["reconcile_passes"] += 1
        figures["placed_by_reconcile"] += counts.dialed
    _assert_each_notice_called_once(pg_engine, simulator, notices)
    print(f"pg_terminate_backend figures: {dict(figures)}")


# --- the S3 endpoint down for a while -----------------------------------------------------


@pytest.fixture
def s3_proxy(s3_endpoint):
    proxy = TcpProxy(int(s3_endpoint.url.rsplit(":", 1)[1]))
    yield proxy
    proxy.close()


@pytest.fixture
def proxied_audio_url(s3_bucket, s3_proxy, audio_url):
    """Presigned URLs of the tone through the proxy (what the gateway fetches)."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_proxy.url)
    return lambda key: client.generate_presigned_url(
        "get_object", Params={"Bucket": s3_bucket, "Key": key}, ExpiresIn=3600
    )


def test_an_s3_outage_during_dialing_is_waited_out_not_rejected(
    tmp_path, s3_proxy, proxied_audio_url
):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'crm.sqlite'}")
    _crm(engine, n=6)
    rows = _synthesized(engine, range(1, 7))
    with start_simulator(tmp_path / "gateway", seed=3, call_seconds=0.2) as sim:
        gateway = SimulatorGateway(sim.url)
        s3_proxy.down()
        threading.Timer(1.0, s3_proxy.back).start()  # back within the retries' backoff
        ctx = replace(_ctx(gateway, proxied_audio_url), retry_initial_s=0.4, retry_max_s=2.0)
        counts = dispatch.dial_rows(engine, engine, rows, ctx)
        assert (counts.dialed, counts.rejected, counts.left_for_reconcile) == (6, 0, 0)
        _assert_each_notice_called_once(engine, sim, 6)
    engine.dispose()


def test_an_s3_outage_longer_than_the_retries_is_left_for_reconcile(
    tmp_path, s3_proxy, proxied_audio_url
):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'crm.sqlite'}")
    _crm(engine, n=4)
    rows = _synthesized(engine, range(1, 5))
    with start_simulator(tmp_path / "gateway", seed=3, call_seconds=0.2) as sim:
        gateway = SimulatorGateway(sim.url)
        s3_proxy.down()
        counts = dispatch.dial_rows(engine, engine, rows, _ctx(gateway, proxied_audio_url))
        # Nothing rejected, nothing failed: every row waits in dialing, looked up later.
        assert (counts.dialed, counts.rejected, counts.left_for_reconcile) == (0, 0, 4)
        assert counts.gateway_down  # the task fails loudly; its retry looks each call up
        assert {r.state for r in _rows(engine).values()} == {"dialing"}
        s3_proxy.back()
        later = NOON_UTC + dt.timedelta(minutes=2)
        stuck = list(_rows(engine).values())
        counts = dispatch.dial_rows(
            engine, engine, stuck, _ctx(gateway, proxied_audio_url, now=later)
        )
        assert counts.dialed == 4
        _assert_each_notice_called_once(engine, sim, 4)
    engine.dispose()


def test_the_dial_task_retries_after_an_s3_outage(
    tmp_path, s3_bucket, s3_proxy, monkeypatch: pytest.MonkeyPatch
):
    """The task itself reads its batch's results from S3: down, it fails (Airflow retries
    it); back, the retry records the results and places every call once."""
    import boto3

    from synthesis.manifest import ResultItem
    from voice_notify import ledger
    from voice_notify.airflow import hooks, storage, tasks
    from voice_notify.settings import get_settings

    include = Path(__file__).resolve().parents[2] / "include"
    db_path = tmp_path / "crm.sqlite"
    engine = sa.create_engine(f"sqlite:///{db_path}")
    _crm(engine, n=3)
    batch_key = "campaigns/2026-11-26/all/batches/batch-0000.jsonl"
    with engine.begin() as conn:
        ledger.record_plan(
            conn,
            [
                {
                    "notice_id": i,
                    "customer_id": i,
                    "campaign_date": DAY,
                    "state": ledger.LedgerState.PLANNED,
                    "notice_type": "pension_arrival",
                }
                for i in (1, 2, 3)
            ],
        )
        conn.execute(schema.dispatch_ledger.update().values(batch_key=batch_key))
        planned = ledger.rows_for_date(conn, DAY)
    client = boto3.client("s3")
    client.upload_file(str(_tone(tmp_path)), s3_bucket, "audio/tone.wav")
    results_key = "campaigns/2026-11-26/all/results/batch-0000.jsonl"
    lines = [
        ResultItem(r.id, r.notice_id, "ok", "espeak", 1, audio_key="audio/tone.wav").to_json()
        for r in planned
    ]
    client.put_object(Bucket=s3_bucket, Key=results_key, Body="\n".join(lines).encode())
    with start_simulator(tmp_path / "gateway", seed=3, call_seconds=0.2) as sim:
        s3_conn = json.loads(
            json.dumps(
                {
                    "conn_type": "aws",
                    "login": "testing",
                    "password": "testing",
                    "extra": {"region_name": "us-east-1", "endpoint_url": s3_proxy.url},
                }
            )
        )
        env = {
            "AIRFLOW_CONN_VN_SIP_CRM": json.dumps({"conn_type": "sqlite", "host": str(db_path)}),
            "AIRFLOW_CONN_VN_SIP_S3": json.dumps(s3_conn),
            "AIRFLOW_CONN_VN_SIP_GATEWAY": json.dumps(
                {
                    "conn_type": "http",
                    "host": "127.0.0.1",
                    "port": int(sim.url.rsplit(":", 1)[1]),
                    "extra": {"kind": "simulator", "timeout_s": 2},
                }
            ),
            "VOICE_NOTIFY_CRM_CONN_ID": "vn_sip_crm",
            "VOICE_NOTIFY_S3_CONN_ID": "vn_sip_s3",
            "VOICE_NOTIFY_GATEWAY_CONN_ID": "vn_sip_gateway",
            "VOICE_NOTIFY_BUCKET": s3_bucket,
            "VOICE_NOTIFY_CAMPAIGNS_FILE": str(include / "demo" / "campaigns.yaml"),
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        storage.s3_hook.cache_clear()
        hooks.dispose_engines()
        try:
            s3_proxy.down()
            with pytest.raises(Exception) as failed:  # the task fails; Airflow retries it
                tasks.dial(DAY, batch_key, results_key, dry_run=False)
            assert "connect" in repr(failed.value).lower()
            assert _calls(sim) == []
            s3_proxy.back()
            first = tasks.dial(DAY, batch_key, results_key, dry_run=False)
            again = tasks.dial(DAY, batch_key, results_key, dry_run=False)  # a rerun
        finally:
            get_settings.cache_clear()
            storage.s3_hook.cache_clear()
            hooks.dispose_engines()
        assert (first["dialed"], again["dialed"]) == (3, 0)
        _assert_each_notice_called_once(engine, sim, 3)
    engine.dispose()


def _tone(directory: Path) -> Path:
    import numpy as np
    import soundfile as sf

    path = directory / "tone.wav"
    sf.write(path, 0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000), 8000, subtype="ULAW")
    return path
