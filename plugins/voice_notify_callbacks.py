"""Airflow plugin: the gateway status-callback endpoint on the API server.

Mounted at ``/voice-notify``. Airflow does not authenticate plugin routes, so
every request is verified here: HMAC for the generic HTTP gateway,
X-Twilio-Signature for Twilio. Unsigned, forged or stale callbacks get 403 and
change nothing. Verified events go to ``call_events`` (deduplicated).
"""

from __future__ import annotations

from typing import ClassVar

from airflow.plugins_manager import AirflowPlugin

from voice_notify.airflow.callbacks_app import callbacks_app


class VoiceNotifyPlugin(AirflowPlugin):
    name = "voice_notify"
    fastapi_apps: ClassVar[list[dict]] = [
        {"app": callbacks_app, "url_prefix": "/voice-notify", "name": "voice-notify callbacks"}
    ]
