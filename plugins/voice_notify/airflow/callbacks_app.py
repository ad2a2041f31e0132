"""The gateway status-callback endpoint: a FastAPI app the Airflow plugin mounts.

Mounted at ``/voice-notify``. Airflow does not authenticate plugin routes, so
every request is verified here: HMAC for the generic HTTP gateway,
X-Twilio-Signature for Twilio. Unsigned, forged or stale callbacks get 403 and
change nothing. Verified events go to ``call_events`` (deduplicated).

A body is read only up to ``MAX_CALLBACK_BYTES`` (413 beyond it, by its declared
length or as it streams in): the signature can only be checked over the whole body,
so an unbounded one would let anyone make the API server read and hold any amount.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from fastapi import FastAPI, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from voice_notify.airflow import hooks
from voice_notify.logsafe import escape
from voice_notify.settings import get_settings

log = logging.getLogger(__name__)

callbacks_app = FastAPI(title="voice-notify gateway callbacks")

# A status callback is a few hundred bytes; a batch of them a few kilobytes.
MAX_CALLBACK_BYTES = 64 * 1024


async def _bounded_body(request: Request) -> bytes:
    """The request body, refused with 413 past ``MAX_CALLBACK_BYTES`` before any check."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_CALLBACK_BYTES):
        raise HTTPException(status_code=413, detail="callback body too large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_CALLBACK_BYTES:
            raise HTTPException(status_code=413, detail="callback body too large")
        chunks.append(chunk)
    return b"".join(chunks)


def _gateway_secret() -> str:
    secret = hooks.gateway_secret(get_settings().gateway_conn_id)
    if not secret:
        raise HTTPException(status_code=503, detail="gateway secret not configured")
    return secret


def _ledger_engine():
    # No DDL here: the schema is migrated before the API server takes callbacks.
    return hooks.engine_for(get_settings().ledger_conn_id)


def _signed_url(request: Request) -> str:
    """The URL the gateway signed: the public one (``VOICE_NOTIFY_STATUS_CALLBACK_URL``'s
    scheme and host, behind an ingress that ends TLS), with the request's path and query."""
    public = get_settings().status_callback_url
    if not public:
        return str(request.url)
    base = urlsplit(public)
    return urlunsplit((base.scheme, base.netloc, request.url.path, request.url.query, ""))


@callbacks_app.post("/callbacks/http", status_code=204)
async def http_callback(request: Request) -> Response:
    from voice_notify.gateway.callbacks import (
        InvalidSignature,
        parse_http_callback,
        verify_http_callback,
    )
    from voice_notify.settle.intake import store_events

    body = await _bounded_body(request)
    try:
        secret = await run_in_threadpool(_gateway_secret)  # Connections: database I/O
        verify_http_callback(secret, dict(request.headers), body)
        events = parse_http_callback(body)
    except InvalidSignature as exc:
        log.warning("rejected an HTTP gateway callback: %s", escape(exc))
        raise HTTPException(status_code=403, detail="invalid signature") from None
    except ValueError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None
    # Off the API server's event loop: the ledger write is blocking I/O.
    stored = await run_in_threadpool(store_events, _ledger_engine(), events, "http")
    log.info("stored %d of %d callback events", stored, len(events))
    return Response(status_code=204)


@callbacks_app.post("/callbacks/twilio", status_code=204)
async def twilio_callback(request: Request) -> Response:
    from voice_notify.gateway.callbacks import (
        InvalidSignature,
        parse_twilio_callback,
        verify_twilio_callback,
    )
    from voice_notify.settle.intake import store_events

    try:
        pairs = parse_qsl((await _bounded_body(request)).decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise HTTPException(status_code=400, detail="callback body is not UTF-8") from None
    form = dict(pairs)  # the last value of a repeated field, as Starlette's form gives
    signature = request.headers.get("X-Twilio-Signature", "")
    try:
        secret = await run_in_threadpool(_gateway_secret)
        verify_twilio_callback(secret, _signed_url(request), form, signature)
        events = parse_twilio_callback(form, request.query_params.get("ik"))
    except InvalidSignature as exc:
        log.warning("rejected a Twilio callback: %s", escape(exc))
        raise HTTPException(status_code=403, detail="invalid signature") from None
    except ValueError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from None
    await run_in_threadpool(store_events, _ledger_engine(), events, "twilio")
    return Response(status_code=204)
