"""The contract every voice gateway adapter honours.

A gateway places one outbound call that plays a prepared audio file and reports
how it ended. The pipeline never retries a call blindly: after an ambiguous
failure it asks the gateway with the same idempotency key (``find_call``)
before it decides anything, so an adapter must make ``place_call`` idempotent
on that key and answer ``find_call`` truthfully.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


class CallState(enum.StrEnum):
    """Where a call is. The last six are terminal."""

    QUEUED = "queued"
    RINGING = "ringing"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"  # answered and the audio played to the end
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    FAILED = "failed"  # the network or the gateway could not connect the call
    CANCELED = "canceled"
    # The callee (or the network on their behalf) refused the call: SIP 603/607/608.
    DECLINED = "declined"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset(
    {
        CallState.COMPLETED,
        CallState.NO_ANSWER,
        CallState.BUSY,
        CallState.FAILED,
        CallState.CANCELED,
        CallState.DECLINED,
    }
)


@dataclass(frozen=True)
class CallRequest:
    """One call to place.

    :param to: the callee in E.164 (``+8613812345678``)
    :param idempotency_key: deterministic per (notice, campaign date, attempt)
    :param audio_url: a URL the gateway can fetch the 8 kHz G.711 WAV from
    :param ring_timeout_s: seconds to ring before giving up as no-answer
    :param status_callback_url: where the gateway posts status events (None: poll only)
    :param machine_detection: ask the gateway to tell answering machines from people
    """

    to: str
    idempotency_key: str
    audio_url: str
    ring_timeout_s: int = 30
    metadata: dict[str, str] = field(default_factory=dict)
    status_callback_url: str | None = None
    machine_detection: bool = True


@dataclass(frozen=True)
class CallStatus:
    """What the gateway knows about one call."""

    call_id: str
    idempotency_key: str
    state: CallState
    key_pressed: str | None = None  # DTMF digit the callee pressed, if any
    duration_s: float | None = None
    error: str | None = None  # the gateway's reason when state is FAILED
    answered_by: str | None = None  # "human", "machine" or None when not detected

    @property
    def terminal(self) -> bool:
        return self.state.terminal


@dataclass(frozen=True)
class CallEvent:
    """One status callback from a gateway, after its signature was verified.

    Events are stored deduplicated by (call_id, kind, sequence): a repeated
    callback is dropped, a later status is kept even when it arrives first.

    :param kind: the status (a CallState value) or ``"digits"`` for a key press
    :param sequence: the gateway's own ordering of the call's events
    """

    call_id: str
    kind: str
    sequence: int
    idempotency_key: str | None = None
    key_pressed: str | None = None
    answered_by: str | None = None
    duration_s: float | None = None
    occurred_at: dt.datetime | None = None
    raw: Mapping[str, str] = field(default_factory=dict)


class GatewayError(Exception):
    """Base for gateway failures."""


class GatewayTransientError(GatewayError):
    """A timeout, a 5xx or a refused connection: the call may or may not exist.

    The caller must look the call up with ``find_call`` before trying again.
    """


class GatewayPermanentError(GatewayError):
    """The gateway rejected the request itself (bad number, bad audio): never retry."""


class VoiceGateway(Protocol):
    """An outbound-call gateway."""

    name: str

    def place_call(self, request: CallRequest) -> CallStatus:
        """Place the call, or return the existing one for the same idempotency key."""
        ...

    def find_call(
        self, idempotency_key: str, *, to: str | None = None, since: dt.datetime | None = None
    ) -> CallStatus | None:
        """The call placed with this key, or None if the gateway never accepted one.

        ``to`` and ``since`` (when the ledger entered ``dialing``) let adapters
        whose gateway has no idempotency keys (Twilio) search its call log instead.
        """
        ...

    def call_status(self, call_id: str) -> CallStatus:
        """The current status of a call the gateway accepted."""
        ...


def call_statuses(gateway: VoiceGateway, call_ids: Sequence[str]) -> dict[str, CallStatus]:
    """The status of many calls: in bulk where the adapter can (``call_statuses``), else
    one by one. A call whose status cannot be had now is left out (still open)."""
    bulk = getattr(gateway, "call_statuses", None)
    if bulk is not None:
        return bulk(call_ids)
    found = {}
    for call_id in call_ids:
        try:
            found[call_id] = gateway.call_status(call_id)
        except GatewayError:
            continue
    return found
