"""The ``VoiceGateway`` adapter for Twilio Programmable Voice, through the ``twilio`` SDK.

A call is ``POST /Calls.json`` with inline TwiML: the presigned audio URL in a
``<Play>`` inside ``<Gather numDigits="1">``, whose ``action`` receives the key
press (1 confirms, 9 opts out). Status callbacks (``initiated ringing answered
completed``) and the Gather action go to the request's callback URL with our
idempotency key in its query (``?ik=``), because Twilio has none of its own.
Answering-machine detection is ``MachineDetection=Enable``; the ring timeout is
``Timeout``.

**Idempotency without keys.** Twilio creates a new call for every POST. The
ledger's ``dialing`` row is what keeps a notice from being called twice, and
after an ambiguous failure ``find_call`` searches Twilio's call log: calls to
the number created from ``since`` (when the row entered ``dialing``) minus a
small clock skew to ``since`` plus ``lookup_window_s``. Twilio's call resource
does not show the StatusCallback URL, so our key is not visible there; the
per-customer cap of one call a minute makes the call in that window unique. Two
or more candidates raise ``GatewayTransientError`` (never a guess, never
"none"): the row stays in ``dialing`` for a person to resolve. Within one
process, calls this adapter placed are remembered by key and never placed
twice.

**What polling cannot tell.** Twilio reports key presses only to the Gather
action, so ``call_status`` has ``key_pressed=None``; the callback endpoint
supplies it. Without a callback URL the TwiML is a bare ``<Play>``.

``base_url`` points the SDK somewhere else than ``https://api.twilio.com`` (the
simulator's Twilio-compatible subset) through ``RebasedTwilioHttpClient``, the
SDK's own extension point for HTTP.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import urllib.parse
from typing import Any

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response

from voice_notify.gateway.base import (
    CallRequest,
    CallState,
    CallStatus,
    GatewayError,
    GatewayPermanentError,
    GatewayTransientError,
)
from voice_notify.gateway.callbacks import TWILIO_STATUSES, twilio_answered_by
from voice_notify.phone import mask_phone, redact_numbers

log = logging.getLogger(__name__)

__all__ = ["RebasedTwilioHttpClient", "TwilioGateway", "build_twiml", "with_idempotency_key"]

STATUS_CALLBACK_EVENTS = ("initiated", "ringing", "answered", "completed")
IDEMPOTENCY_QUERY = "ik"


class RebasedTwilioHttpClient(TwilioHttpClient):
    """The SDK's HTTP client, sending what it addresses to ``*.twilio.com`` to ``base_url``.

    :param base_url: scheme, host and port to use instead (``http://127.0.0.1:8700``)
    """

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url.rstrip("/")

    def rebase(self, url: str) -> str:
        parts = urllib.parse.urlsplit(url)
        if not (parts.hostname or "").endswith("twilio.com"):
            return url
        query = f"?{parts.query}" if parts.query else ""
        return f"{self.base_url}{parts.path}{query}"

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        return super().request(method, self.rebase(url), *args, **kwargs)


class _RedactNumbers(logging.Filter):
    """The SDK logs every request's URL and query at INFO (a call-log search carries
    ``To=+86…``): its records leave with the numbers masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact_numbers(record.getMessage()), None
        return True


def _redact_sdk_logs() -> None:
    sdk = logging.getLogger("twilio.http_client")
    if not any(isinstance(f, _RedactNumbers) for f in sdk.filters):
        sdk.addFilter(_RedactNumbers())


def with_idempotency_key(url: str, idempotency_key: str) -> str:
    """``url`` with ``ik=<key>`` added to its query (an existing ``ik`` is replaced)."""
    parts = urllib.parse.urlsplit(url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != IDEMPOTENCY_QUERY]
    query.append((IDEMPOTENCY_QUERY, idempotency_key))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def build_twiml(audio_url: str, gather_action: str | None) -> str:
    """The call's TwiML: play the audio, and collect one key when there is somewhere to post it."""
    from twilio.twiml.voice_response import VoiceResponse

    response = VoiceResponse()
    if gather_action is None:
        response.play(audio_url)
    else:
        gather = response.gather(num_digits=1, action=gather_action, method="POST")
        gather.play(audio_url)
    return str(response)


class TwilioGateway:
    """Places calls through Twilio (or anything speaking its Calls API).

    :param account_sid: the Twilio account SID (Connection login)
    :param auth_token: its auth token (Connection password)
    :param from_number: the caller ID, a Twilio number in E.164
    :param base_url: where to send API requests instead of ``https://api.twilio.com``
    :param status_callback_base: the callback URL for requests that name none
    :param timeout_s: seconds to wait for each API request
    :param lookup_skew_s: seconds of clock skew allowed before ``since`` in ``find_call``
    :param lookup_window_s: seconds after ``since`` a call of ours can have been created;
        at most the per-customer minimum interval between calls
    """

    name = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_number: str,
        *,
        base_url: str | None = None,
        status_callback_base: str | None = None,
        timeout_s: float = 10.0,
        lookup_skew_s: float = 5.0,
        lookup_window_s: float = 60.0,
    ) -> None:
        from twilio.rest import Client

        http_client = (
            RebasedTwilioHttpClient(base_url, timeout=timeout_s)
            if base_url
            else TwilioHttpClient(timeout=timeout_s)
        )
        _redact_sdk_logs()
        self._client = Client(account_sid, auth_token, http_client=http_client)
        self._http_client = http_client
        self.from_number = from_number
        self.status_callback_base = status_callback_base
        self.lookup_skew = dt.timedelta(seconds=lookup_skew_s)
        self.lookup_window = dt.timedelta(seconds=lookup_window_s)
        self._lock = threading.Lock()
        self._placed: dict[str, str] = {}  # idempotency key -> call sid, this process only
        self._keys: dict[str, str] = {}  # call sid -> idempotency key

    def place_call(self, request: CallRequest) -> CallStatus:
        """Place the call; a key this adapter already placed returns that call instead."""
        key = request.idempotency_key
        with self._lock:
            known = self._placed.get(key)
        if known is not None:
            return self.call_status(known)
        callback = request.status_callback_url or self.status_callback_base
        callback = with_idempotency_key(callback, key) if callback else None
        params: dict[str, Any] = {
            "to": request.to,
            "from_": self.from_number,
            "twiml": build_twiml(request.audio_url, callback),
            "timeout": request.ring_timeout_s,
        }
        if request.machine_detection:
            params["machine_detection"] = "Enable"
        if callback:
            params["status_callback"] = callback
            params["status_callback_event"] = list(STATUS_CALLBACK_EVENTS)
            params["status_callback_method"] = "POST"
        call = self._api("place_call", lambda: self._client.calls.create(**params))
        self._remember(key, call.sid)
        status = _call_status(call, key)
        log.info(
            "twilio placed call %s to %s for key %s (%s)",
            status.call_id,
            mask_phone(request.to),
            key,
            status.state,
        )
        return status

    def find_call(
        self, idempotency_key: str, *, to: str | None = None, since: dt.datetime | None = None
    ) -> CallStatus | None:
        """The call placed for this key, searched in Twilio's call log by number and time.

        :param to: the number the call went to (required)
        :param since: when the ledger entered ``dialing`` (required; aware, or naive UTC)
        :raises ValueError: without ``to`` and ``since``, which Twilio cannot do without
        :raises GatewayTransientError: Twilio failed, or more than one call fits
        """
        with self._lock:
            known = self._placed.get(idempotency_key)
        if known is not None:
            return self.call_status(known)
        if to is None or since is None:
            raise ValueError("TwilioGateway.find_call needs to= and since=: Twilio has no keys")
        since_utc = since.replace(tzinfo=dt.UTC) if since.tzinfo is None else since
        since_utc = since_utc.astimezone(dt.UTC)
        earliest = (since_utc - self.lookup_skew).replace(microsecond=0)
        latest = since_utc + self.lookup_window
        calls = self._api(
            "find_call",
            lambda: self._client.calls.list(to=to, start_time_after=earliest, limit=20),
        )
        candidates = [c for c in calls if _created_within(c, earliest, latest)]
        if not candidates:
            return None
        if len(candidates) > 1:
            raise GatewayTransientError(
                f"ambiguous: {len(candidates)} Twilio calls to {mask_phone(to)} around {since_utc}"
                f" for key {idempotency_key}; resolve by hand before redialing"
            )
        [call] = candidates
        self._remember(idempotency_key, call.sid)
        return _call_status(call, idempotency_key)

    def call_status(self, call_id: str) -> CallStatus:
        """The current status of a call Twilio accepted (``key_pressed`` comes by callback)."""
        call = self._api("call_status", lambda: self._client.calls(call_id).fetch())
        with self._lock:
            key = self._keys.get(call_id, "")
        return _call_status(call, key)

    def close(self) -> None:
        """Release the pooled connections."""
        if self._http_client.session is not None:
            self._http_client.session.close()

    def _remember(self, key: str, sid: str) -> None:
        with self._lock:
            self._placed[key] = sid
            self._keys[sid] = key

    @staticmethod
    def _api(operation: str, call: Any) -> Any:
        try:
            return call()
        except TwilioRestException as exc:
            raise _gateway_error(operation, exc) from exc
        except (requests.RequestException, TwilioException, ValueError) as exc:
            # A timeout, a dropped connection, an unreadable answer: the call may exist.
            # Not the exception's text: a failed look-up's carries the URL with the number.
            raise GatewayTransientError(
                f"twilio {operation} failed: {type(exc).__name__}: {redact_numbers(exc)}"
            ) from exc


def _gateway_error(operation: str, exc: TwilioRestException) -> GatewayError:
    message = (
        f"twilio_{exc.code}: Twilio refused {operation} with HTTP {exc.status}"
        f" ({redact_numbers(exc.msg)})"
    )
    if 400 <= exc.status < 500 and exc.status != 429:
        return GatewayPermanentError(message)
    return GatewayTransientError(message)


def _created_within(call: Any, earliest: dt.datetime, latest: dt.datetime) -> bool:
    created = call.date_created or call.start_time
    return not isinstance(created, dt.datetime) or earliest <= created <= latest


def _call_status(call: Any, idempotency_key: str) -> CallStatus:
    """A Twilio ``CallInstance`` as the pipeline's status; an unknown status is transient."""
    state = TWILIO_STATUSES.get(str(call.status or ""))
    if state is None:
        raise GatewayTransientError(f"Twilio reported an unknown call status {call.status!r}")
    duration = _float_or_none(call.duration) if state.terminal else None
    return CallStatus(
        call_id=call.sid,
        idempotency_key=idempotency_key,
        state=state,
        duration_s=duration,
        error="failed" if state is CallState.FAILED else None,
        answered_by=twilio_answered_by(call.answered_by),
    )


def _float_or_none(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None
