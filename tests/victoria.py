"""A real VictoriaMetrics (single node, Debian's `victoria-metrics`) on 127.0.0.1, loaded with the
same backfilled history as `tfs_traffic.prometheus.local.LocalPrometheus`: the tests check the report
on a second query engine (MetricsQL). A test harness only: no command needs VictoriaMetrics.

The history's OpenMetrics files (the input of `promtool tsdb create-blocks-from openmetrics`) are
sent to `/api/v1/import/prometheus` with their timestamps turned into milliseconds, and the number
of samples VictoriaMetrics then holds is checked against the number written. (Debian's vmctl 1.79,
`vmctl prometheus --prom-snapshot DIR`, reads the same TSDB but dropped whole series at random in
one run out of three here, with any concurrency and batch size, so it is not used.)
"""

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Self

import requests

from tfs_traffic.errors import ToolError
from tfs_traffic.prometheus.local import LocalServer, free_port

BATCH_BYTES = 4 << 20


def _binary(name: str) -> str:
    path = shutil.which(name)
    if not path:
        raise ToolError(f"{name} not found: install the Debian package 'victoria-metrics' (make setup does)")
    return path


def prometheus_text(openmetrics: Path) -> Iterator[tuple[bytes, int]]:
    """The samples of a file written by `tfs_traffic.prometheus.local.write_openmetrics` (timestamps in seconds) as
    Prometheus text with millisecond timestamps, in batches of about BATCH_BYTES, with their count."""
    lines: list[str] = []
    size = 0
    with openmetrics.open() as handle:
        for line in handle:
            if not line.strip() or line.startswith("#"):
                continue
            head, _, ts = line.rstrip("\n").rpartition(" ")
            lines.append(f"{head} {round(float(ts) * 1000)}\n")
            size += len(line) + 3
            if size >= BATCH_BYTES:
                yield "".join(lines).encode(), len(lines)
                lines, size = [], 0
    if lines:
        yield "".join(lines).encode(), len(lines)


class LocalVictoriaMetrics(LocalServer):
    """A VictoriaMetrics process on 127.0.0.1 holding the samples of the `openmetrics` files,
    stopped (and its data removed) on exit. Its Prometheus-compatible API is at `url`."""

    def __init__(self, openmetrics: Sequence[Path]) -> None:
        super().__init__()
        self.openmetrics = [Path(p) for p in openmetrics]
        self.url = ""
        self.samples = 0

    def start(self, timeout: float = 60) -> Self:
        binary = _binary("victoria-metrics")
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
            first, last = self._load()
            self._check(first, last)
        except BaseException:
            self.stop()
            raise
        return self

    def _load(self) -> tuple[float, float]:
        """Import every file; returns the first and last sample times (seconds)."""
        first, last = float("inf"), float("-inf")
        with requests.Session() as session:
            for path in self.openmetrics:
                for body, count in prometheus_text(path):
                    response = session.post(f"{self.url}/api/v1/import/prometheus", data=body, timeout=600)
                    if response.status_code >= 300:
                        raise ToolError(f"victoria-metrics refused {path}: {response.text.strip()[:200]}")
                    self.samples += count
                    stamps = [int(line.rpartition(b" ")[2]) for line in body.splitlines()]
                    first, last = min(first, min(stamps) / 1000), max(last, max(stamps) / 1000)
        # Make the imported samples searchable now, not after the next periodic flush.
        requests.get(f"{self.url}/internal/force_flush", timeout=60).raise_for_status()
        return first, last

    def _check(self, first: float, last: float) -> None:
        """VictoriaMetrics holds exactly the samples written (its ranges are left-open)."""
        if not self.samples:
            return
        span = int(last - first) + 2
        answer = requests.get(
            f"{self.url}/api/v1/query",
            params={"query": f'sum(count_over_time({{__name__!=""}}[{span}s]))', "time": f"{last:.3f}"},
            timeout=120,
        ).json()
        held = int(float(answer["data"]["result"][0]["value"][1])) if answer["data"]["result"] else 0
        if held != self.samples:
            raise ToolError(f"victoria-metrics holds {held:,} of the {self.samples:,} samples imported")

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


def replay(
    vm: LocalVictoriaMetrics, rule_file: Path, interval: str, start: float, end: float, timeout: float = 600
) -> None:
    """Evaluate `rule_file` (groups of one `interval`) with vmalert's replay mode (Debian's `vmalert`)
    over [start, end] against `vm`, writing the recorded series and the alerts' `ALERTS` back into
    it, searchable when this returns. Rules read what earlier replays wrote, not their own group's.

    vmalert 1.79 replays with range queries whose step is `-datasource.queryStep` (default 5m), not
    the group's interval: an hourly rule would be recorded every 5 minutes, and an alert whose points
    are further apart than its group's interval goes back to pending at every point (never firing).
    So the step is the interval."""
    from tfs_traffic.durations import rfc3339

    proc = subprocess.run(
        [
            _binary("vmalert"),
            f"-rule={rule_file}",
            f"-datasource.url={vm.url}",
            f"-remoteWrite.url={vm.url}",
            f"-replay.timeFrom={rfc3339(start)}",
            f"-replay.timeTo={rfc3339(end)}",
            f"-datasource.queryStep={interval}",
            "-replay.disableProgressBar",
            "-replay.ruleRetryAttempts=1",
            "-loggerLevel=ERROR",
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["no output"])[-1]
        raise ToolError(f"vmalert could not replay {rule_file}: {last}")
    requests.get(f"{vm.url}/internal/force_flush", timeout=60).raise_for_status()
