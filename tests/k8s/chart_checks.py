"""Checks on the chart's rendered objects, shared by the tests in tests/k8s/.

Core objects go to kubernetes-validate (the strict OpenAPI schemas it ships, offline) on several
Kubernetes versions; the custom resources are checked field by field against what their CRDs
define (prometheus-operator v0.93, KEDA v2.20); the pod against the Pod Security Standards'
"restricted" controls, as the admission controller applies them.
"""

import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from tfs_traffic import modelconfig
from tfs_traffic.k8s import helm
from tfs_traffic.prometheus.local import promtool

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "k8s" / "chart"
EXAMPLE_VALUES = ROOT / "k8s" / "values.example.yaml"
EXAMPLE_OUTPUT = ROOT / "k8s" / "examples" / "recommender.yaml"
# chart-testing's convention: one values file per case beside the chart. The modes are rendered over
# the example values, every-option on its own.
CI_VALUES = CHART / "ci"
MODES = ("patched", "proxy", "status-only")
# The chart's oldest Kubernetes (Chart.yaml kubeVersion), two in between, and the newest
# kubernetes-validate 1.37 ships schemas for.
K8S_VERSIONS = ("1.27.0", "1.30.0", "1.33.0", "1.37.0")
CORE_KINDS = {"ConfigMap", "Deployment", "Service", "ServiceAccount", "PodDisruptionBudget"}
PROM_DURATION = re.compile(
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
RELEASE, NAMESPACE = "recommender", "serving"


def example_values() -> dict[str, Any]:
    return helm.load_values_files([EXAMPLE_VALUES])


def values_for(mode: str, **changes: Any) -> dict[str, Any]:
    """The example values in one of the three modes (its ci file over them), with top-level sections merged in."""
    values = helm.load_values_files([EXAMPLE_VALUES, CI_VALUES / f"{mode}-values.yaml"])
    return helm.merge_values(values, changes)


# Every value the chart offers set to something other than its default, on its own.
EVERY_OPTION = helm.load_values_files([CI_VALUES / "every-option-values.yaml"])


def render(values: dict[str, Any] | None) -> list[helm.Manifest]:
    _, manifests = helm.template(values or {}, chart_dir=CHART, release=RELEASE, namespace=NAMESPACE)
    return manifests


def by_kind(manifests: list[helm.Manifest]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for m in manifests:
        out.setdefault(m.kind, []).append(m.obj)
    return out


# --- core objects ----------------------------------------------------------------------------


def check_core(obj: dict[str, Any]) -> None:
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


def check_keys(
    where: str, obj: dict[str, Any], allowed: set[str], required: frozenset[str] | set[str] = frozenset()
) -> None:
    assert set(obj) <= allowed, f"{where}: fields the CRD does not define: {set(obj) - allowed}"
    assert required <= set(obj), f"{where}: required fields missing: {required - set(obj)}"


def check_string_map(where: str, value: Any) -> None:
    assert isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()), where


def check_metadata(obj: dict[str, Any]) -> None:
    meta = obj["metadata"]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", meta["name"]) and len(meta["name"]) <= 253
    assert meta["namespace"]
    check_string_map("labels", meta.get("labels", {}))
    check_string_map("annotations", meta.get("annotations", {}))


def container_ports(deployment: dict[str, Any]) -> dict[str, int]:
    return {
        p["name"]: p["containerPort"]
        for c in deployment["spec"]["template"]["spec"]["containers"]
        for p in c.get("ports", [])
    }


def containers(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}


def flags(args: list[str]) -> dict[str, str]:
    """`--name=value` args by name; a bare `--name` (a switch) maps to ""."""
    return dict(a.split("=", 1) if "=" in a else (a, "") for a in args)


def check_deployment(deployment: dict[str, Any], configmaps: dict[str, dict[str, Any]]) -> None:
    """The pod hangs together: probes, mounts and config files point at real things."""
    spec = deployment["spec"]
    pod = spec["template"]
    assert spec["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    ports = container_ports(deployment)
    assert len(ports) == len(set(ports.values())), "two container ports share a number"
    ann = pod["metadata"].get("annotations", {})
    assert all(isinstance(v, str) for v in ann.values())
    if "prometheus.io/scrape" in ann:
        assert ann["prometheus.io/scrape"] == "true" and int(ann["prometheus.io/port"]) == ports["rest"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    tfs = containers(deployment)["tfserving"]
    for container in pod["spec"]["containers"]:
        mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
        assert len(mounts) == len(set(mounts)), f"{container['name']}: two mounts at one path"
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in volumes, f"{container['name']} mounts unknown volume {mount['name']}"
        for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container.get(probe_name)
            if not probe:
                continue
            assert "httpGet" not in probe, "an HTTP probe on TF Serving's REST API would count as traffic"
            target = (probe.get("tcpSocket") or probe.get("grpc"))["port"]
            assert target in ports or target in ports.values(), f"{probe_name} port {target} is not a container port"
    # The flags' files exist in the mounted ConfigMaps, under the keys TF Serving reads.
    tfs_flags = flags([a for a in tfs["args"] if "=" in a])
    mounts = {m["mountPath"]: volumes[m["name"]] for m in tfs["volumeMounts"]}
    files = {}
    for flag in ("--model_config_file", "--monitoring_config_file"):
        directory, key = tfs_flags[flag].rsplit("/", 1)
        cm = configmaps[mounts[directory]["configMap"]["name"]]
        files[flag] = cm["data"][key]
    modelconfig.parse_text(files["--model_config_file"])  # TF Serving's own proto accepts it
    monitoring = parse_monitoring_config(files["--monitoring_config_file"])
    assert monitoring.prometheus_config.enable
    if "prometheus.io/path" in ann:
        assert monitoring.prometheus_config.path == ann["prometheus.io/path"]
    if "--enable_grpc_healthcheck_service" in tfs_flags:
        assert "grpc" in tfs["readinessProbe"]
    else:
        assert "tcpSocket" in tfs["readinessProbe"]


def parse_monitoring_config(text: str) -> Any:
    """Parse with TF Serving's MonitoringConfig message (config/monitoring_config.proto), which the
    tensorflow-serving-api wheel does not ship: its two messages are declared here, field for field."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

    f = descriptor_pb2.FileDescriptorProto(
        name="monitoring_config.proto", package="tensorflow.serving", syntax="proto3"
    )
    prom = f.message_type.add(name="PrometheusConfig")
    prom.field.add(name="enable", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_BOOL, label=1)
    prom.field.add(name="path", number=2, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING, label=1)
    mon = f.message_type.add(name="MonitoringConfig")
    mon.field.add(
        name="prometheus_config",
        number=1,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
        type_name=".tensorflow.serving.PrometheusConfig",
        label=1,
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig"))
    return text_format.Parse(text, cls())


def check_service(service: dict[str, Any], deployment: dict[str, Any]) -> None:
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    ports = container_ports(deployment)
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in ports, f"service port {port['name']} targets no container port"


# --- custom resources, field by field -----------------------------------------------------------


def check_pod_monitor(pm: dict[str, Any], deployment: dict[str, Any]) -> None:
    """monitoring.coreos.com/v1 PodMonitor: spec.selector required; endpoints name real container ports."""
    assert pm["apiVersion"] == "monitoring.coreos.com/v1"
    check_metadata(pm)
    check_keys("PodMonitor", pm, {"apiVersion", "kind", "metadata", "spec"}, {"spec"})
    spec = pm["spec"]
    check_keys(
        "PodMonitor.spec", spec, {"selector", "podMetricsEndpoints", "namespaceSelector", "jobLabel"}, {"selector"}
    )
    check_string_map("selector.matchLabels", spec["selector"]["matchLabels"])
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= pod_labels.items(), "PodMonitor selects no pod"
    ports = container_ports(deployment)
    for ep in spec["podMetricsEndpoints"]:
        check_keys("podMetricsEndpoints[]", ep, {"port", "path", "interval", "scrapeTimeout", "scheme"}, {"port"})
        assert isinstance(ep["port"], str) and ep["port"] in ports, f"endpoint port {ep['port']} is no container port"
        assert ep["path"].startswith("/")
        assert PROM_DURATION.match(ep["interval"])


def check_prometheus_rule(rule: dict[str, Any], tmp_path: Path) -> None:
    """monitoring.coreos.com/v1 PrometheusRule: groups need a name, rules an expr; promtool accepts them."""
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    check_metadata(rule)
    check_keys("PrometheusRule", rule, {"apiVersion", "kind", "metadata", "spec"}, {"spec"})
    check_keys("PrometheusRule.spec", rule["spec"], {"groups"}, {"groups"})
    names = [g["name"] for g in rule["spec"]["groups"]]
    assert len(names) == len(set(names)) and all(names)
    group_fields = {"name", "interval", "rules", "limit", "partial_response_strategy", "query_offset", "labels"}
    rule_fields = {"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
    for group in rule["spec"]["groups"]:
        check_keys(f"group {group['name']}", group, group_fields, {"name"})
        for r in group["rules"]:
            check_keys(f"rule in {group['name']}", r, rule_fields, {"expr"})
            assert ("record" in r) != ("alert" in r)
            assert isinstance(r["expr"], str | int)
            for key in ("for", "keep_firing_for"):
                assert key not in r or PROM_DURATION.match(r[key])
            check_string_map("rule labels", r.get("labels", {}))
            check_string_map("rule annotations", r.get("annotations", {}))
    extracted = tmp_path / "extracted-rules.yml"
    extracted.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    proc = subprocess.run([promtool(), "check", "rules", str(extracted)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def check_scaled_object(so: dict[str, Any], deployment: dict[str, Any]) -> None:
    """keda.sh/v1alpha1 ScaledObject: scaleTargetRef and triggers required; prometheus trigger metadata strings."""
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    check_metadata(so)
    spec = so["spec"]
    allowed = {"scaleTargetRef", "minReplicaCount", "maxReplicaCount", "pollingInterval", "cooldownPeriod", "triggers"}
    check_keys("ScaledObject.spec", spec, allowed, {"scaleTargetRef", "triggers"})
    ref = spec["scaleTargetRef"]
    assert ref == {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"]}
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]  # the CRD's CEL rule, and never to zero
    assert isinstance(spec["pollingInterval"], int) and isinstance(spec["cooldownPeriod"], int)
    [trigger] = spec["triggers"]
    check_keys("trigger", trigger, {"type", "metadata", "metricType", "name"}, {"type", "metadata"})
    assert trigger["type"] == "prometheus" and trigger["metricType"] in {"AverageValue", "Value", "Utilization"}
    check_string_map("trigger metadata", trigger["metadata"])  # KEDA's CRD: map of strings
    assert {"serverAddress", "query", "threshold"} <= set(trigger["metadata"])
    float(trigger["metadata"]["threshold"])
    assert "replicas" not in deployment["spec"], "spec.replicas under a ScaledObject fights the autoscaler"


# --- Pod Security Standards, "restricted" (kubernetes.io/docs/concepts/security/pod-security-standards) --

BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def pod_security_violations(pod_spec: dict[str, Any]) -> list[str]:
    """Every control of the restricted profile (which includes baseline) that `pod_spec` breaks."""
    out: list[str] = []
    pod_sc = pod_spec.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(key):
            out.append(f"pod: {key}")
    for name, value in (("sysctls", s["name"]) for s in pod_sc.get("sysctls", [])):
        if value not in SAFE_SYSCTLS:
            out.append(f"pod: unsafe {name} {value}")
    for volume in pod_spec.get("volumes", []):
        kind = next(k for k in volume if k != "name")
        if kind not in RESTRICTED_VOLUMES:
            out.append(f"volume {volume['name']}: type {kind} not allowed")
    everyone = [*pod_spec.get("initContainers", []), *pod_spec["containers"], *pod_spec.get("ephemeralContainers", [])]
    for c in everyone:
        sc, name = c.get("securityContext", {}), f"container {c['name']}"
        for scope in (pod_sc, sc):
            if scope.get("windowsOptions", {}).get("hostProcess"):
                out.append(f"{name}: hostProcess")
            selinux = scope.get("seLinuxOptions", {})
            if selinux.get("type", "") not in SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
                out.append(f"{name}: seLinuxOptions")
            if scope.get("appArmorProfile", {}).get("type", "RuntimeDefault") not in {"RuntimeDefault", "Localhost"}:
                out.append(f"{name}: appArmorProfile")
            if scope.get("runAsUser") == 0:
                out.append(f"{name}: runAsUser 0")
        if sc.get("privileged"):
            out.append(f"{name}: privileged")
        if sc.get("procMount", "Default") != "Default":
            out.append(f"{name}: procMount")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            out.append(f"{name}: hostPort")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation must be false")
        if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
            out.append(f"{name}: runAsNonRoot must be true")
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
        if seccomp not in {"RuntimeDefault", "Localhost"}:
            out.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost (is {seccomp})")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            out.append(f"{name}: capabilities must drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            out.append(f"{name}: capabilities may add NET_BIND_SERVICE only")
        if set(caps.get("add", [])) - BASELINE_CAPABILITIES:
            out.append(f"{name}: capabilities beyond baseline")
    return out


def check_hardened(pod_spec: dict[str, Any]) -> None:
    """Restricted, plus what the issue asks on top: a read-only root filesystem with an emptyDir
    where the container writes (/tmp), and a numeric non-root uid (the stock image runs as root)."""
    assert pod_security_violations(pod_spec) == []
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    pod_sc = pod_spec.get("securityContext", {})
    for c in pod_spec["containers"]:
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True, c["name"]
        assert isinstance(sc.get("runAsUser", pod_sc.get("runAsUser")), int), f"{c['name']}: no numeric uid"
        [tmp] = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
        assert "emptyDir" in volumes[tmp["name"]] and not tmp.get("readOnly")


def check_all(manifests: list[helm.Manifest], tmp_path: Path) -> dict[str, list[dict[str, Any]]]:
    kinds = by_kind(manifests)
    [deployment] = kinds["Deployment"]
    configmaps = {cm["metadata"]["name"]: cm for cm in kinds["ConfigMap"]}
    for m in manifests:
        assert m.source.startswith("tfs-traffic/templates/")
        check_metadata(m.obj)
        if m.kind in CORE_KINDS:
            check_core(m.obj)
    check_deployment(deployment, configmaps)
    check_hardened(deployment["spec"]["template"]["spec"])
    for service in kinds.get("Service", []):
        check_service(service, deployment)
    for pm in kinds.get("PodMonitor", []):
        check_pod_monitor(pm, deployment)
    for rule in kinds.get("PrometheusRule", []):
        check_prometheus_rule(rule, tmp_path)
    for so in kinds.get("ScaledObject", []):
        check_scaled_object(so, deployment)
    for pdb in kinds.get("PodDisruptionBudget", []):
        assert (
            pdb["spec"]["selector"]["matchLabels"].items()
            <= deployment["spec"]["template"]["metadata"]["labels"].items()
        )
    for sa in kinds.get("ServiceAccount", []):
        assert sa["metadata"]["name"] == deployment["spec"]["template"]["spec"]["serviceAccountName"]
    for cm in configmaps.values():
        for name, text in cm["data"].items():
            if name.endswith(".json"):
                assert yaml.safe_load(text)["title"]
                # `kubectl apply` (client-side) keeps a copy in an annotation limited to 256 KiB.
                assert len(text.encode()) < 256 * 1024
    return kinds
