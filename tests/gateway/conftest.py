"""Fixtures for the gateway tests: prompts served over loopback HTTP, as S3 would serve them."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile


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
