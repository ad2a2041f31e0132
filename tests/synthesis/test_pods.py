"""The synthesis pod spec, rendered without a cluster (as the scheduler would build it)."""

from __future__ import annotations

import datetime as dt
import importlib.util
import sys
import types
from pathlib import Path

import pytest

BATCH = "campaigns/2026-11-26/all/batches/batch-0003.jsonl"
DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "voice_notice_daily.py"


@pytest.fixture
def kubernetes_settings(monkeypatch: pytest.MonkeyPatch):
    from voice_notify.settings import get_settings

    monkeypatch.setenv("VOICE_NOTIFY_SYNTHESIS_MODE", "kubernetes")
    monkeypatch.setenv("VOICE_NOTIFY_SYNTHESIS_ENGINE", "cosyvoice3")
    monkeypatch.setenv("VOICE_NOTIFY_SYNTHESIS_IMAGE", "registry.local/vn-synthesis:1.2.3")
    monkeypatch.setenv("VOICE_NOTIFY_BUCKET", "vn-prod")
    monkeypatch.setenv("VOICE_NOTIFY_KEEP_MASTER", "none")
    monkeypatch.setenv(
        "AIRFLOW_CONN_KUBERNETES_DEFAULT", '{"conn_type": "kubernetes", "extra": {}}'
    )
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def _pod_for_try(mapped, batch_key: str, try_number: int, map_index: int = 3):
    """Unmap the mapped operator for one input (a private API: only here), render its
    templates and build the pod request the provider would send."""
    operator = mapped.unmap({"batch_key": batch_key})
    ti = types.SimpleNamespace(
        dag_id="voice_notice_daily",
        task_id="synthesize",
        try_number=try_number,
        map_index=map_index,
    )
    context = {
        "ti": ti,
        "run_id": "scheduled__2026-11-26T06:00:00+00:00",
        "dag": types.SimpleNamespace(dag_id="voice_notice_daily"),
        "ds": "2026-11-26",
    }
    operator.render_template_fields(context)
    return operator, operator.build_pod_request_obj(context, dry_run=True)


def _mapped_operator():
    from airflow.sdk import DAG

    from voice_notify.airflow.operators import SynthesisPodOperator

    with DAG("pod_spec_test", schedule=None, start_date=dt.datetime(2026, 1, 1)):
        return SynthesisPodOperator.partial(
            task_id="synthesize", pool="cosyvoice_gpu", map_index_template="{{ batch_label }}"
        ).expand(batch_key=[BATCH])


def test_the_pod_holds_every_cluster_default(kubernetes_settings) -> None:
    operator, pod = _pod_for_try(_mapped_operator(), BATCH, try_number=1)
    (container,) = [c for c in pod.spec.containers if c.name == "base"]
    assert container.image == "registry.local/vn-synthesis:1.2.3"
    assert container.command == ["python", "-m", "synthesis.worker"]
    args = container.args
    assert args[args.index("--batch") + 1] == f"s3://vn-prod/{BATCH}"
    assert args[args.index("--engine") + 1] == "cosyvoice3"
    assert args[args.index("--xcom-file") + 1] == "/airflow/xcom/return.json"
    assert container.resources.limits["nvidia.com/gpu"] == "1"
    assert pod.spec.node_selector == {"nvidia.com/gpu.present": "true"}
    (toleration,) = pod.spec.tolerations
    assert (toleration.key, toleration.effect) == ("nvidia.com/gpu", "NoSchedule")
    (volume,) = [v for v in pod.spec.volumes if v.name == "cosyvoice3-weights"]
    assert volume.persistent_volume_claim.claim_name == "cosyvoice3-weights"
    assert volume.persistent_volume_claim.read_only is True
    (mount,) = [m for m in container.volume_mounts if m.name == "cosyvoice3-weights"]
    assert mount.mount_path == "/models" and mount.read_only
    # Credentials come from a Kubernetes Secret, never from the arguments.
    assert [e.secret_ref.name for e in container.env_from if e.secret_ref] == ["voice-notify-s3"]
    assert not any("AWS" in a or "secret" in a.lower() for a in args)
    # The deployment's master setting reaches the worker in the pod.
    env = {e.name: e.value for e in container.env}
    assert env["VOICE_NOTIFY_KEEP_MASTER"] == "none"
    # Results travel as S3 keys through the XCom sidecar.
    assert any(c.name == "airflow-xcom-sidecar" for c in pod.spec.containers)
    assert pod.metadata.labels["voice-notify/batch"] == "2026-11-26.all.batch-0003"
    assert pod.metadata.labels["app"] == "voice-notify-synthesis"
    assert pod.metadata.namespace == "voice-notify"
    assert pod.spec.termination_grace_period_seconds == 120
    assert operator.pool == "cosyvoice_gpu"


def test_a_retry_builds_the_same_work_under_labels_that_find_the_first_pod(
    kubernetes_settings,
) -> None:
    mapped = _mapped_operator()
    _, first = _pod_for_try(mapped, BATCH, try_number=1)
    _, second = _pod_for_try(mapped, BATCH, try_number=2)
    assert first.spec.containers[0].args == second.spec.containers[0].args
    assert first.metadata.labels["try_number"] == "1"
    assert second.metadata.labels["try_number"] == "2"
    stable = {"dag_id", "task_id", "run_id", "map_index", "voice-notify/batch", "app"}
    for name in stable:
        assert first.metadata.labels[name] == second.metadata.labels[name], name
    other_batch = BATCH.replace("0003", "0004")
    _, neighbour = _pod_for_try(mapped, other_batch, try_number=1, map_index=4)
    assert neighbour.metadata.labels["voice-notify/batch"].endswith("batch-0004")


def test_the_daily_dag_runs_synthesis_as_pods_in_kubernetes_mode(kubernetes_settings) -> None:
    from voice_notify.airflow.operators import SynthesisPodOperator

    spec = importlib.util.spec_from_file_location("vn_dag_kubernetes", DAG_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["vn_dag_kubernetes"] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop("vn_dag_kubernetes", None)
    dag = module.voice_notice_daily()  # the @dag function builds the DAG
    synthesize = dag.get_task("batch.synthesize")
    assert synthesize.operator_class is SynthesisPodOperator
    assert synthesize.pool == "cosyvoice_gpu"
    assert synthesize.map_index_template == "{{ batch_label }}"
    # Each batch's dial waits for that batch's pod only (a mapped task group).
    assert dag.get_task("batch.dial").upstream_task_ids == {"batch.synthesize"}
