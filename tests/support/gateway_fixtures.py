"""Fixtures for the gateway tests: prompts served over loopback HTTP, as S3 would serve them,
and a loopback receiver for the gateways' status callbacks."""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from tests.support.gateway_constants import (
    ALL_FAULTS_SPEC,
    CALL_SECONDS,
    CALLBACK_SECRET,
    FAULT_DELAY_S,
    FAULT_SEED,
    TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN,
)
from voice_notify_dev.simulator import SimulatorProcess, start_simulator


class _QuietFileHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # the simulator's fetches would otherwise flood the test output


def _write_audio_files(directory: Path) -> None:
    """One good prompt (1 s of 440 Hz, 8 kHz μ-law, as the synthesis worker emits) and bad ones."""
    t = np.arange(8000) / 8000
    soundfile.write(directory / "tone.wav", 0.5 * np.sin(2 * np.pi * 440 * t), 8000, subtype="ULAW")
    soundfile.write(directory / "silent.wav", np.zeros(8000), 8000, subtype="ULAW")
    soundfile.write(directory / "empty.wav", np.zeros(0), 8000, subtype="ULAW")
    (directory / "not_audio.wav").write_text("this is a notice text, not audio\n")


@pytest.fixture(scope="session")
def audio_base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a loopback file server holding the test prompts."""
    directory = tmp_path_factory.mktemp("audio")
    _write_audio_files(directory)
    handler = functools.partial(_QuietFileHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@dataclass(frozen=True)
class ReceivedCallback:
    """One POST the callback receiver got, exactly as it arrived."""

    path: str  # with the query
    headers: dict[str, str]
    body: bytes
    received_at: float


class CallbackReceiver:
    """A loopback endpoint that records gateway callbacks (the Airflow endpoint's stand-in).

    ``fail_next(n)`` answers the next ``n`` callbacks with 500, to exercise retries.
    """

    def __init__(self) -> None:
        self.received: list[ReceivedCallback] = []
        self._failures_left = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    failing = receiver._failures_left > 0
                    receiver._failures_left -= int(failing)
                    if not failing:
                        receiver.received.append(
                            ReceivedCallback(self.path, dict(self.headers), body, time.time())
                        )
                self.send_response(500 if failing else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def fail_next(self, count: int) -> None:
        with self._lock:
            self._failures_left = count

    def matching(self, needle: str) -> list[ReceivedCallback]:
        """The callbacks whose path or body mention ``needle`` (a call id or a key)."""
        with self._lock:
            return [r for r in self.received if needle in r.path or needle.encode() in r.body]

    def wait_for(self, needle: str, count: int, timeout_s: float = 5.0) -> list[ReceivedCallback]:
        deadline = time.monotonic() + timeout_s
        while len(self.matching(needle)) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.matching(needle)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="session")
def callback_receiver() -> Iterator[CallbackReceiver]:
    receiver = CallbackReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="session")
def faulty_simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    """One simulator with every fault at even odds; tests pick keys by their draws."""
    with start_simulator(
        tmp_path_factory.mktemp("faulty-simulator"),
        FAULT_SEED,
        CALL_SECONDS,
        faults=ALL_FAULTS_SPEC,
        fault_delay_s=FAULT_DELAY_S,
        callback_secret=CALLBACK_SECRET,
        twilio_account_sid=TWILIO_ACCOUNT_SID,
        twilio_auth_token=TWILIO_AUTH_TOKEN,
    ) as process:
        yield process
