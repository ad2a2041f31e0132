"""Connections to the outside, from Airflow Connections: the CRM and ledger databases,
and the voice gateway.

Database engines come from the providers' own hooks (``PostgresHook``, ``MySqlHook``,
``SqliteHook``), which read the Connection the way Airflow documents it; only the
engine options voice-notify needs (``voice_notify.db.sql.engine_options``) are added.
One engine per Connection and process, so a task's statements share a pool.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import sqlalchemy as sa

from voice_notify.db.sql import engine_options

if TYPE_CHECKING:
    from voice_notify.gateway.base import VoiceGateway

_engines: dict[str, sa.Engine] = {}
_engines_lock = threading.Lock()


def _db_hook(conn_id: str):
    """The provider hook for a database Connection, by its type."""
    from airflow.sdk import BaseHook

    conn_type = (BaseHook.get_connection(conn_id).conn_type or "").lower()
    if conn_type in ("postgres", "postgresql"):
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        return PostgresHook(postgres_conn_id=conn_id)
    if conn_type in ("mysql", "mariadb"):
        from airflow.providers.mysql.hooks.mysql import MySqlHook

        return MySqlHook(mysql_conn_id=conn_id)
    if conn_type == "sqlite":
        from airflow.providers.sqlite.hooks.sqlite import SqliteHook

        return SqliteHook(sqlite_conn_id=conn_id)
    raise ValueError(f"connection {conn_id!r} has unsupported type {conn_type!r}")


def _url(hook) -> sa.URL:
    try:
        url = sa.make_url(hook.sqlalchemy_url)
    except NotImplementedError:
        url = sa.make_url(hook.get_uri())
    if url.get_backend_name() == "postgresql" and url.get_driver_name() != "psycopg2":
        url = url.set(drivername="postgresql+psycopg2")
    if url.get_backend_name() == "mysql" and "charset" not in url.query:
        # Names, templates and dialect text are Chinese: never the server's latin1 default.
        url = url.update_query_dict({"charset": "utf8mb4"})
    return url


def engine_for(conn_id: str) -> sa.Engine:
    """The SQLAlchemy engine of a database Connection (one per Connection and process)."""
    with _engines_lock:
        engine = _engines.get(conn_id)
        if engine is None:
            url = _url(_db_hook(conn_id))
            engine = sa.create_engine(url, **engine_options(url))
            _engines[conn_id] = engine
        return engine


def dispose_engines() -> None:
    """Forget every engine (tests that change Connections between cases)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def gateway_from_connection(conn_id: str) -> VoiceGateway:
    """The gateway a ``voice_gateway`` Connection describes.

    The Connection's extra says which adapter (``{"kind": "simulator"}``, ``"http"``,
    ``"twilio"`` or ``"sip"``); host and port say where it listens (for SIP: the SIP
    call service, ``voice_notify.gateway.sip.service``). Credentials, when an adapter
    needs them, are the Connection's login and password.
    """
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    extra = conn.extra_dejson
    kind = extra.get("kind", "simulator")
    scheme = conn.schema or "http"
    port = f":{conn.port}" if conn.port else ""
    if kind in ("http", "simulator"):
        # Both speak the native JSON protocol; "simulator" only names itself in the ledger.
        from voice_notify.gateway.http import HttpGateway, SimulatorGateway

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
        from voice_notify.gateway.sip.gateway import SipGateway

        # host/port are the SIP call service (which holds the trunk's settings); the
        # password is the secret it checks requests with and signs callbacks with.
        return SipGateway(
            extra.get("base_url") or f"{scheme}://{conn.host}{port}",
            conn.password or "",
            timeout_s=float(extra.get("timeout_s", 10.0)),
            status_callback_base=extra.get("status_callback_base"),
        )
    raise ValueError(f"connection {conn_id!r}: unknown gateway kind {kind!r}")


def gateway_secret(conn_id: str) -> str | None:
    """The secret that signs a gateway's status callbacks (the Connection's password)."""
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(conn_id).password or None
