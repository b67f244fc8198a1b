"""Processes for the sidecar tests: the stand-in server (`tfs-traffic sim`) and the sidecar, over 127.0.0.1."""

import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from prometheus_client.parser import text_string_to_metric_families

from tfs_traffic.prometheus.local import free_port

BIN = Path(sys.executable).parent
START_TIMEOUT = 60.0


def write_models(root: Path, models: dict[str, Sequence[int]], labels: dict[str, dict[str, int]] | None = None) -> Path:
    """Version directories for the sim and a models config (policy: all versions) naming them."""
    labels = labels or {}
    entries = []
    for name, versions in models.items():
        for version in versions:
            (root / "models" / name / str(version)).mkdir(parents=True, exist_ok=True)
        label_text = "".join(f' version_labels {{ key: "{k}" value: {v} }}' for k, v in labels.get(name, {}).items())
        entries.append(
            f'  config {{ name: "{name}" base_path: "{root / "models" / name}" model_platform: "tensorflow"'
            f" model_version_policy {{ all {{}} }}{label_text} }}"
        )
    config = root / "models.config"
    config.write_text("model_config_list {\n" + "\n".join(entries) + "\n}\n")
    return config


class Process:
    """A subprocess whose output goes to a file; waits for a line that says it is ready. As a context
    manager it is started on entry and stopped on exit."""

    def __init__(self, args: Sequence[str], log: Path, ready: str, env: dict[str, str] | None = None) -> None:
        self.args = list(args)
        self.log = log
        self.ready = ready
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        handle = self.log.open("ab")
        self.proc = subprocess.Popen(self.args, stdout=handle, stderr=subprocess.STDOUT, env=self.env)
        handle.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.ready in self.output():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.args[:3]} exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.args[:3]} not ready within {START_TIMEOUT}s:\n{self.output()[-3000:]}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        code = self.proc.returncode
        self.proc = None
        return code

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Endpoints:
    """A gRPC and a REST port on 127.0.0.1, as TF Serving serves them: the stand-in, a sidecar in front of
    it, or whatever a test puts in a server's place (a forwarder, a TLS-only server)."""

    def __init__(self, grpc_port: int, rest_port: int) -> None:
        self.grpc_port = grpc_port
        self.rest_port = rest_port

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"


class Sim(Process, Endpoints):
    def __init__(self, config: Path, log: Path, grpc_port: int = 0, rest_port: int = 0, extra: Sequence[str] = ()):
        Endpoints.__init__(self, grpc_port or free_port(), rest_port or free_port())
        Process.__init__(
            self,
            [
                str(BIN / "tfs-traffic"),
                "sim",
                "--models-config",
                str(config),
                "--grpc-addr",
                f"127.0.0.1:{self.grpc_port}",
                "--rest-addr",
                f"127.0.0.1:{self.rest_port}",
                "--allow_version_labels_for_unavailable_models",  # as the rendered Deployment runs it
                *extra,
            ],
            log,
            ready="grpc=",
        )

    def call_counts(self) -> dict[tuple[str, str], float]:
        """The sim's patched counter, per (model, version)."""
        samples = scrape(self.rest + "/monitoring/prometheus/metrics")
        return {
            (labels["model_name"], labels["model_version"]): value
            for name, labels, value in samples
            # prometheus_client's parser names counter samples with _total
            if name in (":tensorflow:serving:model_call_count", ":tensorflow:serving:model_call_count_total")
        }


class Sidecar(Process, Endpoints):
    def __init__(
        self,
        config: Path,
        sim: Endpoints,
        log: Path,
        workers: int = 1,
        poll: str = "0.2s",
        proxy: bool = True,
        env: dict[str, str] | None = None,
        module: bool = True,
        count_delay: str | None = "30s",
        extra: Sequence[str] = (),
    ):
        """A sidecar in front of `sim` (its upstream). `count_delay`: 30 s by default, longer than any test,
        so that every count a test reads has come through the scrape's flush of the workers' backlogs; None
        for the sidecar's own default. `extra`: more flags."""
        Endpoints.__init__(self, free_port(), free_port())
        self.metrics_port = free_port()
        command = [sys.executable, "-m", "tfs_traffic.sidecar"] if module else [str(BIN / "tfs-traffic"), "sidecar"]
        args = [
            *command,
            "--models-config",
            str(config),
            "--upstream-grpc",
            sim.grpc,
            "--upstream-rest",
            f"127.0.0.1:{sim.rest_port}",
            "--metrics-addr",
            f"127.0.0.1:{self.metrics_port}",
            "--poll-interval",
            poll,
            "--workers",
            str(workers),
        ]
        if count_delay is not None:
            args += ["--count-delay", count_delay]
        if proxy:
            args += ["--listen-grpc", f"127.0.0.1:{self.grpc_port}", "--listen-rest", f"127.0.0.1:{self.rest_port}"]
        Process.__init__(self, [*args, *extra], log, ready="ready:", env=env)

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        return scrape(f"http://127.0.0.1:{self.metrics_port}/metrics")

    def calls(self, **match: str) -> dict[tuple[str, str], float]:
        """tfserving_model_calls_total summed per (model, version) over the series matching `match`."""
        out: dict[tuple[str, str], float] = {}
        for name, labels, value in self.samples():
            if name == "tfserving_model_calls_total" and all(labels.get(k) == v for k, v in match.items()):
                key = (labels["model_name"], labels["model_version"])
                out[key] = out.get(key, 0.0) + value
        return out

    def gauge(self, name: str) -> dict[tuple[str, ...], float]:
        return {tuple(v for _, v in sorted(labels.items())): value for n, labels, value in self.samples() if n == name}


def tls_handshake(port: int) -> None:
    """Start a TLS handshake with 127.0.0.1:`port` (a plaintext server, or a relay, does not complete it)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            with context.wrap_socket(raw) as wrapped:
                wrapped.recv(1)
        except (ssl.SSLError, OSError):
            pass  # the plaintext upstream does not answer TLS


def scrape(url: str) -> list[tuple[str, dict[str, str], float]]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def delta(after: dict[tuple[str, str], float], before: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    """Per-key increase, without the keys that did not move."""
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}
