"""A live fleet on one machine for the `retire` tests.

Three `tfs-traffic sim` replicas poll one models config (`--model_config_file_poll_wait_seconds=1
--file_system_poll_wait_seconds=1`), each behind a sidecar relay; three more replicas read their own
config once (`--model_config_file_poll_wait_seconds=0`: told by `HandleReloadConfigRequest` only).
A real Prometheus scrapes every server's page and every sidecar each second, and a client load (gRPC
and REST, by number, by label and without a version) runs throughout, through the sidecars (the
non-polling replicas, which have none, directly), recording every call that fails.
"""

import json
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import requests
from sidecar_support import BIN, Endpoints, Sidecar, Sim
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc
from tfs_api import predict_request
from waiting import wait_for

from tfs_traffic import modelconfig
from tfs_traffic.prometheus.local import LocalPrometheus

POLLING = ["--model_config_file_poll_wait_seconds=1", "--file_system_poll_wait_seconds=1"]
NOT_POLLING = ["--model_config_file_poll_wait_seconds=0", "--file_system_poll_wait_seconds=1"]
AVAILABLE, END = 30, 50  # ModelVersionStatus.State


@dataclass(frozen=True)
class Model:
    """A model of a fleet: version directories on disk, its policy (config text) and labels."""

    name: str
    on_disk: Sequence[int]
    policy: str  # the model_version_policy body, e.g. "specific { versions: 1 versions: 2 }"
    labels: dict[str, int] = field(default_factory=dict)


def specific(*versions: int) -> str:
    return "specific { " + " ".join(f"versions: {v}" for v in versions) + " }"


def write_config(root: Path, path: Path, models: Sequence[Model]) -> Path:
    """The version directories and a models config naming them, in protobuf's own text format (what
    `retire` writes back, so the plans' diffs show only what changes)."""
    entries = []
    for m in models:
        for version in m.on_disk:
            (root / "models" / m.name / str(version)).mkdir(parents=True, exist_ok=True)
        labels = " ".join(f'version_labels {{ key: "{k}" value: {v} }}' for k, v in m.labels.items())
        entries.append(
            f'config {{ name: "{m.name}" base_path: "{root / "models" / m.name}" model_platform: "tensorflow" '
            f"model_version_policy {{ {m.policy} }} {labels} }}"
        )
    text = "model_config_list { " + " ".join(entries) + " }"
    path.write_text(modelconfig.to_text(modelconfig.parse_text(text)))
    return path


@dataclass(frozen=True)
class Call:
    """One kind of client call: `api` grpc or rest, to `endpoint`, by number, label or neither."""

    api: str
    endpoint: Endpoints
    model: str
    version: int | None = None
    label: str | None = None

    def __str__(self) -> str:
        how = f"v{self.version}" if self.version is not None else (f"label {self.label}" if self.label else "latest")
        return f"{self.api} {self.model} {how} via {self.endpoint.grpc_port}"


class Load:
    """Calls every kind in turn until stopped, on one thread; each failure is kept with its time."""

    def __init__(self, calls: Sequence[Call], pause: float = 0.02) -> None:
        self.calls = list(calls)
        self.pause = pause
        self.sent = 0
        self.failures: list[tuple[float, str, str]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="client-load", daemon=True)
        self._channels: dict[str, grpc.Channel] = {}
        self._session = requests.Session()

    def add(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def remove(self, call: Call) -> None:
        with self._lock:
            self.calls.remove(call)

    def _one(self, call: Call) -> None:
        if call.api == "grpc":
            channel = self._channels.setdefault(call.endpoint.grpc, grpc.insecure_channel(call.endpoint.grpc))
            method = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
            request = predict_request(call.model, call.version, call.label, x=(1.0, 2.0))
            method(request.SerializeToString(), timeout=10)
            return
        path = f"/v1/models/{call.model}"
        path += f"/versions/{call.version}" if call.version is not None else ""
        path += f"/labels/{call.label}" if call.label else ""
        response = self._session.post(f"{call.endpoint.rest}{path}:predict", json={"instances": [1.0]}, timeout=10)
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code} {response.text.strip()}")

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                calls = list(self.calls)
            for call in calls:
                try:
                    self._one(call)
                except (grpc.RpcError, requests.RequestException, RuntimeError) as e:
                    detail = f"{e.code().name}: {e.details()}" if isinstance(e, grpc.RpcError) else str(e)
                    self.failures.append((time.time(), str(call), detail))
                self.sent += 1
                if self._stop.wait(self.pause):
                    return

    def failed_between(self, start: float, end: float) -> list[tuple[float, str, str]]:
        return [f for f in self.failures if start <= f[0] <= end]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=20)
        for channel in self._channels.values():
            channel.close()


def scrape_configs(sims: Sequence[Sim], sidecars: Sequence[Sidecar]) -> str:
    """Every server's page and every sidecar, each second."""
    jobs = [
        {
            "job_name": "tfserving",
            "scrape_interval": "1s",
            "scrape_timeout": "1s",
            "metrics_path": "/monitoring/prometheus/metrics",
            "static_configs": [{"targets": [f"127.0.0.1:{s.rest_port}" for s in sims]}],
        },
        {
            "job_name": "sidecar",
            "scrape_interval": "1s",
            "scrape_timeout": "1s",
            "static_configs": [{"targets": [f"127.0.0.1:{s.metrics_port}" for s in sidecars]}],
        },
    ]
    return "\n".join("  " + line for line in json.dumps(jobs).splitlines())


def states(grpc_addr: str, model: str) -> dict[int, int]:
    """GetModelStatus of `model` asked of a server: {version: state}."""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    with grpc.insecure_channel(grpc_addr) as channel:
        response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=10)
    return {s.version: s.state for s in response.model_version_status}


def target(sim: Sim, sidecar: Sidecar | None = None) -> str:
    """`--targets` for one replica: the server's gRPC port, its page, and its sidecar's page."""
    pages = [f"http://127.0.0.1:{sim.rest_port}/monitoring/prometheus/metrics"]
    if sidecar is not None:
        pages.append(f"http://127.0.0.1:{sidecar.metrics_port}/metrics")
    return ",".join([sim.grpc, *pages])


def journal(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def steps(path: Path) -> list[tuple[str, str]]:
    """(step, result) of every line of a journal, in order."""
    return [(e["step"], e["result"]) for e in journal(path)]


def retire(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`tfs-traffic retire ARGS`, its exit status, stdout and stderr."""
    return subprocess.run([str(BIN / "tfs-traffic"), "retire", *args], capture_output=True, text=True, timeout=timeout)


def start_retire(*args: str, log: Path) -> subprocess.Popen[str]:
    """`tfs-traffic retire ARGS` in the background, stdout and stderr to `log`."""
    handle = log.open("w")
    return subprocess.Popen(
        [str(BIN / "tfs-traffic"), "retire", *args], stdout=handle, stderr=subprocess.STDOUT, text=True
    )


class Fleet:
    """The polling replicas with their sidecars, the non-polling ones, Prometheus and the load."""

    def __init__(self, root: Path, polling: Sequence[Model], not_polling: Sequence[Model]) -> None:
        self.root = root
        self.config = write_config(root, root / "models.config", polling)
        self.quiet_config = write_config(root, root / "quiet.config", not_polling)
        self.sims = [Sim(self.config, root / f"sim{i}.log", extra=POLLING) for i in range(3)]
        self.quiet = [Sim(self.quiet_config, root / f"quiet{i}.log", extra=NOT_POLLING) for i in range(3)]
        if not not_polling:  # no models for servers that do not poll: no such servers
            self.quiet = []
        self.sidecars: list[Sidecar] = []
        self.prometheus: LocalPrometheus | None = None
        self.load: Load | None = None
        self.ready_at = 0.0

    @property
    def url(self) -> str:
        assert self.prometheus is not None
        return self.prometheus.url

    def start(self, calls: Sequence[Call]) -> "Fleet":
        for sim in [*self.sims, *self.quiet]:
            sim.start()
        self.sidecars = [
            Sidecar(self.config, sim, self.root / f"sidecar{i}.log", poll="0.5s").start()
            for i, sim in enumerate(self.sims)
        ]
        self.load = Load(calls)
        self.load.start()
        self.prometheus = LocalPrometheus(
            self.root / "tsdb", scrape_configs=scrape_configs([*self.sims, *self.quiet], self.sidecars)
        ).start()
        targets = len(self.sims) + len(self.quiet) + len(self.sidecars)
        assert wait_for(lambda: self._up() == targets, timeout=30), self._up()
        # The report's coverage is counted at whole minutes (its step): plans wait for the first
        # one with every target scraped.
        self.ready_at = (int(time.time()) // 60 + 1) * 60 + 1
        return self

    def _up(self) -> int:
        answer = requests.get(f"{self.url}/api/v1/query", params={"query": "sum(up)"}, timeout=10).json()
        result = answer["data"]["result"]
        return int(float(result[0]["value"][1])) if result else 0

    def wait_ready(self) -> None:
        """Until the report's window holds the whole fleet at its step."""
        time.sleep(max(0.0, self.ready_at - time.time()))

    def targets(self) -> list[str]:
        return [a for sim, car in zip(self.sims, self.sidecars, strict=True) for a in ("--targets", target(sim, car))]

    def stop(self) -> None:
        if self.load is not None:
            self.load.stop()
        if self.prometheus is not None:
            self.prometheus.stop()
        for process in [*self.sidecars, *self.sims, *self.quiet]:
            process.stop()


def plan(fleet: Fleet, out: Path, config: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """`retire plan` over the last minute of the fleet, written to `out`."""
    fleet.wait_ready()
    done = retire(
        "plan",
        "--prometheus",
        fleet.url,
        "--models-config",
        str(config),
        "--window",
        "1m",
        "--output",
        str(out),
        *extra,
    )
    return done, (json.loads(out.read_text()) if out.exists() else {})
