"""The house pod operator: one synthesis batch as a pod on the GPU node pool.

Every cluster default of voice-notify's synthesis pods lives here, each with the
reason for it, so DAG files only say *which batch*::

    SynthesisPodOperator.partial(task_id="synthesize", pool="cosyvoice_gpu", ...)
        .expand(batch_key=batch_keys)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.secret import Secret
from kubernetes.client import models as k8s

from voice_notify.settings import Settings, get_settings

#: Kubernetes Secret holding the S3 credentials as environment variables
#: (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, AWS_ENDPOINT_URL_S3).
S3_SECRET = "voice-notify-s3"
#: ReadOnlyMany claim holding the CosyVoice3 weights, filled once by the platform team.
MODEL_CLAIM = "cosyvoice3-weights"
MODEL_MOUNT = "/models"
#: Where the provider's XCom sidecar reads the task's return value.
XCOM_FILE = "/airflow/xcom/return.json"
#: PriorityClass of the GPU node pool's synthesis pods (docker/kubernetes/synthesis-gpu.yaml).
PRIORITY_CLASS = "voice-notify-synthesis"
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9_.-]+")


def batch_label(batch_key: str) -> str:
    """A Kubernetes label value naming a batch: ``2026-11-26.all.batch-0000``."""
    parts = batch_key.removesuffix(".jsonl").split("/")
    # campaigns/<date>/<campaign>/batches/<batch>
    picked = [parts[1], parts[2], parts[-1]] if len(parts) >= 5 else parts[-1:]
    return _LABEL_VALUE.sub("-", ".".join(picked)).strip("-_.")[:63].rstrip("-_.")


def _gpu_placement() -> dict[str, Any]:
    """One whole GPU by limit, on the GPU node pool only, at the synthesis priority."""
    return {
        "container_resources": k8s.V1ResourceRequirements(
            requests={"cpu": "2", "memory": "12Gi"},
            limits={"nvidia.com/gpu": "1", "memory": "16Gi"},
        ),
        "node_selector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [
            k8s.V1Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
        ],
        "priority_class_name": PRIORITY_CLASS,
    }


def _model_volume() -> dict[str, Any]:
    """The weights, read-only from their claim; nothing is downloaded at run time."""
    return {
        "volumes": [
            k8s.V1Volume(
                name=MODEL_CLAIM,
                persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
                    claim_name=MODEL_CLAIM, read_only=True
                ),
            )
        ],
        "volume_mounts": [
            k8s.V1VolumeMount(name=MODEL_CLAIM, mount_path=MODEL_MOUNT, read_only=True)
        ],
    }


def _pod_lifecycle() -> dict[str, Any]:
    """Results through the XCom sidecar, logs followed, a grace period for SIGTERM, minutes
    for a GPU node to scale up and pull the image, failed pods kept for their logs."""
    return {
        "do_xcom_push": True,
        "get_logs": True,
        "termination_grace_period": 120,
        "startup_timeout_seconds": 900,
        "on_finish_action": "delete_succeeded_pod",
    }


def cluster_defaults(settings: Settings) -> dict[str, Any]:
    """Every cluster default of a synthesis pod (each explained on the operator)."""
    return {
        "image": settings.synthesis_image,
        "namespace": settings.synthesis_namespace,
        "name": "vn-synthesis",
        "image_pull_policy": "IfNotPresent",
        "cmds": ["python", "-m", "synthesis.worker"],
        # The batch's arguments and label are set once the batch key is known (at render
        # time: in a mapped task group the key is the group's mapped argument).
        "labels": {"app": "voice-notify-synthesis"},
        "secrets": [Secret("env", None, S3_SECRET)],
        # The pod runs in another environment: settings it reads travel explicitly.
        "env_vars": {
            "VOICE_NOTIFY_MODEL_DIR": settings.synthesis_model_dir,
            "VOICE_NOTIFY_KEEP_MASTER": settings.keep_master,
        },
        **_gpu_placement(),
        **_model_volume(),
        **_pod_lifecycle(),
    }


class SynthesisPodOperator(KubernetesPodOperator):
    """Runs ``python -m synthesis.worker`` for one batch manifest in a GPU pod.

    The cluster defaults, and why:

    - **image**: the synthesis image (``docker/synthesis/Dockerfile``), tag from the
      ``VOICE_NOTIFY_SYNTHESIS_IMAGE`` setting, ``IfNotPresent`` because tags are
      immutable releases and the image is large.
    - **GPU**: a limit of one ``nvidia.com/gpu`` (the device plugin only schedules whole
      GPUs by limit); the ``cosyvoice_gpu`` pool bounds how many pods run at once.
    - **node selector and toleration**: GPU nodes carry ``nvidia.com/gpu.present=true``
      (GPU feature discovery) and are tainted ``nvidia.com/gpu:NoSchedule`` so that only
      pods asking for a GPU land there.
    - **model volume**: the weights come read-only from the ``cosyvoice3-weights`` claim
      at ``/models``; the worker refuses to download anything at run time.
    - **secrets**: S3 credentials enter as environment variables from the Kubernetes
      Secret ``voice-notify-s3``, never as arguments (arguments show in the UI, in pod
      specs and in ``ps``).
    - **labels**: the provider labels every pod with dag, task, run, map index and try, and
      a retry looks its pod up by them; ``voice-notify/batch`` and ``app`` add the batch's
      name so an operator can find the pod of a batch with ``kubectl get pods -l``. The
      work itself is idempotent (the worker resumes by content-addressed keys), so a retry
      that starts a fresh pod or reattaches to the old one ends with the same results.
    - **results**: the worker writes its summary (``batch_key``, ``results_key`` and
      counts: S3 keys, never audio) to the XCom sidecar's file; the dial step reads it.
    - **priority class**: ``voice-notify-synthesis`` (``docker/kubernetes/synthesis-gpu.yaml``):
      a campaign's synthesis must finish before calling hours, so its pods go ahead of
      batch work waiting for the same GPU nodes, without preempting anything.
    - **termination grace**: SIGTERM lets the worker finish the notice in hand and flush
      (exit 75); two minutes covers the longest notice on a GPU.
    - **finished pods**: succeeded pods are deleted, failed ones kept for their logs.

    :param batch_key: the batch manifest's S3 key (the mapped argument)
    :param engine: synthesis engine in the pod (default: the ``synthesis_engine`` setting)
    """

    template_fields: Sequence[str] = (*KubernetesPodOperator.template_fields, "batch_key")

    def __init__(
        self,
        *,
        batch_key: str,
        engine: str | None = None,
        fallback_engine: str | None = None,
        **kwargs: Any,
    ) -> None:
        settings = get_settings()
        engine = engine or settings.synthesis_engine
        fallback_engine = fallback_engine or settings.synthesis_fallback_engine
        for name, value in cluster_defaults(settings).items():
            kwargs.setdefault(name, value)
        super().__init__(**kwargs)
        self.batch_key = batch_key
        self.engine = engine
        self.fallback_engine = fallback_engine

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        super().render_template_fields(context, jinja_env)
        settings = get_settings()
        if not self.arguments:
            self.arguments = [
                "--batch",
                f"s3://{settings.bucket}/{self.batch_key}",
                "--engine",
                self.engine,
                "--fallback-engine",
                self.fallback_engine,
                "--model-dir",
                settings.synthesis_model_dir,
                "--xcom-file",
                XCOM_FILE,
            ]
        self.labels = {**self.labels, "voice-notify/batch": batch_label(self.batch_key)}

    def execute(self, context: Any) -> Any:
        # The same label as the local task's, for the mapped instance's map_index_template.
        context["batch_label"] = self.batch_key.rsplit("/", 1)[-1]
        return super().execute(context)
