"""Voice gateways: the contract in ``base`` and the adapters behind it."""

from __future__ import annotations

from voice_notify.gateway.base import (
    CallRequest,
    CallState,
    CallStatus,
    GatewayError,
    GatewayPermanentError,
    GatewayTransientError,
    VoiceGateway,
)

__all__ = [
    "CallRequest",
    "CallState",
    "CallStatus",
    "GatewayError",
    "GatewayPermanentError",
    "GatewayTransientError",
    "VoiceGateway",
]
