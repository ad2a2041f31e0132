"""The SIP call service: a long-running process that places and carries SIP calls.

A phone call outlives the task that asks for it. Airflow 3 ends a finished task's
process with ``os._exit``, which takes its threads and children along, so calls do not
run in the ``dial`` task: they run here, and the task talks to this service the way it
talks to any gateway, over voice-notify's HTTP gateway protocol (``gateway/http.py``;
the adapter is ``gateway/sip/gateway.py``):

- ``POST /v1/calls`` accepts a call (201) or returns the one placed with its
  idempotency key (200); 409 for a key used with another number or audio file, 400 for
  a bad request, 422 for audio that cannot be played, 503 (nothing accepted) when the
  audio cannot be fetched right now or the service is stopping;
- ``GET /v1/calls/{call_id}`` and ``GET /v1/calls?idempotency_key=K``: the status, or
  404 for a call never accepted;
- ``GET /healthz`` (unsigned, for probes): lines in use and calls queued.

Every ``/v1`` request is signed with the shared secret (``sign_http_request``; 401
otherwise), and status callbacks (``ringing``, ``in_progress``, ``digits``, the end)
are posted to the request's ``status_callback``, signed the same way as the simulator's.
Bodies over 1 MiB are refused (413) before anything is read.

The call book is in the ledger database (``callbook.py``): an accepted call is a row
before the answer goes out, a key press is committed the moment it arrives, and a
restarted service (or any replica, for a run whose heartbeat stopped) settles the
calls a dead run was carrying as interrupted, never dialling them again. Calls wait in
a queue for one of ``max_calls`` lines; a call that waits longer than ``max_queue_s``
is canceled unsent.

Run it::

    VOICE_NOTIFY_SIP_SECRET=... VOICE_NOTIFY_SIP_DB_URL=postgresql+psycopg2://... \\
    python -m voice_notify.gateway.sip.service --listen 0.0.0.0:8089 \\
        --trunk-host sbc.example --trunk-port 5060 --state-dir /var/lib/voice-notify-sip

(every option also reads ``VOICE_NOTIFY_SIP_<OPTION>``; ``--help`` lists them). On
SIGTERM it stops taking calls, lets running calls end (``--drain-s``), cancels the
queue and exits 0.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime as dt
import hashlib
import http.server
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import requests
import sqlalchemy as sa

from voice_notify.gateway.base import CallState, CallStatus
from voice_notify.gateway.callbacks import (
    InvalidSignature,
    sign_http_callback,
    verify_http_request,
)
from voice_notify.gateway.sip.audio import PlaybackAudio, UnplayableAudio, decode_playback
from voice_notify.gateway.sip.call import (
    CallResult,
    CallTimers,
    SipCall,
    TrunkSettings,
    write_silence,
)
from voice_notify.gateway.sip.callbook import (
    NOT_DIALED,
    BookedCall,
    CallBook,
    interrupted_end,
)
from voice_notify.logsafe import escape
from voice_notify.phone import mask_phone

log = logging.getLogger(__name__)


class NameInUse(RuntimeError):
    """Another live replica holds this service's name."""


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


__all__ = ["CallService", "ServiceSettings", "main"]

READY_LINE = "voice-notify SIP call service ready at"
SERVER_FILE = "server.json"
ENV_PREFIX = "VOICE_NOTIFY_SIP_"

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_MAX_BODY_BYTES = 1 << 20
_MAX_AUDIO_BYTES = 50 << 20
_MAX_KEY_CHARS = 128
_START_TRIES = 3
# Callback sequence numbers: the end is always the highest of a call's events.
_SEQUENCE = {CallState.RINGING: 1, CallState.IN_PROGRESS: 2}
_DIGITS_SEQUENCE = 10
_END_SEQUENCE = 1000


class Rejected(Exception):
    """A request the service refuses: the HTTP status and the protocol's error code."""

    def __init__(self, status: int, error: str, detail: str | None = None) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail

    def body(self) -> dict[str, Any]:
        return {"error": self.error, **({"detail": self.detail} if self.detail else {})}


@dataclass(frozen=True)
class ServiceSettings:
    """How the service runs (the trunk and the call timers are settings of their own).

    :param name: this replica's stable name (a StatefulSet pod name, the host name): a
        restarted service settles the open calls of earlier runs with the same name
    :param state_dir: per-call baresip logs and the silent source; nothing else lives
        there (the call book is in the database)
    :param secret: signs callbacks and checks requests (the ``voice_gateway``
        Connection's password on the Airflow side)
    :param max_calls: lines: calls carried at once
    :param max_queue_s: a call waiting longer than this for a line is canceled unsent
    :param heartbeat_s: how often this run says it is alive
    :param lease_s: a run silent for longer is dead: any replica settles its calls
    :param drain_s: on SIGTERM, how long running calls may go on before they are hung up
    """

    name: str
    state_dir: Path
    secret: str = field(repr=False)
    listen_host: str = "127.0.0.1"
    listen_port: int = 8089
    max_calls: int = 8
    max_queue_s: float = 600.0
    heartbeat_s: float = 5.0
    lease_s: float = 30.0
    drain_s: float = 330.0
    audio_timeout_s: float = 10.0
    callback_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "state_dir", Path(self.state_dir))
        if not self.secret:
            raise ValueError(f"the call service needs a secret ({ENV_PREFIX}SECRET)")
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", self.name):
            raise ValueError(f"name must be 1-64 of [A-Za-z0-9._-]: {self.name!r}")
        if self.max_calls < 1:
            raise ValueError("max_calls must be at least 1")
        if self.lease_s < 3 * self.heartbeat_s:
            raise ValueError("lease_s must be at least three heartbeats")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def audio_identity(url: str) -> str:
    """The audio file a URL names, without its query: a presigned URL is re-signed per use."""
    parts = urlsplit(url)
    return _digest(f"{parts.scheme}://{parts.netloc}{parts.path}")


def _is_http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def validated_request(body: Any) -> dict[str, Any]:
    """The ``POST /v1/calls`` body with defaults, or a 400 naming what is wrong."""

    def invalid(detail: str) -> Rejected:
        return Rejected(400, "invalid_request", detail)

    if not isinstance(body, dict):
        raise invalid("body must be a JSON object")
    to = body.get("to")
    if not isinstance(to, str):
        raise invalid("to is required and must be a string")
    if not _E164.fullmatch(to):
        raise Rejected(400, "invalid_number", "to must be E.164, e.g. +8613812345678")
    key = body.get("idempotency_key")
    if not isinstance(key, str) or not key or len(key) > _MAX_KEY_CHARS:
        raise invalid(f"idempotency_key must be a string of 1 to {_MAX_KEY_CHARS} characters")
    if not _is_http_url(body.get("audio_url")):
        raise invalid("audio_url must be an http or https URL")
    ring_timeout_s = body.get("ring_timeout_s", 30)
    if type(ring_timeout_s) is not int or not 1 <= ring_timeout_s <= 300:
        raise invalid("ring_timeout_s must be an integer from 1 to 300")
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict):
        raise invalid("metadata must be a JSON object")
    status_callback = body.get("status_callback")
    if status_callback is not None and not _is_http_url(status_callback):
        raise invalid("status_callback must be an http or https URL")
    if len(status_callback or "") > 1024:
        raise invalid("status_callback must be at most 1024 characters")
    return {
        "to": to,
        "idempotency_key": key,
        "audio_url": body["audio_url"],
        "ring_timeout_s": ring_timeout_s,
        "notice_id": str(metadata.get("notice_id", ""))[:32] or None,
        "status_callback": status_callback,
    }


def status_body(status: CallStatus) -> dict[str, Any]:
    return {
        "call_id": status.call_id,
        "idempotency_key": status.idempotency_key,
        "state": status.state.value,
        "key_pressed": status.key_pressed,
        "duration_s": status.duration_s,
        "error": status.error,
        "answered_by": None,  # SIP has no answering-machine detection here
    }


class CallbackPoster:
    """Posts signed status callbacks from one thread, in order, retrying briefly.

    Callbacks speed the pipeline up; they are not its memory: the call book is, and the
    pipeline polls it when a callback is lost (service restart, endpoint down).
    """

    retry_delays_s = (0.5, 1.0, 2.0)

    def __init__(self, secret: str, timeout_s: float) -> None:
        self.secret = secret
        self.timeout_s = timeout_s
        self._queue: collections.deque[tuple[float, int, str, bytes, str]] = collections.deque()
        self._wake = threading.Condition()
        self._stopping = False
        self._session = requests.Session()
        self._thread = threading.Thread(target=self._run, name="sip-callbacks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def post(self, url: str | None, event: Mapping[str, Any], label: str) -> None:
        if not url:
            return
        body = json.dumps(event, sort_keys=True).encode()
        with self._wake:
            self._queue.append((time.monotonic(), 0, url, body, label))
            self._wake.notify()

    def close(self, drain_s: float = 3.0) -> None:
        deadline = time.monotonic() + drain_s
        with self._wake:
            while self._queue and time.monotonic() < deadline:
                self._wake.wait(0.05)
            self._stopping = True
            self._wake.notify_all()
        self._thread.join(timeout=self.timeout_s + 1.0)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and (
                    not self._queue or self._queue[0][0] > time.monotonic()
                ):
                    wait = self._queue[0][0] - time.monotonic() if self._queue else 0.5
                    self._wake.wait(max(0.01, min(wait, 0.5)))
                if self._stopping:
                    return
                _, attempt, url, body, label = self._queue.popleft()
            try:
                response = self._session.post(
                    url,
                    data=body,
                    headers={
                        "Content-Type": "application/json",
                        **sign_http_callback(self.secret, body),
                    },
                    timeout=self.timeout_s,
                )
                if response.status_code < 500 and response.status_code != 429:
                    if response.status_code >= 300:
                        log.warning("callback %s refused with HTTP %s", label, response.status_code)
                    continue
                reason = f"HTTP {response.status_code}"
            except requests.RequestException as exc:
                reason = type(exc).__name__
            if attempt >= len(self.retry_delays_s):
                log.warning("callback %s given up (%s); the pipeline polls", label, reason)
                continue
            with self._wake:
                # Back in front: a call's later events must not overtake this one.
                retry_at = time.monotonic() + self.retry_delays_s[attempt]
                self._queue.appendleft((retry_at, attempt + 1, url, body, label))


@dataclass
class _Pending:
    """An accepted call waiting for a line."""

    booked: BookedCall
    number: str
    audio: PlaybackAudio
    ring_timeout_s: int
    queued_at: float = dataclasses.field(default_factory=time.monotonic)
    tries: int = 0


class CallService:
    """Accepts calls, carries them on its lines, keeps the book, posts callbacks.

    :param engine: the ledger database holding the call book (migrated)
    """

    def __init__(
        self,
        settings: ServiceSettings,
        trunk: TrunkSettings,
        timers: CallTimers,
        engine: sa.Engine,
    ) -> None:
        self.settings = settings
        self.trunk = trunk
        self.timers = timers
        host = socket.gethostname()
        self.owner = f"{settings.name}/{host}/{os.getpid()}/{uuid.uuid4().hex[:8]}"[:128]
        self.book = CallBook(engine, self.owner)
        self.callbacks = CallbackPoster(settings.secret, settings.callback_timeout_s)
        self._host = host
        self._queue: collections.deque[_Pending] = collections.deque()
        self._running: dict[str, SipCall] = {}
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._http = requests.Session()
        self._db_ok_since: float | None = None  # since when heartbeats have gone through
        self._work = settings.state_dir / "work"
        self._logs = settings.state_dir / "logs"
        self.silence_wav = self._work / "silence.wav"

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Register this run, settle what earlier runs left open, start the lines."""
        self._work.mkdir(parents=True, exist_ok=True)
        self._logs.mkdir(parents=True, exist_ok=True)
        write_silence(self.silence_wav, self.timers.before_answer_s)
        self._refuse_a_live_namesake()
        self.book.register(self.settings.name, self._host, os.getpid())
        self._db_ok_since = time.monotonic()
        self.settle_orphans()
        self.callbacks.start()
        for target, name in ((self._dispatch, "sip-lines"), (self._keep_alive, "sip-heartbeat")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info(
            "SIP call service %s: %d lines to %s:%s",
            self.owner,
            self.settings.max_calls,
            self.trunk.trunk_host,
            self.trunk.trunk_port,
        )

    def stop(self, drain_s: float | None = None) -> None:
        """Take no more calls; let running calls end (up to ``drain_s``), then hang up."""
        with self._lock:
            self._stopping.set()
            queued = list(self._queue)
            self._queue.clear()
            for pending in queued:
                self._pending.pop(pending.booked.call_id, None)
            self._lock.notify_all()
        for pending in queued:
            self._finish(pending.booked, CallState.CANCELED, NOT_DIALED, "service stopped")
        deadline = time.monotonic() + (self.settings.drain_s if drain_s is None else drain_s)
        while self._lines_in_use() and time.monotonic() < deadline:
            time.sleep(0.1)
        with self._lock:
            running = list(self._running.values())
        for call in running:
            call.request_hangup()
        for call in running:
            call.join(timeout=10.0)
        for thread in self._threads:
            thread.join(timeout=2.0)
        self.callbacks.close()
        self.book.stopped()
        log.info("SIP call service %s stopped", self.owner)

    def _lines_in_use(self) -> int:
        with self._lock:
            return len(self._running)

    @property
    def busy(self) -> int:
        with self._lock:
            return len(self._running) + len(self._queue)

    def health(self) -> dict[str, Any]:
        with self._lock:
            return {
                "status": "stopping" if self._stopping.is_set() else "ok",
                "name": self.settings.name,
                "lines": self.settings.max_calls,
                "in_use": len(self._running),
                "queued": len(self._queue),
            }

    # -- the protocol -------------------------------------------------------------------

    def place(self, body: Any) -> tuple[int, dict[str, Any]]:
        """``POST /v1/calls``: (HTTP status, body)."""
        request = validated_request(body)
        key = request["idempotency_key"]
        existing = self.book.by_key(key)
        if existing is not None:
            self._check_same(existing, request)
            return 200, status_body(existing.status())
        if self._stopping.is_set():
            raise Rejected(503, "service_stopping", "the call service is shutting down")
        audio = self._fetch_audio(request["audio_url"])  # before accepting: 422 or 503
        booked, created = self.book.accept(
            {
                "idempotency_key": key,
                "to_sha256": _digest(request["to"]),
                "to_masked": mask_phone(request["to"])[:32],
                "audio_sha256": audio_identity(request["audio_url"]),
                "status_callback": request["status_callback"],
                "ring_timeout_s": request["ring_timeout_s"],
                "notice_id": request["notice_id"],
            }
        )
        if not created:
            self._check_same(booked, request)
            return 200, status_body(booked.status())
        pending = _Pending(booked, request["to"], audio, request["ring_timeout_s"])
        with self._lock:
            stopping = self._stopping.is_set()  # under the lock: stop() empties the queue
            if not stopping:
                self._queue.append(pending)
                self._pending[booked.call_id] = pending
                self._lock.notify_all()
        if stopping:
            # Accepted while the service began to stop: ended unsent, never left waiting.
            self._finish(booked, CallState.CANCELED, NOT_DIALED, "service stopping")
            ended = self.book.by_call_id(booked.call_id) or booked
            return 201, status_body(ended.status())
        log.info(
            "accepted call %s to %s for key %s", booked.call_id, mask_phone(request["to"]), key
        )
        return 201, status_body(booked.status())

    def status_by_id(self, call_id: str) -> dict[str, Any]:
        return self._status(self.book.by_call_id(call_id))

    def status_by_key(self, idempotency_key: str) -> dict[str, Any]:
        return self._status(self.book.by_key(idempotency_key))

    def _status(self, booked: BookedCall | None) -> dict[str, Any]:
        if booked is None:
            raise Rejected(404, "not_found")
        return status_body(booked.status())

    @staticmethod
    def _check_same(booked: BookedCall, request: Mapping[str, Any]) -> None:
        if booked.to_sha256 != _digest(request["to"]) or booked.audio_sha256 != audio_identity(
            request["audio_url"]
        ):
            raise Rejected(
                409, "idempotency_conflict", "key was used with a different to or audio_url"
            )

    def _fetch_audio(self, url: str) -> PlaybackAudio:
        try:
            response = self._http.get(url, timeout=self.settings.audio_timeout_s, stream=True)
            body = response.raw.read(_MAX_AUDIO_BYTES + 1, decode_content=True)
        except requests.RequestException as exc:
            # The audio store is down or slow: nothing accepted, the caller tries again.
            raise Rejected(503, "audio_unavailable", type(exc).__name__) from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise Rejected(503, "audio_unavailable", f"HTTP {response.status_code}")
        if response.status_code != 200:
            raise Rejected(422, "invalid_audio", f"fetching audio_url: HTTP {response.status_code}")
        if len(body) > _MAX_AUDIO_BYTES:
            raise Rejected(422, "invalid_audio", "larger than 50 MB")
        try:
            return decode_playback(body)
        except UnplayableAudio as exc:
            raise Rejected(422, "invalid_audio", str(exc)) from exc

    # -- lines ----------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Start queued calls as lines come free; cancel the ones that waited too long."""
        while not self._stopping.is_set():
            with self._lock:
                while not self._stopping.is_set() and (
                    not self._queue or len(self._running) >= self.settings.max_calls
                ):
                    self._lock.wait(0.5)
                    self._expire_queue()
                if self._stopping.is_set():
                    return
                pending = self._queue.popleft()
                call = self._new_call(pending)
                self._running[pending.booked.call_id] = call
            call.start()

    def _expire_queue(self) -> None:
        # Under the lock. A call queued for too long would ring outside the hours the
        # dial task checked: cancel it unsent; the ledger decides about a redial.
        limit = time.monotonic() - self.settings.max_queue_s
        while self._queue and self._queue[0].queued_at < limit:
            pending = self._queue.popleft()
            self._pending.pop(pending.booked.call_id, None)
            threading.Thread(
                target=self._finish,
                args=(pending.booked, CallState.CANCELED, "queue_timeout", "queue timeout"),
                daemon=True,
            ).start()

    def _new_call(self, pending: _Pending) -> SipCall:
        return SipCall(
            call_id=pending.booked.call_id,
            number=pending.number,
            audio=pending.audio,
            trunk=self.trunk,
            timers=self.timers,
            ring_timeout_s=pending.ring_timeout_s,
            silence_wav=self.silence_wav,
            log_dir=self._logs,
            listener=_Listener(self),
        )

    def _line_free(self, call_id: str, retry: bool = False) -> None:
        with self._lock:
            self._running.pop(call_id, None)
            pending = self._pending.get(call_id)
            if retry and pending is not None and not self._stopping.is_set():
                self._queue.appendleft(pending)
            else:
                self._pending.pop(call_id, None)
            self._lock.notify_all()

    def _finish(self, booked: BookedCall, state: CallState, error: str | None, why: str) -> None:
        """End a call that never got on a line (or whose run died) and tell the pipeline."""
        if self.book.end(booked.call_id, state, error):
            log.info("call %s ended %s (%s): %s", booked.call_id, state.value, error, why)
            ended = self.book.by_call_id(booked.call_id)
            if ended is not None:
                self._post_end(ended)

    def _post_end(self, booked: BookedCall) -> None:
        status = booked.status()
        self.callbacks.post(
            booked.status_callback,
            {
                **_event(booked, status.state.value, _END_SEQUENCE),
                "key_pressed": status.key_pressed,
                "duration_s": status.duration_s,
            },
            f"{booked.call_id} {status.state.value}",
        )

    # -- runs that died -----------------------------------------------------------------

    def _refuse_a_live_namesake(self) -> None:
        """A restarted replica settles the open calls of its name's earlier runs, so two
        live replicas under one name would end each other's calls: refuse to start
        beside one. A run of this name on this host whose process is gone (a crash,
        a restarted container, which may even reuse the process id) is not live."""
        for run in self.book.live_namesakes(self.settings.name, self.settings.lease_s):
            if run.host == self._host and (run.pid == os.getpid() or not _pid_alive(run.pid)):
                continue
            raise NameInUse(
                f"another live call service runs under the name {self.settings.name!r} "
                f"(host {run.host}, pid {run.pid}): give each replica its own stable name "
                "(a StatefulSet pod name, --name or VOICE_NOTIFY_SIP_NAME)"
            )

    def settle_orphans(self) -> int:
        """Settle the open calls no live run carries; never dial them again.

        Those of dead runs, and any of this run's own that no line or queue holds any
        more (a call whose end could not be written while the database was away).
        """
        settled = 0
        # Another run's silence means it died only if this run could have heard it for a
        # whole lease: after a database outage every heartbeat is stale at once.
        heard_for = time.monotonic() - (self._db_ok_since or time.monotonic())
        lease = self.settings.lease_s if heard_for >= self.settings.lease_s else None
        orphans = self.book.orphans(self.settings.name, lease)
        lost_before = _naive_utcnow() - dt.timedelta(seconds=60)
        with self._lock:
            carried = set(self._running) | set(self._pending)
        orphans += [
            booked
            for booked in self.book.own_open_calls(lost_before)
            if booked.call_id not in carried
        ]
        for booked in orphans:
            state, error = interrupted_end(booked)
            if self.book.end(booked.call_id, state, error):
                settled += 1
                log.warning(
                    "call %s of run %s settled %s (%s): its service run died",
                    booked.call_id,
                    escape(booked.owner),
                    state.value,
                    error,
                )
                ended = self.book.by_call_id(booked.call_id)
                if ended is not None:
                    self._post_end(ended)
        return settled

    def _keep_alive(self) -> None:
        while not self._stopping.wait(self.settings.heartbeat_s):
            try:
                self.book.heartbeat()
                self._db_ok_since = self._db_ok_since or time.monotonic()
                self.settle_orphans()
            except sa.exc.SQLAlchemyError as exc:
                self._db_ok_since = None
                log.warning("heartbeat failed: %s", type(exc).__name__)


def _naive_utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _event(booked: BookedCall, state: str, sequence: int) -> dict[str, Any]:
    return {
        "call_id": booked.call_id,
        "idempotency_key": booked.idempotency_key,
        "state": state,
        "sequence": sequence,
        "key_pressed": None,
        "answered_by": None,
        "duration_s": None,
        "occurred_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
    }


class _Listener:
    """A call's news into the book (first) and callbacks (second)."""

    def __init__(self, service: CallService) -> None:
        self.service = service

    def _booked(self, call: SipCall) -> BookedCall | None:
        pending = self.service._pending.get(call.call_id)
        return pending.booked if pending else self.service.book.by_call_id(call.call_id)

    def dialing(self, call: SipCall, sip_call_id: str | None) -> None:
        self.service.book.dialing(call.call_id, sip_call_id, None)

    def progress(self, call: SipCall, state: CallState) -> None:
        self.service.book.progress(call.call_id, state)
        booked = self._booked(call)
        if booked is not None:
            self.service.callbacks.post(
                booked.status_callback,
                _event(booked, state.value, _SEQUENCE[state]),
                f"{call.call_id} {state.value}",
            )

    def digit(self, call: SipCall, digits: str) -> None:
        self.service.book.record_digits(call.call_id, digits)  # durable first
        booked = self._booked(call)
        if booked is not None:
            self.service.callbacks.post(
                booked.status_callback,
                {
                    **_event(booked, "digits", _DIGITS_SEQUENCE + len(digits)),
                    "key_pressed": digits[-1],
                },
                f"{call.call_id} digits",
            )

    def ended(self, call: SipCall, result: CallResult) -> None:
        try:
            if self.service.book.end(
                call.call_id,
                result.state,
                result.error,
                digits=result.digits[:32],
                sip_reason=result.sip_reason,
                codec=result.codec,
                audio_s=round(call.audio.seconds, 3),
                setup_s=result.setup_s,
                early_media_s=result.early_media_s,
                ring_s=result.ring_s,
                talk_s=result.talk_s,
            ):
                booked = self.service.book.by_call_id(call.call_id)
                if booked is not None:
                    self.service._post_end(booked)
        finally:
            self.service._line_free(call.call_id)

    def not_placed(self, call: SipCall, reason: str) -> None:
        pending = self.service._pending.get(call.call_id)
        if pending is not None:
            pending.tries += 1
        stopping = self.service._stopping.is_set()
        if pending is not None and pending.tries < _START_TRIES and not stopping:
            log.warning("call %s not placed (%s); it waits for a line again", call.call_id, reason)
            self.service._line_free(call.call_id, retry=True)
            return
        log.error("call %s could not be placed: %s", call.call_id, reason)
        try:
            booked = pending.booked if pending else self.service.book.by_call_id(call.call_id)
            if booked is not None:
                self.service._finish(booked, CallState.CANCELED, NOT_DIALED, reason)
        finally:
            self.service._line_free(call.call_id)


# --- HTTP ------------------------------------------------------------------------------


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], service: CallService) -> None:
        super().__init__(address, _Handler)
        self.service = service


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY: the headers and the body go out in two writes; with Nagle's algorithm
    # the body waits for the client's delayed ACK (40 ms on Linux) on every keep-alive
    # request, which capped a dial task at about 20 calls a second.
    disable_nagle_algorithm = True
    server_version = "voice-notify-sip/1"
    timeout = 30
    server: _Server

    def do_GET(self) -> None:
        self._answer(self._get)

    def do_POST(self) -> None:
        self._answer(self._post)

    def _answer(self, route: Callable[[], tuple[int, Mapping[str, Any]]]) -> None:
        try:
            status, body = route()
        except Rejected as exc:
            if exc.status not in (404,):
                log.info("refused %s %s: %s", self.command, self._path, exc.error)
            status, body = exc.status, exc.body()
        except Exception:
            log.exception("internal error on %s %s", self.command, self._path)
            status, body = 500, {"error": "internal_error"}
        self._send(status, body)

    @property
    def _path(self) -> str:
        return urlsplit(self.path).path

    def _verified_body(self) -> bytes:
        length_header = self.headers.get("Content-Length") or "0"
        if not length_header.isdigit():
            self.close_connection = True
            raise Rejected(400, "invalid_request", "Content-Length must be a number")
        length = int(length_header)
        if length > _MAX_BODY_BYTES:
            self.close_connection = True  # the unread body would poison the next request
            raise Rejected(413, "request_too_large")
        body = self.rfile.read(length)
        try:
            verify_http_request(
                self.server.service.settings.secret,
                dict(self.headers),
                self.command,
                self.path,
                body,
            )
        except InvalidSignature as exc:
            raise Rejected(401, "unauthorized", str(exc)) from None
        return body

    def _get(self) -> tuple[int, Mapping[str, Any]]:
        service = self.server.service
        url = urlsplit(self.path)
        if url.path == "/healthz":
            return 200, service.health()
        self._verified_body()
        if url.path == "/v1/calls":
            query = parse_qs(url.query)
            if "call_id" in query:  # many calls at once (polling); unknown ids are left out
                return 200, {"calls": self._statuses(query["call_id"])}
            keys = query.get("idempotency_key")
            if not keys:
                raise Rejected(400, "invalid_request", "idempotency_key is required")
            return 200, service.status_by_key(keys[0])
        if url.path.startswith("/v1/calls/"):
            return 200, service.status_by_id(unquote(url.path.removeprefix("/v1/calls/")))
        raise Rejected(404, "not_found")

    def _statuses(self, call_ids: list[str]) -> list[Mapping[str, Any]]:
        if len(call_ids) > 500:
            raise Rejected(400, "invalid_request", "at most 500 call_id per request")
        found = []
        for call_id in call_ids:
            try:
                found.append(self.server.service.status_by_id(call_id))
            except Rejected:
                continue
        return found

    def _post(self) -> tuple[int, Mapping[str, Any]]:
        raw = self._verified_body()
        if self._path != "/v1/calls":
            raise Rejected(404, "not_found")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise Rejected(400, "invalid_json") from None
        return self.server.service.place(body)

    def _send(self, status: int, body: Mapping[str, Any]) -> None:
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines carry call ids and keys, never numbers (those are in bodies).
        log.debug("%s " + format, self.address_string(), *args)


# --- running it ------------------------------------------------------------------------


def serve(service: CallService, stop: threading.Event | None = None) -> str:
    """Serve ``service`` until ``stop`` is set (SIGTERM/SIGINT set it); returns the URL."""
    stop = stop or threading.Event()
    settings = service.settings
    server = _Server((settings.listen_host, settings.listen_port), service)
    url = f"http://{settings.listen_host}:{server.server_address[1]}"
    service.start()
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True)
    thread.start()
    _write_server_file(settings.state_dir, url)
    print(f"{READY_LINE} {url} (name {settings.name})", flush=True)
    stop.wait()
    log.info("stopping: no new calls; %d running or queued", service.busy)
    service.stop()
    server.shutdown()
    server.server_close()
    with contextlib.suppress(FileNotFoundError):
        (settings.state_dir / SERVER_FILE).unlink()
    return url


def _write_server_file(state_dir: Path, url: str) -> None:
    tmp = state_dir / f".{SERVER_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps({"url": url, "pid": os.getpid()}), encoding="utf-8")
    tmp.replace(state_dir / SERVER_FILE)


def _env(name: str, default: Any = None) -> Any:
    return os.environ.get(ENV_PREFIX + name.upper(), default)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m voice_notify.gateway.sip.service",
        description=__doc__.splitlines()[0],
        epilog=f"Every option defaults to the environment variable {ENV_PREFIX}<OPTION>.",
    )
    add = parser.add_argument
    add("--listen", default=_env("listen", "127.0.0.1:8089"), help="HOST:PORT (port 0: any)")
    add("--name", default=_env("name", socket.gethostname().split(".")[0]))
    add("--db-url", default=_env("db_url"), help="SQLAlchemy URL of the ledger database")
    add("--state-dir", type=Path, default=_env("state_dir", "/var/lib/voice-notify-sip"))
    add("--trunk-host", default=_env("trunk_host"))
    add("--trunk-port", type=int, default=int(_env("trunk_port", 5060)))
    add("--transport", default=_env("transport", "udp"))
    add("--caller-id", default=_env("caller_id", "voice-notify"))
    add("--codecs", default=_env("codecs", "PCMU,PCMA"))
    add("--local-address", default=_env("local_address", "127.0.0.1"))
    add("--rtp-ports", default=_env("rtp_ports", "20000-29999"))
    for name, default in (
        ("setup_timeout_s", 5.0),
        ("post_dial_timeout_s", 30.0),
        ("ring_timeout_s", 60.0),
        ("max_call_s", 300.0),
        ("dtmf_grace_s", 2.0),
        ("max_queue_s", 600.0),
        ("drain_s", 330.0),
        ("heartbeat_s", 5.0),
        ("lease_s", 30.0),
    ):
        add("--" + name.replace("_", "-"), type=float, default=float(_env(name, default)))
    add("--max-calls", type=int, default=int(_env("max_calls", 8)))
    add(
        "--upgrade-schema",
        action="store_true",
        default=_env("upgrade_schema", "") in ("1", "true"),
        help="migrate the ledger database first (demo, tests; deployments run voice-notify-db)",
    )
    add("--log-level", default=_env("log_level", "INFO"))
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m voice_notify.gateway.sip.service``: run until SIGTERM or SIGINT."""
    from voice_notify.db import migrate
    from voice_notify.db.sql import make_engine

    parser = _parser()
    args = parser.parse_args(argv)
    if not args.db_url:
        parser.error(f"--db-url (or {ENV_PREFIX}DB_URL) is required")
    if not args.trunk_host:
        parser.error(f"--trunk-host (or {ENV_PREFIX}TRUNK_HOST) is required")
    host, _, port = args.listen.rpartition(":")
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        settings = ServiceSettings(
            name=args.name,
            state_dir=args.state_dir,
            secret=_env("secret", ""),
            listen_host=host or "127.0.0.1",
            listen_port=int(port),
            max_calls=args.max_calls,
            max_queue_s=args.max_queue_s,
            heartbeat_s=args.heartbeat_s,
            lease_s=args.lease_s,
            drain_s=args.drain_s,
        )
        trunk = TrunkSettings(
            trunk_host=args.trunk_host,
            trunk_port=args.trunk_port,
            transport=args.transport,
            caller_id=args.caller_id,
            codecs=tuple(c.strip() for c in args.codecs.split(",") if c.strip()),
            auth_user=_env("trunk_user") or None,
            auth_pass=_env("trunk_password") or None,
            local_address=args.local_address,
            rtp_ports=args.rtp_ports,
        )
        timers = CallTimers(
            setup_timeout_s=args.setup_timeout_s,
            post_dial_timeout_s=args.post_dial_timeout_s,
            ring_timeout_s=args.ring_timeout_s,
            max_call_s=args.max_call_s,
            dtmf_grace_s=args.dtmf_grace_s,
        )
    except ValueError as exc:
        parser.error(str(exc))
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(args.db_url)
    if args.upgrade_schema:
        migrate.upgrade(engine)
    elif migrate.current_revision(engine) != migrate.head_revision():
        log.error(
            "the ledger database is at %s, not %s: run `voice-notify-db upgrade` first",
            migrate.current_revision(engine),
            migrate.head_revision(),
        )
        return 2
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    serve(CallService(settings, trunk, timers, engine), stop)
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
