"""The ``VoiceGateway`` adapter for SIP: the ``dial`` task's side of the SIP call service.

Calls do not run in the task that places them (Airflow ends a finished task's process,
threads and children included); they run in the call service (``service.py``), which
speaks voice-notify's HTTP gateway protocol. So this adapter is the HTTP adapter,
naming itself ``sip`` in the ledger and signing every request with the shared secret
the service checks (the ``voice_gateway`` Connection's password, which also verifies
the service's status callbacks).

The call id is the service's (``sip-…``, fixed when the call is accepted); the SIP
Call-ID the carrier saw is in the call book (``sip_calls.sip_call_id``).
"""

from __future__ import annotations

from voice_notify.gateway.http import HttpGateway

__all__ = ["SipGateway"]


class SipGateway(HttpGateway):
    """Places calls through the SIP call service.

    :param base_url: the service's URL (``http://voice-notify-sip:8089``)
    :param secret: the shared secret the service checks requests with
    :param timeout_s: seconds per request; the service fetches the audio before it
        accepts a call, so keep this above the audio store's worst answer time
    """

    name = "sip"

    def __init__(
        self,
        base_url: str,
        secret: str,
        timeout_s: float = 10.0,
        *,
        status_callback_base: str | None = None,
    ) -> None:
        if not secret:
            raise ValueError("the SIP call service needs the shared secret (Connection password)")
        super().__init__(
            base_url,
            timeout_s,
            status_callback_base=status_callback_base,
            request_secret=secret,
        )
