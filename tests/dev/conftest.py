"""The simulator's tests use the gateway tests' fixtures (prompts over HTTP, the callback
receiver, the faulty simulator): a conftest is seen only by its own directory."""

from __future__ import annotations

from tests.gateway.conftest import (  # noqa: F401 (fixtures)
    audio_base_url,
    callback_receiver,
    faulty_simulator,
)
