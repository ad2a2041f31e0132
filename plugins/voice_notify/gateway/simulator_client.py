"""The ``VoiceGateway`` adapter for the simulator's native protocol: ``HttpGateway``.

Kept under this name because the simulator was its first server; the adapter
itself is the generic HTTP gateway in ``http.py``.
"""

from __future__ import annotations

from voice_notify.gateway.http import HttpGateway
from voice_notify.phone import mask_phone

__all__ = ["SimulatorGateway", "mask_phone"]


class SimulatorGateway(HttpGateway):
    """An ``HttpGateway`` that reports itself as the simulator (ledger ``gateway`` column)."""

    name = "simulator"
