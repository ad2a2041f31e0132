"""Policy every DAG of the project follows, checked on one DagBag for the session."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(DAGS.glob("*.py"))
# Generous: a DAG file that imports torch or pandas at module level takes seconds.
PARSE_BUDGET_S = 2.0


@pytest.fixture(scope="session")
def dagbag():
    from airflow.dag_processing.dagbag import BundleDagBag

    return BundleDagBag(
        dag_folder=DAGS, bundle_path=DAGS, known_pools={"cosyvoice_gpu", "voice_gateway"}
    )


def test_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert "voice_notice_daily" in dagbag.dag_ids


def test_owner_tags_and_retries(dagbag) -> None:
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags and "voice-notify" in dag.tags, dag_id
        assert dag.doc_md, dag_id
        for task in dag.tasks:
            assert task.owner == "voice-notify", (dag_id, task.task_id)
            assert task.retries >= 1, (dag_id, task.task_id)


def test_synthesis_runs_in_the_gpu_pool_labelled_by_batch(dagbag) -> None:
    dag = dagbag.dags["voice_notice_daily"]
    synthesize = dag.get_task("batch.synthesize")
    assert synthesize.pool == "cosyvoice_gpu"
    assert synthesize.map_index_template == "{{ batch_label }}"
    dial = dag.get_task("batch.dial")
    assert dial.pool == "voice_gateway"
    assert dial.upstream_task_ids == {"batch.synthesize"}
    assert set(dag.params.keys()) == {"campaign", "dry_run", "batch_size"}


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_parses_fast_without_heavy_imports(dag_file: Path) -> None:
    probe = (
        "import sys, time, runpy\n"
        "import airflow.sdk\n"
        "start = time.perf_counter()\n"
        f"runpy.run_path({str(dag_file)!r})\n"
        "elapsed = time.perf_counter() - start\n"
        "heavy = sorted(m for m in ('torch', 'pandas', 'boto3', 'torchaudio', 'wetext')"
        " if m in sys.modules)\n"
        "print(elapsed, ','.join(heavy))\n"
    )
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert time.perf_counter() - started < 120
    elapsed = float(out[0])
    heavy = out[1] if len(out) > 1 else ""
    assert heavy == "", f"{dag_file.name} imports {heavy} at module level"
    assert elapsed < PARSE_BUDGET_S, f"{dag_file.name} took {elapsed:.2f} s to parse"


def test_which_dags_start_paused(dagbag) -> None:
    """A new deployment calls nobody until an operator unpauses the campaign; settling,
    retention and enrollment must run without anyone's step."""
    paused = {dag_id: dag.is_paused_upon_creation for dag_id, dag in dagbag.dags.items()}
    assert paused == {
        "voice_notice_daily": True,
        "voice_notice_reconcile": False,
        "voice_audio_retention": False,
        "voice_profile_enroll": False,
    }
