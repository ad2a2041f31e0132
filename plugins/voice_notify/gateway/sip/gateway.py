"""The ``VoiceGateway`` adapter for a SIP trunk (an Asterisk or FreeSWITCH, a carrier's SBC).

Each call is one baresip process (``sip_baresip.py``) run by one thread of this process:
it sends ``INVITE sip:<number>@<trunk>``, plays the notice over RTP once answered,
collects DTMF during and right after it, and hangs up. Why baresip and not a Python
stack (``aiosipua`` + ``aiortp``): it is a mature C user agent packaged by Debian
(digest auth, UDP/TCP, RFC 4733 DTMF, its own RTP clock), so no Python thread has to
pace audio frames; the Python stacks that work are alpha and need hand-paced RTP. A
process per call costs ~10 MB and a fraction of a CPU second, and isolates calls: each
has its own audio file, and one stuck call cannot hold up another.

baresip has no ring timeout, and an unreachable UDP trunk fails only after 32 s, so the
gateway keeps its own timers: setup (no provisional answer), ring (no answer) and the
longest call.

Idempotency survives restarts through a call book, ``<state_dir>/calls.jsonl``: a line
``accepted`` (fsync'd) before any INVITE leaves, then the SIP Call-ID, progress and the
end. ``find_call`` answers from it, so the ledger's look-up before a resend finds a
call even when the process that placed it was killed. A call whose process died before
it ended is settled as ``failed`` with error ``interrupted``: the customer may have
heard part of it, so it is never placed again under the same key.

The SIP Call-ID is the call id. Outcomes: 486/600 → busy; 408/480 → no_answer; other
final codes → failed with ``sip_<code>``; no answer to the INVITE → failed
``unreachable``; answered and played to the end (or a key pressed) → completed;
hung up by the callee before the end without a key → failed ``callee_hung_up``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import queue
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from voice_notify.gateway.base import (
    CallRequest,
    CallState,
    CallStatus,
    GatewayPermanentError,
    GatewayTransientError,
)
from voice_notify.gateway.sip.audio import PlaybackAudio, UnplayableAudio, decode_playback
from voice_notify.gateway.sip.baresip import (
    DEFAULT_MODULE_PATH,
    BaresipConfig,
    BaresipError,
    BaresipProcess,
    free_tcp_port,
    process_alive,
    process_start_time,
    write_config_dir,
)
from voice_notify.phone import mask_phone

log = logging.getLogger(__name__)

__all__ = ["CALLS_FILE", "SipGateway", "SipSettings", "sip_outcome"]

CALLS_FILE = "calls.jsonl"
LOCK_FILE = "calls.lock"
LOGS_DIR = "logs"
INTERRUPTED = "interrupted"
UNREACHABLE = "unreachable"

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_SIP_CODE = re.compile(r"^([3-6][0-9]{2})\b")
_CALL_ID_LINE = re.compile(r"^Call-ID:\s*(\S+)", re.IGNORECASE)
_TRANSPORTS = ("udp", "tcp")
_CODECS = ("PCMU", "PCMA")
_MAX_AUDIO_BYTES = 50 << 20
_MEDIA_DRAIN_S = 0.5
_BUSY_CODES = {486, 600}
_NO_ANSWER_CODES = {408, 480}


def sip_outcome(reason: str) -> tuple[CallState, str | None]:
    """The state (and error) of a call that ended before it was answered.

    ``reason`` is baresip's close reason: a SIP final response (``486 Busy Here``) or a
    transport error (``Connection refused``).
    """
    match = _SIP_CODE.match(reason.strip())
    if match is None:
        return CallState.FAILED, UNREACHABLE
    code = int(match.group(1))
    if code in _BUSY_CODES:
        return CallState.BUSY, None
    if code in _NO_ANSWER_CODES:
        return CallState.NO_ANSWER, None
    return CallState.FAILED, f"sip_{code}"


@dataclass(frozen=True)
class SipSettings:
    """How to reach the trunk, and the gateway's timers.

    :param trunk_host: the trunk's address; calls go to ``sip:<number>@<trunk_host>:<port>``
    :param state_dir: the call book and per-call logs; every process that places or
        looks up calls through this trunk must see the same directory
    :param caller_id: the user part of From (the number the callee sees)
    :param codecs: offered codecs, in preference order; a call puts the audio file's own
        law first so its bytes arrive unchanged
    :param local_address: the address baresip binds and advertises in SDP
    :param rtp_ports: ``low-high`` for the gateway's RTP; keep it clear of other UAs here
    :param setup_timeout_s: seconds from INVITE to a first provisional answer
    :param ring_timeout_s: longest ring in seconds; caps each request's ``ring_timeout_s``
    :param max_call_s: longest answered call in seconds
    :param dtmf_grace_s: seconds the call stays up after the notice, for a late key
    :param lead_in_s: silence before the notice, so clipping at answer loses no speech
    :param max_calls: calls at once; ``place_call`` waits for a free line
    :param line_wait_s: how long ``place_call`` waits for a free line before giving up
    """

    trunk_host: str
    state_dir: Path
    trunk_port: int = 5060
    transport: str = "udp"
    caller_id: str = "voice-notify"
    codecs: tuple[str, ...] = _CODECS
    auth_user: str | None = None
    auth_pass: str | None = field(default=None, repr=False)
    local_address: str = "127.0.0.1"
    rtp_ports: str = "20000-29999"
    setup_timeout_s: float = 5.0
    ring_timeout_s: float = 60.0
    max_call_s: float = 300.0
    dtmf_grace_s: float = 2.0
    lead_in_s: float = 0.2
    max_calls: int = 8
    line_wait_s: float = 600.0
    audio_timeout_s: float = 10.0
    module_path: Path = DEFAULT_MODULE_PATH

    def __post_init__(self) -> None:
        object.__setattr__(self, "state_dir", Path(self.state_dir))
        object.__setattr__(self, "codecs", tuple(c.upper() for c in self.codecs))
        if not self.trunk_host:
            raise ValueError("the SIP trunk needs a host")
        if self.transport not in _TRANSPORTS:
            raise ValueError(f"transport must be one of {_TRANSPORTS}, not {self.transport!r}")
        if not self.codecs or set(self.codecs) - set(_CODECS):
            raise ValueError(f"codecs must be a non-empty subset of {_CODECS}: {self.codecs}")
        if not re.fullmatch(r"[A-Za-z0-9+._-]{1,64}", self.caller_id):
            raise ValueError(f"caller_id must be a plain SIP user part: {self.caller_id!r}")
        low, _, high = self.rtp_ports.partition("-")
        if not (low.isdigit() and high.isdigit() and 1024 <= int(low) < int(high) <= 65535):
            raise ValueError(f"rtp_ports must be LOW-HIGH within 1024-65535: {self.rtp_ports!r}")
        for name in ("setup_timeout_s", "ring_timeout_s", "max_call_s", "line_wait_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.dtmf_grace_s < 0 or self.lead_in_s < 0 or self.max_calls < 1:
            raise ValueError("dtmf_grace_s and lead_in_s must be >= 0, max_calls >= 1")

    @classmethod
    def from_connection(
        cls,
        host: str | None,
        port: int | None,
        extra: Mapping[str, Any],
        login: str | None = None,
        password: str | None = None,
    ) -> SipSettings:
        """Settings from a ``voice_gateway`` Connection: host/port = trunk, extra = the rest.

        ``codecs`` may be a list or ``"PCMU,PCMA"``; login and password, when set, answer
        the trunk's digest challenge.
        """
        known = {
            name: extra[name]
            for name in cls.__dataclass_fields__
            if name in extra and name not in ("trunk_host", "trunk_port", "auth_pass")
        }
        codecs = known.pop("codecs", _CODECS)
        if isinstance(codecs, str):
            codecs = [c.strip() for c in codecs.split(",") if c.strip()]
        if "state_dir" not in known:
            raise ValueError("the voice_gateway Connection's extra needs a state_dir")
        return cls(
            trunk_host=host or "",
            trunk_port=int(port or 5060),
            codecs=tuple(codecs),
            auth_user=known.pop("auth_user", None) or login or None,
            auth_pass=password or None,
            **known,
        )

    def target_uri(self, number: str) -> str:
        uri = f"sip:{number}@{self.trunk_host}:{self.trunk_port}"
        return uri if self.transport == "udp" else f"{uri};transport={self.transport}"

    def account_line(self, codecs: tuple[str, ...]) -> str:
        line = (
            f"<sip:{self.caller_id}@{self.trunk_host}>;regint=0;answermode=manual"
            f";audio_codecs={','.join(codecs)}"
        )
        if self.auth_pass:
            line += f";auth_user={self.auth_user or self.caller_id};auth_pass={self.auth_pass}"
        return line


def _utcnow() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _audio_identity(url: str) -> str:
    """The audio file a URL names, without its query: a presigned URL is re-signed per use."""
    parts = urlsplit(url)
    return _digest(f"{parts.scheme}://{parts.netloc}{parts.path}")


def fallback_call_id(idempotency_key: str) -> str:
    """The call id of a call whose SIP Call-ID was never recorded (its process died first)."""
    return f"vn-sip-{_digest(idempotency_key)[:20]}"


@dataclass
class SipCallRecord:
    """What the call book knows about one call, replayed from its lines."""

    key: str
    to_sha256: str
    audio_sha256: str
    owner_pid: int
    owner_start: int | None
    call_id: str | None = None
    baresip_pid: int | None = None
    baresip_start: int | None = None
    state: CallState = CallState.QUEUED
    digits: str = ""
    duration_s: float | None = None
    error: str | None = None
    aborted: bool = False
    ended: bool = False

    @property
    def key_pressed(self) -> str | None:
        # The last key counts, like an IVR menu: a customer may correct a first press.
        return self.digits[-1] if self.digits else None

    def status(self) -> CallStatus:
        return CallStatus(
            call_id=self.call_id or fallback_call_id(self.key),
            idempotency_key=self.key,
            state=self.state,
            key_pressed=self.key_pressed if self.ended else None,
            duration_s=self.duration_s if self.ended else None,
            error=self.error,
        )

    def apply(self, line: Mapping[str, Any]) -> None:
        event = line["event"]
        if event == "dialing":
            self.call_id = line.get("call_id") or self.call_id
            self.baresip_pid = line.get("baresip_pid")
            self.baresip_start = line.get("baresip_start")
        elif event == "ringing" and not self.ended:
            self.state = CallState.RINGING
        elif event == "answered" and not self.ended:
            self.state = CallState.IN_PROGRESS
        elif event == "digit" and not self.ended:
            self.digits += str(line.get("digit", ""))
        elif event == "aborted":
            self.aborted = True
        elif event == "ended" and not self.ended:
            self.ended = True
            self.state = CallState(line["state"])
            self.call_id = line.get("call_id") or self.call_id
            self.digits = line.get("digits", self.digits) or ""
            self.duration_s = line.get("duration_s")
            self.error = line.get("error")


class SipCallBook:
    """The append-only call book in ``state_dir``, shared by every process using it.

    Lines are appended under an exclusive ``flock``; the accepted and ended lines are
    fsync'd, progress lines are not (losing one only makes a status less current).
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.state_dir / CALLS_FILE
        self._lock_path = self.state_dir / LOCK_FILE
        self._mutex = threading.RLock()
        self._offset = 0
        self._depth = 0
        self.records: dict[str, SipCallRecord] = {}
        self.by_call_id: dict[str, str] = {}

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the book against every other thread and process (re-entrant per thread)."""
        with self._mutex:
            if self._depth:
                # flock is per open file: taking it again from this thread would deadlock.
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            with self._lock_path.open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                self._depth = 1
                try:
                    yield
                finally:
                    self._depth = 0
                    fcntl.flock(lock, fcntl.LOCK_UN)

    def refresh(self) -> None:
        """Read the lines other threads and processes appended since the last look."""
        with self._mutex:
            try:
                with self.path.open("rb") as book:
                    book.seek(self._offset)
                    data = book.read()
            except FileNotFoundError:
                return
            end = data.rfind(b"\n") + 1  # a line still being written waits for the next look
            for raw in data[:end].splitlines():
                if raw.strip():
                    self._apply(json.loads(raw))
            self._offset += end

    def _apply(self, line: Mapping[str, Any]) -> None:
        key = line["key"]
        if line["event"] == "accepted":
            self.records[key] = SipCallRecord(
                key=key,
                to_sha256=line["to_sha256"],
                audio_sha256=line["audio_sha256"],
                owner_pid=line["owner_pid"],
                owner_start=line.get("owner_start"),
            )
            self.by_call_id[fallback_call_id(key)] = key
            return
        record = self.records.get(key)
        if record is None:
            return
        record.apply(line)
        if record.call_id:
            self.by_call_id[record.call_id] = key

    def append(self, line: Mapping[str, Any], *, durable: bool = False) -> None:
        """Append one line and read it back into the records."""
        data = (json.dumps({"at": _utcnow(), **line}, ensure_ascii=False) + "\n").encode()
        with self.exclusive():
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, data)
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            self.refresh()


# Calls running in this process, per call book: a record owned by this process but not
# in here belongs to an earlier process that had the same pid, or to a thread that died.
_LIVE: dict[Path, set[str]] = {}
_LIVE_LOCK = threading.Lock()


def _set_live(state_dir: Path, key: str, live: bool) -> None:
    with _LIVE_LOCK:
        keys = _LIVE.setdefault(state_dir.resolve(), set())
        if live:
            keys.add(key)
        else:
            keys.discard(key)


def _is_live(state_dir: Path, key: str) -> bool:
    with _LIVE_LOCK:
        return key in _LIVE.get(state_dir.resolve(), set())


class SipGateway:
    """Places calls through a SIP trunk with one baresip per call.

    ``place_call`` returns once the INVITE has left (the SIP Call-ID is known); the call
    then runs on a thread of this process, so the process must outlive its calls:
    ``close()`` waits for them (and the threads are not daemons, so an interpreter exit
    waits too).

    :param settings: the trunk, the state directory and the timers
    """

    name = "sip"

    def __init__(self, settings: SipSettings) -> None:
        self.settings = settings
        self.book = SipCallBook(settings.state_dir)
        (settings.state_dir / LOGS_DIR).mkdir(parents=True, exist_ok=True)
        self._lines = threading.BoundedSemaphore(settings.max_calls)
        self._calls: dict[str, _SipCall] = {}
        self._http = requests.Session()

    # -- the VoiceGateway contract ------------------------------------------------------

    def place_call(self, request: CallRequest) -> CallStatus:
        """Place the call, or return the one already placed with its idempotency key.

        Returns once the INVITE has left (state ``queued`` or ``ringing``); waits for a
        free line first when ``max_calls`` are running. ``status_callback_url`` and
        ``machine_detection`` are not supported: reconcile polls, ``answered_by`` is None.

        :raises GatewayPermanentError: ``invalid_number``, ``invalid_audio``,
            ``idempotency_conflict``
        :raises GatewayTransientError: the audio could not be fetched, no line came free,
            or baresip did not start; no INVITE was sent
        """
        if not _E164.fullmatch(request.to):
            raise GatewayPermanentError(f"invalid_number: {mask_phone(request.to)} is not E.164")
        existing = self._existing(request)
        if existing is not None:
            return existing
        audio = self._fetch_audio(request.audio_url)
        if not self._lines.acquire(timeout=self.settings.line_wait_s):
            raise GatewayTransientError(f"no free line in {self.settings.line_wait_s} s")
        try:
            with self.book.exclusive():
                existing = self._existing(request)
                if existing is not None:
                    self._lines.release()
                    return existing
                self.book.append(
                    {
                        "event": "accepted",
                        "key": request.idempotency_key,
                        "to_sha256": _digest(request.to),
                        "to": mask_phone(request.to),
                        "audio_sha256": _audio_identity(request.audio_url),
                        "owner_pid": os.getpid(),
                        "owner_start": process_start_time(os.getpid()),
                        "ring_timeout_s": request.ring_timeout_s,
                        "notice_id": request.metadata.get("notice_id"),
                    },
                    durable=True,
                )
                call = _SipCall(self, request, audio)
                self._calls[request.idempotency_key] = call
                _set_live(self.settings.state_dir, request.idempotency_key, True)
        except BaseException:
            self._lines.release()
            raise
        call.start()
        call.dialed.wait(self.settings.setup_timeout_s + 15.0)
        if call.abort_reason is not None:
            raise GatewayTransientError(f"call not placed: {call.abort_reason}")
        status = self._status_of(request.idempotency_key)
        log.info(
            "sip placed call %s to %s for key %s (%s)",
            status.call_id,
            mask_phone(request.to),
            request.idempotency_key,
            status.state,
        )
        return status

    def find_call(
        self, idempotency_key: str, *, to: str | None = None, since: dt.datetime | None = None
    ) -> CallStatus | None:
        """The call placed with this key, or None if no INVITE was ever sent for it.

        ``to`` and ``since`` are not needed: the call book is keyed by idempotency key.
        """
        self.book.refresh()
        record = self.book.records.get(idempotency_key)
        if record is None or record.aborted:
            return None
        return self._status_of(idempotency_key)

    def call_status(self, call_id: str) -> CallStatus:
        """The current status of a call this trunk's call book holds.

        :raises GatewayPermanentError: ``not_found`` for a call id it never gave out
        """
        self.book.refresh()
        key = self.book.by_call_id.get(call_id)
        if key is None:
            raise GatewayPermanentError(f"not_found: no SIP call {call_id!r} in the call book")
        return self._status_of(key)

    # -- lifecycle ------------------------------------------------------------------------

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        """Wait until every call this gateway placed has ended; False on timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for call in list(self._calls.values()):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            call.join(left)
            if call.is_alive():
                return False
        return True

    def close(self, timeout_s: float | None = None) -> None:
        """Wait for running calls to end (each is bounded by its timers), then let go."""
        self.wait_idle(timeout_s)
        self._http.close()

    def hang_up_all(self) -> None:
        """Hang up every running call now (tests, shutdown); they end as their state says."""
        for call in list(self._calls.values()):
            call.request_hangup()

    # -- internals ------------------------------------------------------------------------

    def _existing(self, request: CallRequest) -> CallStatus | None:
        self.book.refresh()
        record = self.book.records.get(request.idempotency_key)
        if record is None or record.aborted:
            return None
        if record.to_sha256 != _digest(request.to) or record.audio_sha256 != _audio_identity(
            request.audio_url
        ):
            raise GatewayPermanentError(
                f"idempotency_conflict: key {request.idempotency_key} was used for another "
                "number or audio file"
            )
        return self._status_of(request.idempotency_key)

    def _status_of(self, key: str) -> CallStatus:
        record = self.book.records[key]
        if not record.ended and not self._running(record):
            self._settle_interrupted(record)
        return record.status()

    def _running(self, record: SipCallRecord) -> bool:
        """Whether some process still runs this call (and will write its end)."""
        if record.owner_pid == os.getpid() and record.owner_start == process_start_time(
            os.getpid()
        ):
            return _is_live(self.settings.state_dir, record.key)
        return process_alive(record.owner_pid, record.owner_start)

    def _settle_interrupted(self, record: SipCallRecord) -> None:
        """End a call whose process died mid-call: failed, never to be placed again."""
        with self.book.exclusive():
            self.book.refresh()
            if record.ended or self._running(record):
                return
            if process_alive(record.baresip_pid, record.baresip_start):
                # Its parent died without it noticing: end the orphan's call (BYE).
                with contextlib.suppress(ProcessLookupError):
                    os.kill(record.baresip_pid, signal.SIGTERM)  # type: ignore[arg-type]
            self.book.append(
                {
                    "event": "ended",
                    "key": record.key,
                    "call_id": record.call_id or fallback_call_id(record.key),
                    "state": CallState.FAILED.value,
                    "error": INTERRUPTED,
                    "duration_s": 0.0,
                },
                durable=True,
            )
        log.warning("sip call %s: its process died mid-call; settled as interrupted", record.key)

    def _fetch_audio(self, url: str) -> PlaybackAudio:
        if urlsplit(url).scheme not in ("http", "https"):
            raise GatewayPermanentError("invalid_audio: audio_url must be http(s)")
        try:
            response = self._http.get(url, timeout=self.settings.audio_timeout_s, stream=True)
            body = response.raw.read(_MAX_AUDIO_BYTES + 1, decode_content=True)
        except requests.RequestException as exc:
            raise GatewayTransientError(f"audio fetch failed: {exc}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise GatewayTransientError(f"audio fetch failed with HTTP {response.status_code}")
        if response.status_code != 200:
            raise GatewayPermanentError(f"invalid_audio: HTTP {response.status_code}")
        if len(body) > _MAX_AUDIO_BYTES:
            raise GatewayPermanentError("invalid_audio: larger than 50 MB")
        try:
            return decode_playback(body)
        except UnplayableAudio as exc:
            raise GatewayPermanentError(f"invalid_audio: {exc}") from exc

    def _call_ended(self, key: str) -> None:
        self._lines.release()
        _set_live(self.settings.state_dir, key, False)


class _SipCall(threading.Thread):
    """One call, from starting baresip to its last line in the call book."""

    def __init__(self, gateway: SipGateway, request: CallRequest, audio: PlaybackAudio) -> None:
        super().__init__(name=f"sip-call-{request.idempotency_key}", daemon=False)
        self.gateway = gateway
        self.settings = gateway.settings
        self.book = gateway.book
        self.request = request
        self.audio = audio
        self.key = request.idempotency_key
        self.dialed = threading.Event()  # the INVITE left, or the call was aborted
        self.abort_reason: str | None = None
        self.call_id: str | None = None
        self._call_id_seen = threading.Event()
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._hangup_requested = threading.Event()
        self._baresip: BaresipProcess | None = None
        self._t: dict[str, float] = {}
        self._digits = ""
        self._decision: tuple[CallState, str | None] | None = None

    # -- thread body ----------------------------------------------------------------------

    def run(self) -> None:
        workdir = Path(tempfile.mkdtemp(prefix="vn-sip-"))
        try:
            self._run(workdir)
        except Exception as exc:  # the call must always get an end line
            log.exception("sip call %s: gateway error", self.key)
            if not self.dialed.is_set():
                self._abort(f"{type(exc).__name__}: {exc}")
            else:
                self._end(CallState.FAILED, "gateway_error", "gateway error")
        finally:
            if self._baresip is not None:
                self._baresip.stop()
            shutil.rmtree(workdir, ignore_errors=True)  # it holds the trunk password
            self.dialed.set()
            self.gateway._call_ended(self.key)

    def request_hangup(self) -> None:
        self._hangup_requested.set()
        self._events.put({"type": "_WAKE"})

    def _run(self, workdir: Path) -> None:
        codecs = self._codecs()
        wav = self.audio.write_wav(
            workdir / "notice.wav", self.settings.lead_in_s, self.settings.dtmf_grace_s
        )
        ctrl_port = free_tcp_port()
        config = BaresipConfig(
            sip_listen=f"{self.settings.local_address}:0",
            ctrl_port=ctrl_port,
            rtp_ports=self.settings.rtp_ports,
            audio_source=f"aufile,{wav}",
            net_interface=self.settings.local_address,
            max_calls=1,
            module_path=self.settings.module_path,
        )
        write_config_dir(workdir, config, [self.settings.account_line(codecs)])
        log_path = self.settings.state_dir / LOGS_DIR / f"{_digest(self.key)[:16]}.log"
        try:
            self._baresip = BaresipProcess.start(
                workdir,
                ctrl_port,
                log_path,
                trace=True,
                on_event=self._events.put,
                on_line=self._console_line,
            )
            self._t["dial"] = time.monotonic()
            self._baresip.command("dial", self.settings.target_uri(self.request.to))
        except BaresipError as exc:
            self._abort(str(exc).splitlines()[0])
            return
        # From here on an INVITE may be on the wire: the call counts as placed.
        self._call_id_seen.wait(min(self.settings.setup_timeout_s, 5.0))
        self.book.append(
            {
                "event": "dialing",
                "key": self.key,
                "call_id": self.call_id,
                "baresip_pid": self._baresip.pid,
                "baresip_start": process_start_time(self._baresip.pid),
            },
            durable=True,
        )
        self.dialed.set()
        self._follow()

    def _codecs(self) -> tuple[str, ...]:
        # The file's own law first: then no sample is re-quantised on the way.
        own = self.audio.codec
        allowed = self.settings.codecs
        return (own, *(c for c in allowed if c != own)) if own in allowed else allowed

    def _console_line(self, line: str) -> None:
        if self.call_id is None:
            match = _CALL_ID_LINE.match(line.strip())
            if match:
                self.call_id = match.group(1)
                self._call_id_seen.set()

    def _abort(self, reason: str) -> None:
        """Nothing was sent: forget the call so a retry may place it."""
        self.abort_reason = reason
        self.book.append({"event": "aborted", "key": self.key, "reason": reason}, durable=True)
        log.warning("sip call %s not placed: %s", self.key, reason)

    # -- the call -------------------------------------------------------------------------

    def _follow(self) -> None:
        """Follow baresip's events and the gateway's timers until the call closes."""
        s = self.settings
        ring_limit = min(float(self.request.ring_timeout_s), s.ring_timeout_s)
        close_by: float | None = None
        while True:
            deadline = self._next_deadline(ring_limit, close_by)
            try:
                event = self._events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                event = {"type": "_TIMER"}
            if self._handle(event):
                return
            now = time.monotonic()
            if close_by is not None and now >= close_by:
                # baresip never reported the close: stop it; the decision stands.
                state, error = self._decision or (CallState.FAILED, "gateway_error")
                self._end(state, error, "no close event")
                return
            if close_by is None:
                decision = self._timer_decision(now, ring_limit)
                if decision is not None:
                    self._decision = decision
                    self._hangup()
                    close_by = now + 2.0

    def _next_deadline(self, ring_limit: float, close_by: float | None) -> float:
        t = self._t
        s = self.settings
        candidates = [time.monotonic() + 0.5]  # also notices a dead baresip
        if close_by is not None:
            candidates.append(close_by)
        elif "answered" in t:
            candidates.append(t["answered"] + s.max_call_s)
            if self._digits:
                candidates.append(self._playback_end())
        elif "ringing" in t:
            candidates.append(t["ringing"] + ring_limit)
        else:
            candidates.append(t["dial"] + s.setup_timeout_s)
        return min(candidates)

    def _playback_end(self) -> float:
        # The callee hears the last packet a little after we send it (its jitter buffer):
        # hanging up at the send time would clip the end of the notice.
        drain = _MEDIA_DRAIN_S
        return self._t["answered"] + self.settings.lead_in_s + self.audio.seconds + drain

    def _timer_decision(self, now: float, ring_limit: float) -> tuple[CallState, str | None] | None:
        """Whether a timer (or a request) says hang up now, and how the call then ends."""
        t = self._t
        if "answered" in t:
            played = now >= self._playback_end()
            if self._hangup_requested.is_set() or now >= t["answered"] + self.settings.max_call_s:
                return (CallState.COMPLETED, None) if played else (CallState.FAILED, "max_call_s")
            if self._digits and played:
                return CallState.COMPLETED, None  # the answer is in: no need to wait longer
            return None
        if self._hangup_requested.is_set():
            return CallState.CANCELED, None
        if "ringing" in t:
            return (CallState.NO_ANSWER, None) if now >= t["ringing"] + ring_limit else None
        if now >= t["dial"] + self.settings.setup_timeout_s:
            return CallState.FAILED, UNREACHABLE
        return None

    def _hangup(self) -> None:
        assert self._baresip is not None
        try:
            self._baresip.command("hangup")
        except BaresipError as exc:
            log.warning("sip call %s: hangup failed: %s", self.key, exc)

    def _handle(self, event: Mapping[str, Any]) -> bool:
        """Apply one baresip event; True once the call has ended."""
        kind = event.get("type")
        now = time.monotonic()
        if event.get("id") and self.call_id is None:
            self.call_id = str(event["id"])
        if kind in ("CALL_RINGING", "CALL_PROGRESS") and "ringing" not in self._t:
            self._t["ringing"] = now
            self.book.append({"event": "ringing", "key": self.key})
        elif kind == "CALL_ESTABLISHED" and "answered" not in self._t:
            self._t.setdefault("ringing", now)
            self._t["answered"] = now
            self.book.append({"event": "answered", "key": self.key})
        elif kind == "CALL_DTMF_START" and event.get("param"):
            digit = str(event["param"])[:1]
            self._digits += digit
            self.book.append({"event": "digit", "key": self.key, "digit": digit})
            log.info("sip call %s: key %s pressed", self.key, digit)
        elif kind == "CALL_CLOSED":
            self._closed(str(event.get("param") or ""), now)
            return True
        elif self._baresip is not None and self._baresip.process.poll() is not None:
            self._end(CallState.FAILED, "gateway_error", "baresip exited")
            return True
        return False

    def _closed(self, reason: str, now: float) -> None:
        if self._decision is not None:
            state, error = self._decision
        elif "answered" in self._t:
            if reason == "end of file" or self._digits or now >= self._playback_end():
                state, error = CallState.COMPLETED, None
            else:
                state, error = CallState.FAILED, "callee_hung_up"
        else:
            state, error = sip_outcome(reason)
        self._end(state, error, reason)

    def _end(self, state: CallState, error: str | None, reason: str) -> None:
        now = time.monotonic()
        t = self._t
        answered = t.get("answered")
        timings = {
            "setup_s": round(t["ringing"] - t["dial"], 3) if "ringing" in t else None,
            "ring_s": round(answered - t["ringing"], 3) if answered else None,
            "talk_s": round(now - answered, 3) if answered else None,
            "total_s": round(now - t["dial"], 3) if "dial" in t else None,
        }
        self.book.append(
            {
                "event": "ended",
                "key": self.key,
                "call_id": self.call_id or fallback_call_id(self.key),
                "state": state.value,
                "error": error,
                "digits": self._digits,
                "duration_s": timings["talk_s"] or 0.0,
                "sip_reason": reason[:80],
                "codec_order": list(self._codecs()),
                "audio_s": round(self.audio.seconds, 3),
                **timings,
            },
            durable=True,
        )
        log.info(
            "sip call %s to %s ended state=%s error=%s keys=%s reason=%r total_s=%s",
            self.call_id,
            mask_phone(self.request.to),
            state.value,
            error,
            self._digits or "-",
            reason[:80],
            timings["total_s"],
        )
