"""`tfs-traffic k8s scrape-config`: the plain-Prometheus jobs, checked by promtool and run by a real Prometheus.

Debian's Prometheus has no Kubernetes service discovery, so the test gives the jobs the very labels
Kubernetes SD (role pod) would attach to the rendered Deployment's pods — one target per declared
container port — through file_sd_configs, and reads what the relabelling made of them from
/api/v1/targets while Prometheus scrapes two small HTTP servers on 127.0.0.1.
"""

import copy
import http.server
import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tfs_traffic import cli
from tfs_traffic.k8s import helm, scrape
from tfs_traffic.prometheus.local import LocalPrometheus, promtool

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_VALUES = ROOT / "k8s" / "values.example.yaml"


class _MetricsHandler(http.server.BaseHTTPRequestHandler):
    path_served = "/metrics"

    def do_GET(self) -> None:
        if self.path != self.path_served:
            self.send_error(404)
            return
        body = f'fake_endpoint_up{{path="{self.path_served}"}} 1\n'.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def metrics_server() -> Iterator[Any]:
    """Start HTTP servers on 127.0.0.1 that answer 200 on one path only (404 elsewhere)."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(path: str) -> int:
        handler = type("Handler", (_MetricsHandler,), {"path_served": path})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return int(server.server_address[1])

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _meta_name(name: str) -> str:
    """How Kubernetes SD turns a label or annotation name into a meta label suffix."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def pod_targets(
    deployment: dict[str, Any], pod: str, ip: str, phase: str = "Running", annotations: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The target groups Kubernetes SD (role: pod) makes for one pod of this Deployment: one per port."""
    template = deployment["spec"]["template"]
    meta = {
        "__meta_kubernetes_namespace": deployment["metadata"]["namespace"],
        "__meta_kubernetes_pod_name": pod,
        "__meta_kubernetes_pod_ip": ip,
        "__meta_kubernetes_pod_phase": phase,
        "__meta_kubernetes_pod_node_name": "node-a",
        "__meta_kubernetes_pod_ready": "true" if phase == "Running" else "false",
    }
    for key, value in template["metadata"]["labels"].items():
        meta[f"__meta_kubernetes_pod_label_{_meta_name(key)}"] = value
        meta[f"__meta_kubernetes_pod_labelpresent_{_meta_name(key)}"] = "true"
    for key, value in (template["metadata"]["annotations"] if annotations is None else annotations).items():
        meta[f"__meta_kubernetes_pod_annotation_{_meta_name(key)}"] = value
    groups = []
    for container in template["spec"]["containers"]:
        for port in container.get("ports", []):
            host = f"[{ip}]" if ":" in ip else ip
            groups.append(
                {
                    "targets": [f"{host}:{port['containerPort']}"],
                    "labels": {
                        **meta,
                        "__meta_kubernetes_pod_container_name": container["name"],
                        "__meta_kubernetes_pod_container_port_name": port["name"],
                        "__meta_kubernetes_pod_container_port_number": str(port["containerPort"]),
                        "__meta_kubernetes_pod_container_port_protocol": port.get("protocol", "TCP"),
                    },
                }
            )
    return groups


def unrelated_deployment(deployment: dict[str, Any]) -> dict[str, Any]:
    """Another workload in the namespace: no scrape annotations, no sidecar port."""
    other = copy.deepcopy(deployment)
    other["spec"]["template"]["metadata"] = {"labels": {"app": "other"}, "annotations": {}}
    other["spec"]["template"]["spec"]["containers"] = [
        {"name": "web", "ports": [{"name": "http", "containerPort": 8080}, {"name": "metrics", "containerPort": 9102}]}
    ]
    return other


def scrape_jobs(values_file: Path | None = None) -> list[dict[str, Any]]:
    values = helm.effective_values(helm.load_values_files([values_file] if values_file else []))
    return yaml.safe_load(scrape.scrape_config(values))["scrape_configs"]


def test_jobs_follow_the_contract() -> None:
    annotated, sidecar = scrape_jobs(EXAMPLE_VALUES)
    assert annotated["job_name"] == "kubernetes-pods" and sidecar["job_name"] == scrape.SIDECAR_JOB
    for job in (annotated, sidecar):
        assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
        rules = job["relabel_configs"]
        assert {"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "Pending|Succeeded|Failed|Completed",
                "action": "drop"} in rules  # fmt: skip
        targets = {r.get("target_label") for r in rules}
        assert {"__address__", "namespace", "pod"} <= targets
    assert annotated["relabel_configs"][0] == {
        "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
        "action": "keep",
        "regex": True,
    }
    assert sidecar["relabel_configs"][0]["regex"] == "tfs-metrics"


def test_scrape_config_without_values_and_with_bad_values(tmp_path: Path, capsys) -> None:
    assert cli.main(["k8s", "scrape-config"]) == 0
    jobs = yaml.safe_load(capsys.readouterr().out)["scrape_configs"]
    assert jobs[1]["relabel_configs"][0]["regex"] == "tfs-metrics" and jobs[0]["scrape_interval"] == "30s"
    data = yaml.safe_load(EXAMPLE_VALUES.read_text())
    data["sidecar"]["metricsPortName"] = "Sidecar_Metrics"
    bad = tmp_path / "values.yaml"
    bad.write_text(yaml.safe_dump(data))
    assert cli.main(["k8s", "scrape-config", "--values", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith("tfs-traffic: error: values.yaml: at '/sidecar/metricsPortName': 'allOf' failed"), err


def test_promtool_accepts_the_jobs_with_static_targets(tmp_path: Path, capsys) -> None:
    assert cli.main(["k8s", "scrape-config", "--values", str(EXAMPLE_VALUES)]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    for job in config["scrape_configs"]:
        del job["kubernetes_sd_configs"]  # Debian's Prometheus has no Kubernetes SD
        job["static_configs"] = [{"targets": ["10.1.2.3:8501"]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run([promtool(), "check", "config", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout
    # And it fails as it should on a broken job, so the check above means something.
    config["scrape_configs"][1]["relabel_configs"][0]["action"] = "keepp"
    path.write_text(yaml.safe_dump(config))
    assert subprocess.run([promtool(), "check", "config", str(path)], capture_output=True).returncode != 0


def test_relabelling_on_a_real_prometheus(tmp_path: Path, metrics_server) -> None:
    tfs_port = metrics_server("/monitoring/prometheus/metrics")
    sidecar_port = metrics_server("/metrics")
    data = yaml.safe_load(EXAMPLE_VALUES.read_text())
    data["tfserving"]["restPort"] = tfs_port
    data["sidecar"]["metricsPort"] = sidecar_port
    # A Prometheus without the Operator: the chart's pods carry the annotations once the PodMonitor is off.
    data["monitoring"]["podMonitor"]["enabled"] = False
    _, manifests = helm.template(data, release="recommender", namespace="serving")
    [deployment] = [m.obj for m in manifests if m.kind == "Deployment"]
    values = helm.effective_values(data)

    pods = [
        *pod_targets(deployment, "recommender-7d9f-a", "127.0.0.1"),
        # An IPv6 pod: loopback written out in full (the chart's IPv6 pattern, like pod IPs, starts with a digit).
        *pod_targets(deployment, "recommender-7d9f-b", "0:0:0:0:0:0:0:1"),
        *pod_targets(deployment, "recommender-7d9f-pending", "127.0.0.2", phase="Pending"),
        *pod_targets(deployment, "recommender-7d9f-optout", "127.0.0.3", annotations={"prometheus.io/scrape": "false"}),
        *pod_targets(unrelated_deployment(deployment), "unrelated-0", "127.0.0.4"),
    ]
    sd_file = tmp_path / "pods.json"
    sd_file.write_text(json.dumps(pods))
    jobs = copy.deepcopy(yaml.safe_load(scrape.scrape_config(values))["scrape_configs"])
    for job in jobs:
        assert job.pop("kubernetes_sd_configs") == [{"role": "pod"}]
        job["file_sd_configs"] = [{"files": [str(sd_file)]}]
        job["scrape_interval"] = job["scrape_timeout"] = "1s"

    with LocalPrometheus(tmp_path / "tsdb", scrape_configs=yaml.safe_dump(jobs)) as prom:
        active, dropped = _targets_when_up(prom.url, want_up=2)

    by_job: dict[str, list[dict[str, Any]]] = {}
    for t in active:
        by_job.setdefault(t["labels"]["job"], []).append(t)
    # Five container ports of the pod collapse into one target per pod: the annotation names the port.
    assert sorted(t["labels"]["pod"] for t in by_job["kubernetes-pods"]) == ["recommender-7d9f-a", "recommender-7d9f-b"]
    assert sorted(t["labels"]["pod"] for t in by_job[scrape.SIDECAR_JOB]) == [
        "recommender-7d9f-a",
        "recommender-7d9f-b",
    ]
    [tfs] = [t for t in by_job["kubernetes-pods"] if t["labels"]["pod"] == "recommender-7d9f-a"]
    [side] = [t for t in by_job[scrape.SIDECAR_JOB] if t["labels"]["pod"] == "recommender-7d9f-a"]
    assert tfs["scrapeUrl"] == f"http://127.0.0.1:{tfs_port}/monitoring/prometheus/metrics"
    assert side["scrapeUrl"] == f"http://127.0.0.1:{sidecar_port}/metrics"
    for target, port in ((tfs, tfs_port), (side, sidecar_port)):
        assert target["health"] == "up", target["lastError"]  # the right path: the servers 404 on any other
        labels = target["labels"]
        assert labels["instance"] == f"127.0.0.1:{port}"
        assert labels["namespace"] == "serving"
        assert labels["node"] == "node-a"
        assert labels["app_kubernetes_io_instance"] == "recommender"  # pod labels carried over
    [tfs6] = [t for t in by_job["kubernetes-pods"] if t["labels"]["pod"] == "recommender-7d9f-b"]
    [side6] = [t for t in by_job[scrape.SIDECAR_JOB] if t["labels"]["pod"] == "recommender-7d9f-b"]
    assert tfs6["labels"]["instance"] == f"[0:0:0:0:0:0:0:1]:{tfs_port}"
    assert side6["labels"]["instance"] == f"[0:0:0:0:0:0:0:1]:{sidecar_port}"

    dropped_pods = {d["discoveredLabels"]["__meta_kubernetes_pod_name"] for d in dropped}
    assert {"recommender-7d9f-pending", "recommender-7d9f-optout", "unrelated-0"} <= dropped_pods
    for t in active:
        assert t["labels"]["pod"] not in {"recommender-7d9f-pending", "recommender-7d9f-optout", "unrelated-0"}


def _targets_when_up(url: str, want_up: int, timeout: float = 30) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Active and dropped targets once `want_up` targets have been scraped successfully."""
    deadline = time.monotonic() + timeout
    while True:
        data = requests.get(f"{url}/api/v1/targets", timeout=5).json()["data"]
        active = data["activeTargets"]
        if sum(t["health"] == "up" for t in active) >= want_up or time.monotonic() > deadline:
            return active, data["droppedTargets"]
        time.sleep(0.3)
