"""The Helm chart through Helm's own engine: lint, every object valid, Pod Security "restricted",
one scrape path per pod, autoscaling that owns the replicas, and TF Serving's flags.

Helm is real here: helm-python-sdk runs Helm v4's Go SDK (lint, values schema, templates).
"""

import copy
from pathlib import Path
from typing import Any

import pytest
from chart_checks import (
    CHART,
    EVERY_OPTION,
    MODES,
    NAMESPACE,
    RELEASE,
    by_kind,
    check_all,
    check_hardened,
    container_ports,
    containers,
    example_values,
    flags,
    pod_security_violations,
    render,
    values_for,
)

from tfs_traffic.k8s import helm


def test_lint_with_default_values_and_every_option() -> None:
    for values in (None, EVERY_OPTION, example_values()):
        for kube in ("v1.27.0", "v1.37.0"):
            messages = helm.lint(values, chart_dir=CHART, namespace=NAMESPACE, kube_version=kube)
            # Severity 1 is information ("icon is recommended"); warnings and errors fail --strict.
            assert [m for m in messages if m["severity"] > 1] == [], messages


def test_lint_reports_a_broken_value() -> None:
    messages = helm.lint({"replicaCount": "two"}, chart_dir=CHART)
    assert any(m["severity"] == 3 and "at '/replicaCount': got string, want integer" in m["error"] for m in messages)


def test_default_values_render_valid_restricted_objects(tmp_path: Path) -> None:
    kinds = check_all(render(None), tmp_path)
    assert sorted(kinds) == ["ConfigMap", "Deployment", "PodMonitor", "PrometheusRule", "Service", "ServiceAccount"]
    [deployment] = kinds["Deployment"]
    assert list(containers(deployment)) == ["tfserving", "tfs-traffic-sidecar"]  # stock image + sidecar
    assert containers(deployment)["tfserving"]["image"] == "tensorflow/serving:2.20.0"  # appVersion
    assert deployment["metadata"]["name"] == "recommender-tfs-traffic"
    assert deployment["spec"]["replicas"] == 1


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_renders_valid_restricted_objects(mode: str, tmp_path: Path) -> None:
    kinds = check_all(render(values_for(mode)), tmp_path)
    [deployment] = kinds["Deployment"]
    [service] = kinds["Service"]
    [pm] = kinds["PodMonitor"]
    sidecar = containers(deployment).get("tfs-traffic-sidecar")
    endpoints = [(ep["port"], ep["path"]) for ep in pm["spec"]["podMetricsEndpoints"]]
    targets = {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}
    if mode == "patched":
        assert containers(deployment)["tfserving"]["image"].endswith("-tfs-traffic")
    assert sidecar is not None  # in the patched mode, the status poller for the alerts
    sidecar_flags = flags(sidecar["args"])
    assert sidecar_flags["--models-config"] == "/etc/tfserving/models/models.config"
    assert sidecar_flags["--upstream-grpc"] == "127.0.0.1:8500"
    assert sidecar_flags["--metrics-addr"] == "0.0.0.0:9102"
    assert container_ports(deployment)["tfs-metrics"] == 9102
    assert endpoints == [("rest", "/monitoring/prometheus/metrics"), ("tfs-metrics", "/metrics")]
    if mode == "proxy":
        assert (sidecar_flags["--listen-grpc"], sidecar_flags["--listen-rest"]) == ("0.0.0.0:8510", "0.0.0.0:8511")
        assert sidecar_flags["--upstream-rest"] == "127.0.0.1:8501"
        assert targets == {"grpc": "proxy-grpc", "rest": "proxy-rest"}  # every client goes through the proxy
        assert "--allow-config-reload" not in sidecar_flags  # the proxy refuses HandleReloadConfigRequest
    else:
        assert not {"--listen-grpc", "--listen-rest"} & set(sidecar_flags)
        assert "proxy-grpc" not in container_ports(deployment)
        assert targets == {"grpc": "grpc", "rest": "rest"}


def test_patched_without_the_poller() -> None:
    """`sidecar.enabled: false` leaves the patched server alone: nothing tells the alerts a model's
    latest or labelled versions, and the Deployment and the notes say so."""
    values = values_for("patched", sidecar={"enabled": False})
    text, objects = helm.template(values, chart_dir=CHART, release=RELEASE, namespace=NAMESPACE)
    [deployment] = by_kind(objects)["Deployment"]
    [pm] = by_kind(objects)["PodMonitor"]
    assert list(containers(deployment)) == ["tfserving"]
    assert [(ep["port"], ep["path"]) for ep in pm["spec"]["podMetricsEndpoints"]] == [
        ("rest", "/monitoring/prometheus/metrics")
    ]
    assert "# No status poller beside it: the alerts cannot tell a model's latest or labelled versions" in text
    notes = helm.notes(values, chart_dir=CHART, release=RELEASE, namespace=NAMESPACE)
    assert "No status poller beside TF Serving (sidecar.enabled: false)" in notes
    poller_notes = helm.notes(values_for("patched"), chart_dir=CHART, release=RELEASE, namespace=NAMESPACE)
    assert "mode: patched." in poller_notes and "No status poller" not in poller_notes


def test_sidecar_flags_are_the_sidecars_own() -> None:
    """The args parse with the sidecar's own argument parser (python -m tfs_traffic.sidecar)."""
    import argparse

    from tfs_traffic.commands import sidecar

    for values, allowed in ((values_for("proxy"), False), (values_for("status-only"), False), (EVERY_OPTION, True)):
        [deployment] = by_kind(render(values))["Deployment"]
        parser = argparse.ArgumentParser()
        sidecar.add_arguments(parser)
        parsed = parser.parse_args(containers(deployment)["tfs-traffic-sidecar"]["args"])
        assert parsed.models_config == "/etc/tfserving/models/models.config"
        assert parsed.allow_config_reload is allowed


def test_every_option_on(tmp_path: Path) -> None:
    kinds = check_all(render(EVERY_OPTION), tmp_path)
    assert sorted(kinds) == [
        "ConfigMap", "Deployment", "PodDisruptionBudget", "PodMonitor", "PrometheusRule", "ScaledObject",
        "Service", "ServiceAccount",
    ]  # fmt: skip
    [deployment] = kinds["Deployment"]
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    tfs, side = containers(deployment)["tfserving"], containers(deployment)["tfs-traffic-sidecar"]
    o = EVERY_OPTION
    assert deployment["metadata"]["name"] == "recommender-eu"
    assert deployment["metadata"]["labels"]["cost-center"] == "42"
    assert "replicas" not in deployment["spec"]  # the ScaledObject owns it
    assert tfs["image"] == "tensorflow/serving:2.19.0" and tfs["imagePullPolicy"] == "Always"
    assert side["image"] == "registry.example.com/tfs-traffic-sidecar:0.1.0"
    assert side["command"] == ["python3", "-m", "tfs_traffic.sidecar"]
    assert spec["imagePullSecrets"] == o["imagePullSecrets"]
    assert spec["serviceAccountName"] == "tfs-sa" and spec["automountServiceAccountToken"] is False
    assert spec["securityContext"] == o["podSecurityContext"]
    assert tfs["securityContext"] == o["securityContext"] and side["securityContext"] == o["sidecar"]["securityContext"]
    assert tfs["resources"] == o["resources"] and side["resources"] == o["sidecar"]["resources"]
    assert tfs["env"] == o["env"] and side["env"] == o["sidecar"]["env"]
    assert tfs["lifecycle"] == o["lifecycle"] and side["lifecycle"] == o["sidecar"]["lifecycle"]
    for key in ("priorityClassName", "nodeSelector", "tolerations", "affinity", "topologySpreadConstraints"):
        assert spec[key] == o[key], key
    assert spec["terminationGracePeriodSeconds"] == 60
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert {v["name"] for v in o["extraVolumes"]} <= set(volumes)
    assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
    assert volumes["tfserving-tmp"]["emptyDir"] == {"sizeLimit": "128Mi"}
    assert volumes["sidecar-tmp"]["emptyDir"] == {"sizeLimit": "256Mi"}
    mounts = {m["mountPath"]: m["name"] for m in tfs["volumeMounts"]}
    assert mounts["/srv/models"] == "models" and mounts["/etc/batching"] == "batching"
    assert {m["mountPath"] for m in side["volumeMounts"]} == {
        "/etc/tfserving/models", "/tmp", "/srv/models", "/var/secrets/gcs"
    }  # fmt: skip
    # The models volume, for the memory estimate (docs/metrics.md "Estimated memory"): read-only there too.
    assert {"name": "models", "mountPath": "/srv/models", "readOnly": True} in side["volumeMounts"]
    assert pod["metadata"]["labels"]["tier"] == "serving"
    assert pod["metadata"]["annotations"]["example.com/owner"] == "ml"
    ann = pod["metadata"]["annotations"]
    assert (ann["prometheus.io/port"], ann["prometheus.io/path"]) == ("9001", "/metrics/tfs")  # explicitly both paths
    tfs_flags = flags(tfs["args"])
    assert tfs_flags["--port"] == "9000" and tfs_flags["--rest_api_port"] == "9001"
    assert tfs_flags["--model_config_file_poll_wait_seconds"] == "30"
    assert tfs_flags["--enable_grpc_healthcheck_service"] == "true"
    assert tfs_flags["--allow_version_labels_for_unavailable_models"] == "true"
    assert tfs["args"][-2:] == o["tfserving"]["extraArgs"]
    assert tfs["startupProbe"] == {
        "grpc": {"port": 9000, "service": "PredictionService"},
        "periodSeconds": 10,
        "failureThreshold": 120,
    }
    assert flags(side["args"])["--workers"] == "4" and flags(side["args"])["--poll-interval"] == "10s"
    assert flags(side["args"])["--allow-config-reload"] == ""
    assert container_ports(deployment)["sidecar-metrics"] == 9102
    [pdb] = kinds["PodDisruptionBudget"]
    assert pdb["spec"]["minAvailable"] == "50%" and "maxUnavailable" not in pdb["spec"]
    [sa] = kinds["ServiceAccount"]
    assert sa["metadata"]["annotations"] == {"iam.example.com/role": "reader"}
    [service] = kinds["Service"]
    assert service["spec"]["type"] == "NodePort"
    assert service["metadata"]["annotations"] == o["service"]["annotations"]
    # throughProxy: false leaves REST direct; gRPC goes through the proxy all the same, never to TF Serving's port.
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        "grpc": (7000, "proxy-grpc"),
        "rest": (7001, "rest"),
        "proxy-rest": (9011, "proxy-rest"),
    }
    [pm] = kinds["PodMonitor"]
    assert pm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert [(e["port"], e["path"], e["interval"]) for e in pm["spec"]["podMetricsEndpoints"]] == [
        ("rest", "/metrics/tfs", "15s"),
        ("sidecar-metrics", "/metrics", "15s"),
    ]
    [rule] = kinds["PrometheusRule"]
    assert rule["metadata"]["namespace"] == "monitoring"
    dashboards = [cm for cm in kinds["ConfigMap"] if cm["metadata"]["labels"].get("grafana_dashboard") == "yes"]
    assert [d["metadata"]["namespace"] for d in dashboards] == ["grafana"]
    assert dashboards[0]["metadata"]["annotations"] == {"grafana.example.com/folder": "Serving"}
    [so] = kinds["ScaledObject"]
    assert (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]) == (2, 10)
    assert (so["spec"]["pollingInterval"], so["spec"]["cooldownPeriod"]) == (15, 600)
    metadata = so["spec"]["triggers"][0]["metadata"]
    assert metadata["threshold"] == "25.5" and metadata["serverAddress"] == "https://prometheus.monitoring.svc:9090"
    assert metadata["query"] == (
        'sum(model_version:tfs_model_calls:rate5m{namespace="serving",model_name=~"ranker\\\\.v2-eu|recommender"})'
        " or vector(0)"
    )


# --- Pod Security "restricted" ------------------------------------------------------------------


@pytest.mark.parametrize("values", [None, EVERY_OPTION, *MODES], ids=["defaults", "every-option", *MODES])
def test_pod_security_restricted_for_every_container(values: Any) -> None:
    chart_values = values_for(values) if isinstance(values, str) else values
    [deployment] = by_kind(render(chart_values))["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    check_hardened(pod)
    # Each container states the controls itself, so they hold without the pod-level ones too
    # (null removes a default, as in any Helm chart).
    pod_level = {"runAsNonRoot": None, "seccompProfile": None, "fsGroup": None, "runAsGroup": None}
    bare = helm.merge_values(chart_values or {}, {"podSecurityContext": pod_level})
    [deployment] = by_kind(render(bare))["Deployment"]
    assert set(deployment["spec"]["template"]["spec"]["securityContext"]) <= {"runAsUser", "supplementalGroups",
                                                                              "fsGroupChangePolicy"}  # fmt: skip
    assert pod_security_violations(deployment["spec"]["template"]["spec"]) == []


def test_the_pod_security_check_catches_violations() -> None:
    """The checker itself: loosened values fail the controls they loosen."""
    values = values_for(
        "proxy",
        securityContext={"allowPrivilegeEscalation": True, "capabilities": {"add": ["SYS_ADMIN"]}},
        podSecurityContext={"seccompProfile": {"type": "Unconfined"}},
        extraVolumes=[{"name": "host", "hostPath": {"path": "/var/run"}}],
    )
    values["sidecar"]["securityContext"] = {"runAsUser": 0, "seccompProfile": None, "capabilities": None}
    [deployment] = by_kind(render(values))["Deployment"]
    assert sorted(pod_security_violations(deployment["spec"]["template"]["spec"])) == sorted(
        [
            "volume host: type hostPath not allowed",
            "container tfserving: allowPrivilegeEscalation must be false",
            "container tfserving: capabilities may add NET_BIND_SERVICE only",
            "container tfserving: capabilities beyond baseline",
            "container tfs-traffic-sidecar: runAsUser 0",
            "container tfs-traffic-sidecar: seccompProfile must be RuntimeDefault or Localhost (is Unconfined)",
            "container tfs-traffic-sidecar: capabilities must drop ALL",
        ]
    )


# --- one scrape path per pod --------------------------------------------------------------------


def annotations_and_monitors(values: dict[str, Any]) -> tuple[bool, int]:
    kinds = by_kind(render(values))
    [deployment] = kinds["Deployment"]
    annotated = "prometheus.io/scrape" in deployment["spec"]["template"]["metadata"]["annotations"]
    return annotated, len(kinds.get("PodMonitor", []))


def test_annotations_only_when_the_pod_monitor_is_off() -> None:
    assert annotations_and_monitors({}) == (False, 1)
    assert annotations_and_monitors({"monitoring": {"podMonitor": {"enabled": False}}}) == (True, 0)
    # Explicit choices win: both paths (a Prometheus without an annotation job), or neither.
    assert annotations_and_monitors({"monitoring": {"scrapeAnnotations": True}}) == (True, 1)
    off = {"monitoring": {"scrapeAnnotations": False, "podMonitor": {"enabled": False}}}
    assert annotations_and_monitors(off) == (False, 0)


def test_annotated_pod_passes_the_deployment_checks(tmp_path: Path) -> None:
    values = values_for("proxy", monitoring={"podMonitor": {"enabled": False}})
    [deployment] = by_kind(render(values))["Deployment"]
    ann = deployment["spec"]["template"]["metadata"]["annotations"]
    assert {k: v for k, v in ann.items() if k.startswith("prometheus.io/")} == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8501",
        "prometheus.io/path": "/monitoring/prometheus/metrics",
    }
    check_all(render(values), tmp_path)


# --- autoscaling ----------------------------------------------------------------------------------


def test_autoscaling_owns_the_replicas(tmp_path: Path) -> None:
    values = values_for("proxy", autoscaling={"enabled": True, "minReplicas": 2, "maxReplicas": 6})
    kinds = check_all(render(values), tmp_path)
    [deployment] = kinds["Deployment"]
    assert "replicas" not in deployment["spec"]
    [so] = kinds["ScaledObject"]
    [rule] = kinds["PrometheusRule"]
    query = so["spec"]["triggers"][0]["metadata"]["query"]
    records = {r["record"] for g in rule["spec"]["groups"] for r in g["rules"] if "record" in r}
    assert any(record in query for record in records), "the scaler must read a recording rule"
    assert query == (
        'sum(model_version:tfs_model_calls:rate5m{namespace="serving",model_name=~"recommender|ranker"}) or vector(0)'
    )
    assert (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]) == (2, 6)
    [without] = by_kind(render(values_for("proxy")))["Deployment"]
    assert without["spec"]["replicas"] == 2 and "ScaledObject" not in by_kind(render(values_for("proxy")))


# --- TF Serving's flags ----------------------------------------------------------------------------


def tfserving_args(values: dict[str, Any]) -> list[str]:
    [deployment] = by_kind(render(values))["Deployment"]
    return list(containers(deployment)["tfserving"]["args"])


ALLOW = "--allow_version_labels_for_unavailable_models=true"


def test_version_labels_turn_on_allow_unavailable_labels() -> None:
    """TF Serving exits at start on a models.config with version_labels unless this flag is given
    (nothing is AVAILABLE yet); the flag exists in every release from 2.4.0 to 2.20.0."""
    assert ALLOW in tfserving_args(example_values())  # has version_labels
    assert ALLOW not in tfserving_args({})  # the default config has none
    commented = (
        'model_config_list {\n  config { name: "m" base_path: "/models/m"\n'
        '    # version_labels { key: "a" value: 1 }\n  }\n}\n'
    )
    assert ALLOW not in tfserving_args({"modelsConfig": commented})
    spaced = 'model_config_list { config { name: "m" base_path: "/models/m" version_labels{key:"a" value:1} } }'
    assert ALLOW in tfserving_args({"modelsConfig": spaced})
    assert ALLOW in tfserving_args({"tfserving": {"allowVersionLabelsForUnavailableModels": True}})
    forced_off = copy.deepcopy(example_values())
    forced_off["tfserving"]["allowVersionLabelsForUnavailableModels"] = False
    assert ALLOW not in tfserving_args(forced_off)


def test_release_name_and_namespace_reach_every_object() -> None:
    _, manifests = helm.template({}, chart_dir=CHART, release="ranker", namespace="ml")
    assert {m.obj["metadata"]["namespace"] for m in manifests} == {"ml"}
    assert {m.obj["metadata"]["labels"]["app.kubernetes.io/instance"] for m in manifests} == {"ranker"}
    [deployment] = by_kind(manifests)["Deployment"]
    assert deployment["metadata"]["name"] == "ranker-tfs-traffic"
    assert RELEASE != "ranker"


def test_notes_say_where_to_connect() -> None:
    text = helm.notes({}, chart_dir=CHART, release="recommender", namespace="serving")
    assert "recommender-tfs-traffic.serving.svc:8500 (gRPC), :8501 (REST)" in text
    assert "through the sidecar's proxy" in text
    assert "The proxy refuses ModelService/HandleReloadConfigRequest; TF Serving's own gRPC port is not in" in text
