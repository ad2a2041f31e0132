"""The notice console: one notice from CRM row to far-end outcome, for operators.

Domain side only (no Airflow): what the pages show (``queries``), the preview of a notice
before a campaign (``preview``) and the pages themselves (``pages``, Jinja templates in
``templates/``). The Airflow plugin's FastAPI app (``voice_notify.airflow.console_app``)
serves them behind Airflow's own authentication and authorization.
"""
