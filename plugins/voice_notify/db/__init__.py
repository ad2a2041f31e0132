"""The ledger database: its schema (``schema``), migrations (``migrate``) and SQL helpers
(``sql``). Engines from Airflow Connections are the Airflow layer's (``airflow.hooks``)."""
