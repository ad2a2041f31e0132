"""One outbound SIP call: a baresip process, the carrier's responses, the timers, the end.

The call service (``service.py``) runs each call on a thread of its own with one
baresip process (``baresip.py``): it sends ``INVITE sip:<number>@<trunk>``, plays the
notice once the callee answers, collects DTMF keys, and hangs up.

How carriers behave, and what this module does about it:

- **Early media.** A ``183 Session Progress`` with SDP (ringback, coloured ring tones)
  opens the media path before the answer, and baresip starts its audio source right
  then. So the call starts on a silent source and switches to the notice (``ausrc``)
  on ``200 OK``: the customer hears the notice from its first sample, and nothing of it
  plays into the ringback. What the carrier sends as early media is received (and
  dropped); how long it lasted is recorded (``early_media_s``).
- **Post-dial delay.** ``100 Trying`` is progress: baresip raises no event for it, so
  the SIP trace is read for provisional responses. Three timers, each from its own
  start: *setup* (INVITE to any provisional response), *post-dial* (``100 Trying`` to
  the first ``18x``; mobile networks take 5-20 s) and *ring* (first ``18x`` to the
  answer); then *talk* (``max_call_s``) from the answer.
- **Decline.** 603 (and 607/608) end as ``declined``, an outcome of its own.
- **DTMF from another SSRC.** An SBC may send RFC 4733 events under its own SSRC while
  the callee's audio goes on under another; baresip's jitter buffer is flushed on every
  SSRC change and drops the events, so calls run without one (``jitter_buffer_delay
  0-0``; the gateway plays nothing it receives).

Outcomes: 486/600 busy; 408/480 no answer; 603/607/608 declined; other final codes
failed ``sip_<code>``; no provisional answer in time failed ``unreachable``; answered
and played to the end (or a key pressed) completed; hung up by the callee before the
end without a key failed ``callee_hung_up``.
"""

from __future__ import annotations

import logging
import queue
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import soundfile as sf

from voice_notify.gateway.base import CallState
from voice_notify.gateway.sip.audio import TELEPHONE_RATE, PlaybackAudio
from voice_notify.gateway.sip.baresip import (
    DEFAULT_MODULE_PATH,
    BaresipConfig,
    BaresipError,
    BaresipProcess,
    free_tcp_port,
    write_config_dir,
)
from voice_notify.phone import mask_phone

log = logging.getLogger(__name__)

__all__ = [
    "CallListener",
    "CallResult",
    "CallTimers",
    "SipCall",
    "TrunkSettings",
    "sip_outcome",
    "write_silence",
]

UNREACHABLE = "unreachable"
POST_DIAL_TIMEOUT = "post_dial_timeout"
STOPPED = "service_stopped"  # hung up by the service (shutting down) before the end
_SIP_CODE = re.compile(r"^([3-6][0-9]{2})\b")
_PROVISIONAL = re.compile(r"^SIP/2\.0 (1[0-9]{2})\b")
_CALL_ID_LINE = re.compile(r"^Call-ID:\s*(\S+)", re.IGNORECASE)
_ENCODER_LINE = re.compile(r"^audio: Set audio encoder: (PCM[UA])\b")
_TRANSPORTS = ("udp", "tcp")
CODECS = ("PCMU", "PCMA")
_MEDIA_DRAIN_S = 0.5
_BUSY_CODES = {486, 600}
_NO_ANSWER_CODES = {408, 480}
_DECLINED_CODES = {603, 607, 608}


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
    if code in _DECLINED_CODES:
        return CallState.DECLINED, None
    return CallState.FAILED, f"sip_{code}"


@dataclass(frozen=True)
class TrunkSettings:
    """How to reach the SIP trunk (an Asterisk or FreeSWITCH, a carrier's SBC).

    :param trunk_host: calls go to ``sip:<number>@<trunk_host>:<trunk_port>``
    :param caller_id: the user part of From (the number the callee sees)
    :param codecs: offered codecs, in preference order; a call puts the audio file's own
        law first so its bytes arrive unchanged
    :param local_address: the address baresip binds and advertises in SDP
    :param rtp_ports: ``low-high`` for the service's RTP; keep it clear of other UAs here
    """

    trunk_host: str
    trunk_port: int = 5060
    transport: str = "udp"
    caller_id: str = "voice-notify"
    codecs: tuple[str, ...] = CODECS
    auth_user: str | None = None
    auth_pass: str | None = field(default=None, repr=False)
    local_address: str = "127.0.0.1"
    rtp_ports: str = "20000-29999"
    module_path: Path = DEFAULT_MODULE_PATH

    def __post_init__(self) -> None:
        object.__setattr__(self, "codecs", tuple(c.upper() for c in self.codecs))
        if not self.trunk_host:
            raise ValueError("the SIP trunk needs a host")
        if self.transport not in _TRANSPORTS:
            raise ValueError(f"transport must be one of {_TRANSPORTS}, not {self.transport!r}")
        if not self.codecs or set(self.codecs) - set(CODECS):
            raise ValueError(f"codecs must be a non-empty subset of {CODECS}: {self.codecs}")
        if not re.fullmatch(r"[A-Za-z0-9+._-]{1,64}", self.caller_id):
            raise ValueError(f"caller_id must be a plain SIP user part: {self.caller_id!r}")
        low, _, high = self.rtp_ports.partition("-")
        if not (low.isdigit() and high.isdigit() and 1024 <= int(low) < int(high) <= 65535):
            raise ValueError(f"rtp_ports must be LOW-HIGH within 1024-65535: {self.rtp_ports!r}")

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


@dataclass(frozen=True)
class CallTimers:
    """The call's timers, in seconds.

    :param setup_timeout_s: INVITE to any provisional response (``100 Trying`` counts)
    :param post_dial_timeout_s: ``100 Trying`` to the first ``18x`` (post-dial delay)
    :param ring_timeout_s: the first ``18x`` to the answer; caps a request's own
    :param max_call_s: the answer to the end (talk)
    :param dtmf_grace_s: the call stays up this long after the notice, for a late key
    :param lead_in_s: silence before the notice, so clipping at answer loses no speech
    """

    setup_timeout_s: float = 5.0
    post_dial_timeout_s: float = 30.0
    ring_timeout_s: float = 60.0
    max_call_s: float = 300.0
    dtmf_grace_s: float = 2.0
    lead_in_s: float = 0.2

    def __post_init__(self) -> None:
        for name in ("setup_timeout_s", "post_dial_timeout_s", "ring_timeout_s", "max_call_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.dtmf_grace_s < 0 or self.lead_in_s < 0:
            raise ValueError("dtmf_grace_s and lead_in_s must be >= 0")

    @property
    def before_answer_s(self) -> float:
        """The longest a call can wait for its answer (the silent source lasts longer)."""
        return self.setup_timeout_s + self.post_dial_timeout_s + self.ring_timeout_s + 10.0


def write_silence(path: Path, seconds: float) -> Path:
    """The silent source a call plays until the answer (8 kHz 16-bit PCM, as aufile wants)."""
    sf.write(path, np.zeros(round(seconds * TELEPHONE_RATE), np.int16), TELEPHONE_RATE, "PCM_16")
    return path


@dataclass(frozen=True)
class CallResult:
    """How a call ended, with its times (seconds; None where a phase never came)."""

    state: CallState
    error: str | None
    digits: str
    sip_reason: str
    codec: str | None = None
    setup_s: float | None = None
    early_media_s: float | None = None
    ring_s: float | None = None
    talk_s: float | None = None
    total_s: float | None = None


class CallListener(Protocol):
    """What the service does with a call's news (called on the call's own thread)."""

    def dialing(self, call: SipCall, sip_call_id: str | None) -> None:
        """The INVITE left: the call counts as placed from here on."""

    def progress(self, call: SipCall, state: CallState) -> None:
        """Ringing, or answered."""

    def digit(self, call: SipCall, digits: str) -> None:
        """A key: store it durably before returning; the call goes on after."""

    def ended(self, call: SipCall, result: CallResult) -> None:
        """The last word on the call."""

    def not_placed(self, call: SipCall, reason: str) -> None:
        """Nothing was sent (baresip did not start): the call may be placed again."""


class SipCall(threading.Thread):
    """One call, from starting baresip to its end.

    :param silence_wav: the silent source played until the answer (``write_silence``,
        at least ``timers.before_answer_s`` long)
    :param log_dir: where baresip's console log of the call goes (numbers masked)
    """

    def __init__(
        self,
        *,
        call_id: str,
        number: str,
        audio: PlaybackAudio,
        trunk: TrunkSettings,
        timers: CallTimers,
        ring_timeout_s: float,
        silence_wav: Path,
        log_dir: Path,
        listener: CallListener,
    ) -> None:
        super().__init__(name=f"sip-call-{call_id}", daemon=True)
        self.call_id = call_id
        self.number = number
        self.audio = audio
        self.trunk = trunk
        self.timers = timers
        self.ring_limit = min(float(ring_timeout_s), timers.ring_timeout_s)
        self.silence_wav = silence_wav
        self.log_dir = log_dir
        self.listener = listener
        self.sip_call_id: str | None = None
        self.codec: str | None = None  # the codec on the line, once negotiated
        self.dialed = threading.Event()  # the INVITE left, or nothing will be sent
        self._sip_call_id_seen = threading.Event()
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._hangup_requested = threading.Event()
        self._baresip: BaresipProcess | None = None
        self._t: dict[str, float] = {}
        self._digits = ""
        self._decision: tuple[CallState, str | None] | None = None
        self._notice_wav: Path | None = None

    @property
    def codecs(self) -> tuple[str, ...]:
        # The file's own law first: then no sample is re-quantised on the way.
        own = self.audio.codec
        allowed = self.trunk.codecs
        return (own, *(c for c in allowed if c != own)) if own in allowed else allowed

    # -- thread body ----------------------------------------------------------------------

    def run(self) -> None:
        workdir = Path(tempfile.mkdtemp(prefix="vn-sip-"))
        try:
            self._run(workdir)
        except Exception as exc:  # the call must always get an end
            log.exception("sip call %s: gateway error", self.call_id)
            if not self.dialed.is_set():
                self._not_placed(f"{type(exc).__name__}: {exc}")
            else:
                self._end(CallState.FAILED, "gateway_error", "gateway error")
        finally:
            if self._baresip is not None:
                self._baresip.stop()
            shutil.rmtree(workdir, ignore_errors=True)  # it holds the trunk password
            self.dialed.set()

    def request_hangup(self) -> None:
        """Hang up now; the call ends as its state says (canceled before the answer)."""
        self._hangup_requested.set()
        self._events.put({"type": "_WAKE"})

    def _run(self, workdir: Path) -> None:
        self._notice_wav = self.audio.write_wav(
            workdir / "notice.wav", self.timers.lead_in_s, self.timers.dtmf_grace_s
        )
        ctrl_port = free_tcp_port()
        config = BaresipConfig(
            sip_listen=f"{self.trunk.local_address}:0",
            ctrl_port=ctrl_port,
            rtp_ports=self.trunk.rtp_ports,
            # Silence until the answer; the notice replaces it on 200 OK (see the module).
            audio_source=f"aufile,{self.silence_wav}",
            net_interface=self.trunk.local_address,
            max_calls=1,
            module_path=self.trunk.module_path,
            # No jitter buffer: it drops RFC 4733 events sent under a second SSRC.
            extra=(("jitter_buffer_delay", "0-0"),),
        )
        write_config_dir(workdir, config, [self.trunk.account_line(self.codecs)])
        try:
            self._baresip = BaresipProcess.start(
                workdir,
                ctrl_port,
                self.log_dir / f"{self.call_id}.log",
                trace=True,
                on_event=self._events.put,
                on_line=self._console_line,
            )
            self._t["dial"] = time.monotonic()
            self._baresip.command("dial", self.trunk.target_uri(self.number))
        except BaresipError as exc:
            self._not_placed(str(exc).splitlines()[0])
            return
        # From here on an INVITE may be on the wire: the call counts as placed.
        self._sip_call_id_seen.wait(min(self.timers.setup_timeout_s, 5.0))
        self.listener.dialing(self, self.sip_call_id)
        self.dialed.set()
        self._follow()

    def _console_line(self, line: str) -> None:
        # On baresip's reader thread: only note what the call's thread needs.
        text = line.strip()
        if self.sip_call_id is None:
            match = _CALL_ID_LINE.match(text)
            if match:
                self.sip_call_id = match.group(1)
                self._sip_call_id_seen.set()
        encoder = _ENCODER_LINE.match(text)
        if encoder:
            self.codec = encoder.group(1)
        match = _PROVISIONAL.match(text)
        if match:
            # Only responses start with SIP/2.0, and the only ones this UA receives
            # before the answer are the carrier's answers to its INVITE.
            self._events.put({"type": "_PROVISIONAL", "param": match.group(1)})

    def _not_placed(self, reason: str) -> None:
        self.dialed.set()
        self.listener.not_placed(self, reason)

    # -- the call -------------------------------------------------------------------------

    def _follow(self) -> None:
        """Follow baresip's events and the timers until the call closes."""
        close_by: float | None = None
        while True:
            deadline = self._next_deadline(close_by)
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
                decision = self._timer_decision(now)
                if decision is not None:
                    self._decision = decision
                    self._hangup()
                    close_by = now + 2.0

    def _next_deadline(self, close_by: float | None) -> float:
        t, timers = self._t, self.timers
        candidates = [time.monotonic() + 0.5]  # also notices a dead baresip
        if close_by is not None:
            candidates.append(close_by)
        elif "answered" in t:
            candidates.append(t["answered"] + timers.max_call_s)
            if self._digits:
                candidates.append(self._playback_end())
        elif "ringing" in t:
            candidates.append(t["ringing"] + self.ring_limit)
        elif "trying" in t:
            candidates.append(t["trying"] + timers.post_dial_timeout_s)
        else:
            candidates.append(t["dial"] + timers.setup_timeout_s)
        return min(candidates)

    def _playback_end(self) -> float:
        # The callee hears the last packet a little after it is sent (its jitter buffer):
        # hanging up at the send time would clip the end of the notice.
        return self._t["answered"] + self.timers.lead_in_s + self.audio.seconds + _MEDIA_DRAIN_S

    def _timer_decision(self, now: float) -> tuple[CallState, str | None] | None:
        """Whether a timer (or a request) says hang up now, and how the call then ends."""
        t, timers = self._t, self.timers
        if "answered" in t:
            played = now >= self._playback_end()
            if self._hangup_requested.is_set():
                return (CallState.COMPLETED, None) if played else (CallState.FAILED, STOPPED)
            if now >= t["answered"] + timers.max_call_s:
                return (CallState.COMPLETED, None) if played else (CallState.FAILED, "max_call_s")
            if self._digits and played:
                return CallState.COMPLETED, None  # the answer is in: no need to wait longer
            return None
        if self._hangup_requested.is_set():
            return CallState.CANCELED, None
        if "ringing" in t:
            return (CallState.NO_ANSWER, None) if now >= t["ringing"] + self.ring_limit else None
        if "trying" in t:
            if now >= t["trying"] + timers.post_dial_timeout_s:
                return CallState.NO_ANSWER, POST_DIAL_TIMEOUT
            return None
        if now >= t["dial"] + timers.setup_timeout_s:
            return CallState.FAILED, UNREACHABLE
        return None

    def _hangup(self) -> None:
        assert self._baresip is not None
        try:
            self._baresip.command("hangup")
        except BaresipError as exc:
            log.warning("sip call %s: hangup failed: %s", self.call_id, exc)

    def _handle(self, event: Mapping[str, Any]) -> bool:
        """Apply one event; True once the call has ended."""
        kind = event.get("type")
        now = time.monotonic()
        t = self._t
        if kind == "_PROVISIONAL":
            t.setdefault("trying", now)
            if str(event.get("param", "")).startswith("18"):
                self._ringing(now)
        elif kind in ("CALL_RINGING", "CALL_PROGRESS"):
            t.setdefault("trying", now)
            if kind == "CALL_PROGRESS":
                t.setdefault("early_media", now)  # an 18x with SDP: early media from here
            self._ringing(now)
        elif kind == "CALL_ESTABLISHED" and "answered" not in t:
            self._answered(now)
        elif kind == "CALL_DTMF_START" and event.get("param") and "answered" in t:
            digit = str(event["param"])[:1]
            self._digits += digit
            self.listener.digit(self, self._digits)  # durable before anything else
            log.info("sip call %s: key %s pressed", self.call_id, digit)
        elif kind == "CALL_CLOSED":
            self._closed(str(event.get("param") or ""), now)
            return True
        elif self._baresip is not None and self._baresip.process.poll() is not None:
            self._end(CallState.FAILED, "gateway_error", "baresip exited")
            return True
        return False

    def _ringing(self, now: float) -> None:
        if "ringing" not in self._t:
            self._t["ringing"] = now
            self.listener.progress(self, CallState.RINGING)

    def _answered(self, now: float) -> None:
        t = self._t
        t.setdefault("trying", now)
        t.setdefault("ringing", now)
        t["answered"] = now
        assert self._baresip is not None and self._notice_wav is not None
        try:
            # The notice starts now, from its first sample: not a frame of it went out
            # into early media.
            self._baresip.command("ausrc", f"aufile,{self._notice_wav}")
        except BaresipError as exc:
            log.error("sip call %s: the notice could not start: %s", self.call_id, exc)
            self._decision = (CallState.FAILED, "gateway_error")
            self._hangup()
        self.listener.progress(self, CallState.IN_PROGRESS)

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

        def span(start: str, stop: str | None) -> float | None:
            if start not in t or (stop is not None and stop not in t):
                return None
            return round((t[stop] if stop else now) - t[start], 3)

        result = CallResult(
            state=state,
            error=error,
            digits=self._digits,
            sip_reason=reason[:96],
            codec=self.codec,
            setup_s=span("dial", "trying"),
            early_media_s=span("early_media", "answered"),
            ring_s=span("ringing", "answered"),
            talk_s=span("answered", None),
            total_s=span("dial", None),
        )
        self.listener.ended(self, result)
        log.info(
            "sip call %s to %s ended state=%s error=%s keys=%s reason=%r total_s=%s",
            self.call_id,
            mask_phone(self.number),
            state.value,
            error,
            self._digits or "-",
            reason[:80],
            result.total_s,
        )
