"""A voice gateway simulator: the telephone network, faked faithfully on loopback.

The pipeline talks to it exactly as it talks to a real gateway: through
``HttpGateway`` (``http.py``, the native JSON protocol below) or through
``TwilioGateway`` (``twilio.py``, the real ``twilio`` SDK pointed at the
Twilio-compatible subset below). It checks what a real gateway checks (the
number, the audio), keeps its promises (idempotency that survives a restart),
lets calls end the ways real calls end, deterministically per seed, posts
signed status callbacks, and injects the faults a real network has.

Run it::

    PYTHONPATH=plugins python -m voice_notify_dev.simulator \\
        --host 127.0.0.1 --port 0 --state-dir DIR --seed 7 [--call-seconds 0.3] \\
        [--outcomes completed=0.45,confirm=0.25,optout=0.05,no_answer=0.12,busy=0.08,\\
                    failed=0.03,machine=0.02] \\
        [--faults timeout_after_accept=0.1,duplicate_callback=0.2] [--fault-delay-s 3] \\
        [--callback-secret S] [--twilio-account-sid AC… --twilio-auth-token T]

or, from Python (tests, the demo), ``start_simulator(state_dir, seed, ...)``.
Secrets may come from the environment instead of the command line:
``GATEWAY_CALLBACK_SECRET``, ``GATEWAY_TWILIO_ACCOUNT_SID``,
``GATEWAY_TWILIO_AUTH_TOKEN`` (``start_simulator`` passes them that way).

Native protocol (JSON over HTTP)
--------------------------------

``POST /v1/calls`` places a call. Body::

    {"to": "+8613812345678", "idempotency_key": "notice-42/2025-06-01/1",
     "audio_url": "http://127.0.0.1:9000/audio/ab12.wav",
     "ring_timeout_s": 30, "metadata": {"notice_id": "42"},
     "status_callback": "https://airflow.example/voice-notify/callbacks/http",
     "machine_detection": true}

- ``to`` must be E.164 (``+`` then 7 to 15 digits, no leading zero), else
  400 ``{"error": "invalid_number"}``.
- ``idempotency_key`` (non-empty string, at most 200 characters) and
  ``audio_url`` (string) are required; ``ring_timeout_s`` is an integer in
  1..300 (default 30, recorded, not simulated); ``metadata`` is a JSON object
  (default ``{}``); ``status_callback`` is an http(s) URL or null (default:
  no callbacks); ``machine_detection`` a boolean (default true). Anything else
  malformed is 400 ``{"error": "invalid_request"}`` (or ``"invalid_json"`` when
  the body does not parse).
- A key seen before returns that call with 200 and never creates a second one,
  even after a restart; the same key with a different ``to`` or ``audio_url`` is
  409 ``{"error": "idempotency_conflict"}``.
- A new key makes the simulator GET ``audio_url`` (http/https, 5 s timeout,
  at most 50 MB) and decode it: it must be a WAV with at least one frame that is
  not silent (RMS above -50 dBFS), else 422
  ``{"error": "invalid_audio", "detail": "..."}`` and no call is made. When the
  audio cannot be fetched at all (no connection, a timeout, a 5xx or 429 from the
  store) the answer is 503 ``{"error": "audio_unavailable"}``: the store is down,
  not the audio bad, and the request may be sent again. Any WAV
  encoding is accepted; ``audio_format`` records which (``"ULAW 8000 Hz"``).
- An accepted call (``call_id`` derived from seed and key, ``sim-…``) is 201
  with its status (below) and is appended, flushed and fsync'd, as one line to
  ``DIR/calls.jsonl``: ``call_id``, ``to``, ``idempotency_key``, ``audio_url``,
  ``ring_timeout_s``, ``metadata``, ``accepted_at`` (ISO-8601 UTC),
  ``audio_seconds``, ``audio_format``, ``protocol`` (``"native"``),
  ``status_callback``, ``machine_detection``, ``request_attempt``.

``GET /v1/calls/{call_id}`` and ``GET /v1/calls?idempotency_key=K`` return the
status, or 404 ``{"error": "not_found"}``; ``GET /v1/calls?call_id=A&call_id=B…`` (at
most 500) returns ``{"calls": [status, …]}`` for the ids it knows::

    {"call_id": "sim-…", "idempotency_key": "…", "to": "+86…", "state": "completed",
     "key_pressed": "1", "duration_s": 12.4, "error": null, "answered_by": "human"}

- ``state`` is one of ``queued``, ``ringing``, ``in_progress``, ``completed``,
  ``no_answer``, ``busy``, ``failed`` (``base.CallState``). Over ``call_seconds``
  of wall time after acceptance a call is queued (first 20 %), ringing (to
  60 %, or to the end if it will not be answered), in progress (answered calls,
  to the end), then terminal for good.
- The outcome is drawn from the seed and the key alone, so they always end a
  call the same way: the first 8 bytes of ``sha256(f"{seed}\\x1f{key}")``, read
  big-endian and divided by 2**64, fall into the cumulative outcome table in the
  order below. Default table:
  ``completed`` (no key) 0.45, ``confirm`` (completed, key ``"1"``) 0.25,
  ``optout`` (completed, key ``"9"``) 0.05, ``no_answer`` 0.12, ``busy`` 0.08,
  ``failed`` (``error: "network_error"``) 0.03, ``machine`` (completed by an
  answering machine, no key) 0.02.
- ``answered_by`` (answering-machine detection) is ``"human"`` or
  ``"machine"`` once an answered call is in progress, if the request asked for
  detection; null otherwise.
- ``key_pressed`` and ``duration_s`` are set only once terminal; ``duration_s``
  is the audio length for answered calls and 0.0 for the others.
- Each terminal status is appended once per call to ``DIR/events.jsonl``
  (``call_id``, ``idempotency_key``, ``state``, ``key_pressed``, ``duration_s``,
  ``error``, ``answered_by``, ``ended_at``), before any client can see it as
  terminal.

Status callbacks (native)
-------------------------

A call placed with ``status_callback`` gets one JSON POST per event, in this
order and at these fractions of ``call_seconds``: ``ringing`` (20 %),
``in_progress`` (60 %, answered calls), ``digits`` (80 %, when a key is
pressed), then the terminal state (100 %)::

    {"call_id": "sim-…", "idempotency_key": "…", "state": "in_progress", "sequence": 1,
     "key_pressed": null, "answered_by": "human", "duration_s": null,
     "occurred_at": "2025-06-01T08:00:00.180000+00:00"}

``sequence`` counts the call's events from 0 in that order, whatever order
they are delivered in. Each POST is signed: ``X-VoiceNotify-Timestamp`` (Unix
seconds at sending) and ``X-VoiceNotify-Signature: sha256=<hex>``, the
HMAC-SHA256 of ``f"{timestamp}.{raw_body}"`` under ``--callback-secret``
(``callbacks.verify_http_callback`` checks it). Without a secret callbacks go
unsigned, which every receiver must reject. A delivery that fails (no
connection, a timeout, 5xx, 429) is retried three times with backoff (0.25 s,
0.5 s, 1 s); other answers are final. Deliveries never stop the simulator.
Callbacks due before a restart are not sent after it.

Twilio-compatible subset
------------------------

Enabled with ``--twilio-account-sid`` and ``--twilio-auth-token``; the
``twilio`` SDK reaches it through a base-URL-rewriting HTTP client. Every
request needs basic auth with exactly that SID and token, and the SID in the
path, else 401 (code 20003). Errors are Twilio-shaped:
``{"code", "message", "more_info", "status"}``.

- ``POST /2010-04-01/Accounts/{Sid}/Calls.json`` (form-encoded): ``To``
  (E.164, else 400 code 21211), ``From`` (required, 21603), ``Twiml`` (``Url``
  is not supported; 21205), ``Timeout`` (1..600, default 60), ``MachineDetection``
  (``Enable`` or ``DetectMessageEnd``), ``StatusCallback`` (http(s), else 21609),
  ``StatusCallbackEvent`` (any of ``initiated ringing answered completed``;
  ``completed`` is always sent), ``StatusCallbackMethod`` (POST only). The
  TwiML must be ``<Response>`` with a ``<Play>`` of the audio URL, usually
  inside ``<Gather numDigits="1" action="…">`` (unparsable TwiML or no
  ``<Play>``: 400 code 12100). The Play URL is fetched and checked like
  ``audio_url`` (400 code 11200 when unplayable). Twilio has no idempotency
  key: every accepted POST is a new call (``sid`` ``CA`` + 32 hex), 201 with
  the call resource. It is appended to ``calls.jsonl`` like a native call,
  ``protocol`` ``"twilio"``, with ``idempotency_key`` taken from the
  StatusCallback URL's ``ik`` query parameter (null without one), plus
  ``from_number``, ``callback_events`` and ``gather_action``. Its outcome is
  drawn from that key (or the sid).
- ``GET …/Calls/{CallSid}.json``: the call resource (``sid``, ``status`` in
  Twilio's spelling ``queued ringing in-progress completed busy no-answer
  failed``, ``to``, ``from``, ``date_created``, ``start_time`` (the acceptance
  time), ``end_time``, ``duration`` (whole seconds, terminal only),
  ``answered_by`` (``human`` or ``machine_start`` with detection), ...), or 404
  code 20404.
- ``GET …/Calls.json`` with ``To``, ``From``, ``Status``, ``StartTime>``,
  ``StartTime<``, ``PageSize`` (default 50), ``Page``: newest first, paged as
  Twilio pages (``calls``, ``next_page_uri``, ...).
- Status callbacks go to ``StatusCallback`` for the requested events at the
  native fractions (``initiated`` at acceptance, ``CallStatus=queued``),
  form-encoded with ``AccountSid``, ``CallSid``, ``CallStatus``,
  ``SequenceNumber`` (from 0, counting the status callbacks sent),
  ``Timestamp`` (RFC 2822), ``CallbackSource``, ``From``, ``To``, ``Direction``,
  ``ApiVersion``, and ``CallDuration``/``Duration`` when terminal,
  ``AnsweredBy`` with detection once answered. A key press is POSTed to the
  Gather ``action`` URL (``Digits``, ``CallSid``, ``CallStatus=in-progress``,
  ...). Both are signed with ``X-Twilio-Signature`` under the auth token
  (``twilio.request_validator.RequestValidator``, the URL as posted).

Fault injection
---------------

``GATEWAY_FAULTS`` (read by the simulator process; ``--faults`` overrides it,
``start_simulator(faults=...)`` sets it) holds comma-separated
``name=probability`` pairs; an unknown name or a probability outside [0, 1]
makes the simulator refuse to start, naming the item. Each fault is drawn on its
own from ``sha256(seed, key, attempt, name)`` (``faults.fault_draw``): ``key``
is the idempotency key (Twilio: the ``ik`` of the StatusCallback, else the To
number), ``attempt`` counts the place requests this process has seen with that
key (1, 2, …), so a retry draws afresh and can succeed. Callback faults are
drawn once per call, with the attempt that created it. ``--fault-delay-s``
(default 3 s; keep it above twice the client's timeout) is the one delay they
use. The same faults apply to both protocols.

- ``error_before_accept``: answer 503 before anything is checked or created
  (native ``{"error": "service_unavailable"}``, Twilio code 20503). The call
  does not exist; ``find_call`` returns None.
- ``error_after_accept``: create and record the call (or find it, for a known
  key), then answer 500. The call exists; the client sees a transient error.
- ``timeout_after_accept``: create and record the call, then hold the answer
  for ``--fault-delay-s`` before sending it, so the client times out. The call
  exists.
- ``slow_audio_fetch``: wait ``--fault-delay-s`` before fetching the audio of
  a new call; the client may time out, the call is still created when the
  audio is good.
- ``duplicate_callback``: every callback of the call is delivered twice, byte
  for byte.
- ``late_callback``: every callback of the call is delivered
  ``--fault-delay-s`` after its event, typically after the call's terminal
  state is already visible by polling.
- ``out_of_order_callback``: the call's callbacks are held until it ends, then
  the terminal one is delivered first and the earlier ones after it (each with
  its original sequence number).

Injected faults are logged at INFO with the key (never the number).

``GET /healthz`` is 200 ``{"status": "ok", "calls": N}``.

Native errors are JSON ``{"error": CODE, "detail": ...}`` (``detail``
optional): 400 ``invalid_json``, ``invalid_request``, ``invalid_number``; 404
``not_found`` (also for unknown paths); 409 ``idempotency_conflict``; 413
``request_too_large`` (body over 1 MiB); 422 ``invalid_audio``; 500
``internal_error``; 503 ``service_unavailable``, ``audio_unavailable``.

On start the server writes ``DIR/server.json`` (``{"url": ..., "pid": ...}``)
and prints one line starting ``voice gateway simulator ready at``; on SIGTERM
or SIGINT it stops, removes ``server.json`` and exits 0. Phone numbers never
appear in its log.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import enum
import hashlib
import heapq
import hmac
import http.server
import io
import itertools
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from voice_notify.gateway.base import CallState
from voice_notify.gateway.callbacks import sign_http_callback
from voice_notify_dev import faults as fault_names
from voice_notify_dev.faults import NO_FAULTS, FaultPlan, parse_faults

log = logging.getLogger(__name__)

CALLS_FILE = "calls.jsonl"
EVENTS_FILE = "events.jsonl"
SERVER_FILE = "server.json"
LOG_FILE = "simulator.log"  # only when started through start_simulator
READY_LINE = "voice gateway simulator ready at"
DEFAULT_FAULT_DELAY_S = 3.0

ENV_CALLBACK_SECRET = "GATEWAY_CALLBACK_SECRET"
ENV_TWILIO_ACCOUNT_SID = "GATEWAY_TWILIO_ACCOUNT_SID"
ENV_TWILIO_AUTH_TOKEN = "GATEWAY_TWILIO_AUTH_TOKEN"

TWILIO_API_PREFIX = "/2010-04-01/Accounts/"
TWILIO_CALLBACK_EVENTS = ("initiated", "ringing", "answered", "completed")

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_MAX_KEY_CHARS = 200
_MAX_BODY_BYTES = 1 << 20
_MAX_AUDIO_BYTES = 50 << 20
_AUDIO_FETCH_TIMEOUT_S = 5.0
_SILENCE_DBFS = -50.0
_FAILED_ERROR = "network_error"
_TWILIO_PATH = re.compile(r"/2010-04-01/Accounts/([^/]+)/Calls(?:/([^/]+))?\.json")

_TWILIO_STATUS = {
    CallState.QUEUED: "queued",
    CallState.RINGING: "ringing",
    CallState.IN_PROGRESS: "in-progress",
    CallState.COMPLETED: "completed",
    CallState.NO_ANSWER: "no-answer",
    CallState.BUSY: "busy",
    CallState.FAILED: "failed",
    CallState.CANCELED: "canceled",
    CallState.DECLINED: "busy",  # Twilio reports a declined call as busy
}


class Outcome(enum.StrEnum):
    """How a simulated call ends; the names used by ``--outcomes``."""

    COMPLETED = "completed"
    CONFIRM = "confirm"
    OPTOUT = "optout"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    FAILED = "failed"
    MACHINE = "machine"  # last, so adding it moved no other outcome's place in [0, 1)

    @property
    def state(self) -> CallState:
        return _OUTCOME_STATE[self]

    @property
    def key_pressed(self) -> str | None:
        return {Outcome.CONFIRM: "1", Outcome.OPTOUT: "9"}.get(self)

    @property
    def answered(self) -> bool:
        return self.state is CallState.COMPLETED

    @property
    def answered_by(self) -> str | None:
        """Who picked up, as answering-machine detection tells it."""
        if not self.answered:
            return None
        return "machine" if self is Outcome.MACHINE else "human"


_OUTCOME_STATE = {
    Outcome.COMPLETED: CallState.COMPLETED,
    Outcome.CONFIRM: CallState.COMPLETED,
    Outcome.OPTOUT: CallState.COMPLETED,
    Outcome.NO_ANSWER: CallState.NO_ANSWER,
    Outcome.BUSY: CallState.BUSY,
    Outcome.FAILED: CallState.FAILED,
    Outcome.MACHINE: CallState.COMPLETED,
}

DEFAULT_OUTCOMES: Mapping[Outcome, float] = {
    Outcome.COMPLETED: 0.45,
    Outcome.CONFIRM: 0.25,
    Outcome.OPTOUT: 0.05,
    Outcome.NO_ANSWER: 0.12,
    Outcome.BUSY: 0.08,
    Outcome.FAILED: 0.03,
    Outcome.MACHINE: 0.02,
}


def parse_outcomes(spec: str) -> dict[Outcome, float]:
    """Parse ``completed=0.45,confirm=0.25,...`` into an outcome table.

    Outcomes left out get probability 0, so ``failed=1`` makes every call fail.
    The probabilities must sum to 1: a table that silently renormalises would
    hide a typo in a campaign rehearsal.
    """
    table = dict.fromkeys(Outcome, 0.0)
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, value = item.partition("=")
        try:
            outcome = Outcome(name.strip())
            probability = float(value) if sep else math.nan
        except ValueError:
            raise ValueError(f"bad outcome {item!r}; expected NAME=PROBABILITY") from None
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability of {outcome} must be within [0, 1], got {value}")
        table[outcome] = probability
    total = sum(table.values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise ValueError(f"outcome probabilities must sum to 1, got {total:g}")
    return table


def draw_outcome(
    seed: int, idempotency_key: str, outcomes: Mapping[Outcome, float] = DEFAULT_OUTCOMES
) -> Outcome:
    """The outcome of the call placed with this key, the same on every run with this seed."""
    digest = hashlib.sha256(f"{seed}\x1f{idempotency_key}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64
    cumulative = 0.0
    chosen = None
    for outcome in Outcome:
        probability = outcomes.get(outcome, 0.0)
        if probability > 0.0:
            chosen = outcome
            cumulative += probability
            if point < cumulative:
                return outcome
    # Rounding can leave the top sliver of [0, 1) uncovered; it belongs to the last outcome.
    if chosen is None:
        raise ValueError("outcome table has no outcome with a positive probability")
    return chosen


def is_e164(number: str) -> bool:
    """Whether ``number`` is written in E.164: ``+``, country code, at most 15 digits."""
    return _E164.fullmatch(number) is not None


def _call_id(seed: int, idempotency_key: str) -> str:
    # Derived rather than random so a rehearsal with the same seed is reproducible to the id.
    digest = hashlib.sha256(f"call\x1f{seed}\x1f{idempotency_key}".encode()).hexdigest()
    return f"sim-{digest[:20]}"


def _twilio_sid(seed: int, ordinal: int) -> str:
    digest = hashlib.sha256(f"twilio-call\x1f{seed}\x1f{ordinal}".encode()).hexdigest()
    return f"CA{digest[:32]}"


class RequestRejected(Exception):
    """A request the simulator refuses, with the HTTP status and error code it answers."""

    def __init__(self, status: int, error: str, detail: str | None = None) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail

    def body(self) -> dict[str, Any]:
        body = {"error": self.error}
        if self.detail:
            body["detail"] = self.detail
        return body


class TwilioRejected(RequestRejected):
    """A refusal on the Twilio path, answered in Twilio's error shape."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(status, f"twilio_{code}", message)
        self.code = code

    def body(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.detail,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }


@dataclass(frozen=True)
class CheckedAudio:
    """What the simulator learned from fetching and decoding a call's audio."""

    seconds: float
    format: str


def check_audio(audio_url: str, timeout_s: float = _AUDIO_FETCH_TIMEOUT_S) -> CheckedAudio:
    """Fetch ``audio_url`` and make sure it is a non-empty, audible WAV.

    :raises RequestRejected: 422 ``invalid_audio`` with the reason in ``detail``
    """
    # soundfile pulls in numpy; the client side of this package must not pay for that.
    import numpy as np
    import soundfile

    def reject(detail: str) -> RequestRejected:
        return RequestRejected(422, "invalid_audio", detail)

    if urllib.parse.urlsplit(audio_url).scheme not in ("http", "https"):
        raise reject("audio_url must be http or https")
    try:
        with urllib.request.urlopen(audio_url, timeout=timeout_s) as response:
            data = response.read(_MAX_AUDIO_BYTES + 1)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code == 429:
            raise RequestRejected(503, "audio_unavailable", f"HTTP {exc.code}") from None
        raise reject(f"fetching audio_url failed: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        # The audio store is down or slow, not the audio bad: nothing is accepted and
        # the caller may try again (a real gateway answers so too).
        raise RequestRejected(503, "audio_unavailable", type(exc).__name__) from None
    if len(data) > _MAX_AUDIO_BYTES:
        raise reject(f"audio is larger than {_MAX_AUDIO_BYTES} bytes")
    try:
        info = soundfile.info(io.BytesIO(data))
        samples, _ = soundfile.read(io.BytesIO(data), dtype="float64", always_2d=True)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise reject(f"not decodable audio: {exc}") from None
    if info.format not in ("WAV", "WAVEX"):
        raise reject(f"not a WAV file (format {info.format})")
    if samples.size == 0:
        raise reject("audio has no frames")
    rms = float(np.sqrt(np.mean(np.square(samples))))
    if rms == 0.0 or 20.0 * math.log10(rms) < _SILENCE_DBFS:
        raise reject(f"audio is silent (RMS below {_SILENCE_DBFS:g} dBFS)")
    return CheckedAudio(
        seconds=round(info.frames / info.samplerate, 3),
        format=f"{info.subtype} {info.samplerate} Hz",
    )


@dataclass(frozen=True)
class TimelineEvent:
    """One event of a call's life: when (a fraction of call_seconds) and what."""

    at: float
    kind: str  # a CallState value or "digits"; Twilio: its event name
    sequence: int  # the gateway's order; -1 for Twilio's Gather post, which has none


@dataclass
class SimulatedCall:
    """One accepted call: its ``calls.jsonl`` record plus what the simulator derives from it."""

    call_id: str
    to: str
    idempotency_key: str | None
    audio_url: str
    ring_timeout_s: int
    metadata: dict[str, Any]
    accepted_at: str
    audio_seconds: float
    audio_format: str
    protocol: str = "native"
    status_callback: str | None = None
    machine_detection: bool = True
    request_attempt: int = 1
    from_number: str | None = None  # Twilio only, as are the two below
    callback_events: list[str] | None = None
    gather_action: str | None = None
    outcome: Outcome = field(default=Outcome.COMPLETED, compare=False)
    accepted_ts: float = field(default=0.0, compare=False)

    def record(self) -> dict[str, Any]:
        """The ``calls.jsonl`` line: what was asked, never the drawn outcome."""
        record = asdict(self)
        del record["outcome"], record["accepted_ts"]
        return record

    @property
    def draw_key(self) -> str:
        """What the outcome and the callback faults are drawn from."""
        return self.idempotency_key or self.call_id

    def state_at(self, now: float, call_seconds: float) -> CallState:
        progress = self.progress(now, call_seconds)
        if progress >= 1.0:
            return self.outcome.state
        if progress < 0.2:
            return CallState.QUEUED
        if progress < 0.6 or not self.outcome.answered:
            return CallState.RINGING
        return CallState.IN_PROGRESS

    def progress(self, now: float, call_seconds: float) -> float:
        return (now - self.accepted_ts) / call_seconds if call_seconds > 0 else 1.0

    def answered_by(self, state: CallState) -> str | None:
        """What detection says once the call was answered, if it was asked to."""
        if not self.machine_detection or state not in (CallState.IN_PROGRESS, CallState.COMPLETED):
            return None
        return self.outcome.answered_by

    def status(self, now: float, call_seconds: float) -> dict[str, Any]:
        """The protocol's status object; how the call ended is only told once it has."""
        state = self.state_at(now, call_seconds)
        status: dict[str, Any] = {
            "call_id": self.call_id,
            "idempotency_key": self.idempotency_key,
            "to": self.to,
            "state": str(state),
            "key_pressed": None,
            "duration_s": None,
            "error": _FAILED_ERROR if state is CallState.FAILED else None,
            "answered_by": self.answered_by(state),
        }
        if state.terminal:
            status["key_pressed"] = self.outcome.key_pressed
            status["duration_s"] = self.duration_s
        return status

    @property
    def duration_s(self) -> float:
        return self.audio_seconds if self.outcome.answered else 0.0

    def timeline(self) -> list[TimelineEvent]:
        """The events this call's callbacks report, in the order they happen."""
        answered, key = self.outcome.answered, self.outcome.key_pressed
        if self.protocol == "twilio":
            return self._twilio_timeline(answered, key is not None)
        if self.status_callback is None:
            return []
        steps = [(0.2, str(CallState.RINGING))]
        if answered:
            steps.append((0.6, str(CallState.IN_PROGRESS)))
        if key is not None:
            steps.append((0.8, "digits"))
        steps.append((1.0, str(self.outcome.state)))
        return [TimelineEvent(at, kind, n) for n, (at, kind) in enumerate(steps)]

    def _twilio_timeline(self, answered: bool, pressed: bool) -> list[TimelineEvent]:
        events: list[TimelineEvent] = []
        if self.status_callback is not None:
            wanted = set(self.callback_events or ()) | {"completed"}
            steps = [(0.0, "initiated"), (0.2, "ringing")]
            if answered:
                steps.append((0.6, "answered"))
            steps.append((1.0, "completed"))
            steps = [(at, kind) for at, kind in steps if kind in wanted]
            events = [TimelineEvent(at, kind, n) for n, (at, kind) in enumerate(steps)]
        if pressed and self.gather_action:
            events.append(TimelineEvent(0.8, "digits", -1))
            events.sort(key=lambda event: event.at)
        return events

    def occurred_at(self, event: TimelineEvent, call_seconds: float) -> float:
        return self.accepted_ts + event.at * call_seconds


def _append_line(path: Path, record: Mapping[str, Any]) -> None:
    # fsync per line: an accepted call must survive a crash, or a retry would call twice.
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _read_lines(path: Path) -> list[dict[str, Any]]:
    """The records in a JSONL state file, cutting off a line a crash left half-written."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    complete = raw.rfind(b"\n") + 1
    if complete < len(raw):
        log.warning("dropping a half-written last line in %s", path)
        # Truncated, not just skipped: the next append would otherwise be glued onto it.
        with path.open("r+b") as f:
            f.truncate(complete)
    lines = raw[:complete].decode("utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _check_same_request(call: SimulatedCall, to: str, audio_url: str) -> None:
    if (call.to, call.audio_url) != (to, audio_url):
        raise RequestRejected(
            409, "idempotency_conflict", "key was used with a different to or audio_url"
        )


# --- callback delivery -----------------------------------------------------------------------


@dataclass
class Delivery:
    """One callback POST: where, what, and how to sign it when it is sent."""

    url: str
    body: bytes
    content_type: str
    sign: Callable[[bytes], dict[str, str]]
    label: str  # call id and event, for the log (never a number)
    attempt: int = 0


class CallbackSender:
    """Posts callbacks at their due time from one thread, retrying failed deliveries.

    One thread keeps a call's callbacks in the order they were scheduled, which
    is what makes an injected out-of-order delivery the only disorder there is.
    """

    retry_delays_s = (0.25, 0.5, 1.0)

    def __init__(self, timeout_s: float = 2.0) -> None:
        self.timeout_s = timeout_s
        self._queue: list[tuple[float, int, Delivery]] = []
        self._order = itertools.count()
        self._wakeup = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="simulator-callbacks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, delivery: Delivery, at: float) -> None:
        with self._wakeup:
            heapq.heappush(self._queue, (at, next(self._order), delivery))
            self._wakeup.notify()

    def close(self, drain_s: float = 2.0) -> None:
        """Deliver what is due within ``drain_s``, then stop."""
        deadline = time.time() + drain_s
        with self._wakeup:
            while self._queue and self._queue[0][0] < deadline and time.time() < deadline:
                self._wakeup.wait(0.05)
            self._stopping = True
            self._wakeup.notify()
        self._thread.join(timeout=self.timeout_s + 1.0)

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not self._stopping and (not self._queue or self._queue[0][0] > time.time()):
                    wait_s = self._queue[0][0] - time.time() if self._queue else 0.1
                    self._wakeup.wait(max(0.001, min(wait_s, 0.1)))
                if self._stopping:
                    return
                _, _, delivery = heapq.heappop(self._queue)
            try:
                self._deliver(delivery)
            except Exception:  # a broken callback must never take the simulator down
                log.exception("callback %s could not be sent", delivery.label)
            finally:
                with self._wakeup:
                    self._wakeup.notify_all()

    def _deliver(self, delivery: Delivery) -> None:
        headers = {"Content-Type": delivery.content_type, **delivery.sign(delivery.body)}
        request = urllib.request.Request(
            delivery.url, data=delivery.body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
            log.debug("callback %s delivered", delivery.label)
            return
        except urllib.error.HTTPError as exc:
            if exc.code < 500 and exc.code != 429:
                log.warning("callback %s refused with HTTP %s", delivery.label, exc.code)
                return
            reason = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            reason = str(exc)
        if delivery.attempt >= len(self.retry_delays_s):
            log.warning(
                "callback %s given up after %s: %s", delivery.label, delivery.attempt + 1, reason
            )
            return
        delay = self.retry_delays_s[delivery.attempt]
        delivery.attempt += 1
        log.info(
            "callback %s failed (%s); retry %d in %.2f s",
            delivery.label,
            reason,
            delivery.attempt,
            delay,
        )
        self.submit(delivery, time.time() + delay)


# --- the book of calls -----------------------------------------------------------------------


@dataclass(frozen=True)
class GatewayConfig:
    """What a simulator run was started with, beyond where its state lives."""

    seed: int
    call_seconds: float
    outcomes: Mapping[Outcome, float] = field(default_factory=lambda: dict(DEFAULT_OUTCOMES))
    faults: FaultPlan = NO_FAULTS
    fault_delay_s: float = DEFAULT_FAULT_DELAY_S
    callback_secret: str | None = None
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None


class CallBook:
    """Every call the simulator accepted, backed by the state directory.

    One lock guards the maps and the files, so a key is checked and recorded
    atomically even when two requests with it race.
    """

    def __init__(
        self,
        state_dir: Path,
        seed: int,
        call_seconds: float,
        outcomes: Mapping[Outcome, float] = DEFAULT_OUTCOMES,
        *,
        config: GatewayConfig | None = None,
        sender: CallbackSender | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.config = config or GatewayConfig(seed, call_seconds, dict(outcomes))
        self.seed = self.config.seed
        self.call_seconds = self.config.call_seconds
        self.outcomes = dict(self.config.outcomes)
        self.sender = sender
        self._lock = threading.Lock()
        self._by_id: dict[str, SimulatedCall] = {}
        self._by_key: dict[str, SimulatedCall] = {}
        self._ended: set[str] = set()
        self._attempts: dict[str, int] = {}
        self._twilio_calls = 0
        self._emitted: dict[str, int] = {}  # call id -> how many timeline events went out

    @property
    def calls_path(self) -> Path:
        return self.state_dir / CALLS_FILE

    @property
    def events_path(self) -> Path:
        return self.state_dir / EVENTS_FILE

    def load(self) -> None:
        """Reload the calls and terminal events a previous run recorded."""
        now = time.time()
        with self._lock:
            for record in _read_lines(self.calls_path):
                call = SimulatedCall(**record)
                self._remember(call)
                # Callbacks due before the restart are not sent again: polling is the fallback.
                due = [e for e in call.timeline() if e.at <= call.progress(now, self.call_seconds)]
                self._emitted[call.call_id] = len(due)
            self._ended.update(event["call_id"] for event in _read_lines(self.events_path))
        log.info("loaded %d calls from %s", len(self._by_id), self.calls_path)

    def _remember(self, call: SimulatedCall) -> None:
        call.outcome = draw_outcome(self.seed, call.draw_key, self.outcomes)
        call.accepted_ts = datetime.fromisoformat(call.accepted_at).timestamp()
        self._by_id[call.call_id] = call
        if call.protocol == "twilio":
            self._twilio_calls += 1
        elif call.idempotency_key is not None:
            self._by_key[call.idempotency_key] = call

    def __len__(self) -> int:
        return len(self._by_id)

    # faults

    def next_attempt(self, key: str) -> int:
        """Count one more place request with this key; its attempt number (from 1)."""
        with self._lock:
            self._attempts[key] = self._attempts.get(key, 0) + 1
            return self._attempts[key]

    def request_faults(self, key: str, attempt: int) -> frozenset[str]:
        """The faults that hit this place request."""
        plan = self.config.faults
        names = (
            fault_names.ERROR_BEFORE_ACCEPT,
            fault_names.ERROR_AFTER_ACCEPT,
            fault_names.TIMEOUT_AFTER_ACCEPT,
            fault_names.SLOW_AUDIO_FETCH,
        )
        hit = frozenset(n for n in names if plan.fires(self.seed, key, attempt, n))
        if hit:
            log.info("injecting %s into attempt %d for key %s", ",".join(sorted(hit)), attempt, key)
        return hit

    def _callback_faults(self, call: SimulatedCall) -> frozenset[str]:
        plan = self.config.faults
        key, attempt = call.draw_key, call.request_attempt
        return frozenset(
            n for n in fault_names.CALLBACK_FAULTS if plan.fires(self.seed, key, attempt, n)
        )

    # native calls

    def existing(self, idempotency_key: str, to: str, audio_url: str) -> SimulatedCall | None:
        """The call already placed with this key, if its request matches this one.

        :raises RequestRejected: 409 when the key was used for another number or audio
        """
        with self._lock:
            call = self._by_key.get(idempotency_key)
        if call is not None:
            _check_same_request(call, to, audio_url)
        return call

    def accept(
        self, request: Mapping[str, Any], audio: CheckedAudio, attempt: int = 1
    ) -> tuple[SimulatedCall, bool]:
        """Record a new call, or return the one a racing request with the key recorded first.

        :returns: the call and whether this request created it
        :raises RequestRejected: 409 when the racing request asked for another number or audio
        """
        key = request["idempotency_key"]
        with self._lock:
            winner = self._by_key.get(key)
            if winner is None:
                call = SimulatedCall(
                    call_id=_call_id(self.seed, key),
                    to=request["to"],
                    idempotency_key=key,
                    audio_url=request["audio_url"],
                    ring_timeout_s=request["ring_timeout_s"],
                    metadata=request["metadata"],
                    accepted_at=_now_iso(),
                    audio_seconds=audio.seconds,
                    audio_format=audio.format,
                    status_callback=request.get("status_callback"),
                    machine_detection=request.get("machine_detection", True),
                    request_attempt=attempt,
                )
                self._record(call)
                return call, True
        _check_same_request(winner, request["to"], request["audio_url"])
        return winner, False

    def accept_twilio(
        self, request: Mapping[str, Any], audio: CheckedAudio, attempt: int
    ) -> SimulatedCall:
        """Record a new Twilio call: Twilio has no idempotency key, every POST is a call."""
        with self._lock:
            call = SimulatedCall(
                call_id=_twilio_sid(self.seed, self._twilio_calls),
                to=request["to"],
                idempotency_key=request["ik"],
                audio_url=request["audio_url"],
                ring_timeout_s=request["timeout"],
                metadata={},
                accepted_at=_now_iso(),
                audio_seconds=audio.seconds,
                audio_format=audio.format,
                protocol="twilio",
                status_callback=request["status_callback"],
                machine_detection=request["machine_detection"],
                request_attempt=attempt,
                from_number=request["from"],
                callback_events=request["callback_events"],
                gather_action=request["gather_action"],
            )
            self._record(call)
            return call

    def _record(self, call: SimulatedCall) -> None:
        _append_line(self.calls_path, call.record())
        self._remember(call)
        self._emitted[call.call_id] = 0

    def status(
        self, call_id: str | None = None, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """The status of one call by id or by key; records its end the first time it is seen.

        :raises RequestRejected: 404 when no such call was accepted
        """
        with self._lock:
            if call_id is not None:
                call = self._by_id.get(call_id)
            else:
                call = self._by_key.get(idempotency_key or "")
            if call is None:
                raise RequestRejected(404, "not_found")
            return self._settle(call, time.time())

    def twilio_call(self, sid: str) -> tuple[SimulatedCall, dict[str, Any]]:
        """A Twilio call and its native status (settled), or 404 code 20404."""
        with self._lock:
            call = self._by_id.get(sid)
            if call is None or call.protocol != "twilio":
                raise TwilioRejected(404, 20404, f"The requested resource {sid} was not found")
            return call, self._settle(call, time.time())

    def twilio_calls(self) -> list[tuple[SimulatedCall, dict[str, Any]]]:
        """Every Twilio call with its status, newest first."""
        now = time.time()
        with self._lock:
            calls = [c for c in self._by_id.values() if c.protocol == "twilio"]
            calls.sort(key=lambda c: c.accepted_ts, reverse=True)
            return [(call, self._settle(call, now)) for call in calls]

    def settle_all(self) -> None:
        """Record the end of every call whose time is up, and send due callbacks (the ticker)."""
        now = time.time()
        with self._lock:
            for call_id in self._by_id.keys() - self._ended:
                self._settle(self._by_id[call_id], now)
            for call_id, sent in list(self._emitted.items()):
                self._emit_due(self._by_id[call_id], sent, now)

    def _settle(self, call: SimulatedCall, now: float) -> dict[str, Any]:
        status = call.status(now, self.call_seconds)
        if CallState(status["state"]).terminal and call.call_id not in self._ended:
            event = {key: status[key] for key in status if key != "to"}
            event["ended_at"] = datetime.fromtimestamp(now, UTC).isoformat(timespec="microseconds")
            _append_line(self.events_path, event)
            self._ended.add(call.call_id)
            log.info(
                "call %s ended %s (key %s)", call.call_id, status["state"], call.idempotency_key
            )
        return status

    # callbacks

    def _emit_due(self, call: SimulatedCall, sent: int, now: float) -> None:
        timeline = call.timeline()
        if sent >= len(timeline):
            del self._emitted[call.call_id]
            return
        progress = call.progress(now, self.call_seconds)
        due = [event for event in timeline[sent:] if event.at <= progress]
        if not due:
            return
        faults = self._callback_faults(call)
        if fault_names.OUT_OF_ORDER_CALLBACK in faults:
            if len(due) < len(timeline) - sent:
                return  # held back until the call ends
            due = [due[-1], *due[:-1]]
        self._emitted[call.call_id] = sent + len(due)
        if self.sender is None:
            return
        for event in due:
            at = time.time()
            if fault_names.LATE_CALLBACK in faults:
                at += self.config.fault_delay_s
            delivery = self._delivery(call, event)
            if delivery is None:
                continue
            self.sender.submit(delivery, at)
            if fault_names.DUPLICATE_CALLBACK in faults:
                self.sender.submit(_copy(delivery), at)

    def _delivery(self, call: SimulatedCall, event: TimelineEvent) -> Delivery | None:
        label = f"{call.call_id} {event.kind}#{event.sequence}"
        if call.protocol == "twilio":
            return self._twilio_delivery(call, event, label)
        assert call.status_callback is not None
        occurred = call.occurred_at(event, self.call_seconds)
        body: dict[str, Any] = {
            "call_id": call.call_id,
            "idempotency_key": call.idempotency_key,
            "state": event.kind,
            "sequence": event.sequence,
            "key_pressed": None,
            "answered_by": None,
            "duration_s": None,
            "occurred_at": datetime.fromtimestamp(occurred, UTC).isoformat(timespec="microseconds"),
        }
        if event.kind == "digits":
            body["key_pressed"] = call.outcome.key_pressed
            body["answered_by"] = call.answered_by(CallState.IN_PROGRESS)
        else:
            state = CallState(event.kind)
            body["answered_by"] = call.answered_by(state)
            if state.terminal:
                body["key_pressed"] = call.outcome.key_pressed
                body["duration_s"] = call.duration_s
        raw = json.dumps(body, sort_keys=True).encode("utf-8")
        secret = self.config.callback_secret
        return Delivery(
            call.status_callback,
            raw,
            "application/json",
            (lambda payload: sign_http_callback(secret, payload)) if secret else (lambda _: {}),
            label,
        )

    def _twilio_delivery(
        self, call: SimulatedCall, event: TimelineEvent, label: str
    ) -> Delivery | None:
        from twilio.request_validator import RequestValidator

        occurred = call.occurred_at(event, self.call_seconds)
        params = {
            "AccountSid": self.config.twilio_account_sid or "",
            "CallSid": call.call_id,
            "From": call.from_number or "",
            "To": call.to,
            "Direction": "outbound-api",
            "ApiVersion": "2010-04-01",
        }
        if event.kind == "digits":
            url = call.gather_action
            params.update(CallStatus="in-progress", Digits=call.outcome.key_pressed or "")
            state = CallState.IN_PROGRESS
        else:
            url = call.status_callback
            state = {
                "initiated": CallState.QUEUED,
                "ringing": CallState.RINGING,
                "answered": CallState.IN_PROGRESS,
            }.get(event.kind, call.outcome.state)
            params.update(
                CallStatus=_TWILIO_STATUS[state],
                SequenceNumber=str(event.sequence),
                Timestamp=_rfc2822(occurred),
                CallbackSource="call-progress-events",
            )
            if state.terminal:
                params["CallDuration"] = str(round(call.duration_s))
                params["Duration"] = str(math.ceil(call.duration_s / 60))
        answered_by = _twilio_answered_by(call, state)
        if answered_by is not None:
            params["AnsweredBy"] = answered_by
        if url is None:
            return None
        signature = RequestValidator(self.config.twilio_auth_token or "").compute_signature(
            url, params
        )
        return Delivery(
            url,
            urllib.parse.urlencode(params).encode("ascii"),
            "application/x-www-form-urlencoded",
            lambda _: {"X-Twilio-Signature": signature},
            label,
        )


def _copy(delivery: Delivery) -> Delivery:
    return Delivery(
        delivery.url, delivery.body, delivery.content_type, delivery.sign, delivery.label + " (dup)"
    )


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _twilio_answered_by(call: SimulatedCall, state: CallState) -> str | None:
    who = call.answered_by(state)
    return {"machine": "machine_start"}.get(who, who) if who else None


# --- native requests -------------------------------------------------------------------------


def _validated_request(body: Any) -> dict[str, Any]:
    """The POST /v1/calls body with defaults filled in, or a 400 naming what is wrong."""

    def invalid(detail: str) -> RequestRejected:
        return RequestRejected(400, "invalid_request", detail)

    if not isinstance(body, dict):
        raise invalid("body must be a JSON object")
    to = body.get("to")
    if not isinstance(to, str):
        raise invalid("to is required and must be a string")
    if not is_e164(to):
        raise RequestRejected(400, "invalid_number", "to must be E.164, e.g. +8613812345678")
    key = body.get("idempotency_key")
    if not isinstance(key, str) or not key or len(key) > _MAX_KEY_CHARS:
        raise invalid(f"idempotency_key must be a string of 1 to {_MAX_KEY_CHARS} characters")
    if not isinstance(body.get("audio_url"), str):
        raise invalid("audio_url is required and must be a string")
    ring_timeout_s = body.get("ring_timeout_s", 30)
    if type(ring_timeout_s) is not int or not 1 <= ring_timeout_s <= 300:
        raise invalid("ring_timeout_s must be an integer from 1 to 300")
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict):
        raise invalid("metadata must be a JSON object")
    status_callback = body.get("status_callback")
    if status_callback is not None and not _is_http_url(status_callback):
        raise invalid("status_callback must be an http or https URL")
    machine_detection = body.get("machine_detection", True)
    if not isinstance(machine_detection, bool):
        raise invalid("machine_detection must be a boolean")
    return {
        "to": to,
        "idempotency_key": key,
        "audio_url": body["audio_url"],
        "ring_timeout_s": ring_timeout_s,
        "metadata": metadata,
        "status_callback": status_callback,
        "machine_detection": machine_detection,
    }


def _is_http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urllib.parse.urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


# --- Twilio requests -------------------------------------------------------------------------


def parse_twiml(twiml: str) -> tuple[str, str | None]:
    """The Play URL and the Gather action of a call's TwiML.

    :raises TwilioRejected: 400 code 12100 when it is not TwiML with a ``<Play>``
    """
    try:
        root = ElementTree.fromstring(twiml)
    except ElementTree.ParseError as exc:
        raise TwilioRejected(400, 12100, f"Document parse failure: {exc}") from None
    if root.tag != "Response":
        raise TwilioRejected(400, 12100, "TwiML must have a <Response> root")
    play = root.find(".//Play")
    if play is None or not (play.text or "").strip():
        raise TwilioRejected(400, 12100, "TwiML has no <Play> with a URL")
    gather = root.find("Gather")
    action = None
    if gather is not None and gather.find(".//Play") is not None:
        action = gather.get("action") or None
        num_digits = gather.get("numDigits", "1")
        if not num_digits.isdigit() or int(num_digits) < 1:
            raise TwilioRejected(400, 12100, "Gather numDigits must be a positive integer")
        if action is not None and not _is_http_url(action):
            raise TwilioRejected(400, 12100, "Gather action must be an absolute http(s) URL")
    return play.text.strip(), action


def _twilio_create_request(form: Mapping[str, list[str]]) -> dict[str, Any]:
    """The form of a Twilio Calls.json POST, checked as the simulator's subset allows."""

    def one(name: str) -> str | None:
        values = form.get(name)
        return values[-1] if values else None

    def invalid(message: str) -> TwilioRejected:
        return TwilioRejected(400, 20001, message)

    to = one("To")
    if not to or not is_e164(to):
        raise TwilioRejected(400, 21211, "The 'To' number is not a valid phone number.")
    from_number = one("From")
    if not from_number:
        raise TwilioRejected(400, 21603, "A 'From' phone number is required.")
    twiml = one("Twiml")
    if not twiml:
        raise TwilioRejected(400, 21205, "Twiml is required (the simulator does not fetch Url)")
    audio_url, gather_action = parse_twiml(twiml)
    timeout = one("Timeout") or "60"
    if not timeout.isdigit() or not 1 <= int(timeout) <= 600:
        raise invalid("Timeout must be an integer from 1 to 600")
    detection = one("MachineDetection")
    if detection not in (None, "Enable", "DetectMessageEnd"):
        raise invalid("MachineDetection must be Enable or DetectMessageEnd")
    status_callback = one("StatusCallback")
    if status_callback is not None and not _is_http_url(status_callback):
        raise TwilioRejected(400, 21609, "StatusCallback must be an http or https URL")
    if (one("StatusCallbackMethod") or "POST").upper() != "POST":
        raise invalid("the simulator posts status callbacks; StatusCallbackMethod must be POST")
    events = [e for value in form.get("StatusCallbackEvent", []) for e in value.split()]
    unknown = set(events) - set(TWILIO_CALLBACK_EVENTS)
    if unknown:
        raise invalid(f"unknown StatusCallbackEvent {sorted(unknown)}")
    ik = None
    for url in (status_callback, gather_action):
        if ik is None and url:
            ik = (urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).get("ik") or [None])[0]
    return {
        "to": to,
        "from": from_number,
        "audio_url": audio_url,
        "gather_action": gather_action,
        "timeout": int(timeout),
        "machine_detection": detection is not None,
        "status_callback": status_callback,
        "callback_events": events,
        "ik": ik,
    }


def _rfc2822(ts: float | None) -> str | None:
    """Unix seconds as Twilio writes times: ``Mon, 01 Jun 2025 08:00:00 +0000``."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")


def twilio_resource(
    call: SimulatedCall, status: Mapping[str, Any], account_sid: str, call_seconds: float
) -> dict[str, Any]:
    """A call as Twilio's REST API shows it."""
    state = CallState(status["state"])
    ended = call.accepted_ts + call_seconds if state.terminal else None
    return {
        "sid": call.call_id,
        "account_sid": account_sid,
        "to": call.to,
        "to_formatted": call.to,
        "from": call.from_number,
        "from_formatted": call.from_number,
        "status": _TWILIO_STATUS[state],
        "date_created": _rfc2822(call.accepted_ts),
        "date_updated": _rfc2822(ended or call.accepted_ts),
        "start_time": _rfc2822(call.accepted_ts),
        "end_time": _rfc2822(ended),
        "duration": str(round(call.duration_s)) if state.terminal else None,
        "answered_by": _twilio_answered_by(call, state),
        "direction": "outbound-api",
        "api_version": "2010-04-01",
        "price": None,
        "price_unit": "USD",
        "parent_call_sid": None,
        "phone_number_sid": None,
        "forwarded_from": None,
        "caller_name": None,
        "group_sid": None,
        "queue_time": "0",
        "trunk_sid": None,
        "uri": f"/2010-04-01/Accounts/{account_sid}/Calls/{call.call_id}.json",
        "subresource_uris": {},
    }


def _twilio_time_bound(value: str) -> float:
    """A ``StartTime>`` / ``StartTime<`` value (``YYYY-MM-DD`` or ISO-8601 UTC) as Unix seconds."""
    text = value.strip().replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise TwilioRejected(400, 20001, f"not a date or time: {value!r}") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


# --- the HTTP server -------------------------------------------------------------------------


class _SimulatorServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], book: CallBook) -> None:
        super().__init__(address, _GatewayHandler)
        self.book = book


class _GatewayHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a requests.Session expects
    # TCP_NODELAY: the headers and the body go out in two writes; with Nagle's algorithm
    # the body waits for the client's delayed ACK (40 ms on Linux) on every keep-alive
    # request, which capped a dial task at about 20 calls a second.
    disable_nagle_algorithm = True
    server_version = "voice-gateway-simulator/1"
    timeout = 30  # an idle keep-alive connection must not pin a thread forever
    server: _SimulatorServer

    def do_GET(self) -> None:
        self._answer(self._get)

    def do_POST(self) -> None:
        self._answer(self._post)

    def _answer(self, route: Callable[[], tuple[int, Mapping[str, Any]]]) -> None:
        try:
            status, body = route()
        except RequestRejected as exc:
            if self.command == "POST" and exc.status != 404:
                log.info("rejected POST %s: %s %s", self._path, exc.error, exc.detail or "")
            status, body = exc.status, exc.body()
        except Exception:
            # A real gateway answers 5xx when it breaks; clients must treat that as ambiguous.
            log.exception("internal error on %s %s", self.command, self._path)
            status, body = 500, {"error": "internal_error"}
        self._send(status, body)

    @property
    def _path(self) -> str:
        return urllib.parse.urlsplit(self.path).path

    @property
    def book(self) -> CallBook:
        return self.server.book

    def _get(self) -> tuple[int, Mapping[str, Any]]:
        url = urllib.parse.urlsplit(self.path)
        if url.path.startswith(TWILIO_API_PREFIX):
            return self._twilio_get(url)
        if url.path == "/healthz":
            return 200, {"status": "ok", "calls": len(self.book)}
        if url.path == "/v1/calls":
            query = urllib.parse.parse_qs(url.query)
            if "call_id" in query:  # many calls at once; unknown ids are left out
                return 200, {"calls": self._statuses(query["call_id"])}
            keys = query.get("idempotency_key")
            if not keys:
                raise RequestRejected(400, "invalid_request", "idempotency_key is required")
            return 200, self.book.status(idempotency_key=keys[0])
        if url.path.startswith("/v1/calls/"):
            call_id = urllib.parse.unquote(url.path.removeprefix("/v1/calls/"))
            return 200, self.book.status(call_id=call_id)
        raise RequestRejected(404, "not_found")

    def _statuses(self, call_ids: list[str]) -> list[Mapping[str, Any]]:
        if len(call_ids) > 500:
            raise RequestRejected(400, "invalid_request", "at most 500 call_id per request")
        found = []
        for call_id in call_ids:
            try:
                found.append(self.book.status(call_id=call_id))
            except RequestRejected:
                continue
        return found

    def _post(self) -> tuple[int, Mapping[str, Any]]:
        if self._path.startswith(TWILIO_API_PREFIX):
            return self._twilio_post()
        body = self._read_json()
        if self._path != "/v1/calls":
            raise RequestRejected(404, "not_found")
        return self._place_call(_validated_request(body))

    def _place_call(self, request: dict[str, Any]) -> tuple[int, Mapping[str, Any]]:
        book = self.book
        key, to, audio_url = request["idempotency_key"], request["to"], request["audio_url"]
        attempt = book.next_attempt(key)
        faults = book.request_faults(key, attempt)
        if fault_names.ERROR_BEFORE_ACCEPT in faults:
            raise RequestRejected(503, "service_unavailable", "injected fault error_before_accept")
        call = book.existing(key, to, audio_url)
        created = False
        if call is None:
            # Fetched outside the lock: a slow audio host must not stall every other request.
            audio = self._fetch_audio(audio_url, faults)
            call, created = book.accept(request, audio, attempt)
        if created:
            log.info("accepted call %s for key %s (%s)", call.call_id, key, call.outcome)
        self._after_accept(faults, RequestRejected(500, "internal_error", "injected fault"))
        return (201 if created else 200), book.status(call_id=call.call_id)

    def _fetch_audio(self, audio_url: str, faults: frozenset[str]) -> CheckedAudio:
        if fault_names.SLOW_AUDIO_FETCH in faults:
            time.sleep(self.book.config.fault_delay_s)
        return check_audio(audio_url)

    def _after_accept(self, faults: frozenset[str], error: RequestRejected) -> None:
        """The faults that strike once the call exists: a held answer, a 500."""
        if fault_names.TIMEOUT_AFTER_ACCEPT in faults:
            time.sleep(self.book.config.fault_delay_s)
            self.close_connection = True
        if fault_names.ERROR_AFTER_ACCEPT in faults:
            raise error

    # Twilio

    def _twilio_account(self) -> str:
        """The account SID of the path, once basic auth proved the caller holds its token."""
        config = self.book.config
        match = _TWILIO_PATH.fullmatch(self._path)
        account = urllib.parse.unquote(match.group(1)) if match else None
        user, password = _basic_auth(self.headers.get("Authorization"))
        if not (
            config.twilio_account_sid
            and config.twilio_auth_token
            and account == config.twilio_account_sid
            and hmac.compare_digest(user.encode(), config.twilio_account_sid.encode())
            and hmac.compare_digest(password.encode(), config.twilio_auth_token.encode())
        ):
            raise TwilioRejected(401, 20003, "Authenticate")
        return account

    def _twilio_get(self, url: urllib.parse.SplitResult) -> tuple[int, Mapping[str, Any]]:
        account = self._twilio_account()
        sid = _TWILIO_PATH.fullmatch(url.path).group(2)
        call_seconds = self.book.call_seconds
        if sid is not None:
            call, status = self.book.twilio_call(urllib.parse.unquote(sid))
            return 200, twilio_resource(call, status, account, call_seconds)
        query = urllib.parse.parse_qs(url.query)
        resources = [
            twilio_resource(call, status, account, call_seconds)
            for call, status in self.book.twilio_calls()
            if _twilio_list_match(call, status, query)
        ]
        return 200, _twilio_page(resources, query, url.path)

    def _twilio_post(self) -> tuple[int, Mapping[str, Any]]:
        account = self._twilio_account()
        if _TWILIO_PATH.fullmatch(self._path).group(2) is not None:
            raise TwilioRejected(400, 20001, "the simulator does not update calls")
        form = urllib.parse.parse_qs(self._read_body().decode("utf-8"), keep_blank_values=True)
        request = _twilio_create_request(form)
        book = self.book
        draw_key = request["ik"] or f"to:{request['to']}"
        attempt = book.next_attempt(draw_key)
        faults = book.request_faults(draw_key, attempt)
        if fault_names.ERROR_BEFORE_ACCEPT in faults:
            raise TwilioRejected(503, 20503, "Service unavailable (injected fault)")
        try:
            audio = self._fetch_audio(request["audio_url"], faults)
        except RequestRejected as exc:
            if exc.status == 503:  # the audio store is down: nothing accepted, try again
                raise TwilioRejected(503, 20503, f"audio_unavailable: {exc.detail}") from None
            raise TwilioRejected(400, 11200, f"invalid_audio: {exc.detail}") from None
        call = book.accept_twilio(request, audio, attempt)
        log.info(
            "accepted Twilio call %s for key %s (%s)",
            call.call_id,
            call.idempotency_key,
            call.outcome,
        )
        self._after_accept(faults, TwilioRejected(500, 20500, "Internal error (injected fault)"))
        _, status = book.twilio_call(call.call_id)
        return 201, twilio_resource(call, status, account, book.call_seconds)

    # plumbing

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY_BYTES:
            self.close_connection = True  # the unread body would poison the next request
            raise RequestRejected(413, "request_too_large")
        return self.rfile.read(length)

    def _read_json(self) -> Any:
        raw = self._read_body()
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise RequestRejected(400, "invalid_json") from None

    def _send(self, status: int, body: Mapping[str, Any]) -> None:
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            if status == 401:
                self.send_header("WWW-Authenticate", 'Basic realm="Twilio API"')
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            # The client gave up (a timeout it was meant to have); nothing left to tell it.
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines carry ids and keys, never numbers (those travel in POST bodies;
        # a Twilio list's To filter is a query, so request lines are logged at DEBUG only).
        log.debug("%s " + format, self.address_string(), *args)


def _basic_auth(header: str | None) -> tuple[str, str]:
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        user, _, password = base64.b64decode(encoded).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return "", ""
    return user, password


def _twilio_list_match(
    call: SimulatedCall, status: Mapping[str, Any], query: Mapping[str, list[str]]
) -> bool:
    def wanted(name: str) -> str | None:
        values = query.get(name)
        return values[-1] if values else None

    if wanted("To") not in (None, call.to) or wanted("From") not in (None, call.from_number):
        return False
    if wanted("Status") not in (None, _TWILIO_STATUS[CallState(status["state"])]):
        return False
    started = math.floor(call.accepted_ts)  # Twilio times have whole seconds
    after, before = wanted("StartTime>"), wanted("StartTime<")
    if after is not None and started < _twilio_time_bound(after):
        return False
    return before is None or started <= _twilio_time_bound(before)


def _twilio_page(
    resources: list[dict[str, Any]], query: Mapping[str, list[str]], path: str
) -> dict[str, Any]:
    def number(name: str, default: int, top: int) -> int:
        value = (query.get(name) or [str(default)])[-1]
        if not value.isdigit():
            raise TwilioRejected(400, 20001, f"{name} must be a non-negative integer")
        return min(int(value), top)

    size, page = max(1, number("PageSize", 50, 1000)), number("Page", 0, 10**6)
    start = page * size
    rows = resources[start : start + size]

    def uri(at_page: int) -> str:
        params = {k: v[-1] for k, v in query.items() if k not in ("Page", "PageSize", "PageToken")}
        params.update(Page=str(at_page), PageSize=str(size))
        return f"{path}?{urllib.parse.urlencode(params)}"

    return {
        "calls": rows,
        "page": page,
        "page_size": size,
        "start": start,
        "end": start + max(0, len(rows) - 1),
        "uri": uri(page),
        "first_page_uri": uri(0),
        "next_page_uri": uri(page + 1) if start + size < len(resources) else None,
        "previous_page_uri": uri(page - 1) if page > 0 else None,
    }


# --- running it ------------------------------------------------------------------------------


def _write_server_file(state_dir: Path, url: str) -> None:
    # Written then renamed, so a reader polling for it never sees half a file.
    tmp = state_dir / f".{SERVER_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps({"url": url, "pid": os.getpid()}), encoding="utf-8")
    tmp.replace(state_dir / SERVER_FILE)


def serve(
    host: str,
    port: int,
    state_dir: Path,
    seed: int,
    call_seconds: float,
    outcomes: Mapping[Outcome, float] = DEFAULT_OUTCOMES,
    *,
    config: GatewayConfig | None = None,
) -> None:
    """Run the simulator until SIGTERM or SIGINT."""
    config = config or GatewayConfig(seed, call_seconds, dict(outcomes))
    state_dir.mkdir(parents=True, exist_ok=True)
    if config.faults:
        log.info("injecting faults %s (delay %.2f s)", config.faults.spec(), config.fault_delay_s)
    if config.callback_secret is None:
        log.warning("no callback secret: native status callbacks will go unsigned")
    # Imported now, not on the first call, so the first answer is not slowed by numpy.
    import numpy  # noqa: F401
    import soundfile  # noqa: F401

    sender = CallbackSender()
    book = CallBook(state_dir, config.seed, config.call_seconds, config=config, sender=sender)
    book.load()
    sender.start()
    server = _SimulatorServer((host, port), book)
    url = f"http://{host}:{server.server_address[1]}"

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    serving = threading.Thread(
        target=server.serve_forever, args=(0.1,), name="simulator-http", daemon=True
    )
    serving.start()
    _write_server_file(state_dir, url)
    print(f"{READY_LINE} {url} (state dir {state_dir}, seed {config.seed})", flush=True)

    # Calls nobody polls still end on time, so events.jsonl is complete for the demo report.
    tick_s = min(0.05, max(0.01, config.call_seconds / 4))
    while not stop.wait(tick_s):
        book.settle_all()

    server.shutdown()
    server.server_close()
    book.settle_all()
    sender.close()
    with contextlib.suppress(FileNotFoundError):
        (state_dir / SERVER_FILE).unlink()
    log.info("simulator at %s stopped", url)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: ``python -m voice_notify_dev.simulator``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument(
        "--call-seconds", type=float, default=0.3, help="wall time from acceptance to the end"
    )
    parser.add_argument("--outcomes", type=parse_outcomes, default=DEFAULT_OUTCOMES)
    parser.add_argument(
        "--faults",
        default=None,
        help=f"name=probability,... (default: ${fault_names.ENV_VAR}); see the module docs",
    )
    parser.add_argument(
        "--fault-delay-s",
        type=float,
        default=DEFAULT_FAULT_DELAY_S,
        help="how long injected timeouts, slow fetches and late callbacks wait",
    )
    parser.add_argument(
        "--callback-secret",
        default=os.environ.get(ENV_CALLBACK_SECRET),
        help=f"HMAC secret for native callbacks (default: ${ENV_CALLBACK_SECRET})",
    )
    parser.add_argument("--twilio-account-sid", default=os.environ.get(ENV_TWILIO_ACCOUNT_SID))
    parser.add_argument("--twilio-auth-token", default=os.environ.get(ENV_TWILIO_AUTH_TOKEN))
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if args.call_seconds < 0:
        parser.error("--call-seconds must not be negative")
    if args.fault_delay_s < 0:
        parser.error("--fault-delay-s must not be negative")
    spec = args.faults if args.faults is not None else os.environ.get(fault_names.ENV_VAR)
    try:
        faults = parse_faults(spec)
    except ValueError as exc:
        parser.error(f"refusing to start: {exc}")
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    config = GatewayConfig(
        seed=args.seed,
        call_seconds=args.call_seconds,
        outcomes=args.outcomes,
        faults=faults,
        fault_delay_s=args.fault_delay_s,
        callback_secret=args.callback_secret or None,
        twilio_account_sid=args.twilio_account_sid or None,
        twilio_auth_token=args.twilio_auth_token or None,
    )
    serve(args.host, args.port, args.state_dir, args.seed, args.call_seconds, config=config)
    return 0


class SimulatorProcess:
    """A simulator running in a child process; stop it with ``stop()`` or a ``with`` block."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, state_dir: Path) -> None:
        self.process = process
        self.url = url
        self.state_dir = state_dir

    @property
    def log_path(self) -> Path:
        return self.state_dir / LOG_FILE

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout_s: float = 5.0) -> int:
        """Send SIGTERM, wait for a clean exit (kill after ``timeout_s``); the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> SimulatorProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_simulator(
    state_dir: Path,
    seed: int,
    call_seconds: float = 0.3,
    *,
    outcomes: str | None = None,
    faults: str | None = None,
    fault_delay_s: float | None = None,
    callback_secret: str | None = None,
    twilio_account_sid: str | None = None,
    twilio_auth_token: str | None = None,
    startup_timeout_s: float = 15.0,
) -> SimulatorProcess:
    """Start the simulator on a free loopback port and wait until it answers.

    Its log goes to ``state_dir/simulator.log``. Secrets reach the child through
    its environment, not its command line.

    :param call_seconds: wall time from acceptance to a terminal state
    :param outcomes: an ``--outcomes`` spec overriding the default distribution
    :param faults: a ``GATEWAY_FAULTS`` spec for the child (None: inherit the
        variable from this process; ``""``: no faults)
    :param fault_delay_s: ``--fault-delay-s`` (default 3 s)
    :param callback_secret: HMAC secret signing native status callbacks
    :param twilio_account_sid: enables the Twilio subset, with ``twilio_auth_token``
    :raises ValueError: a bad ``faults`` spec, before anything starts
    :raises RuntimeError: with the tail of the log, if it does not come up in time
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / LOG_FILE
    command = [sys.executable, "-m", "voice_notify_dev.simulator", "--host", "127.0.0.1"]
    command += ["--port", "0", "--state-dir", str(state_dir), "--seed", str(seed)]
    command += ["--call-seconds", str(call_seconds)]
    if outcomes is not None:
        command += ["--outcomes", outcomes]
    if fault_delay_s is not None:
        command += ["--fault-delay-s", str(fault_delay_s)]
    env = dict(os.environ)
    if faults is not None:
        parse_faults(faults)
        env[fault_names.ENV_VAR] = faults
    for name, value in (
        (ENV_CALLBACK_SECRET, callback_secret),
        (ENV_TWILIO_ACCOUNT_SID, twilio_account_sid),
        (ENV_TWILIO_AUTH_TOKEN, twilio_auth_token),
    ):
        if value is not None:
            env[name] = value
    plugins_dir = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [plugins_dir, env.get("PYTHONPATH")]))
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)

    deadline = time.monotonic() + startup_timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        url = _answering_url(state_dir, process.pid)
        if url is not None:
            return SimulatorProcess(process, url, state_dir)
        time.sleep(0.05)
    running = process.poll() is None
    SimulatorProcess(process, "", state_dir).stop()
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
    reason = "did not answer in time" if running else f"exited with {process.returncode}"
    raise RuntimeError(f"voice gateway simulator {reason}; log tail:\n{tail}")


def _answering_url(state_dir: Path, pid: int) -> str | None:
    """The simulator's URL once it wrote ``server.json`` and answers ``/healthz``."""
    try:
        server = json.loads((state_dir / SERVER_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    if server.get("pid") != pid:  # left behind by an earlier run in this state dir
        return None
    try:
        with urllib.request.urlopen(f"{server['url']}/healthz", timeout=1.0) as response:
            return server["url"] if response.status == 200 else None
    except OSError:
        return None


if __name__ == "__main__":
    sys.exit(main())
