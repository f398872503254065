"""deploy/kubernetes/: the Kubernetes OpenAPI schemas (kubernetes-validate, offline), then what matters here."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
K8S_VERSION = "1.30.0"


def _documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        docs.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return docs


def _one(kind: str, name: str = "incident-bot") -> dict[str, Any]:
    [doc] = [d for d in _documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def _pod() -> dict[str, Any]:
    pod: dict[str, Any] = _one("Deployment")["spec"]["template"]["spec"]
    return pod


def _bot() -> dict[str, Any]:
    containers: list[dict[str, Any]] = _pod()["containers"]
    assert len(containers) == 1
    return containers[0]


def test_every_manifest_matches_the_kubernetes_schema_strictly() -> None:
    """Each document validates against Kubernetes 1.30's schema with unknown fields rejected."""
    docs = _documents()
    assert {d["kind"] for d in docs} == {"ConfigMap", "Deployment", "Secret", "Service"}
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_schema_check_rejects_a_malformed_deployment() -> None:
    """The validator has teeth: replicas as text and a misspelt field both fail."""
    broken = copy.deepcopy(_one("Deployment"))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    misspelt = copy.deepcopy(_one("Deployment"))
    misspelt["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, K8S_VERSION, strict=True)


def test_two_replicas_share_postgresql_and_migrate_first() -> None:
    """replicas: 2, DATABASE_URL required from the Secret, and an init container running `db upgrade`."""
    deployment = _one("Deployment")
    assert deployment["spec"]["replicas"] == 2
    env = {item["name"]: item["valueFrom"]["secretKeyRef"] for item in _bot()["env"]}
    assert "optional" not in env["DATABASE_URL"]
    [init] = _pod()["initContainers"]
    assert init["args"] == ["db", "upgrade"] and init["image"] == _bot()["image"]
    assert _bot()["args"] == ["serve"]


def test_the_probes_ask_healthz_on_the_bots_port() -> None:
    """Startup, liveness and readiness probes GET /healthz on the named port the container exposes."""
    bot = _bot()
    [port] = bot["ports"]
    assert port == {"name": "http", "containerPort": 8080, "protocol": "TCP"}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert bot[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe


def test_every_secret_reference_names_a_key_of_the_secret() -> None:
    """Each secretKeyRef points at the Secret and one of its keys; the tokens are not optional."""
    secret_keys = set(_one("Secret")["stringData"])
    refs = [
        item["valueFrom"]["secretKeyRef"]
        for container in [*_pod()["initContainers"], *_pod()["containers"]]
        for item in container["env"]
    ]
    assert refs
    for ref in refs:
        assert ref["name"] == "incident-bot" and ref["key"] in secret_keys, ref
    required = {ref["key"] for ref in refs if not ref.get("optional")}
    assert required == {"DATABASE_URL", "INCIDENT_BOT_WEBHOOK_TOKEN", "INCIDENT_BOT_API_TOKEN"}
    assert {ref["key"] for ref in refs} == secret_keys
    ssh = next(v for v in _pod()["volumes"] if v["name"] == "ssh")
    assert ssh["secret"]["secretName"] == "incident-bot-ssh"
    assert set(_one("Secret", "incident-bot-ssh")["stringData"]) == {"id_ed25519", "known_hosts"}


def test_the_pod_runs_as_non_root_with_a_read_only_root_filesystem() -> None:
    """Non-root uid (the Dockerfile's), no privilege escalation, every capability dropped, read-only root."""
    pod = _pod()
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "USER 10001:10001" in (ROOT / "deploy" / "Dockerfile").read_text()
    for container in [*pod["initContainers"], *pod["containers"]]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False and context["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"] for m in _bot()["volumeMounts"]}
    assert {"/var/lib/incident-bot", "/tmp"} <= mounts


def test_the_service_selects_the_pods_and_targets_the_named_port() -> None:
    """The Service's selector matches the pod labels and its targetPort is the container's `http` port."""
    service = _one("Service")
    labels = _one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_the_configmap_holds_the_deployment_configuration_file() -> None:
    """The ConfigMap's incident-bot.yaml is deploy/config/incident-bot.yaml, mounted where the image looks."""
    data = _one("ConfigMap")["data"]["incident-bot.yaml"]
    assert data == (ROOT / "deploy" / "config" / "incident-bot.yaml").read_text()
    config = next(m for m in _bot()["volumeMounts"] if m["name"] == "config")
    assert config["mountPath"] == "/etc/incident-bot/incident-bot.yaml" and config["subPath"] == "incident-bot.yaml"
