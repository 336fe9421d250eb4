"""k8s/: every overlay rendered and every manifest validated offline, strictly.

Rendering: tests/deploy/kustomize.py (the subset of kustomize we use, strict), compared
with `kubectl kustomize` where kubectl exists. Validation: PyPI kubernetes-validate with
strict schemas (a misspelled field fails) for the oldest Kubernetes we support and the
newest it knows.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml

from tests.deploy import kustomize
from tests.deploy.support import K8S, OVERLAYS, SERVICES

pytestmark = pytest.mark.unit

KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
AUTOSCALED = {"gateway", "cache", "limiter", "analytics"}
OPERATOR_PODS = {"cli"}  # `kubectl run` operator pods, documented in docs/deployment.md


@pytest.fixture(scope="module", autouse=True)
def _cached_schemas() -> Iterator[None]:
    """kubernetes-validate re-reads its (large) schema files for every object; read each
    once. The validation itself is the library's, unchanged."""
    original = kubernetes_validate.utils.schema_contents
    kubernetes_validate.utils.schema_contents = functools.cache(original)
    yield
    kubernetes_validate.utils.schema_contents = original


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: kustomize.render(K8S / "overlays" / name) for name in OVERLAYS}


def _by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def _manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_rendered_object_is_valid(
    rendered: dict[str, list[dict[str, Any]]], version: str
) -> None:
    distinct = {
        json.dumps(obj, sort_keys=True): (overlay, obj)
        for overlay, objects in rendered.items()
        for obj in objects
    }
    for overlay, obj in distinct.values():
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{overlay} {kustomize.key(obj)} (k8s {version}): {exc.message}")


def _rendered_files(directory: Path) -> set[Path]:
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    files: set[Path] = set()
    for entry in spec.get("resources", []):
        target = (directory / entry).resolve()
        files |= _rendered_files(target) if target.is_dir() else {target}
    return files


def test_every_manifest_file_is_valid() -> None:
    """Files no overlay renders (the Secret template) on their own; the rest are covered
    by the rendered overlays above, and none is left out of both."""
    rendered_files: set[Path] = set()
    for overlay in OVERLAYS:
        rendered_files |= _rendered_files(K8S / "overlays" / overlay)
    standalone = [p for p in _manifest_files() if p.resolve() not in rendered_files]
    assert [p.name for p in standalone] == ["secret.example.yaml"]
    for path in standalone:
        for obj in kustomize.load_documents(path):
            kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)


def test_strict_validation_rejects_a_misspelled_field() -> None:
    deployment = _by_kind(kustomize.render(K8S / "overlays/dev"), "Deployment")["gateway"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


def test_the_renderer_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nnamePrefix: x-\n")
    with pytest.raises(kustomize.UnsupportedKustomization):
        kustomize.render(tmp_path)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_renderer_agrees_with_kubectl_kustomize(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    theirs = {kustomize.key(o): o for o in yaml.safe_load_all(result.stdout) if o}
    ours = {kustomize.key(o): o for o in rendered[overlay]}
    assert set(theirs) == set(ours)
    for name, obj in ours.items():
        assert obj == theirs[name], name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_is_deployed_with_probes_resources_and_security(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    objects = rendered[overlay]
    deployments = _by_kind(objects, "Deployment")
    services = _by_kind(objects, "Service")
    assert set(SERVICES) <= set(deployments)
    for name, spec in SERVICES.items():
        deployment = deployments[name]
        pod = deployment["spec"]["template"]["spec"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} == {
            "kubernetes.io/hostname",
            "topology.kubernetes.io/zone",
        }
        (container,) = pod["containers"]
        assert container["name"] == name
        assert container["image"].split(":")[0] == spec.image
        ports = [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}]
        if spec.metrics_port is not None:
            ports.append({"name": "metrics", "containerPort": spec.metrics_port, "protocol": "TCP"})
        assert container["ports"] == ports
        assert container["livenessProbe"]["httpGet"] == {"path": spec.liveness, "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": spec.readiness, "port": "http"}
        assert container["resources"]["requests"]["cpu"]
        assert container["resources"]["limits"]["memory"]
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True
        assert security["capabilities"] == {"drop": ["ALL"]}
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        assert "/tmp" in mounts, f"{name}: a read-only root needs a writable /tmp"
        service = services[name]
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        assert service["spec"]["ports"][0]["port"] == spec.port
        assert service["spec"]["ports"][0]["targetPort"] == "http"
        if spec.metrics_port is not None:
            metrics = {"name": "metrics", "port": spec.metrics_port, "targetPort": "metrics",
                       "protocol": "TCP"}  # fmt: skip
            assert service["spec"]["ports"][1:] == [metrics], name
            annotations = deployment["spec"]["template"]["metadata"]["annotations"]
            assert annotations == {"prometheus.io/scrape": "true",
                                   "prometheus.io/port": str(spec.metrics_port),
                                   "prometheus.io/path": "/metrics"}  # fmt: skip


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscaling_and_disruption_budgets(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    objects = rendered[overlay]
    deployments = _by_kind(objects, "Deployment")
    hpas = _by_kind(objects, "HorizontalPodAutoscaler")
    assert set(hpas) == AUTOSCALED
    for name, hpa in hpas.items():
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name)
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        assert deployments[name]["spec"]["replicas"] == hpa["spec"]["minReplicas"], name
    pdbs = _by_kind(objects, "PodDisruptionBudget")
    assert set(pdbs) == set(SERVICES)
    for name, pdb in pdbs.items():
        selector = deployments[name]["spec"]["selector"]["matchLabels"]
        assert pdb["spec"]["selector"]["matchLabels"] == selector
        # maxUnavailable: a single-replica service can still be drained
        assert pdb["spec"]["maxUnavailable"] == 1


def _pod_labels(obj: dict[str, Any]) -> str | None:
    spec = kustomize.pod_spec(obj)
    if spec is None:
        return None
    name: str = obj["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
    return name


def _container_env(obj: dict[str, Any], configmaps: dict[str, dict[str, Any]]) -> set[str]:
    (container,) = kustomize.pod_spec(obj)["containers"]  # type: ignore[index]
    names = {e["name"] for e in container.get("env", [])}
    for source in container.get("envFrom", []):
        names |= set(configmaps[source["configMapRef"]["name"]]["data"])
    return names


# Which environment variable makes a pod a client of which store.
STORE_VARIABLES = {
    "postgres": {"DATABASE_URL"},
    "redis": {"REDIS_URL"},
    "qdrant": {"QDRANT_URL"},
    "clickhouse": {"WATCHLLM_CLICKHOUSE_URL", "WATCHLLM_DASHBOARD_CLICKHOUSE_URL"},
}
STORE_PORTS = {"postgres": {5432}, "redis": {6379}, "qdrant": {6333}, "clickhouse": {8123}}


def _allowed_from(policy: dict[str, Any]) -> set[str]:
    return {
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
        for rule in policy["spec"]["ingress"]
        for peer in rule["from"]
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_admit_exactly_each_stores_clients(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    """Derived from the manifests: a pod may reach a store iff it is given that store's
    URL; plus the documented operator pods. And the ownership rules of ARCHITECTURE.md."""
    objects = rendered[overlay]
    configmaps = _by_kind(objects, "ConfigMap")
    clients: dict[str, set[str]] = {store: set() for store in STORE_VARIABLES}
    workloads = [o for o in objects if kustomize.pod_spec(o) is not None]
    app_pods = {}
    for obj in workloads:
        name = _pod_labels(obj)
        if name is None or name in STORE_VARIABLES:
            continue
        env = _container_env(obj, configmaps)
        app_pods[name] = env
        for store, variables in STORE_VARIABLES.items():
            if env & variables:
                clients[store].add(name)
    clients["postgres"] |= OPERATOR_PODS
    clients["redis"] |= OPERATOR_PODS
    assert clients["qdrant"] == {"cache"}
    assert clients["clickhouse"] == {"analytics", "dashboard"}

    policies = _by_kind(objects, "NetworkPolicy")
    assert policies["default-deny"]["spec"] == {
        "podSelector": {},
        "policyTypes": ["Ingress", "Egress"],
    }
    for store, expected in clients.items():
        policy = policies[f"{store}-ingress"]
        selected = policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
        assert selected == store
        assert _allowed_from(policy) == expected, store
        ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
        assert STORE_PORTS[store] <= ports
    # Egress: each client may open its stores' ports.
    for name in set(app_pods) | OPERATOR_PODS:
        egress = policies[f"{name}-egress"]["spec"]["egress"]
        ports = {p["port"] for rule in egress for p in rule["ports"]}
        for store, members in clients.items():
            if name in members:
                assert STORE_PORTS[store] <= ports, (name, store)
    # In-cluster stores (dev) carry the labels the policies select.
    for obj in _by_kind(objects, "StatefulSet").values():
        labels = obj["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] in STORE_VARIABLES
        assert labels["app.kubernetes.io/part-of"] == "watchllm"


def _ingress_rules(policy: dict[str, Any]) -> list[tuple[str, set[int]]]:
    """(who, ports) per ingress rule: who is 'anyone', 'ns:<name>' or a pod name."""
    rules = []
    for rule in policy["spec"]["ingress"]:
        ports = {p["port"] for p in rule["ports"]}
        for peer in rule.get("from", [{}]):
            if "namespaceSelector" in peer:
                labels = peer["namespaceSelector"]["matchLabels"]
                who = "ns:" + labels["kubernetes.io/metadata.name"]
            elif "podSelector" in peer:
                who = peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
            else:
                who = "anyone"
            rules.append((who, ports))
    return rules


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_monitoring_reaches_only_the_metrics_ports(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    """Issue 22: the whole `monitoring` namespace could reach analytics' query API (8092).
    Now each service's ingress admits `monitoring` on its metrics port alone, the query
    API only from the dashboard, and limiter and cache admit nothing but Prometheus."""
    policies = _by_kind(rendered[overlay], "NetworkPolicy")
    expected = {
        "gateway": [("anyone", {8080}), ("ns:monitoring", {9180})],
        "limiter": [("ns:monitoring", {9190})],
        "cache": [("ns:monitoring", {9191})],
        "analytics": [("dashboard", {8092}), ("ns:monitoring", {9192})],
    }
    for name, rules in expected.items():
        spec = SERVICES[name]
        assert rules[-1] == ("ns:monitoring", {spec.metrics_port}), name
        assert spec.port not in rules[-1][1]
        assert _ingress_rules(policies[f"{name}-ingress"]) == rules, name
    assert _ingress_rules(policies["dashboard-ingress"]) == [("anyone", {3000})]


def test_overlays_set_namespace_and_image_tags(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for objects in rendered.values():
        namespaces = _by_kind(objects, "Namespace")
        (namespace,) = namespaces
        for obj in objects:
            if obj["kind"] != "Namespace":
                assert obj["metadata"]["namespace"] == namespace, kustomize.key(obj)
        for obj in objects:
            spec = kustomize.pod_spec(obj)
            if spec is None or _pod_labels(obj) not in set(SERVICES) | {"migrate"}:
                continue
            for container in spec["containers"]:
                assert ":" in container["image"], container["image"]
    prod = _by_kind(rendered["prod"], "Namespace")["watchllm"]
    assert prod["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    # prod brings no data store and no Secret: both are the operator's
    assert not _by_kind(rendered["prod"], "StatefulSet")
    assert not _by_kind(rendered["prod"], "Secret")
