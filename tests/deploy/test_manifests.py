"""Kubernetes manifests, rendered synthesis pod specs and the Helm values, without a cluster.

- Every object in ``docker/kubernetes/*.yaml`` (values aside) validates, strictly (no
  unknown fields), against the API schemas of Kubernetes ``K8S_VERSION``
  (``kubernetes-validate``, requirements-dev.txt).
- The synthesis pod the operator builds, for a first try and a retry, validates the same
  way and uses exactly the GPU node pool objects the manifests create (priority class,
  weights claim, S3 Secret, namespace).
- Every key path of the chart values, and the type of its value, is one the official
  chart declares: ``tests/deploy/data/chart_keys.yaml`` lists the paths and types the
  values may use, written for this project and verified against the chart's
  ``values.schema.json`` (its header names the chart version, the schema's commit and the
  date). The repository carries no copy of that schema.
- When ``VOICE_NOTIFY_HELM_SCHEMA`` names the schema file of the chart version pinned in
  docker/DEPLOYMENT.md (``helm pull apache-airflow/airflow --version <pinned> --untar``
  puts it in ``airflow/values.schema.json``), the values also validate against the whole
  schema (Draft 7) and every entry of the key list is checked against it; without the
  variable that test skips and says so.
- The values' Kubernetes fragments (resources) and their Secret references are checked
  either way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
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
CHART_KEYS = Path(__file__).parent / "data" / "chart_keys.yaml"
DEPLOYMENT_DOC = REPO_ROOT / "docker" / "DEPLOYMENT.md"
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


# A key path is a tuple of tokens: a key, ``[]`` for every item of a list; in the key
# list, ``*`` stands for any key of a map.
KeyPath = tuple[str, ...]
_JSON_TYPES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    dict: "object",
    list: "array",
    type(None): "null",
}


def _parse_path(text: str) -> KeyPath:
    tokens: list[str] = []
    for part in text.split("."):
        key, brackets, _ = part.partition("[]")
        tokens.append(key)
        if brackets:
            tokens.append("[]")
    return tuple(tokens)


def _show(path: KeyPath) -> str:
    return ".".join(path).replace(".[]", "[]")


def _value_paths(value: Any, path: KeyPath = ()) -> Iterator[tuple[KeyPath, Any]]:
    """Every node below the root of the values, with its key path."""
    children: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        children = [(str(key), item) for key, item in value.items()]
    elif isinstance(value, list):
        children = [("[]", item) for item in value]
    for token, item in children:
        yield (*path, token), item
        yield from _value_paths(item, (*path, token))


def _chart_keys() -> dict[str, Any]:
    return yaml.safe_load(CHART_KEYS.read_text())


def _key_specs() -> dict[KeyPath, dict[str, Any]]:
    """The key list's entries as {path: {"type": [...], "enum": [...] or None}}."""
    specs = {}
    for text, spec in _chart_keys()["keys"].items():
        if not isinstance(spec, dict):
            spec = {"type": spec}
        types = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
        specs[_parse_path(text)] = {"type": types, "enum": spec.get("enum")}
    return specs


def _spec_for(path: KeyPath, specs: dict[KeyPath, dict[str, Any]]) -> dict[str, Any] | None:
    if path in specs:
        return specs[path]
    for pattern, spec in specs.items():
        if len(pattern) == len(path) and all(
            p == t or (p == "*" and t != "[]") for p, t in zip(pattern, path, strict=True)
        ):
            return spec
    return None


def _key_errors(values: dict[str, Any]) -> list[str]:
    specs = _key_specs()
    errors = []
    for path, value in _value_paths(values):
        spec = _spec_for(path, specs)
        if spec is None:
            errors.append(
                f"{_show(path)}: not a key of the chart (tests/deploy/data/chart_keys.yaml)"
            )
            continue
        kind = _JSON_TYPES[type(value)]
        allowed = spec["type"]
        if kind not in allowed and not (kind == "integer" and "number" in allowed):
            errors.append(f"{_show(path)}: {kind} {value!r}, the chart takes {'|'.join(allowed)}")
        elif spec["enum"] is not None and value not in spec["enum"]:
            errors.append(f"{_show(path)}: {value!r} is not one of {spec['enum']}")
    return errors


def test_the_values_use_only_chart_keys_of_the_pinned_version() -> None:
    facts = _chart_keys()
    assert facts["chart_version"] == HELM_CHART_VERSION
    assert f"--version {HELM_CHART_VERSION}" in DEPLOYMENT_DOC.read_text()
    errors = _key_errors(_values())
    assert not errors, errors
    print(
        json.dumps(
            {
                "chart": facts["chart_version"],
                "schema_commit": facts["schema_commit"],
                "key_paths": sum(1 for _ in _value_paths(_values())),
            }
        )
    )


def _schema_node(schema: dict[str, Any], path: KeyPath) -> dict[str, Any] | None:
    """The schema of a key path (following ``$ref``), None where the schema has none."""
    definitions = schema.get("definitions", {})

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            rest = {k: v for k, v in node.items() if k != "$ref"}
            node = {**definitions[node["$ref"].rsplit("/", 1)[-1]], **rest}
        return node

    node = resolve(schema)
    for token in path:
        if token == "[]":
            items = node.get("items")
            if isinstance(items, dict) and "oneOf" in items:
                items = next((o for o in items["oneOf"] if o.get("type") == "object"), None)
            child = items
        elif token == "*":
            child = node.get("additionalProperties")
        else:
            child = node.get("properties", {}).get(token)
        if not isinstance(child, dict):
            return None
        node = resolve(child)
    return node


def _schema_types(node: dict[str, Any]) -> set[str]:
    kinds = node.get("type")
    if kinds is None and "oneOf" in node:
        return {t for option in node["oneOf"] for t in _schema_types(option)}
    return {kinds} if isinstance(kinds, str) else set(kinds or ())


def test_the_values_validate_against_the_chart_schema() -> None:
    schema_path = os.environ.get(SCHEMA_ENV)
    if not schema_path:
        pytest.skip(
            f"{SCHEMA_ENV} is not set: the apache-airflow chart {HELM_CHART_VERSION} "
            "values.schema.json is not in the repository (see docker/DEPLOYMENT.md); "
            "the key list test checks the values' key paths without it"
        )
    assert Path(schema_path).is_file(), f"{SCHEMA_ENV}={schema_path} is not a file"
    import jsonschema

    schema = json.loads(Path(schema_path).read_text())
    errors = sorted(
        jsonschema.Draft7Validator(schema).iter_errors(_values()), key=lambda e: list(e.path)
    )
    assert not errors, [f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors]
    # The committed key list still holds for this schema: its keys exist with its types.
    outside = [_parse_path(text) for text in _chart_keys().get("not_in_schema", [])]
    drift = []
    for path, spec in _key_specs().items():
        if any(path[: len(prefix)] == prefix for prefix in outside):
            continue
        node = _schema_node(schema, path)
        if node is None:
            drift.append(f"{_show(path)}: not in the schema")
        elif _schema_types(node) != set(spec["type"]):
            drift.append(
                f"{_show(path)}: schema {sorted(_schema_types(node))}, list {spec['type']}"
            )
        elif node.get("enum") != spec["enum"]:
            drift.append(f"{_show(path)}: schema enum {node.get('enum')}, list {spec['enum']}")
    assert not drift, drift


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
