"""Only ``voice_notify.airflow`` talks to Airflow: every other package imports without it."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import voice_notify

ROOT = Path(__file__).resolve().parents[2]
# The Airflow-facing layer, and Alembic's environment (run by Alembic, not imported).
AIRFLOW_SIDE = ("voice_notify.airflow", "voice_notify.db.migrations")


def _domain_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(voice_notify.__path__, "voice_notify."):
        if not info.name.startswith(AIRFLOW_SIDE):
            names.append(info.name)
    return sorted(names)


DOMAIN = _domain_modules()
PROBE = """
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
leaked = sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow."))
print(",".join(leaked))
"""


def test_the_domain_is_what_the_layout_promises() -> None:
    packages = {name.split(".")[1] for name in DOMAIN}
    assert {"extract", "plan", "dial", "settle", "report", "voices", "gateway", "db"} <= packages
    assert len(DOMAIN) > 30


@pytest.mark.parametrize(
    "modules",
    [DOMAIN, ["synthesis.worker", "synthesis.synthesizer", "synthesis.text"]],
    ids=["voice_notify", "synthesis"],
)
def test_domain_modules_import_no_airflow(modules: list[str]) -> None:
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, *modules],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": f"{ROOT / 'plugins'}:{ROOT}", "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.strip() == "", f"Airflow imported by the domain: {probe.stdout}"


def test_the_airflow_layer_is_where_airflow_is_imported() -> None:
    importers = set()
    for path in (ROOT / "plugins" / "voice_notify").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if "from airflow" in text or "import airflow" in text:
            importers.add(path.relative_to(ROOT / "plugins").parts[1])
    assert importers == {"airflow"}


def test_no_table_is_created_at_run_time() -> None:
    """The schema changes only through migrations (``voice-notify-db upgrade``)."""
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "plugins" / "voice_notify").rglob("*.py")
        if "create_all(" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []
