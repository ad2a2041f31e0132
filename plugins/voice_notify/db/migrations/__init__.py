"""Alembic migrations of the ledger database (``voice-notify-db upgrade``)."""
