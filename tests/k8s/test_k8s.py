"""`tfs-traffic k8s render`: every object validates, the three modes hang together, bad values write nothing.

Core objects are checked by kubernetes-validate (strict schemas it ships, so offline); the custom
resources by the fields their operators' CRDs require (prometheus-operator v0.93, KEDA v2.20) and
the PrometheusRule's rules by promtool itself.
"""

import argparse
import copy
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tfs_traffic import cli, modelconfig
from tfs_traffic.errors import UsageError
from tfs_traffic.k8s import manifests
from tfs_traffic.k8s.values import parse_values
from tfs_traffic.prometheus.api import PrometheusAccess, PrometheusClient
from tfs_traffic.prometheus.local import promtool

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_VALUES = ROOT / "k8s" / "values.example.yaml"
EXAMPLES_DIR = ROOT / "k8s" / "examples"
K8S_VERSION = "1.37.0"  # the newest Kubernetes whose strict schemas kubernetes-validate 1.37 ships

CORE_KINDS = {"ConfigMap", "Deployment", "Service"}
PROM_DURATION = re.compile(
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)


def example_data() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE_VALUES.read_text())


def values_for(mode: str, **changes: Any) -> Any:
    """The example values in one of the three modes, with optional top-level section overrides."""
    data = copy.deepcopy(example_data())
    if mode == "patched":
        data["sidecar"] = {"enabled": False}
        data["tfserving"]["image"] = "registry.example.com/tensorflow-serving:2.20.0-tfs-traffic"
    else:
        data["sidecar"]["mode"] = mode
    for section, patch in changes.items():
        data[section] = {**data.get(section, {}), **patch} if isinstance(patch, dict) else patch
    return parse_values(data, "values.yaml")


def by_kind(objects: list[manifests.Rendered]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for o in objects:
        out.setdefault(o.kind, []).append(o.obj)
    return out


# --- checks shared by every mode ----------------------------------------------------------------


def check_core(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


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
    check_string_map("labels", meta.get("labels", {}))
    check_string_map("annotations", meta.get("annotations", {}))


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
    assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]  # the CRD's CEL rule
    [trigger] = spec["triggers"]
    check_keys("trigger", trigger, {"type", "metadata", "metricType", "name"}, {"type", "metadata"})
    assert trigger["type"] == "prometheus" and trigger["metricType"] in {"AverageValue", "Value", "Utilization"}
    check_string_map("trigger metadata", trigger["metadata"])  # KEDA's CRD: map of strings
    assert {"serverAddress", "query", "threshold"} <= set(trigger["metadata"])
    float(trigger["metadata"]["threshold"])


def container_ports(deployment: dict[str, Any]) -> dict[str, int]:
    return {
        p["name"]: p["containerPort"]
        for c in deployment["spec"]["template"]["spec"]["containers"]
        for p in c.get("ports", [])
    }


def check_deployment(deployment: dict[str, Any], configmaps: dict[str, dict[str, Any]]) -> None:
    """The pod hangs together: probes, annotations, mounts and config files point at real things."""
    spec = deployment["spec"]
    pod = spec["template"]
    assert spec["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    ports = container_ports(deployment)
    assert len(ports) == len(set(ports.values())), "two container ports share a number"
    ann = pod["metadata"]["annotations"]
    assert all(isinstance(v, str) for v in ann.values())
    assert ann["prometheus.io/scrape"] == "true"
    assert int(ann["prometheus.io/port"]) == ports["rest"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    tfs = next(c for c in pod["spec"]["containers"] if c["name"] == "tfserving")
    for container in pod["spec"]["containers"]:
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in volumes
        for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container.get(probe_name)
            if not probe:
                continue
            assert "httpGet" not in probe, "an HTTP probe on TF Serving's REST API would count as traffic"
            target = (probe.get("tcpSocket") or probe.get("grpc"))["port"]
            assert target in ports or target in ports.values(), f"{probe_name} port {target} is not a container port"
    # The flags' files exist in the mounted ConfigMaps, under the keys TF Serving reads.
    flags = dict(a.split("=", 1) for a in tfs["args"])
    mounts = {m["mountPath"]: volumes[m["name"]] for m in tfs["volumeMounts"]}
    files = {}
    for flag in ("--model_config_file", "--monitoring_config_file"):
        directory, key = flags[flag].rsplit("/", 1)
        cm = configmaps[mounts[directory]["configMap"]["name"]]
        files[flag] = cm["data"][key]
    modelconfig.parse_text(files["--model_config_file"])  # TF Serving's own proto accepts it
    monitoring = parse_monitoring_config(files["--monitoring_config_file"])
    assert monitoring.prometheus_config.enable
    assert monitoring.prometheus_config.path == ann["prometheus.io/path"]
    if any(a.startswith("--enable_grpc_healthcheck_service") for a in tfs["args"]):
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


SIDECAR_FLAGS = {  # design.md section 8
    "--models-config",
    "--upstream-grpc",
    "--upstream-rest",
    "--listen-grpc",
    "--listen-rest",
    "--metrics-addr",
    "--poll-interval",
    "--workers",
}


def sidecar_container(deployment: dict[str, Any]) -> dict[str, Any] | None:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next((c for c in containers if c["name"] == "tfs-traffic-sidecar"), None)


def parse_sidecar_args(args: list[str]) -> dict[str, str]:
    flags = dict(a.split("=", 1) for a in args)
    assert set(flags) <= SIDECAR_FLAGS, set(flags) - SIDECAR_FLAGS
    assert {"--models-config", "--upstream-grpc"} <= set(flags)
    if "tfs_traffic.commands.sidecar" in cli.COMMAND_MODULES:  # the real sidecar's parser accepts them
        namespace = cli.build_parser().parse_args(["sidecar", *args])
        assert isinstance(namespace, argparse.Namespace)
    return flags


def check_all(objects: list[manifests.Rendered], tmp_path: Path) -> dict[str, list[dict[str, Any]]]:
    kinds = by_kind(objects)
    [deployment] = kinds["Deployment"]
    configmaps = {cm["metadata"]["name"]: cm for cm in kinds["ConfigMap"]}
    for o in objects:
        if o.kind in CORE_KINDS:
            check_core(o.obj)
        assert o.text.startswith("# ") and manifests.GENERATED_MARK in o.text.splitlines()[0]
    check_deployment(deployment, configmaps)
    for service in kinds.get("Service", []):
        check_service(service, deployment)
    for pm in kinds.get("PodMonitor", []):
        check_pod_monitor(pm, deployment)
    for rule in kinds.get("PrometheusRule", []):
        check_prometheus_rule(rule, tmp_path)
    for so in kinds.get("ScaledObject", []):
        check_scaled_object(so, deployment)
    for cm in configmaps.values():
        if cm["metadata"]["labels"].get("grafana_dashboard") == "1":
            [(name, text)] = cm["data"].items()
            assert name.endswith(".json") and yaml.safe_load(text)["title"]
            # `kubectl apply` (client-side) keeps a copy in an annotation limited to 256 KiB.
            assert len(text.encode()) < 256 * 1024
    return kinds


# --- the tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["patched", "proxy", "status-only"])
def test_each_mode_renders_valid_objects(mode: str, tmp_path: Path) -> None:
    values = values_for(mode)
    kinds = check_all(manifests.render(values), tmp_path)
    [deployment] = kinds["Deployment"]
    [service] = kinds["Service"]
    [pm] = kinds["PodMonitor"]
    containers = deployment["spec"]["template"]["spec"]["containers"]
    sidecar = sidecar_container(deployment)
    endpoints = [(ep["port"], ep["path"]) for ep in pm["spec"]["podMetricsEndpoints"]]
    targets = {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}
    if mode == "patched":
        assert [c["name"] for c in containers] == ["tfserving"]
        assert containers[0]["image"].endswith("-tfs-traffic")
        assert endpoints == [("rest", "/monitoring/prometheus/metrics")]
        assert targets == {"grpc": "grpc", "rest": "rest"}
        return
    assert sidecar is not None
    flags = parse_sidecar_args(sidecar["args"])
    assert flags["--models-config"] == "/etc/tfserving/models/models.config"
    assert flags["--upstream-grpc"] == "127.0.0.1:8500"
    assert flags["--metrics-addr"] == "0.0.0.0:9102"
    assert container_ports(deployment)["tfs-metrics"] == 9102
    assert endpoints == [("rest", "/monitoring/prometheus/metrics"), ("tfs-metrics", "/metrics")]
    if mode == "proxy":
        assert (flags["--listen-grpc"], flags["--listen-rest"]) == ("0.0.0.0:8510", "0.0.0.0:8511")
        assert flags["--upstream-rest"] == "127.0.0.1:8501"
        assert targets == {"grpc": "proxy-grpc", "rest": "proxy-rest"}  # every client goes through the proxy
    else:
        assert not {"--listen-grpc", "--listen-rest"} & set(flags)
        assert "proxy-grpc" not in container_ports(deployment)
        assert targets == {"grpc": "grpc", "rest": "rest"}


def test_proxy_opt_in_service_and_tcp_probes(tmp_path: Path) -> None:
    values = values_for(
        "proxy", service={"throughProxy": False}, tfserving={**example_data()["tfserving"], "probe": "tcp"}
    )
    kinds = check_all(manifests.render(values), tmp_path)
    [service] = kinds["Service"]
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        "grpc": (8500, "grpc"),
        "rest": (8501, "rest"),
        "proxy-grpc": (8510, "proxy-grpc"),
        "proxy-rest": (8511, "proxy-rest"),
    }
    tfs = kinds["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]
    assert tfs["startupProbe"]["tcpSocket"]["port"] == 8500
    assert "--enable_grpc_healthcheck_service=true" not in tfs["args"]


def test_autoscaling_renders_a_scaled_object_on_the_recording_rule(tmp_path: Path) -> None:
    values = values_for("proxy", autoscaling={"enabled": True, "minReplicas": 2, "maxReplicas": 6})
    kinds = check_all(manifests.render(values), tmp_path)
    [so] = kinds["ScaledObject"]
    [rule] = kinds["PrometheusRule"]
    query = so["spec"]["triggers"][0]["metadata"]["query"]
    records = {r["record"] for g in rule["spec"]["groups"] for r in g["rules"] if "record" in r}
    assert any(record in query for record in records), "the scaler must read a recording rule"
    assert 'namespace="serving"' in query and "recommender|ranker" in query
    assert (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]) == (2, 6)


def test_scaler_query_sums_this_deployments_models_on_a_real_prometheus(prometheus_factory) -> None:
    """The ScaledObject's query, run on recorded series: only this namespace's served models count."""
    from tfs_traffic.queries import mixin

    config = """model_config_list {
      config { name: "ranker.v2-eu" base_path: "/models/ranker" }
      config { name: "recommender" base_path: "/models/recommender" }
    }"""
    values = values_for("proxy", modelsConfig=config, autoscaling={"enabled": True})
    [so] = [o.obj for o in manifests.render(values) if o.kind == "ScaledObject"]
    query = so["spec"]["triggers"][0]["metadata"]["query"]
    t0 = 1_700_000_000
    series = [
        ("recommender", "serving", "3", 10.0),
        ("recommender", "serving", "4", 5.0),
        ("ranker.v2-eu", "serving", "1", 2.5),
        ("rankerXv2-eu", "serving", "1", 100.0),  # would match an unescaped '.'
        ("search", "serving", "1", 1000.0),  # served by another deployment
        ("recommender", "other", "3", 1000.0),  # another namespace
    ]
    prom = prometheus_factory(
        [
            (mixin.CALLS_RATE5M, {"model_name": m, "namespace": ns, "model_version": v}, [(t0, rate)])
            for m, ns, v, rate in series
        ]
    )
    result = PrometheusClient(PrometheusAccess(prom.url)).query(query, at=t0)
    assert [float(r["value"][1]) for r in result] == [17.5]
    assert [float(r["value"][1]) for r in PrometheusClient(PrometheusAccess(prom.url)).query(query, at=t0 - 3600)] == [
        0.0
    ]


def test_mixin_overrides_reach_the_rules(tmp_path: Path) -> None:
    values = values_for("proxy", monitoring={"mixin": {"idle_window": "3d", "group_labels": ["cluster", "namespace",
                                                       "model_name", "model_version"]}})  # fmt: skip
    [rule] = by_kind(manifests.render(values))["PrometheusRule"]
    check_prometheus_rule(rule, tmp_path)
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert "[3d]" in alerts["ModelVersionIdle"]["expr"] and "7d" not in alerts["ModelVersionIdle"]["expr"]
    # (instance:* rules keep every label of their series, so they name no grouping label.)
    records = [
        r["expr"]
        for g in rule["spec"]["groups"]
        for r in g["rules"]
        if not r.get("record", "instance:").startswith("instance:")
    ]
    assert all("cluster" in expr for expr in records)


def test_autoscaling_is_off_by_default(tmp_path: Path) -> None:
    data = example_data()
    del data["autoscaling"]
    assert "ScaledObject" not in by_kind(manifests.render(parse_values(data)))


def test_example_output_is_current() -> None:
    objects = manifests.render(parse_values(example_data(), EXAMPLE_VALUES.name), source=EXAMPLE_VALUES.name)
    expected = {o.file_name: o.text for o in objects}
    actual = {p.name: p.read_text() for p in EXAMPLES_DIR.glob("*.yaml")}
    assert actual == expected, "k8s/examples/ is stale: run `make render`"


def test_example_output_validates(tmp_path: Path) -> None:
    objects = [
        manifests.Rendered(p.name, p.read_text(), yaml.safe_load(p.read_text()))
        for p in sorted(EXAMPLES_DIR.glob("*.yaml"))
    ]
    kinds = check_all(objects, tmp_path)
    assert {"ConfigMap", "Deployment", "Service", "PodMonitor", "PrometheusRule"} <= set(kinds)


def test_stream_output_is_every_object(capsys) -> None:
    assert cli.main(["k8s", "render", "--values", str(EXAMPLE_VALUES), "--out", "-"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["kind"] for d in docs] == [yaml.safe_load(p.read_text())["kind"] for p in sorted_example_files()]


def sorted_example_files() -> list[Path]:
    order = [o.file_name for o in manifests.render(parse_values(example_data()))]
    return [EXAMPLES_DIR / name for name in order]


# --- bad values: one line naming the field, nothing written ------------------------------------

BAD_VALUES = [
    ("sidecar.mode", lambda d: d["sidecar"].update(mode="sidecar"), "sidecar.mode: must be one of proxy, status-only"),
    ("wrong type", lambda d: d.update(replicas="2"), "replicas: must be an integer"),
    ("nested type", lambda d: d["tfserving"].update(grpcPort=[8500]), "tfserving.grpcPort: must be an integer"),
    ("missing", lambda d: d["tfserving"].pop("image"), "tfserving.image: required field is missing"),
    ("missing top", lambda d: d.pop("modelsConfig"), "modelsConfig: required field is missing"),
    ("unknown key", lambda d: d["sidecar"].update(pollIntervall="15s"), "sidecar.pollIntervall: unknown key"),
    ("unknown top", lambda d: d.update(replica=3), "replica: unknown key"),
    (
        "bad quantity",
        lambda d: d["sidecar"]["resources"]["limits"].update(memory="1 GB"),
        "sidecar.resources.limits.memory:",
    ),
    (
        "bad duration",
        lambda d: d["monitoring"].update(scrapeInterval="30"),
        "monitoring.scrapeInterval: must be a Prometheus",
    ),
    ("port clash", lambda d: d["sidecar"].update(metricsPort=8501), "sidecar.metricsPort: port 8501 is already used"),
    ("models config", lambda d: d.update(modelsConfig="model_config_list { confg {} }"), "modelsConfig: malformed"),
    (
        "model path",
        lambda d: d["tfserving"].update(modelMountPath="/srv"),
        "modelsConfig: model 'recommender' base_path",
    ),
    (
        "mixin key",
        lambda d: d["monitoring"].update(mixin={"idle_windw": "3d"}),
        "monitoring.mixin.idle_windw: unknown key",
    ),
    (
        "mixin type",
        lambda d: d["monitoring"].update(mixin={"drop_quantile": "low"}),
        "monitoring.mixin.drop_quantile: must be",
    ),
    ("bounds", lambda d: d["autoscaling"].update(minReplicas=9), "autoscaling: minReplicas (9) must not exceed"),
]


@pytest.mark.parametrize(("case", "mutate", "message"), BAD_VALUES, ids=[c[0] for c in BAD_VALUES])
def test_bad_values_name_the_field_and_write_nothing(case, mutate, message, tmp_path: Path, capsys) -> None:
    data = example_data()
    mutate(data)
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    assert cli.main(["k8s", "render", "--values", str(values_file), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"tfs-traffic: error: values.yaml: {message}"), err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [values_file]  # no temporary directory left either


def test_bad_values_leave_previous_output_untouched(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert cli.main(["k8s", "render", "--values", str(EXAMPLE_VALUES), "--out", str(out)]) == 0
    before = {p.name: p.read_text() for p in out.iterdir()}
    data = example_data()
    data["sidecar"]["mode"] = "both"
    data["replicas"] = 5
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    assert cli.main(["k8s", "render", "--values", str(bad), "--out", str(out)]) == 2
    assert {p.name: p.read_text() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "out"]


def test_rerender_replaces_stale_objects_but_never_foreign_files(tmp_path: Path, capsys) -> None:
    data = example_data()
    data["autoscaling"]["enabled"] = True
    on = tmp_path / "on.yaml"
    on.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    assert cli.main(["k8s", "render", "--values", str(on), "--out", str(out)]) == 0
    assert (out / "scaledobject.yaml").exists()
    assert cli.main(["k8s", "render", "--values", str(EXAMPLE_VALUES), "--out", str(out)]) == 0
    assert not (out / "scaledobject.yaml").exists()  # autoscaling off: the stale object is gone
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="did not render"):
        manifests.write_dir(manifests.render(parse_values(example_data())), out)
    assert (out / "notes.txt").read_text() == "mine"


def test_values_file_errors_are_one_line(tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    assert cli.main(["k8s", "render", "--values", str(broken)]) == 2
    assert capsys.readouterr().err.startswith("tfs-traffic: error: broken.yaml: line 2: not valid YAML")
    broken.write_text("- a list\n")
    assert cli.main(["k8s", "render", "--values", str(broken)]) == 2
    assert "must be a YAML mapping" in capsys.readouterr().err
    assert cli.main(["k8s", "render", "--values", str(tmp_path / "absent.yaml")]) == 2
    assert "cannot read values file" in capsys.readouterr().err
