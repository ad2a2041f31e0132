"""The gateway callback endpoint (an Airflow plugin's FastAPI app) with a real ledger DB."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from twilio.request_validator import RequestValidator

from voice_notify.db import migrate, schema
from voice_notify.gateway.callbacks import sign_http_callback
from voice_notify.settings import get_settings

SECRET = "s3cret-for-tests"


@pytest.fixture
def client(tmp_path, monkeypatch: pytest.MonkeyPatch):
    conn_id = f"ledger_{uuid.uuid4().hex[:8]}"
    db_path = tmp_path / "ledger.sqlite"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "sqlite", "host": str(db_path)})
    )
    monkeypatch.setenv("VOICE_NOTIFY_LEDGER_CONN_ID", conn_id)
    monkeypatch.setenv(
        "AIRFLOW_CONN_VOICE_GATEWAY",
        json.dumps(
            {
                "conn_type": "http",
                "host": "127.0.0.1",
                "password": SECRET,
                "extra": {"kind": "http"},
            }
        ),
    )
    get_settings.cache_clear()
    from voice_notify.airflow.callbacks_app import callbacks_app

    engine = sa.create_engine(f"sqlite:///{db_path}")
    migrate.upgrade(engine)
    yield TestClient(callbacks_app), engine
    get_settings.cache_clear()


def _events(engine: sa.Engine) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(
            sa.select(schema.call_events).order_by(schema.call_events.c.sequence)
        ).all()


def _post_http(http, event: dict, secret: str = SECRET, timestamp: int | None = None):
    body = json.dumps(event).encode()
    headers = sign_http_callback(secret, body, timestamp)
    return http.post("/callbacks/http", content=body, headers=headers)


def test_signed_events_are_stored_once_in_any_order(client) -> None:
    http, engine = client
    terminal = {
        "call_id": "c1",
        "idempotency_key": "vn-1-2026-11-26-1",
        "state": "completed",
        "sequence": 3,
        "answered_by": "human",
    }
    ringing = {
        "call_id": "c1",
        "idempotency_key": "vn-1-2026-11-26-1",
        "state": "ringing",
        "sequence": 1,
    }
    assert _post_http(http, terminal).status_code == 204  # the last event first
    assert _post_http(http, terminal).status_code == 204  # a duplicate delivery
    assert _post_http(http, ringing).status_code == 204  # the earlier one, late
    stored = _events(engine)
    assert [(e.kind, e.sequence) for e in stored] == [("ringing", 1), ("completed", 3)]


def test_forged_tampered_and_stale_callbacks_are_refused(client) -> None:
    http, engine = client
    event = {"call_id": "c2", "state": "completed", "sequence": 2}
    assert _post_http(http, event, secret="wrong").status_code == 403
    assert _post_http(http, event, timestamp=int(time.time()) - 3600).status_code == 403
    body = json.dumps(event).encode()
    headers = sign_http_callback(SECRET, body)
    tampered = body.replace(b"completed", b"busy")
    assert http.post("/callbacks/http", content=tampered, headers=headers).status_code == 403
    assert http.post("/callbacks/http", content=body).status_code == 403  # unsigned
    assert _events(engine) == []


def test_twilio_callbacks_need_a_valid_signature(client) -> None:
    http, engine = client
    url = "http://testserver/callbacks/twilio?ik=vn-3-2026-11-26-1"
    form = {"CallSid": "CA123", "CallStatus": "busy", "SequenceNumber": "2"}
    good = RequestValidator(SECRET).compute_signature(url, form)
    forged = RequestValidator("other").compute_signature(url, form)
    assert http.post(url, data=form, headers={"X-Twilio-Signature": forged}).status_code == 403
    assert _events(engine) == []
    assert http.post(url, data=form, headers={"X-Twilio-Signature": good}).status_code == 204
    [event] = _events(engine)
    assert (event.call_id, event.kind, event.idempotency_key) == (
        "CA123",
        "busy",
        "vn-3-2026-11-26-1",
    )


def test_airflow_mounts_the_endpoint_on_the_api_server() -> None:
    from airflow import plugins_manager

    apps, _ = plugins_manager.get_fastapi_plugins()
    assert plugins_manager.get_import_errors() == {}
    mounted = {a["url_prefix"]: a["app"] for a in apps}
    routes = {r.path for r in mounted["/voice-notify"].routes}
    assert {"/callbacks/http", "/callbacks/twilio"} <= routes


def test_an_oversized_body_is_refused_before_it_is_verified(client) -> None:
    from voice_notify.airflow.callbacks_app import MAX_CALLBACK_BYTES

    http, engine = client
    event = {"call_id": "c9", "state": "completed", "sequence": 1, "pad": "x" * MAX_CALLBACK_BYTES}
    body = json.dumps(event).encode()
    signed = sign_http_callback(SECRET, body)
    # Declared too long: refused on the header, signed or not.
    assert http.post("/callbacks/http", content=body, headers=signed).status_code == 413
    # Streamed without a length (chunked): refused once the limit is passed.
    chunks = (body[i : i + 4096] for i in range(0, len(body), 4096))
    assert http.post("/callbacks/http", content=chunks, headers=signed).status_code == 413
    twilio = http.post(
        "/callbacks/twilio",
        content=b"CallSid=CA1&Pad=" + b"x" * MAX_CALLBACK_BYTES,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert twilio.status_code == 413
    assert _events(engine) == []
    # Just under the limit is read and checked as usual.
    small = {"call_id": "c9", "state": "completed", "sequence": 1}
    assert _post_http(http, small).status_code == 204


def test_twilio_signs_the_public_url_behind_an_ingress(client, monkeypatch) -> None:
    """Twilio signs the URL it was given (https, the public host); the API server behind a
    TLS-ending ingress sees http and its own host. The configured public URL decides."""
    from voice_notify.settings import get_settings

    http, engine = client
    form = {"CallSid": "CA9", "CallStatus": "completed", "SequenceNumber": "4"}
    public = "https://voice.bank.example/callbacks/twilio?ik=vn-9-2026-11-26-1"
    signature = RequestValidator(SECRET).compute_signature(public, form)
    internal = "http://testserver/callbacks/twilio?ik=vn-9-2026-11-26-1"
    headers = {"X-Twilio-Signature": signature}
    assert http.post(internal, data=form, headers=headers).status_code == 403
    monkeypatch.setenv(
        "VOICE_NOTIFY_STATUS_CALLBACK_URL", "https://voice.bank.example/voice-notify/callbacks"
    )
    get_settings.cache_clear()
    assert http.post(internal, data=form, headers=headers).status_code == 204
    assert [e.call_id for e in _events(engine)] == ["CA9"]
    get_settings.cache_clear()
