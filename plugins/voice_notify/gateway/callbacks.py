"""Gateway status callbacks: check who sent them, then read them into ``CallEvent``s.

Two protocols reach the callback endpoint:

- **HTTP gateways** (in-house call centres, the simulator's native protocol)
  POST one JSON event (or a JSON array of events)::

      {"call_id": "sim-…", "idempotency_key": "vn-42-2026-11-26-1", "state": "in_progress",
       "sequence": 1, "key_pressed": null, "answered_by": "human", "duration_s": null,
       "occurred_at": "2026-11-26T08:00:01.250000+00:00"}

  ``state`` is a ``CallState`` value or ``"digits"`` (a key press, in
  ``key_pressed``). The request carries ``X-VoiceNotify-Timestamp`` (Unix
  seconds) and ``X-VoiceNotify-Signature: sha256=<hex>``, the HMAC-SHA256 of
  ``f"{timestamp}.{raw_body}"`` under the shared secret. A signature over the
  timestamp lets the receiver refuse replays older than ``max_skew_s``.

- **Twilio** posts form-encoded status callbacks (``CallSid``, ``CallStatus``,
  ``SequenceNumber``, ``CallDuration``, ``AnsweredBy``, ``Timestamp``) and, from
  ``<Gather action=…>``, the key press (``Digits``), each signed with
  ``X-Twilio-Signature`` under the account's auth token
  (``twilio.request_validator.RequestValidator``). Twilio has no idempotency
  key; the adapter puts ours in the callback URL's query (``?ik=``) and the
  endpoint passes it in.

Verification raises ``InvalidSignature`` (answer 403), parsing raises
``InvalidCallback`` (answer 400); neither ever trusts a field before the
signature over it was checked.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from voice_notify.gateway.base import CallEvent, CallState

TIMESTAMP_HEADER = "X-VoiceNotify-Timestamp"
SIGNATURE_HEADER = "X-VoiceNotify-Signature"
TWILIO_SIGNATURE_HEADER = "X-Twilio-Signature"
DIGITS = "digits"

_SIGNATURE_PREFIX = "sha256="

TWILIO_STATUSES: Mapping[str, CallState] = {
    "queued": CallState.QUEUED,
    "initiated": CallState.QUEUED,
    "ringing": CallState.RINGING,
    "in-progress": CallState.IN_PROGRESS,
    "answered": CallState.IN_PROGRESS,
    "completed": CallState.COMPLETED,
    "busy": CallState.BUSY,
    "failed": CallState.FAILED,
    "no-answer": CallState.NO_ANSWER,
    "canceled": CallState.CANCELED,
}


class InvalidSignature(Exception):
    """A callback whose signature is missing, wrong or too old: drop it, answer 403."""


class InvalidCallback(ValueError):
    """A signed callback whose body is not a callback: answer 400."""


# --- HTTP gateways (HMAC-SHA256) -------------------------------------------------------------


def http_signature(secret: str, timestamp: int | str, body: bytes) -> str:
    """The ``X-VoiceNotify-Signature`` value of ``body`` sent at ``timestamp``."""
    message = str(timestamp).encode("ascii") + b"." + body
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
    return _SIGNATURE_PREFIX + digest


def sign_http_callback(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers that sign one callback body (what a gateway sends)."""
    sent_at = int(time.time()) if timestamp is None else timestamp
    return {TIMESTAMP_HEADER: str(sent_at), SIGNATURE_HEADER: http_signature(secret, sent_at, body)}


def verify_http_callback(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    max_skew_s: float = 300,
    now: float | None = None,
) -> None:
    """Check an HTTP gateway callback's HMAC signature and its freshness.

    :param headers: the request headers (looked up case-insensitively)
    :param body: the raw body, exactly as received
    :param max_skew_s: seconds the signed timestamp may differ from ``now``
    :param now: Unix seconds (default: the clock)
    :raises InvalidSignature: missing headers, a bad signature or a stale timestamp
    """
    if not secret:
        raise InvalidSignature("no callback secret configured; refusing unsigned trust")
    lowered = {name.lower(): value for name, value in headers.items()}
    timestamp = lowered.get(TIMESTAMP_HEADER.lower())
    signature = lowered.get(SIGNATURE_HEADER.lower())
    if not timestamp or not signature:
        raise InvalidSignature("callback is not signed")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise InvalidSignature("callback timestamp is not an integer") from None
    expected = http_signature(secret, sent_at, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise InvalidSignature("callback signature does not match")
    current = time.time() if now is None else now
    if abs(current - sent_at) > max_skew_s:
        raise InvalidSignature(f"callback timestamp is more than {max_skew_s:g} s off")


def _request_message(method: str, path: str, body: bytes) -> bytes:
    # Method and path (with its query) are signed too: a GET has no body to sign.
    return f"{method.upper()} {path}\n".encode() + body


def sign_http_request(
    secret: str, method: str, path: str, body: bytes = b"", timestamp: int | None = None
) -> dict[str, str]:
    """The headers that sign one request to a gateway that checks its callers (the SIP
    call service): the callback scheme over ``METHOD path\nbody``."""
    return sign_http_callback(secret, _request_message(method, path, body), timestamp)


def verify_http_request(
    secret: str,
    headers: Mapping[str, str],
    method: str,
    path: str,
    body: bytes,
    max_skew_s: float = 300,
) -> None:
    """Check a signed gateway request (``sign_http_request``).

    :raises InvalidSignature: missing headers, a bad signature or a stale timestamp
    """
    verify_http_callback(secret, headers, _request_message(method, path, body), max_skew_s)


def parse_http_callback(body: bytes) -> list[CallEvent]:
    """The events in a verified HTTP gateway callback body (an object or an array).

    :raises InvalidCallback: the body is not JSON or an event lacks its fields
    """
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidCallback("callback body is not JSON") from None
    items = payload if isinstance(payload, list) else [payload]
    return [_http_event(item) for item in items]


def _http_event(item: Any) -> CallEvent:
    if not isinstance(item, dict):
        raise InvalidCallback("a callback event must be a JSON object")
    call_id, kind, sequence = item.get("call_id"), item.get("state"), item.get("sequence")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidCallback("call_id is required")
    if kind != DIGITS and kind not in {str(state) for state in CallState}:
        raise InvalidCallback(f"unknown state {kind!r}")
    if type(sequence) is not int or sequence < 0:
        raise InvalidCallback("sequence must be a non-negative integer")
    key_pressed = item.get("key_pressed")
    if kind == DIGITS and not key_pressed:
        raise InvalidCallback("a digits event needs key_pressed")
    duration = item.get("duration_s")
    return CallEvent(
        call_id=call_id,
        kind=kind,
        sequence=sequence,
        idempotency_key=_optional_str(item.get("idempotency_key")),
        key_pressed=_optional_str(key_pressed),
        answered_by=_answered_by(item.get("answered_by")),
        duration_s=float(duration) if isinstance(duration, int | float) else None,
        occurred_at=_iso_datetime(item.get("occurred_at")),
        raw={name: "" if value is None else str(value) for name, value in item.items()},
    )


# --- Twilio (X-Twilio-Signature) -------------------------------------------------------------


def verify_twilio_callback(
    auth_token: str, url: str, form: Mapping[str, str], signature: str | None
) -> None:
    """Check a Twilio webhook's ``X-Twilio-Signature``.

    :param url: the full URL Twilio requested, query included, as Twilio saw it
        (behind a proxy: the public scheme and host, not the internal ones)
    :param form: the POSTed form fields
    :raises InvalidSignature: missing or wrong signature
    """
    from twilio.request_validator import RequestValidator

    if not auth_token:
        raise InvalidSignature("no Twilio auth token configured")
    if not signature:
        raise InvalidSignature(f"callback has no {TWILIO_SIGNATURE_HEADER}")
    params = form if hasattr(form, "getlist") else dict(form)
    if not RequestValidator(auth_token).validate(url, params, signature):
        raise InvalidSignature("Twilio signature does not match")


def parse_twilio_callback(form: Mapping[str, str], ik: str | None) -> list[CallEvent]:
    """The event in a verified Twilio status callback or ``<Gather>`` action post.

    :param ik: our idempotency key, from the callback URL's ``ik`` query parameter
    :raises InvalidCallback: no ``CallSid``, or a status this adapter does not know
    """
    fields = {name: str(form[name]) for name in form}
    call_id = fields.get("CallSid")
    if not call_id:
        raise InvalidCallback("CallSid is required")
    sequence = _int_or_none(fields.get("SequenceNumber"))
    common = {
        "call_id": call_id,
        "idempotency_key": ik or None,
        "answered_by": _answered_by(fields.get("AnsweredBy")),
        "occurred_at": _rfc2822_datetime(fields.get("Timestamp")),
        "raw": fields,
    }
    if "Digits" in fields:
        # Gather posts carry no SequenceNumber; a call has one Gather, so 0 dedupes repeats.
        digits = fields["Digits"].strip()
        if not digits:
            return []  # the Gather timed out without a key: nothing happened
        return [CallEvent(kind=DIGITS, sequence=sequence or 0, key_pressed=digits, **common)]
    status = TWILIO_STATUSES.get(fields.get("CallStatus", ""))
    if status is None:
        raise InvalidCallback(f"unknown CallStatus {fields.get('CallStatus')!r}")
    if sequence is None:
        raise InvalidCallback("SequenceNumber is required on a status callback")
    duration = _int_or_none(fields.get("CallDuration"))
    return [
        CallEvent(
            kind=str(status),
            sequence=sequence,
            duration_s=float(duration) if duration is not None else None,
            **common,
        )
    ]


def twilio_answered_by(value: str | None) -> str | None:
    """Twilio's ``AnsweredBy`` as ``"human"``, ``"machine"`` or None (not detected)."""
    return _answered_by(value)


# --- small readers ---------------------------------------------------------------------------


def _answered_by(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    if value == "human":
        return "human"
    # Twilio: machine_start, machine_end_beep, machine_end_silence, machine_end_other, fax.
    if value == "machine" or value.startswith("machine_") or value == "fax":
        return "machine"
    return None  # "unknown": detection ran and could not tell


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        raise InvalidCallback(f"not an integer: {value!r}") from None


def _iso_datetime(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidCallback(f"occurred_at is not ISO-8601: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _rfc2822_datetime(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        raise InvalidCallback(f"Timestamp is not RFC 2822: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
