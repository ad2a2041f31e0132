"""A SIP test callee: a real baresip user agent on loopback, standing in for the phones.

It is the far end of the one thing voice-notify fakes, the telephone network, for the
SIP tests and ``make demo GATEWAY=sip``. One baresip process listens on a loopback
port with one account per number it serves; the dialled user part (the number) picks
what the "customer" does, and everything the callee receives is recorded, one WAV file
per call (``recordings/<SIP Call-ID>.wav``), so a test can prove what was heard.

Behaviour by the last digit of the dialled number (``DIGIT_BEHAVIOURS``)::

    0 busy (486)                    5 answer at once, listen to the end
    1 answer after 1 ring, key 1    6 reject: no common codec (488)
    2 answer after 2 rings, listen  7 answer after 1 ring, listen
    3 answer after 1 ring, listen   8 answer after 3 rings, listen
    4 never answer (no answer)      9 answer after 1 ring, key 9

A ring lasts ``ring_s`` seconds (1.0 by default); keys are pressed ``key_after_s``
after answering, while the notice plays. A number the callee does not serve gets
baresip's own ``404 Not Found``. ``overrides`` give single numbers another behaviour.

    with start_sip_callee(state_dir, numbers=["+8613812345673"]) as callee:
        ...  # a SipGateway with trunk_host=callee.host, trunk_port=callee.port

Start it from a thread that lives as long as it should run (the main thread): baresip
gets SIGTERM when the thread that started it ends, so no callee outlives a killed test.
``add_numbers`` serves more numbers while it runs.

The callee's log and ``calls.jsonl`` (one line per call when it ends: Call-ID, masked
number, behaviour, times, close reason, recording) are in ``state_dir``.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from voice_notify.gateway.sip.audio import AudioMatch, compare_audio, read_pcm
from voice_notify.gateway.sip.baresip import (
    BaresipConfig,
    BaresipError,
    BaresipProcess,
    free_sip_port,
    free_tcp_port,
    write_config_dir,
)
from voice_notify.phone import mask_phone

log = logging.getLogger(__name__)

CALLS_FILE = "calls.jsonl"
RECORDINGS_DIR = "recordings"
LOG_FILE = "callee.log"
_RAW_DIR = "raw"  # where baresip's sndfile module writes, before a file is named by call


@dataclass(frozen=True)
class CalleeBehaviour:
    """What the callee does with a call.

    :param rings: rings before answering; None never answers
    :param reject: answer the INVITE with this code instead (486 busy, 488 no codec)
    :param key: DTMF digit to press after answering, if any
    :param key_after_s: seconds after answering to press it
    :param hangup_after_s: seconds after answering to hang up (None: the caller hangs up)
    :param outcome: the outcome ``reconcile.outcome_of`` should record for the call
    """

    name: str
    outcome: str
    rings: int | None = 1
    reject: int | None = None
    key: str | None = None
    key_after_s: float = 1.0
    hangup_after_s: float | None = None

    def __post_init__(self) -> None:
        if self.reject not in (None, 486, 488):
            raise ValueError("a baresip 1.0.0 callee can reject with 486 or 488 only")
        if self.key is not None and (len(self.key) != 1 or self.key not in "0123456789*#"):
            raise ValueError(f"key must be one DTMF digit: {self.key!r}")

    @property
    def answers(self) -> bool:
        return self.reject is None and self.rings is not None


DIGIT_BEHAVIOURS: Mapping[str, CalleeBehaviour] = {
    "0": CalleeBehaviour("busy", "busy", reject=486),
    "1": CalleeBehaviour("confirm", "confirmed", rings=1, key="1"),
    "2": CalleeBehaviour("listen_2_rings", "completed", rings=2),
    "3": CalleeBehaviour("listen", "completed", rings=1),
    "4": CalleeBehaviour("no_answer", "no_answer", rings=None),
    "5": CalleeBehaviour("listen_at_once", "completed", rings=0),
    "6": CalleeBehaviour("reject_488", "call_failed", reject=488),
    "7": CalleeBehaviour("listen", "completed", rings=1),
    "8": CalleeBehaviour("listen_3_rings", "completed", rings=3),
    "9": CalleeBehaviour("opt_out", "opted_out", rings=1, key="9"),
}


def behaviour_for_number(
    number: str, overrides: Mapping[str, CalleeBehaviour] | None = None
) -> CalleeBehaviour:
    """The behaviour the callee gives a dialled number: an override, else its last digit."""
    if overrides and number in overrides:
        return overrides[number]
    digits = [c for c in number if c.isdigit()]
    if not digits:
        raise ValueError(f"no digit in {mask_phone(number)}")
    return DIGIT_BEHAVIOURS[digits[-1]]


@dataclass
class CalleeCall:
    """One call as the callee saw it."""

    call_id: str | None
    user: str
    behaviour: str
    incoming_at: float
    answered_at: float | None = None
    key_sent: str | None = None
    key_sent_at: float | None = None
    closed_at: float | None = None
    close_reason: str | None = None
    recording: str | None = None  # relative to the state dir
    raw_recording: Path | None = field(default=None, repr=False)

    def record(self) -> dict[str, Any]:
        line = asdict(self)
        line.pop("raw_recording")
        line["user"] = mask_phone(self.user)
        return line


def _user_of(aor: str) -> str:
    return aor.removeprefix("sip:").split("@", 1)[0]


class SipCallee:
    """A running test callee; use ``start_sip_callee`` to get one."""

    def __init__(
        self,
        state_dir: Path,
        port: int,
        behaviours: dict[str, CalleeBehaviour],
        ring_s: float,
        codec_account: str,
    ) -> None:
        self.state_dir = state_dir
        self.host = "127.0.0.1"
        self.port = port
        self.ring_s = ring_s
        self._behaviours = behaviours
        self._codec_account = codec_account
        self._baresip: BaresipProcess | None = None
        self._calls: dict[str, CalleeCall] = {}
        self._ended: list[CalleeCall] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._select_lock = threading.Lock()  # uafind + callfind + action, as one step
        self._answer_lock = threading.Lock()  # one answer at a time: its recording is found
        self._timers: list[threading.Timer] = []
        (state_dir / RECORDINGS_DIR).mkdir(parents=True, exist_ok=True)
        (state_dir / _RAW_DIR).mkdir(parents=True, exist_ok=True)

    # -- public ---------------------------------------------------------------------------

    def uri(self, number: str) -> str:
        """The SIP URI a gateway dials for ``number`` through this callee."""
        return f"sip:{number}@{self.host}:{self.port}"

    @property
    def numbers(self) -> list[str]:
        return sorted(self._behaviours)

    def add_numbers(
        self, numbers: Iterable[str], overrides: Mapping[str, CalleeBehaviour] | None = None
    ) -> None:
        """Serve more numbers while running (an account each, made with ``uanew``)."""
        assert self._baresip is not None
        for number in numbers:
            if number in self._behaviours:
                continue
            behaviour = behaviour_for_number(number, overrides)
            self._baresip.command("uanew", self._account(number, behaviour), timeout_s=10.0)
            self._behaviours[number] = behaviour

    def calls(self) -> list[CalleeCall]:
        """The calls that have ended, in the order they ended."""
        with self._lock:
            return list(self._ended)

    def wait_for_calls(self, count: int, timeout_s: float) -> list[CalleeCall]:
        """Wait until ``count`` calls have ended (or the timeout); return the ended calls."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while len(self._ended) < count and time.monotonic() < deadline:
                self._changed.wait(max(0.0, deadline - time.monotonic()))
            return list(self._ended)

    def recording(self, call_id: str) -> Path | None:
        """The finished recording of a call, or None if the callee never answered it."""
        with self._lock:
            call = next((c for c in self._ended if c.call_id == call_id), None)
        if call is None or call.recording is None:
            return None
        return self.state_dir / call.recording

    def stop(self) -> None:
        """Stop baresip and the pending actions."""
        for timer in self._timers:
            timer.cancel()
        if self._baresip is not None:
            self._baresip.stop()
            self._baresip = None

    def __enter__(self) -> SipCallee:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- start ----------------------------------------------------------------------------

    def _account(self, number: str, behaviour: CalleeBehaviour) -> str:
        # A callee offering only G.722 makes baresip answer a G.711 offer with 488.
        codecs = self._codec_account if behaviour.reject == 488 else "PCMU,PCMA"
        return (
            f"<sip:{number}@{self.host}:{self.port}>;answermode=manual;regint=0"
            f";audio_codecs={codecs}"
        )

    def _start(self, rtp_ports: str, startup_timeout_s: float) -> None:
        ctrl_port = free_tcp_port()
        config = BaresipConfig(
            sip_listen=f"{self.host}:{self.port}",
            ctrl_port=ctrl_port,
            rtp_ports=rtp_ports,
            # baresip sends RFC 4733 keys only from its audio send path, which runs only
            # with a source: a 10 Hz sine, below the telephone band, is the quietest one.
            audio_source="ausine,10",
            modules=("g711", "g722", "ausine", "aubridge", "sndfile"),
            max_calls=256,
            extra=(
                ("ausrc_srate", "48000"),  # the only format ausine makes
                ("ausrc_channels", "2"),
                ("snd_path", str(self.state_dir / _RAW_DIR)),
                # A caller that dies without its BYE (a killed host) goes silent; a
                # carrier ends such a call on its RTP timeout, and so does this callee.
                ("rtp_timeout", "4"),
            ),
        )
        config_dir = write_config_dir(
            self.state_dir / "baresip",
            config,
            [self._account(n, b) for n, b in sorted(self._behaviours.items())],
        )
        self._baresip = BaresipProcess.start(
            config_dir,
            ctrl_port,
            self.state_dir / LOG_FILE,
            on_event=self._on_event,
            startup_timeout_s=startup_timeout_s,
        )

    # -- events (on baresip's reader thread: only bookkeeping and scheduling) -------------

    def _on_event(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        call_id = event.get("id")
        user = _user_of(str(event.get("accountaor", "")))
        if kind == "CALL_INCOMING" and call_id:
            behaviour = self._behaviours.get(user)
            if behaviour is None:
                return
            with self._lock:
                self._calls[call_id] = CalleeCall(call_id, user, behaviour.name, time.time())
            if behaviour.reject == 486:
                self._later(0.0, self._act, user, call_id, "hangup")
            elif behaviour.rings is not None:
                self._later(behaviour.rings * self.ring_s, self._answer, user, call_id)
        elif kind == "CALL_ESTABLISHED" and call_id:
            behaviour = self._behaviours.get(user)
            with self._lock:
                call = self._calls.get(call_id)
                if call is not None:
                    call.answered_at = time.time()
            if behaviour is not None and behaviour.key is not None:
                self._later(behaviour.key_after_s, self._press, user, call_id, behaviour.key)
            if behaviour is not None and behaviour.hangup_after_s is not None:
                self._later(behaviour.hangup_after_s, self._act, user, call_id, "hangup")
        elif kind == "CALL_CLOSED":
            reason = str(event.get("param") or "")
            threading.Thread(target=self._closed, args=(call_id, user, reason)).start()

    def _later(self, delay_s: float, action: Any, *args: Any) -> None:
        timer = threading.Timer(delay_s, action, args)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    # -- actions --------------------------------------------------------------------------

    def _act(self, user: str, call_id: str, command: str, params: str | None = None) -> bool:
        """Run ``command`` on one call: select its account and the call first.

        baresip's commands act on the current call; selecting both, under one lock, is
        what keeps an action on one call from landing on another.
        """
        if self._baresip is None:
            return False
        with self._select_lock:
            try:
                self._baresip.command("uafind", f"sip:{user}@{self.host}:{self.port}")
                found = self._baresip.command("callfind", call_id)
                if call_id not in found or "not found" in found:
                    return False  # the call ended meanwhile
                self._baresip.command(command, params)
                return True
            except BaresipError as exc:
                log.warning("callee: %s on call %s failed: %s", command, call_id, exc)
                return False

    def _answer(self, user: str, call_id: str) -> None:
        raw_dir = self.state_dir / _RAW_DIR
        with self._answer_lock:
            before = set(raw_dir.glob("dump-*-dec.wav"))
            if not self._act(user, call_id, "accept"):
                return
            deadline = time.monotonic() + 2.0
            new: list[Path] = []
            while not new and time.monotonic() < deadline:
                new = sorted(set(raw_dir.glob("dump-*-dec.wav")) - before)
                if not new:
                    time.sleep(0.002)
            if len(new) != 1:
                log.warning("callee: call %s: %d new recordings, none kept", call_id, len(new))
                return
            # sndfile names a recording by the second it starts in, so a second call
            # answered within the same second would write to the same path. Moving the
            # file away at once (baresip writes on through its open descriptor) frees
            # the name for the next answer.
            mine = raw_dir / f"{call_id}.wav"
            os.replace(new[0], mine)
            # What the callee sends (a 10 Hz sine) is of no interest.
            new[0].with_name(new[0].name.replace("-dec.wav", "-enc.wav")).unlink(missing_ok=True)
            with self._lock:
                self._calls[call_id].raw_recording = mine

    def _press(self, user: str, call_id: str, key: str) -> None:
        if self._act(user, call_id, "sndcode", key):
            with self._lock:
                call = self._calls.get(call_id)
                if call is not None:
                    call.key_sent, call.key_sent_at = key, time.time()

    def _closed(self, call_id: str | None, user: str, reason: str) -> None:
        with self._lock:
            call = self._calls.pop(call_id, None) if call_id else None
        if call is None:
            behaviour = self._behaviours.get(user)
            name = behaviour.name if behaviour else "unknown"
            call = CalleeCall(call_id, user, name, time.time())
        call.closed_at, call.close_reason = time.time(), reason
        if call.raw_recording is not None and call_id:
            call.recording = self._keep_recording(call.raw_recording, call_id)
        line = json.dumps(call.record(), ensure_ascii=False) + "\n"
        with self._changed:
            with (self.state_dir / CALLS_FILE).open("a", encoding="utf-8") as calls:
                calls.write(line)
            self._ended.append(call)
            self._changed.notify_all()
        log.info(
            "callee: call %s to %s (%s) closed: %s",
            call_id,
            mask_phone(user),
            call.behaviour,
            reason,
        )

    def _keep_recording(self, raw: Path, call_id: str) -> str | None:
        """Name the recording by Call-ID once baresip has closed (finalised) it."""
        deadline = time.monotonic() + 3.0
        while not _wav_finalised(raw) and time.monotonic() < deadline:
            time.sleep(0.02)
        target = Path(RECORDINGS_DIR) / f"{call_id}.wav"
        try:
            os.replace(raw, self.state_dir / target)
        except OSError as exc:
            log.warning("callee: recording of %s lost: %s", call_id, exc)
            return None
        # What the callee sent (a 10 Hz sine) is of no interest; a file still open is
        # unlinked harmlessly.
        for sent in (self.state_dir / _RAW_DIR).glob("dump-*-enc.wav"):
            sent.unlink(missing_ok=True)
        return str(target)


def _wav_finalised(path: Path) -> bool:
    """Whether a WAV's data chunk size matches the file (libsndfile writes it on close)."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    offset = 12
    while offset + 8 <= len(data):
        chunk = data[offset : offset + 4]
        (size,) = struct.unpack("<I", data[offset + 4 : offset + 8])
        if chunk == b"data":
            return size == len(data) - offset - 8 and size > 0
        offset += 8 + size + (size & 1)
    return False


def start_sip_callee(
    state_dir: Path,
    numbers: Iterable[str] = (),
    *,
    overrides: Mapping[str, CalleeBehaviour] | None = None,
    ring_s: float = 1.0,
    port: int | None = None,
    rtp_ports: str = "30000-30999",
    startup_timeout_s: float = 15.0,
) -> SipCallee:
    """Start the callee on a free loopback port, serving ``numbers`` (and ``overrides``).

    Use it as a context manager; it stops baresip on exit.

    :param numbers: E.164 numbers (user parts) to answer, behaviour by last digit
    :param ring_s: seconds per ring
    :param rtp_ports: the callee's RTP range; keep it apart from the gateway's
    """
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    behaviours = {n: behaviour_for_number(n, overrides) for n in numbers}
    behaviours.update(overrides or {})
    callee = SipCallee(
        state_dir, port or free_sip_port(), behaviours, ring_s, codec_account="G722/16000/1"
    )
    callee._start(rtp_ports, startup_timeout_s)
    log.info("SIP test callee on port %s serves %d numbers", callee.port, len(behaviours))
    return callee


@dataclass(frozen=True)
class CallMatch:
    """For one answered call: does what the callee recorded match the audio file sent?"""

    call_id: str
    behaviour: str
    match: AudioMatch | None
    problem: str | None = None  # no_recording, no_sent_audio

    @property
    def matches(self) -> bool:
        return self.match is not None and self.match.matches

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"call_id": self.call_id, "behaviour": self.behaviour}
        out.update(self.match.as_dict() if self.match else {"matches": False})
        out["problem"] = self.problem
        return out


def compare_answered_calls(
    callee_state_dir: Path, sent_audio: Mapping[str, bytes]
) -> list[CallMatch]:
    """Compare each answered call's recording with the file sent, by SIP Call-ID.

    :param callee_state_dir: the callee's state directory (it may have stopped)
    :param sent_audio: SIP Call-ID (the ledger's ``call_id``) -> the G.711 WAV bytes the
        pipeline produced for that call (the S3 object of its ``audio_key``)
    """
    path = Path(callee_state_dir) / CALLS_FILE
    lines = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    matches = []
    for line in lines:
        if line.get("answered_at") is None or not line.get("call_id"):
            continue
        call_id, behaviour = line["call_id"], line["behaviour"]
        if line.get("recording") is None:
            matches.append(CallMatch(call_id, behaviour, None, "no_recording"))
        elif call_id not in sent_audio:
            matches.append(CallMatch(call_id, behaviour, None, "no_sent_audio"))
        else:
            recorded = read_pcm(Path(callee_state_dir) / line["recording"])
            sent = read_pcm(sent_audio[call_id])
            matches.append(CallMatch(call_id, behaviour, compare_audio(sent, recorded)))
    return matches
