"""Airflow plugin: voice-notify on the API server.

- ``/voice-notify``: the gateway status-callback endpoint. Airflow does not authenticate
  plugin routes, so every request is verified there: HMAC for the generic HTTP gateway,
  X-Twilio-Signature for Twilio. Unsigned, forged or stale callbacks get 403 and change
  nothing. Verified events go to ``call_events`` (deduplicated).
- ``/voice-notify-console``: the notice console for operators, behind Airflow's own
  authentication and authorization (``voice_notify.airflow.console_app``), placed in
  Airflow's navigation (Browse), on every DAG run (its notices, its campaign report) and
  on every task instance (a mapped batch's notices) by ``external_views``.
"""

from __future__ import annotations

from typing import ClassVar

from airflow.plugins_manager import AirflowPlugin

from voice_notify.airflow.callbacks_app import callbacks_app
from voice_notify.airflow.console_app import URL_PREFIX, console_app

_RUN = "dag_id={DAG_ID}&run_id={RUN_ID}"


class VoiceNotifyPlugin(AirflowPlugin):
    name = "voice_notify"
    fastapi_apps: ClassVar[list[dict]] = [
        {"app": callbacks_app, "url_prefix": "/voice-notify", "name": "voice-notify callbacks"},
        {"app": console_app, "url_prefix": URL_PREFIX, "name": "voice-notify notice console"},
    ]
    # The UI fills {DAG_ID}, {RUN_ID}, {TASK_ID} and {MAP_INDEX} in the links it shows on a
    # run or task instance; the console finds the campaign date (the run's logical date)
    # and the batch (the mapped index) from them.
    external_views: ClassVar[list[dict]] = [
        {
            "name": "Notice console",
            "href": f"{URL_PREFIX}/notices",
            "destination": "nav",
            "category": "browse",
            "url_route": "voice-notify-console",
        },
        {
            "name": "Campaign notices",
            "href": f"{URL_PREFIX}/notices?{_RUN}",
            "destination": "dag_run",
            "url_route": "voice-notify-run-notices",
        },
        {
            "name": "Campaign report",
            "href": f"{URL_PREFIX}/report?{_RUN}",
            "destination": "dag_run",
            "url_route": "voice-notify-run-report",
        },
        {
            "name": "Batch notices",
            "href": f"{URL_PREFIX}/notices?{_RUN}&task_id={{TASK_ID}}&map_index={{MAP_INDEX}}",
            "destination": "task_instance",
            "url_route": "voice-notify-task-notices",
        },
    ]
