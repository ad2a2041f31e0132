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
    "gateway_from_connection",
]


def gateway_from_connection(conn_id: str) -> VoiceGateway:
    """The gateway a ``voice_gateway`` Connection describes.

    The Connection's extra says which adapter (``{"kind": "simulator"}`` or
    ``{"kind": "sip", "state_dir": ...}``, see ``SipSettings``); host and port say
    where it listens (for SIP: the trunk). Credentials, when an adapter needs them, are
    the Connection's login and password.
    """
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    extra = conn.extra_dejson
    kind = extra.get("kind", "simulator")
    scheme = conn.schema or "http"
    port = f":{conn.port}" if conn.port else ""
    if kind in ("http", "simulator"):
        # Both speak the native JSON protocol; "simulator" only names itself in the ledger.
        from voice_notify.gateway.http import HttpGateway
        from voice_notify.gateway.simulator_client import SimulatorGateway

        adapter = SimulatorGateway if kind == "simulator" else HttpGateway
        return adapter(
            extra.get("base_url") or f"{scheme}://{conn.host}{port}",
            timeout_s=float(extra.get("timeout_s", 5.0)),
            status_callback_base=extra.get("status_callback_base"),
        )
    if kind == "twilio":
        # login = account SID, password = auth token; base_url only to aim it at a simulator.
        from voice_notify.gateway.twilio import TwilioGateway

        return TwilioGateway(
            conn.login,
            conn.password,
            extra["from_number"],
            base_url=extra.get("base_url"),
            status_callback_base=extra.get("status_callback_base"),
            timeout_s=float(extra.get("timeout_s", 10.0)),
        )
    if kind == "sip":
        from voice_notify.gateway.sip.gateway import SipGateway, SipSettings

        # host/port are the trunk; login/password answer its digest challenge.
        return SipGateway(
            SipSettings.from_connection(conn.host, conn.port, extra, conn.login, conn.password)
        )
    raise ValueError(f"connection {conn_id!r}: unknown gateway kind {kind!r}")
