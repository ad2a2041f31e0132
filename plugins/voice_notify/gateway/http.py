"""The generic HTTP gateway: in-house call centres that speak voice-notify's JSON protocol.

The protocol is the one the simulator serves natively (documented in
``simulator.py``): ``POST /v1/calls`` with an idempotency key,
``GET /v1/calls/{id}``, ``GET /v1/calls?idempotency_key=K``, and HMAC-signed
JSON status callbacks (``callbacks.verify_http_callback``). A call centre that
implements it needs no adapter of its own.

Every failure is sorted the way the pipeline needs: anything after which the
call may or may not exist (a timeout, a refused connection, a 5xx, a 429, a
garbled answer) is a ``GatewayTransientError``; a request the gateway refused on
its merits is a ``GatewayPermanentError`` whose message starts with the
gateway's error code (``invalid_number``, ``invalid_audio``,
``idempotency_conflict``, ...).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from voice_notify.gateway.base import (
    CallRequest,
    CallState,
    CallStatus,
    GatewayError,
    GatewayPermanentError,
    GatewayTransientError,
)
from voice_notify.gateway.callbacks import sign_http_request
from voice_notify.logsafe import escape
from voice_notify.phone import mask_phone, redact_numbers

log = logging.getLogger(__name__)

__all__ = ["HttpGateway"]


# Call ids per bulk status request (the protocol allows 500).
_STATUS_PAGE = 200


class HttpGateway:
    """Places calls through a gateway speaking the native JSON protocol.

    :param base_url: the gateway's URL (the simulator's is in its ``server.json``)
    :param timeout_s: seconds to wait on each request; the gateway fetches and
        checks the audio before answering ``place_call``, so keep this above a few
        seconds
    :param status_callback_base: the callback URL for requests that name none
        (None: such calls are polled only)
    :param request_secret: sign every request with it (``X-VoiceNotify-Signature``
        over method, path and body) for a gateway that checks its callers, such as
        the SIP call service
    """

    name = "http"

    def __init__(
        self,
        base_url: str,
        timeout_s: float = 5.0,
        *,
        status_callback_base: str | None = None,
        request_secret: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.status_callback_base = status_callback_base
        self.request_secret = request_secret
        self._session = requests.Session()

    def place_call(self, request: CallRequest) -> CallStatus:
        """Place the call, or get back the one already placed with its idempotency key."""
        body: dict[str, Any] = {
            "to": request.to,
            "idempotency_key": request.idempotency_key,
            "audio_url": request.audio_url,
            "ring_timeout_s": request.ring_timeout_s,
            "metadata": dict(request.metadata),
            "machine_detection": request.machine_detection,
        }
        callback = request.status_callback_url or self.status_callback_base
        if callback:
            body["status_callback"] = callback
        response = self._request("POST", "/v1/calls", json=body)
        self._raise_for_rejection(response, "place_call")
        status = _call_status(response)
        log.info(
            "%s %s call %s to %s for key %s (%s)",
            self.name,
            "placed" if response.status_code == 201 else "already had",
            escape(status.call_id),
            mask_phone(request.to),
            request.idempotency_key,
            status.state,
        )
        return status

    def find_call(
        self, idempotency_key: str, *, to: str | None = None, since: dt.datetime | None = None
    ) -> CallStatus | None:
        """The call placed with this key, or None if the gateway never accepted one.

        The protocol keeps idempotency keys, so ``to`` and ``since`` are not needed.
        """
        response = self._request("GET", "/v1/calls", params={"idempotency_key": idempotency_key})
        if response.status_code == 404:
            return None
        self._raise_for_rejection(response, "find_call")
        return _call_status(response)

    def call_status(self, call_id: str) -> CallStatus:
        """The current status of a call the gateway accepted."""
        response = self._request("GET", f"/v1/calls/{quote(call_id, safe='')}")
        self._raise_for_rejection(response, "call_status")
        return _call_status(response)

    def call_statuses(self, call_ids: Sequence[str]) -> dict[str, CallStatus]:
        """Many calls' statuses, a few hundred per request; a page that fails is left out
        (those calls stay open for the next pass)."""
        found: dict[str, CallStatus] = {}
        for start in range(0, len(call_ids), _STATUS_PAGE):
            page = list(call_ids[start : start + _STATUS_PAGE])
            try:
                response = self._request("GET", "/v1/calls", params={"call_id": page})
                self._raise_for_rejection(response, "call_statuses")
                calls = response.json()["calls"]
            except (GatewayError, ValueError, KeyError) as exc:
                log.warning("status of %d calls unavailable: %s", len(page), redact_numbers(exc))
                continue
            for body in calls:
                status = _status_from_body(body)
                if status is not None:
                    found[status.call_id] = status
        return found

    def close(self) -> None:
        """Release the pooled connections."""
        self._session.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        prepared = self._session.prepare_request(
            requests.Request(method, self.base_url + path, **kwargs)
        )
        if self.request_secret:
            signed = urlsplit(prepared.url)
            target = signed.path + (f"?{signed.query}" if signed.query else "")
            body = prepared.body or b""
            prepared.headers.update(
                sign_http_request(
                    self.request_secret,
                    method,
                    target,
                    body.encode() if isinstance(body, str) else body,
                )
            )
        try:
            return self._session.send(prepared, timeout=self.timeout_s)
        except requests.RequestException as exc:
            # Covers timeouts and refused or dropped connections: the call may exist.
            raise GatewayTransientError(
                f"{self.name} {method} {path} failed: {redact_numbers(exc)}"
            ) from exc

    def _raise_for_rejection(self, response: requests.Response, operation: str) -> None:
        code = response.status_code
        if 200 <= code < 300:
            return
        error, detail = _error_of(response)
        message = f"{escape(error, 64)}: {self.name} gateway refused {operation} with HTTP {code}"
        if detail:
            message += f" ({redact_numbers(detail)})"
        # 429 is a 4xx that asks to be retried; everything else 4xx is the request's own fault.
        if 400 <= code < 500 and code != 429:
            raise GatewayPermanentError(message)
        raise GatewayTransientError(message)


def _error_of(response: requests.Response) -> tuple[str, str | None]:
    try:
        body = response.json()
    except ValueError:
        return f"http_{response.status_code}", None
    if not isinstance(body, dict):
        return f"http_{response.status_code}", None
    return str(body.get("error") or f"http_{response.status_code}"), body.get("detail")


def _status_from_body(body: Any) -> CallStatus | None:
    try:
        return _parse_status(body)
    except GatewayTransientError:
        return None


def _parse_status(body: Any) -> CallStatus:
    try:
        return CallStatus(
            call_id=body["call_id"],
            idempotency_key=body["idempotency_key"],
            state=CallState(body["state"]),
            key_pressed=body.get("key_pressed"),
            duration_s=body.get("duration_s"),
            error=body.get("error"),
            answered_by=body.get("answered_by"),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise GatewayTransientError(f"gateway sent an unreadable call status: {exc!r}") from exc


def _call_status(response: requests.Response) -> CallStatus:
    """Parse a status answer; an unreadable one leaves the call's fate unknown, so transient."""
    try:
        body = response.json()
    except ValueError as exc:
        raise GatewayTransientError(f"gateway sent an unreadable call status: {exc!r}") from exc
    return _parse_status(body)


class SimulatorGateway(HttpGateway):
    """An ``HttpGateway`` that reports itself as the simulator (ledger ``gateway`` column)."""

    name = "simulator"
