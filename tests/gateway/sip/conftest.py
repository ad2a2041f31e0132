"""Fixtures for real SIP calls over loopback: a baresip callee (or SIPp as a carrier), the
SIP call service with its adapter, prompts over HTTP.

Timers are short so the whole group stays within a few minutes: rings of 0.2 s, a 1 s
ring timeout, a 1 s setup timeout, 1 s of DTMF grace.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.synthesis.text.samples import INCLUDE


@pytest.fixture(scope="session")
def sip_tools() -> None:
    """baresip, sox and SIPp must be there: `make test` installs them, so missing is broken."""
    missing = [tool for tool in ("baresip", "sox", "sipp") if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"{missing} not installed; run `make system-deps` (baresip-core, sox, sip-tester)"
        )


needs_baresip = pytest.mark.usefixtures("sip_tools")

RING_S = 0.2
#: Numbers the callee serves; the last digit picks the behaviour (sip_callee.DIGIT_BEHAVIOURS).
NUMBERS = [f"+86138000000{n:02d}" for n in range(40)]
CONTEXT = {
    "organization": "示例银行",
    "customer_name": "曾小明",
    "confirm_key": "1",
    "optout_key": "9",
    "service_phone": "95555",
}


class _QuietFileHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class AudioServer:
    """Serves prompts over loopback HTTP, as S3 serves presigned URLs."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        handler = functools.partial(_QuietFileHandler, directory=str(directory))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, args=(0.1,), daemon=True).start()

    def publish(self, data: bytes, name: str | None = None) -> str:
        name = name or f"{uuid.uuid4().hex}.wav"
        (self.directory / name).write_bytes(data)
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def audio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AudioServer]:
    server = AudioServer(tmp_path_factory.mktemp("sip-audio"))
    yield server
    server.close()


@pytest.fixture(scope="session")
def composer():
    from synthesis.text import NoticeComposer

    return NoticeComposer.load(INCLUDE)


@pytest.fixture(scope="session")
def tone_wav() -> bytes:
    """4 s of a warbling tone as 8 kHz μ-law: for calls where the words do not matter."""
    import io

    import numpy as np
    import soundfile as sf

    t = np.arange(4 * 8000) / 8000
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t))
    buffer = io.BytesIO()
    sf.write(buffer, tone, 8000, subtype="ULAW", format="WAV")
    return buffer.getvalue()


@pytest.fixture
def callee(tmp_path: Path):
    """A fresh test callee serving ``NUMBERS``."""
    from voice_notify_dev.sip_callee import start_sip_callee

    with start_sip_callee(tmp_path / "callee", NUMBERS, ring_s=RING_S) as running:
        yield running


SECRET = "test-sip-service-secret"
# Short, yet with room for a loaded machine: the callee answers (or refuses) from
# Python, after rings of RING_S; a timer that fires first turns a busy or answered
# number into no_answer.
SHORT_TIMERS = {
    "setup_timeout_s": 3.0,
    "post_dial_timeout_s": 5.0,
    "ring_timeout_s": 4.0,
    "dtmf_grace_s": 1.0,
    "max_call_s": 60.0,
}


@dataclass
class RunningService:
    """A SIP call service running in this process, and the adapter the dial task uses."""

    service: Any
    url: str
    gateway: Any
    engine: sa.Engine
    stop: Callable[[], None]

    def wait_terminal(self, call_ids, timeout_s: float = 60.0) -> dict[str, Any]:
        """The statuses of these calls once all have ended (or at the timeout)."""
        deadline = time.monotonic() + timeout_s
        while True:
            # In bulk, as settle polls (GET /v1/calls?call_id=...): every call it placed.
            statuses = self.gateway.call_statuses(list(call_ids))
            assert set(statuses) == set(call_ids), (
                f"the service lost {set(call_ids) - set(statuses)}"
            )
            if all(s.terminal for s in statuses.values()) or time.monotonic() > deadline:
                return statuses
            time.sleep(0.1)


def migrated_sqlite(path: Path) -> sa.Engine:
    """A migrated SQLite ledger database: the call book lives there."""
    from voice_notify.db import migrate
    from voice_notify.db.sql import make_engine

    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    return engine


@pytest.fixture
def ledger_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = migrated_sqlite(tmp_path / "ledger.sqlite")
    yield engine
    engine.dispose()


class ServiceFactory:
    """Starts SIP call services in this process with short timers; ``close`` stops them."""

    def __init__(self, tmp_path: Path, engine: sa.Engine) -> None:
        self.tmp_path = tmp_path
        self.engine = engine
        self.made: list[RunningService] = []

    def __call__(
        self,
        host: str,
        port: int,
        *,
        name: str = "sip-test",
        engine: sa.Engine | None = None,
        **overrides: Any,
    ) -> RunningService:
        from voice_notify.gateway.sip.call import CallTimers, TrunkSettings
        from voice_notify.gateway.sip.gateway import SipGateway
        from voice_notify.gateway.sip.service import CallService, ServiceSettings, serve

        timers = {k: overrides.pop(k) for k in list(overrides) if k in SHORT_TIMERS}
        codecs = overrides.pop("codecs", ("PCMU", "PCMA"))
        state_dir = self.tmp_path / f"service-{name}-{len(self.made)}"
        engine = engine or self.engine
        service = CallService(
            ServiceSettings(
                name=name, state_dir=state_dir, secret=SECRET, listen_port=0, **overrides
            ),
            TrunkSettings(trunk_host=host, trunk_port=port, codecs=codecs, rtp_ports="41000-41999"),
            CallTimers(**{**SHORT_TIMERS, **timers}),
            engine,
        )
        stop = threading.Event()
        thread = threading.Thread(target=serve, args=(service, stop), daemon=True)
        thread.start()
        server_file = state_dir / "server.json"
        deadline = time.monotonic() + 20
        while not server_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        url = json.loads(server_file.read_text())["url"]

        def halt() -> None:
            if not stop.is_set():
                stop.set()
                thread.join(timeout=30)

        running = RunningService(service, url, SipGateway(url, SECRET), engine, halt)
        self.made.append(running)
        return running

    def close(self) -> None:
        for running in self.made:
            running.service.stop(drain_s=0.0)  # hang up what still runs
            running.stop()


@pytest.fixture
def make_service(tmp_path: Path, ledger_engine: sa.Engine) -> Iterator[ServiceFactory]:
    """Start SIP call services in this process; all stopped afterwards."""
    factory = ServiceFactory(tmp_path, ledger_engine)
    yield factory
    factory.close()
