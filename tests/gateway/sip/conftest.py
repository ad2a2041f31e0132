"""Fixtures for real SIP calls over loopback: a baresip callee, the gateway, prompts over HTTP.

Timers are short so the whole group stays well under three minutes: rings of 0.2 s, a
1 s ring timeout, a 1 s setup timeout, 1 s of DTMF grace.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.synthesis.text.samples import INCLUDE


@pytest.fixture(scope="session")
def sip_tools() -> None:
    """baresip and sox must be there: `make test` installs them, so missing means broken."""
    missing = [tool for tool in ("baresip", "sox") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{missing} not installed; run `make system-deps` (baresip-core, sox)")


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


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Build SipGateways with short timers; every one is closed (calls ended) afterwards."""
    from voice_notify.gateway.sip.gateway import SipGateway, SipSettings

    made: list[SipGateway] = []

    def make(host: str, port: int, **overrides: Any) -> SipGateway:
        settings = {
            "trunk_host": host,
            "trunk_port": port,
            "state_dir": tmp_path / "gateway",
            "setup_timeout_s": 1.0,
            "ring_timeout_s": 1.0,
            "dtmf_grace_s": 1.0,
            "max_call_s": 60.0,
            **overrides,
        }
        gateway = SipGateway(SipSettings(**settings))
        made.append(gateway)
        return gateway

    yield make
    for gateway in made:
        gateway.hang_up_all()
        gateway.close(timeout_s=10)
