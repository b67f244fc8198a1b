"""Shared fixtures: a real Prometheus over backfilled history."""

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import pytest

from tfs_traffic.prometheus.local import LocalPrometheus, Series, backfilled_prometheus

PrometheusFactory = Callable[..., LocalPrometheus]


@pytest.fixture
def prometheus_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusFactory]:
    """Start real Prometheus servers over the given series; all are stopped after the test."""
    started: list[LocalPrometheus] = []

    def start(
        series: Iterable[Series], rule_files: Sequence[Path] = (), extra_args: Sequence[str] = ()
    ) -> LocalPrometheus:
        workdir = tmp_path_factory.mktemp("prom")
        prom = backfilled_prometheus(series, workdir, rule_files=rule_files, extra_args=extra_args).start()
        started.append(prom)
        return prom

    yield start
    for prom in started:
        prom.stop()
