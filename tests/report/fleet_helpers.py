"""Helpers for report tests: a scenario backfilled into a real Prometheus, and a counting client."""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from victoria import LocalVictoriaMetrics

from tfs_traffic.durations import parse_time
from tfs_traffic.prometheus import backfill, scenario
from tfs_traffic.prometheus.api import PrometheusAccess, PrometheusClient
from tfs_traffic.prometheus.local import LocalPrometheus
from tfs_traffic.report import verdicts as rep

END = "2025-03-10T00:00:00Z"
END_TS = parse_time(END)
WEEK = 7 * 86400.0


@contextmanager
def fleet_prometheus(data: Mapping[str, Any], workdir: Path, extra_args: tuple[str, ...] = ()) -> Iterator[Any]:
    """Backfill the scenario `data` under `workdir` and yield (scenario, result, prometheus)."""
    sc = scenario.parse({"end": END, "days": 8, **data}, "test")
    result = backfill.backfill(sc, workdir)
    with LocalPrometheus(result.tsdb, extra_args=extra_args) as prom:
        yield sc, result, prom


class CountingClient(PrometheusClient):
    """A real client that counts the HTTP requests it makes."""

    def __init__(self, access: PrometheusAccess) -> None:
        super().__init__(access)
        self.requests = 0

    def _call(self, path: str, params: dict[str, str]) -> Any:
        self.requests += 1
        return super()._call(path, params)


def run_report(url: str, **options: Any) -> tuple[rep.Report, int]:
    """The report at END over 7d (unless overridden) and how many requests it made."""
    client = CountingClient(PrometheusAccess(url=url, retries=0, timeout=60))
    opts = rep.Options(at=options.pop("at", END_TS), window=options.pop("window", WEEK), **options)
    return rep.run(client, opts), client.requests


def by_version(report: rep.Report) -> dict[tuple[str, str], rep.VersionReport]:
    return {(v.model_name, v.model_version): v for v in report.versions}


@contextmanager
def fleet_engines(data: Mapping[str, Any], workdir: Path) -> Iterator[Any]:
    """Backfill the scenario `data` once and yield (scenario, result, {engine: URL}) with a real
    Prometheus over its TSDB and a real VictoriaMetrics holding the same samples."""
    sc = scenario.parse({"end": END, "days": 8, **data}, "test")
    result = backfill.backfill(sc, workdir)
    with LocalPrometheus(result.tsdb) as prom, LocalVictoriaMetrics(result.openmetrics) as vm:
        yield sc, result, {"prometheus": prom.url, "victoriametrics": vm.url}
