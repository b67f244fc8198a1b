"""A real VictoriaMetrics (single node, Debian's `victoria-metrics`) on 127.0.0.1, loaded with the
same backfilled history as `local.LocalPrometheus`: the report's second query engine (MetricsQL).

The history is copied from a Prometheus TSDB directory with `vmctl prometheus --prom-snapshot`,
VictoriaMetrics' documented migration path; a finished backfill's `tsdb/` is such a directory.
"""

import os
import pty
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import requests

from tfs_traffic.errors import ToolError
from tfs_traffic.prometheus.local import free_port


def _binary(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise ToolError(f"{name} not found: install the Debian package 'victoria-metrics' (make setup does)")
    return path


def run_on_terminal(argv: list[str], timeout: float) -> tuple[int, str]:
    """Run `argv` with a pseudo-terminal as stdin/stdout/stderr and return (status, output).

    vmctl 1.79 asks its terminal for its size even with `-s` and `--vm-disable-progress-bar`, and
    stops with "inappropriate ioctl for device" when it has none (a pipe, /dev/null).
    """
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(argv, stdin=terminal, stdout=terminal, stderr=terminal, close_fds=True)
    finally:
        os.close(terminal)
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # the terminal closed: the process ended
                    chunk = b""
                if not chunk and proc.poll() is not None:
                    break
                output += chunk
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
            raise ToolError(f"{Path(argv[0]).name} did not finish within {timeout:.0f}s")
        return proc.wait(), output.decode(errors="replace")
    finally:
        os.close(controller)


class LocalVictoriaMetrics:
    """A VictoriaMetrics process on 127.0.0.1 holding the Prometheus TSDB `tsdb_dir`'s samples,
    stopped (and its data removed) on exit. Its Prometheus-compatible API is at `url`."""

    def __init__(self, tsdb_dir: Path) -> None:
        self.tsdb_dir = Path(tsdb_dir)
        self.url = ""
        self.samples = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None

    def start(self, timeout: float = 60) -> "LocalVictoriaMetrics":
        binary = _binary("victoria-metrics")
        vmctl = _binary("vmctl")
        self._workdir = tempfile.TemporaryDirectory(prefix="tfs-traffic-vm-")
        work = Path(self._workdir.name)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = open(work / "victoria-metrics.log", "wb")  # noqa: SIM115 - lives with the process
        self._proc = subprocess.Popen(
            [
                binary,
                f"-storageDataPath={work / 'data'}",
                f"-httpListenAddr=127.0.0.1:{port}",
                "-retentionPeriod=100y",  # the history may be years old: keep it
                "-search.disableCache",  # backfilled data arrives after the queries' time ranges
                "-loggerLevel=ERROR",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_ready(timeout)
            status, output = run_on_terminal(
                [vmctl, "prometheus", "-s", f"--prom-snapshot={self.tsdb_dir}", f"--vm-addr={self.url}"],
                timeout=600,
            )
            if status != 0:
                raise ToolError(f"vmctl could not copy {self.tsdb_dir}: {output.strip().splitlines()[-1:]}")
            for line in output.splitlines():
                if line.strip().startswith("total samples:"):
                    self.samples = int(line.split(":")[1].strip(" ;"))
            # Make the imported samples searchable now, not after the next periodic flush.
            requests.get(f"{self.url}/internal/force_flush", timeout=30).raise_for_status()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ToolError("victoria-metrics exited at start")
            try:
                if requests.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise ToolError(f"victoria-metrics was not ready within {timeout:.0f}s")

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._workdir:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> "LocalVictoriaMetrics":
        return self.start() if self._proc is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
