"""Polling many calls at once: the HTTP adapter's bulk status against the simulator."""

from __future__ import annotations

import time

from voice_notify.gateway.base import CallRequest, CallState, call_statuses
from voice_notify.gateway.http import SimulatorGateway


def _place(gateway: SimulatorGateway, n: int, audio_base_url: str) -> list[str]:
    ids = []
    for i in range(n):
        request = CallRequest(
            to=f"+86138123{i:05d}",
            idempotency_key=f"bulk-{i}",
            audio_url=f"{audio_base_url}/tone.wav",
        )
        ids.append(gateway.place_call(request).call_id)
    return ids


def test_statuses_of_many_calls_in_pages(simulator, audio_base_url) -> None:
    gateway = SimulatorGateway(simulator.url)
    ids = _place(gateway, 7, audio_base_url)
    time.sleep(0.5)  # the simulator's calls end after 0.2 s
    found = gateway.call_statuses([*ids, "sim-unknown"])
    assert set(found) == set(ids)  # the unknown id is left out, not an error
    assert all(status.state.terminal for status in found.values())
    one_by_one = {i: gateway.call_status(i).state for i in ids}
    assert {i: s.state for i, s in found.items()} == one_by_one


def test_adapters_without_bulk_are_asked_one_by_one(simulator, audio_base_url) -> None:
    gateway = SimulatorGateway(simulator.url)
    ids = _place(gateway, 3, audio_base_url)

    class OneByOne:
        name = "plain"

        def call_status(self, call_id):
            return gateway.call_status(call_id)

    found = call_statuses(OneByOne(), [*ids, "sim-unknown"])
    assert set(found) == set(ids)
    assert all(isinstance(s.state, CallState) for s in found.values())
