"""A real Prometheus on 127.0.0.1 over backfilled history: for the demo, tests and benchmarks.

History is written as OpenMetrics text and turned into TSDB blocks by
`promtool tsdb create-blocks-from openmetrics`, the documented way to backfill Prometheus.
"""

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import requests

from tfs_traffic.errors import ToolError

Labels = Mapping[str, str]
Sample = tuple[float, float]
Series = tuple[str, Labels, Sequence[Sample]]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_labels(labels: Labels) -> str:
    """`{a="1",b="2"}` in sorted label order, or "" for no labels."""
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in sorted(labels.items())) + "}"


def _format_value(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _format_ts(ts: float) -> str:
    return str(int(ts)) if float(ts).is_integer() else f"{ts:.3f}"


def write_openmetrics(out: IO[str], series: Iterable[Series]) -> int:
    """Write series as OpenMetrics samples with timestamps in seconds, each sorted by time.

    Returns the number of samples written. No `# TYPE` lines: promtool needs none, and OpenMetrics
    would demand `_total` on counters, which TF Serving's own names do not have.
    """
    count = 0
    for name, labels, samples in series:
        head = name + format_labels(labels) + " "
        out.write("".join([f"{head}{_format_value(v)} {_format_ts(ts)}\n" for ts, v in sorted(samples)]))
        count += len(samples)
    out.write("# EOF\n")
    return count


def promtool() -> str:
    """Path of promtool, or a clear error naming the Debian package."""
    path = shutil.which("promtool")
    if not path:
        raise ToolError("promtool not found: install the Debian package 'prometheus' (make setup does)")
    return path


def create_blocks(openmetrics_file: Path, tsdb_dir: Path, max_block_duration: float | None = None) -> None:
    """Backfill an OpenMetrics file into TSDB blocks under `tsdb_dir`.

    promtool re-reads the whole file once per block it cuts (2h by default), so long histories
    want a larger `max_block_duration` (seconds; promtool rounds it down to 2h * 3^n).
    """
    tsdb_dir.mkdir(parents=True, exist_ok=True)
    extra = [f"--max-block-duration={int(max_block_duration)}s"] if max_block_duration else []
    proc = subprocess.run(
        [
            promtool(),
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            "--quiet",
            *extra,
            str(openmetrics_file),
            str(tsdb_dir),
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ToolError(f"promtool could not backfill {openmetrics_file}: {last}")


# Block ranges promtool can cut (2h * 3^n, up to 486h).
BLOCK_RANGES = tuple(7200 * 3**n for n in range(6))


def block_duration_for(span: float) -> int:
    """The smallest block range that holds `span` seconds (at most 486h): promtool then reads its
    input once or twice instead of once per 2h block."""
    for size in BLOCK_RANGES:
        if size >= span:
            return size
    return BLOCK_RANGES[-1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalServer:
    """A query engine's process on 127.0.0.1 in a private working directory, both gone after `stop`."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None

    def start(self, timeout: float = 60) -> Self:
        raise NotImplementedError

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

    def __enter__(self) -> Self:
        return self.start() if self._proc is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class LocalPrometheus(LocalServer):
    """A Prometheus process on 127.0.0.1 over `tsdb_dir`, stopped on exit.

    `rule_files` are loaded as written; `scrape_configs` (YAML text) lets tests scrape live targets.
    """

    def __init__(
        self,
        tsdb_dir: Path,
        rule_files: Sequence[Path] = (),
        scrape_configs: str = "",
        extra_args: Sequence[str] = (),
        evaluation_interval: str = "1m",
    ) -> None:
        super().__init__()
        self.tsdb_dir = Path(tsdb_dir)
        self.rule_files = [Path(p).resolve() for p in rule_files]
        self.scrape_configs = scrape_configs
        self.extra_args = list(extra_args)
        self.evaluation_interval = evaluation_interval
        self.port = 0
        self.url = ""

    def start(self, timeout: float = 60) -> Self:
        binary = shutil.which("prometheus")
        if not binary:
            raise ToolError("prometheus not found: install the Debian package 'prometheus' (make setup does)")
        self._workdir = tempfile.TemporaryDirectory(prefix="tfs-traffic-prom-")
        config = Path(self._workdir.name) / "prometheus.yml"
        rules = "".join(f"\n  - {p}" for p in self.rule_files)
        config.write_text(
            f"global:\n  evaluation_interval: {self.evaluation_interval}\n"
            + (f"rule_files:{rules}\n" if rules else "")
            + (f"scrape_configs:\n{self.scrape_configs}\n" if self.scrape_configs else "")
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log = open(Path(self._workdir.name) / "prometheus.log", "wb")  # noqa: SIM115 - lives with the process
        self._proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.tsdb_dir}",
                "--storage.tsdb.retention.time=100y",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ToolError(f"prometheus exited at start: {self.log_tail()}")
            try:
                if requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise ToolError(f"prometheus was not ready within {timeout:.0f}s")

    def log_tail(self, lines: int = 3) -> str:
        if not self._workdir:
            return ""
        text = (Path(self._workdir.name) / "prometheus.log").read_text(errors="replace").strip()
        return " | ".join(text.splitlines()[-lines:])


def backfilled_prometheus(
    series: Iterable[Series], workdir: Path, rule_files: Sequence[Path] = (), extra_args: Sequence[str] = ()
) -> LocalPrometheus:
    """Write `series`, backfill them into `workdir/tsdb` and return a (not yet started) Prometheus."""
    workdir.mkdir(parents=True, exist_ok=True)
    om = workdir / "history.om"
    series = list(series)
    times = [ts for _, _, samples in series for ts, _ in samples]
    with om.open("w") as out:
        write_openmetrics(out, series)
    span = (max(times) - min(times)) if times else 0
    create_blocks(om, workdir / "tsdb", max_block_duration=block_duration_for(span))
    return LocalPrometheus(workdir / "tsdb", rule_files=rule_files, extra_args=extra_args)
