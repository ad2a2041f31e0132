"""A voice gateway simulator: the telephone network, faked faithfully on loopback.

The pipeline talks to it exactly as it talks to a real gateway, through
``SimulatorGateway`` (``simulator_client.py``). It checks what a real gateway
checks (the number, the audio), keeps its promises (idempotency that survives a
restart) and lets calls end the ways real calls end, deterministically per seed.

Run it::

    PYTHONPATH=plugins python -m voice_notify.gateway.simulator \\
        --host 127.0.0.1 --port 0 --state-dir DIR --seed 7 [--call-seconds 0.3] \\
        [--outcomes completed=0.45,confirm=0.25,optout=0.05,no_answer=0.12,busy=0.08,failed=0.05]

or, from Python (tests, the demo), ``start_simulator(state_dir, seed)``.

Protocol (JSON over HTTP)
-------------------------

``POST /v1/calls`` places a call. Body::

    {"to": "+8613812345678", "idempotency_key": "notice-42/2025-06-01/1",
     "audio_url": "http://127.0.0.1:9000/audio/ab12.wav",
     "ring_timeout_s": 30, "metadata": {"notice_id": "42"}}

- ``to`` must be E.164 (``+`` then 7 to 15 digits, no leading zero), else
  400 ``{"error": "invalid_number"}``.
- ``idempotency_key`` (non-empty string, at most 200 characters) and
  ``audio_url`` (string) are required; ``ring_timeout_s`` is an integer in
  1..300 (default 30, recorded, not simulated); ``metadata`` is a JSON object
  (default ``{}``). Anything else malformed is 400 ``{"error": "invalid_request"}``
  (or ``"invalid_json"`` when the body does not parse).
- A key seen before returns that call with 200 and never creates a second one,
  even after a restart; the same key with a different ``to`` or ``audio_url`` is
  409 ``{"error": "idempotency_conflict"}``.
- A new key makes the simulator GET ``audio_url`` (http/https, 5 s timeout,
  at most 50 MB) and decode it: it must be a WAV with at least one frame that is
  not silent (RMS above -50 dBFS), else 422
  ``{"error": "invalid_audio", "detail": "..."}`` and no call is made. Any WAV
  encoding is accepted; ``audio_format`` records which (``"ULAW 8000 Hz"``).
- An accepted call (``call_id`` derived from seed and key, ``sim-…``) is 201
  with its status (below) and is appended, flushed and
  fsync'd, as one line to ``DIR/calls.jsonl``: ``call_id``, ``to``,
  ``idempotency_key``, ``audio_url``, ``ring_timeout_s``, ``metadata``,
  ``accepted_at`` (ISO-8601 UTC), ``audio_seconds``, ``audio_format``.

``GET /v1/calls/{call_id}`` and ``GET /v1/calls?idempotency_key=K`` return the
status, or 404 ``{"error": "not_found"}``::

    {"call_id": "sim-…", "idempotency_key": "…", "to": "+86…", "state": "completed",
     "key_pressed": "1", "duration_s": 12.4, "error": null}

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
  ``failed`` (``error: "network_error"``) 0.05.
- ``key_pressed`` and ``duration_s`` are set only once terminal; ``duration_s``
  is the audio length for completed calls and 0.0 for the others.
- Each terminal status is appended once per call to ``DIR/events.jsonl``
  (``call_id``, ``idempotency_key``, ``state``, ``key_pressed``, ``duration_s``,
  ``error``, ``ended_at``), before any client can see it as terminal.

``GET /healthz`` is 200 ``{"status": "ok", "calls": N}``.

Errors are JSON ``{"error": CODE, "detail": ...}`` (``detail`` optional): 400
``invalid_json``, ``invalid_request``, ``invalid_number``; 404 ``not_found``
(also for unknown paths); 409 ``idempotency_conflict``; 413 ``request_too_large``
(body over 1 MiB); 422 ``invalid_audio``; 500 ``internal_error``.

On start the server writes ``DIR/server.json`` (``{"url": ..., "pid": ...}``)
and prints one line starting ``voice gateway simulator ready at``; on SIGTERM
or SIGINT it stops, removes ``server.json`` and exits 0. Phone numbers never
appear in its log.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import hashlib
import http.server
import io
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
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from voice_notify.gateway.base import CallState

log = logging.getLogger(__name__)

CALLS_FILE = "calls.jsonl"
EVENTS_FILE = "events.jsonl"
SERVER_FILE = "server.json"
LOG_FILE = "simulator.log"  # only when started through start_simulator
READY_LINE = "voice gateway simulator ready at"

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_MAX_KEY_CHARS = 200
_MAX_BODY_BYTES = 1 << 20
_MAX_AUDIO_BYTES = 50 << 20
_AUDIO_FETCH_TIMEOUT_S = 5.0
_SILENCE_DBFS = -50.0
_FAILED_ERROR = "network_error"


class Outcome(enum.StrEnum):
    """How a simulated call ends; the names used by ``--outcomes``."""

    COMPLETED = "completed"
    CONFIRM = "confirm"
    OPTOUT = "optout"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    FAILED = "failed"

    @property
    def state(self) -> CallState:
        return _OUTCOME_STATE[self]

    @property
    def key_pressed(self) -> str | None:
        return {Outcome.CONFIRM: "1", Outcome.OPTOUT: "9"}.get(self)

    @property
    def answered(self) -> bool:
        return self.state is CallState.COMPLETED


_OUTCOME_STATE = {
    Outcome.COMPLETED: CallState.COMPLETED,
    Outcome.CONFIRM: CallState.COMPLETED,
    Outcome.OPTOUT: CallState.COMPLETED,
    Outcome.NO_ANSWER: CallState.NO_ANSWER,
    Outcome.BUSY: CallState.BUSY,
    Outcome.FAILED: CallState.FAILED,
}

DEFAULT_OUTCOMES: Mapping[Outcome, float] = {
    Outcome.COMPLETED: 0.45,
    Outcome.CONFIRM: 0.25,
    Outcome.OPTOUT: 0.05,
    Outcome.NO_ANSWER: 0.12,
    Outcome.BUSY: 0.08,
    Outcome.FAILED: 0.05,
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


class RequestRejected(Exception):
    """A request the simulator refuses, with the HTTP status and error code it answers."""

    def __init__(self, status: int, error: str, detail: str | None = None) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail

    def body(self) -> dict[str, str]:
        body = {"error": self.error}
        if self.detail:
            body["detail"] = self.detail
        return body


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
        raise reject(f"fetching audio_url failed: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise reject(f"fetching audio_url failed: {exc}") from None
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


@dataclass
class SimulatedCall:
    """One accepted call: its ``calls.jsonl`` record plus what the simulator derives from it."""

    call_id: str
    to: str
    idempotency_key: str
    audio_url: str
    ring_timeout_s: int
    metadata: dict[str, Any]
    accepted_at: str
    audio_seconds: float
    audio_format: str
    outcome: Outcome = field(default=Outcome.COMPLETED, compare=False)
    accepted_ts: float = field(default=0.0, compare=False)

    def record(self) -> dict[str, Any]:
        """The ``calls.jsonl`` line: what was asked, never the drawn outcome."""
        record = asdict(self)
        del record["outcome"], record["accepted_ts"]
        return record

    def state_at(self, now: float, call_seconds: float) -> CallState:
        progress = (now - self.accepted_ts) / call_seconds if call_seconds > 0 else 1.0
        if progress >= 1.0:
            return self.outcome.state
        if progress < 0.2:
            return CallState.QUEUED
        if progress < 0.6 or not self.outcome.answered:
            return CallState.RINGING
        return CallState.IN_PROGRESS

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
        }
        if state.terminal:
            status["key_pressed"] = self.outcome.key_pressed
            status["duration_s"] = self.audio_seconds if self.outcome.answered else 0.0
        return status


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
    ) -> None:
        self.state_dir = state_dir
        self.seed = seed
        self.call_seconds = call_seconds
        self.outcomes = dict(outcomes)
        self._lock = threading.Lock()
        self._by_id: dict[str, SimulatedCall] = {}
        self._by_key: dict[str, SimulatedCall] = {}
        self._ended: set[str] = set()

    @property
    def calls_path(self) -> Path:
        return self.state_dir / CALLS_FILE

    @property
    def events_path(self) -> Path:
        return self.state_dir / EVENTS_FILE

    def load(self) -> None:
        """Reload the calls and terminal events a previous run recorded."""
        with self._lock:
            for record in _read_lines(self.calls_path):
                self._remember(SimulatedCall(**record))
            self._ended.update(event["call_id"] for event in _read_lines(self.events_path))
        log.info("loaded %d calls from %s", len(self._by_id), self.calls_path)

    def _remember(self, call: SimulatedCall) -> None:
        call.outcome = draw_outcome(self.seed, call.idempotency_key, self.outcomes)
        call.accepted_ts = datetime.fromisoformat(call.accepted_at).timestamp()
        self._by_id[call.call_id] = call
        self._by_key[call.idempotency_key] = call

    def __len__(self) -> int:
        return len(self._by_id)

    def existing(self, idempotency_key: str, to: str, audio_url: str) -> SimulatedCall | None:
        """The call already placed with this key, if its request matches this one.

        :raises RequestRejected: 409 when the key was used for another number or audio
        """
        with self._lock:
            call = self._by_key.get(idempotency_key)
        if call is not None:
            _check_same_request(call, to, audio_url)
        return call

    def accept(self, request: Mapping[str, Any], audio: CheckedAudio) -> tuple[SimulatedCall, bool]:
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
                    accepted_at=datetime.now(UTC).isoformat(timespec="microseconds"),
                    audio_seconds=audio.seconds,
                    audio_format=audio.format,
                )
                _append_line(self.calls_path, call.record())
                self._remember(call)
                return call, True
        _check_same_request(winner, request["to"], request["audio_url"])
        return winner, False

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

    def settle_all(self) -> None:
        """Record the end of every call whose time is up (the ticker's job)."""
        now = time.time()
        with self._lock:
            for call_id in self._by_id.keys() - self._ended:
                self._settle(self._by_id[call_id], now)

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
    return {
        "to": to,
        "idempotency_key": key,
        "audio_url": body["audio_url"],
        "ring_timeout_s": ring_timeout_s,
        "metadata": metadata,
    }


class _SimulatorServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], book: CallBook) -> None:
        super().__init__(address, _GatewayHandler)
        self.book = book


class _GatewayHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a requests.Session expects
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
                log.info("rejected POST %s: %s %s", self.path, exc.error, exc.detail or "")
            status, body = exc.status, exc.body()
        except Exception:
            # A real gateway answers 5xx when it breaks; clients must treat that as ambiguous.
            log.exception("internal error on %s %s", self.command, self.path)
            status, body = 500, {"error": "internal_error"}
        self._send(status, body)

    def _get(self) -> tuple[int, Mapping[str, Any]]:
        url = urllib.parse.urlsplit(self.path)
        book = self.server.book
        if url.path == "/healthz":
            return 200, {"status": "ok", "calls": len(book)}
        if url.path == "/v1/calls":
            keys = urllib.parse.parse_qs(url.query).get("idempotency_key")
            if not keys:
                raise RequestRejected(400, "invalid_request", "idempotency_key is required")
            return 200, book.status(idempotency_key=keys[0])
        if url.path.startswith("/v1/calls/"):
            call_id = urllib.parse.unquote(url.path.removeprefix("/v1/calls/"))
            return 200, book.status(call_id=call_id)
        raise RequestRejected(404, "not_found")

    def _post(self) -> tuple[int, Mapping[str, Any]]:
        body = self._read_json()
        if urllib.parse.urlsplit(self.path).path != "/v1/calls":
            raise RequestRejected(404, "not_found")
        return self._place_call(_validated_request(body))

    def _place_call(self, request: dict[str, Any]) -> tuple[int, Mapping[str, Any]]:
        book = self.server.book
        key, to, audio_url = request["idempotency_key"], request["to"], request["audio_url"]
        call = book.existing(key, to, audio_url)
        created = False
        if call is None:
            # Fetched outside the lock: a slow audio host must not stall every other request.
            audio = check_audio(audio_url)
            call, created = book.accept(request, audio)
        if created:
            log.info("accepted call %s for key %s (%s)", call.call_id, key, call.outcome)
        return (201 if created else 200), book.status(call_id=call.call_id)

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY_BYTES:
            self.close_connection = True  # the unread body would poison the next request
            raise RequestRejected(413, "request_too_large")
        raw = self.rfile.read(length)
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise RequestRejected(400, "invalid_json") from None

    def _send(self, status: int, body: Mapping[str, Any]) -> None:
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines carry ids and keys, never numbers (those travel in POST bodies).
        log.debug("%s " + format, self.address_string(), *args)


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
) -> None:
    """Run the simulator until SIGTERM or SIGINT."""
    state_dir.mkdir(parents=True, exist_ok=True)
    book = CallBook(state_dir, seed, call_seconds, outcomes)
    book.load()
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
    print(f"{READY_LINE} {url} (state dir {state_dir}, seed {seed})", flush=True)

    # Calls nobody polls still end on time, so events.jsonl is complete for the demo report.
    tick_s = min(0.05, max(0.01, call_seconds / 4))
    while not stop.wait(tick_s):
        book.settle_all()

    server.shutdown()
    server.server_close()
    book.settle_all()
    with contextlib.suppress(FileNotFoundError):
        (state_dir / SERVER_FILE).unlink()
    log.info("simulator at %s stopped", url)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: ``python -m voice_notify.gateway.simulator``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument(
        "--call-seconds", type=float, default=0.3, help="wall time from acceptance to the end"
    )
    parser.add_argument("--outcomes", type=parse_outcomes, default=DEFAULT_OUTCOMES)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if args.call_seconds < 0:
        parser.error("--call-seconds must not be negative")
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    serve(args.host, args.port, args.state_dir, args.seed, args.call_seconds, args.outcomes)
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
    startup_timeout_s: float = 15.0,
) -> SimulatorProcess:
    """Start the simulator on a free loopback port and wait until it answers.

    Its log goes to ``state_dir/simulator.log``.

    :param call_seconds: wall time from acceptance to a terminal state
    :param outcomes: an ``--outcomes`` spec overriding the default distribution
    :raises RuntimeError: with the tail of the log, if it does not come up in time
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / LOG_FILE
    command = [sys.executable, "-m", "voice_notify.gateway.simulator", "--host", "127.0.0.1"]
    command += ["--port", "0", "--state-dir", str(state_dir), "--seed", str(seed)]
    command += ["--call-seconds", str(call_seconds)]
    if outcomes is not None:
        command += ["--outcomes", outcomes]
    env = dict(os.environ)
    plugins_dir = str(Path(__file__).resolve().parents[2])
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
