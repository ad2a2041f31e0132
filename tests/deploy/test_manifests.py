"""Kubernetes manifests, rendered synthesis pod specs and the Helm values, without a cluster.

- Every object in ``docker/kubernetes/*.yaml`` (values aside) validates, strictly (no
  unknown fields), against the API schemas of Kubernetes ``K8S_VERSION``
  (``kubernetes-validate``, requirements-dev.txt).
- The synthesis pod the operator builds, for a first try and a retry, validates the same
  way and uses exactly the GPU node pool objects the manifests create (priority class,
  weights claim, S3 Secret, namespace).
- The chart values validate against the official chart's ``values.schema.json`` of the
  version pinned in docker/DEPLOYMENT.md when ``VOICE_NOTIFY_HELM_SCHEMA`` names that
  file (``helm pull apache-airflow/airflow --version <pinned> --untar`` puts it in
  ``airflow/values.schema.json``); the repository carries no copy. Without it that test
  skips and says so. The values' Kubernetes fragments (resources) and their Secret
  references are checked either way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.deploy]

K8S_VERSION = "1.34.0"
MANIFESTS = REPO_ROOT / "docker" / "kubernetes"
VALUES = MANIFESTS / "airflow-values.yaml"
HELM_CHART_VERSION = "1.18.0"
SCHEMA_ENV = "VOICE_NOTIFY_HELM_SCHEMA"
COMPONENTS = ("apiServer", "scheduler", "dagProcessor", "triggerer", "workers")


def _objects() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if path == VALUES:
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((path.name, doc))
    return found


def _named(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in _objects() if d["kind"] == kind}


def _validate(doc: dict[str, Any]) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize(
    "source,doc",
    _objects(),
    ids=[f"{name}:{d['kind']}/{d['metadata']['name']}" for name, d in _objects()],
)
def test_every_manifest_validates(source: str, doc: dict[str, Any]) -> None:
    _validate(doc)


def _pod_dict(pod) -> dict[str, Any]:
    from kubernetes.client import ApiClient

    body = ApiClient().sanitize_for_serialization(pod)
    body.setdefault("apiVersion", "v1")
    body.setdefault("kind", "Pod")
    return body


@pytest.mark.parametrize("try_number", [1, 2])
def test_the_rendered_synthesis_pod_validates_and_uses_the_gpu_pool(
    kubernetes_settings, try_number: int
) -> None:
    from tests.synthesis.test_pods import BATCH, _mapped_operator, _pod_for_try

    _, pod = _pod_for_try(_mapped_operator(), BATCH, try_number=try_number)
    body = _pod_dict(pod)
    _validate(body)
    spec = body["spec"]
    assert spec["priorityClassName"] in _named("PriorityClass")
    assert _named("PriorityClass")[spec["priorityClassName"]].get("preemptionPolicy") == "Never"
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in spec["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims <= set(_named("PersistentVolumeClaim"))
    (base,) = [c for c in spec["containers"] if c["name"] == "base"]
    assert base["resources"]["limits"]["nvidia.com/gpu"] == "1"
    secrets = {e["secretRef"]["name"] for e in base.get("envFrom", []) if "secretRef" in e}
    declared = _named("Secret")
    assert secrets and secrets <= set(declared)
    namespace = body["metadata"]["namespace"]
    assert all(declared[s]["metadata"]["namespace"] == namespace for s in secrets)
    assert namespace in _named("Namespace")
    print(json.dumps({"try": try_number, "pod": "valid", "kubernetes": K8S_VERSION}))


@pytest.fixture
def kubernetes_settings(monkeypatch: pytest.MonkeyPatch):
    from voice_notify.settings import get_settings

    monkeypatch.setenv("VOICE_NOTIFY_SYNTHESIS_MODE", "kubernetes")
    monkeypatch.setenv("VOICE_NOTIFY_SYNTHESIS_ENGINE", "cosyvoice3")
    monkeypatch.setenv(
        "AIRFLOW_CONN_KUBERNETES_DEFAULT", '{"conn_type": "kubernetes", "extra": {}}'
    )
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def _values() -> dict[str, Any]:
    return yaml.safe_load(VALUES.read_text())


def test_the_values_validate_against_the_chart_schema() -> None:
    schema_path = os.environ.get(SCHEMA_ENV)
    if not schema_path:
        pytest.skip(
            f"{SCHEMA_ENV} is not set: the apache-airflow chart {HELM_CHART_VERSION} "
            "values.schema.json is not in the repository (see docker/DEPLOYMENT.md)"
        )
    import jsonschema

    schema = json.loads(Path(schema_path).read_text())
    errors = sorted(
        jsonschema.Draft7Validator(schema).iter_errors(_values()), key=lambda e: list(e.path)
    )
    assert not errors, [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors]


def test_the_values_fragments_are_valid_kubernetes() -> None:
    values = _values()
    assert values["executor"] == "CeleryExecutor"
    for component in COMPONENTS:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": component.lower()},
            "spec": {
                "containers": [
                    {"name": "c", "image": "x", "resources": values[component]["resources"]}
                ]
            },
        }
        _validate(pod)


def test_the_values_read_secrets_the_manifests_declare() -> None:
    values = _values()
    declared = _named("Secret")
    for ref in values["secret"]:
        assert ref["secretName"] in declared, ref
        assert ref["secretKey"] in declared[ref["secretName"]]["stringData"], ref
    for key in ("fernetKeySecretName", "apiSecretKeySecretName", "jwtSecretName"):
        assert values[key] in declared
    assert values["data"]["metadataSecretName"] in declared
    conns = {r["envName"] for r in values["secret"]}
    assert conns == {
        "AIRFLOW_CONN_CRM_DB",
        "AIRFLOW_CONN_VOICE_NOTIFY_S3",
        "AIRFLOW_CONN_VOICE_GATEWAY",
    }
    # The public route reaches only the callback prefix of the chart's API server.
    (ingress,) = _named("Ingress").values()
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/voice-notify/callbacks"
    assert path["backend"]["service"]["name"].endswith("-api-server")
    env = {e["name"]: e["value"] for e in values["env"]}
    assert env["VOICE_NOTIFY_STATUS_CALLBACK_URL"].endswith("/voice-notify/callbacks/http") and env[
        "VOICE_NOTIFY_STATUS_CALLBACK_URL"
    ].startswith(f"https://{rule['host']}/")
