"""The kustomize base in k8s/: schema-valid offline, complete, and locked down.

Validation uses kubernetes-validate's bundled JSON schemas in strict mode (unknown fields
are errors), so no cluster, kubectl or kustomize is needed.
"""

from __future__ import annotations

import base64
import copy
import os
import shutil
import subprocess
from dataclasses import fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions

from issuer.config import Settings, parse_duration, parse_kek_list

from .support import (
    K8S,
    Manifest,
    find,
    image_user,
    kustomization,
    load_yaml_documents,
    manifest_files,
)

# The newest Kubernetes minor version whose schemas kubernetes-validate 1.37.0 ships.
KUBERNETES_VERSION = "1.37"
SETTINGS = {"ISSUER_" + f.name.upper() for f in fields(Settings)}
OPERATOR_LABEL = {"issuer.example/operator": "true"}
SECRET_KEYS_FROM_SECRET = ("ISSUER_KEK", "ISSUER_DATABASE_URL")
WORKLOADS = [("Deployment", "issuer"), ("Job", "issuer-migrate")]
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - inside a pod, listening on every interface is the point
TMP, METRICS_DIR = "/tmp", "/tmp/metrics"  # noqa: S108 - the pod's own emptyDir mounts


def pod_spec(kind: str, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = find(kind, name)["spec"]["template"]["spec"]
    return spec


def container(kind: str, name: str) -> dict[str, Any]:
    [only] = pod_spec(kind, name)["containers"]
    assert isinstance(only, dict)
    return only


def literal_env(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


# --- schema and completeness ------------------------------------------------------------


def test_kubernetes_validate_ships_the_version_we_validate_against() -> None:
    # validate() would silently fall back to an older version's schemas for a missing one.
    assert any(v.startswith(KUBERNETES_VERSION + ".") for v in all_versions())


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_manifest_is_valid_in_strict_mode(path: Path) -> None:
    docs = load_yaml_documents(path)
    assert docs
    for doc in docs:
        # Raises SchemaNotFoundError for an unknown kind/apiVersion, ValidationError otherwise.
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_strict_validation_rejects_an_unknown_field() -> None:
    deployment = copy.deepcopy(find("Deployment", "issuer"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest_and_no_missing_file() -> None:
    resources = kustomization()["resources"]
    assert len(resources) == len(set(resources))
    files = {p.name for p in manifest_files()}
    examples = {name for name in files if name.endswith(".example.yaml")}
    # An example is never a resource: `kubectl apply -k` would overwrite the real Secret
    # with its placeholders.
    assert set(resources) == files - examples
    assert examples == {"secret.example.yaml"}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_builds_the_base() -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    kinds = sorted(doc["kind"] for doc in yaml.safe_load_all(built) if doc)
    listed = sorted(
        doc["kind"]
        for name in kustomization()["resources"]
        for doc in load_yaml_documents(K8S / name)
    )
    assert kinds == listed


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_every_object_carries_the_recommended_labels(path: Path) -> None:
    for doc in load_yaml_documents(path):
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "issuer"
        assert labels["app.kubernetes.io/part-of"] == "issuer"


# --- workloads: the Deployment and the migration Job ---------------------------------------


@pytest.mark.parametrize(("kind", "name"), WORKLOADS)
def test_pod_runs_as_the_image_user_with_runtime_default_seccomp(kind: str, name: str) -> None:
    pod = pod_spec(kind, name)["securityContext"]
    uid, gid = image_user()
    assert pod["runAsNonRoot"] is True
    assert (pod["runAsUser"], pod["runAsGroup"]) == (uid, gid)
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize(("kind", "name"), WORKLOADS)
def test_container_is_locked_down(kind: str, name: str) -> None:
    sc = container(kind, name)["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc.get("privileged", False) is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize(("kind", "name"), WORKLOADS)
def test_pod_gets_no_api_token_and_no_service_link_variables(kind: str, name: str) -> None:
    spec = pod_spec(kind, name)
    assert spec["serviceAccountName"] == find("ServiceAccount", "issuer")["metadata"]["name"]
    assert spec["automountServiceAccountToken"] is False
    # Service links would inject ISSUER_SERVICE_HOST etc. for the Service named "issuer",
    # and the issuer refuses unknown ISSUER_* variables at start-up.
    assert spec["enableServiceLinks"] is False


@pytest.mark.parametrize(("kind", "name"), WORKLOADS)
def test_container_has_cpu_and_memory_requests_and_limits(kind: str, name: str) -> None:
    resources = container(kind, name)["resources"]
    for bound in ("requests", "limits"):
        assert set(resources[bound]) >= {"cpu", "memory"}


@pytest.mark.parametrize(("kind", "name"), WORKLOADS)
def test_writable_paths_are_empty_dirs(kind: str, name: str) -> None:
    # The image sets PROMETHEUS_MULTIPROC_DIR=/tmp/metrics; the root filesystem is read-only.
    volumes = {v["name"]: v for v in pod_spec(kind, name)["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container(kind, name)["volumeMounts"]}
    for path in (TMP, METRICS_DIR):
        assert "emptyDir" in volumes[mounts[path]]
    env_dir = literal_env(container(kind, name)).get("PROMETHEUS_MULTIPROC_DIR", METRICS_DIR)
    assert env_dir in mounts


@pytest.mark.parametrize(("kind", "name"), WORKLOADS)
def test_kek_and_database_url_come_from_the_secret(kind: str, name: str) -> None:
    secret = find("Secret", "issuer")
    env = {e["name"]: e for e in container(kind, name)["env"]}
    for key in SECRET_KEYS_FROM_SECRET:
        ref = env[key]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"]
        assert "value" not in env[key]


def test_deployment_and_job_run_the_same_image() -> None:
    assert container("Deployment", "issuer")["image"] == container("Job", "issuer-migrate")["image"]


def test_deployment_listens_on_all_interfaces_on_named_ports() -> None:
    c = container("Deployment", "issuer")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    env = literal_env(c)
    assert ports == {"http": int(env["ISSUER_PORT"]), "admin": int(env["ISSUER_ADMIN_PORT"])}
    assert ports == {"http": 8080, "admin": 8081}
    assert env["ISSUER_HOST"] == ALL_INTERFACES
    assert env["ISSUER_ADMIN_HOST"] == ALL_INTERFACES


def test_deployment_leaves_migrations_to_the_job() -> None:
    assert literal_env(container("Deployment", "issuer"))["ISSUER_AUTO_MIGRATE"] == "false"
    job = find("Job", "issuer-migrate")
    assert container("Job", "issuer-migrate")["args"] == ["migrate"]
    assert job["spec"]["backoffLimit"] >= 1
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")


def test_deployment_probes() -> None:
    c = container("Deployment", "issuer")
    assert c["args"] == ["serve"]
    for probe, path in (("startupProbe", "/livez"), ("livenessProbe", "/livez")):
        assert c[probe]["httpGet"] == {"path": path, "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30


def test_termination_grace_outlasts_the_prestop_sleep_and_the_drain() -> None:
    spec = pod_spec("Deployment", "issuer")
    command = container("Deployment", "issuer")["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    config = find("ConfigMap", "issuer")["data"]
    grace = parse_duration(config.get("ISSUER_SHUTDOWN_GRACE", str(Settings().shutdown_grace)))
    assert spec["terminationGracePeriodSeconds"] > int(command[1]) + grace


def test_replicas_spread_across_nodes() -> None:
    deployment = find("Deployment", "issuer")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    constraints = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    by_node = [c for c in constraints if c["topologyKey"] == "kubernetes.io/hostname"]
    assert by_node
    assert selects(by_node[0]["labelSelector"]["matchLabels"], pod_labels)
    assert deployment["spec"]["replicas"] == 2


# --- settings: ConfigMap, literal env and the Secret example ----------------------------------


def test_configmap_holds_only_known_non_secret_settings() -> None:
    data = find("ConfigMap", "issuer")["data"]
    assert set(data) <= SETTINGS
    assert not set(data) & set(SECRET_KEYS_FROM_SECRET)
    assert "ISSUER_KEK_FILE" not in data


@pytest.mark.parametrize(("kind", "name"), WORKLOADS)
def test_env_names_are_known_and_set_once(kind: str, name: str) -> None:
    c = container(kind, name)
    [source] = c["envFrom"]
    config = find("ConfigMap", source["configMapRef"]["name"])["data"]
    names = [e["name"] for e in c["env"]]
    assert len(names) == len(set(names))
    # A name in both places is ambiguous to the reader (the explicit env wins).
    assert not set(names) & set(config)
    assert {n for n in names if n.startswith("ISSUER_")} <= SETTINGS


@pytest.mark.parametrize(("kind", "name"), WORKLOADS)
def test_workload_settings_pass_the_issuers_own_validation(kind: str, name: str) -> None:
    c = container(kind, name)
    env: dict[str, str] = dict(find("ConfigMap", "issuer")["data"])
    env.update(literal_env(c))
    env["ISSUER_KEK"] = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    env["ISSUER_DATABASE_URL"] = "postgresql://issuer:pw@postgres:5432/issuer"
    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("ISSUER_")})
    assert settings.issuer.startswith("https://")
    if kind == "Deployment":
        assert settings.auto_migrate is False
        assert (settings.host, settings.admin_host) == (ALL_INTERFACES, ALL_INTERFACES)


def test_secret_example_holds_placeholders_only() -> None:
    secret = find("Secret", "issuer")
    # stringData only: base64 `data` could hide a real value from a reviewer.
    assert "data" not in secret
    assert set(secret["stringData"]) == set(SECRET_KEYS_FROM_SECRET)
    for value in secret["stringData"].values():
        assert "REPLACE_ME" in value
    with pytest.raises(ValueError, match=r"base64url|32 bytes"):
        parse_kek_list(secret["stringData"]["ISSUER_KEK"])


# --- traffic: Services, NetworkPolicy, PDB, HPA -----------------------------------------------


def test_services_split_public_and_admin_ports() -> None:
    pod_labels = find("Deployment", "issuer")["spec"]["template"]["metadata"]["labels"]
    public = find("Service", "issuer")["spec"]
    admin = find("Service", "issuer-admin")["spec"]
    assert [p["targetPort"] for p in public["ports"]] == ["http"]
    assert [p["targetPort"] for p in admin["ports"]] == ["admin"]
    assert admin.get("type", "ClusterIP") == "ClusterIP"
    assert selects(public["selector"], pod_labels)
    assert selects(admin["selector"], pod_labels)


def network_policy() -> Manifest:
    return find("NetworkPolicy", "issuer")


def test_network_policy_covers_the_server_and_the_job() -> None:
    selector = network_policy()["spec"]["podSelector"]["matchLabels"]
    for kind, name in WORKLOADS:
        assert selects(selector, find(kind, name)["spec"]["template"]["metadata"]["labels"])
    assert set(network_policy()["spec"]["policyTypes"]) == {"Ingress", "Egress"}


def test_network_policy_admits_the_admin_port_only_from_operator_pods() -> None:
    admin_port = 8081
    rules = network_policy()["spec"]["ingress"]
    # A rule without ports admits every port, the admin one included.
    assert all(rule.get("ports") for rule in rules)
    admitting_admin = [
        rule for rule in rules if any(p["port"] in ("admin", admin_port) for p in rule["ports"])
    ]
    assert len(admitting_admin) == 1
    [peer] = admitting_admin[0]["from"]
    assert peer == {"podSelector": {"matchLabels": OPERATOR_LABEL}}


def test_network_policy_admits_the_public_port_from_anywhere() -> None:
    rules = network_policy()["spec"]["ingress"]
    public = [rule for rule in rules if [p["port"] for p in rule["ports"]] == ["http"]]
    assert len(public) == 1
    assert "from" not in public[0]


def test_network_policy_egress_is_dns_and_postgres_only() -> None:
    ports = {
        (p["port"], p.get("protocol", "TCP"))
        for rule in network_policy()["spec"]["egress"]
        for p in rule["ports"]
    }
    assert ports == {(53, "UDP"), (53, "TCP"), (5432, "TCP")}


def test_disruption_budget_keeps_one_replica() -> None:
    pdb = find("PodDisruptionBudget", "issuer")["spec"]
    pod_labels = find("Deployment", "issuer")["spec"]["template"]["metadata"]["labels"]
    assert pdb["minAvailable"] == 1
    assert selects(pdb["selector"]["matchLabels"], pod_labels)


def test_autoscaler_scales_the_deployment_on_cpu() -> None:
    hpa = find("HorizontalPodAutoscaler", "issuer")
    assert hpa["apiVersion"] == "autoscaling/v2"
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "issuer",
    }
    assert spec["minReplicas"] == find("Deployment", "issuer")["spec"]["replicas"]
    assert spec["maxReplicas"] > spec["minReplicas"]
    [metric] = spec["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"


# --- the Ingress and the client address behind it ----------------------------------------------


def test_ingress_serves_the_issuer_host_over_tls_through_the_public_service_only() -> None:
    spec = find("Ingress", "issuer")["spec"]
    host = urlsplit(find("ConfigMap", "issuer")["data"]["ISSUER_ISSUER"]).hostname
    [rule] = spec["rules"]
    assert rule["host"] == host
    assert [h for t in spec["tls"] for h in t["hosts"]] == [host]
    backends = [p["backend"]["service"] for p in rule["http"]["paths"]]
    assert backends == [{"name": "issuer", "port": {"name": "http"}}]


def test_the_ingress_controller_is_a_trusted_proxy_and_nobody_else_is_everyone() -> None:
    # Without trusted proxies every user behind the Ingress shares its address, and one
    # address's login-failure limit (issue 10, point 6).
    env = dict(find("ConfigMap", "issuer")["data"])
    env["ISSUER_KEK"] = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    proxies = Settings.from_env(env).trusted_proxies
    assert proxies
    # A private range (the cluster's pods), never the internet: a client could forge its address.
    assert all(net.is_private and net.prefixlen >= 8 for net in proxies)
