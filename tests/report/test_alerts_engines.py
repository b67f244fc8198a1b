"""ModelVersionIdle and ModelVersionTrafficCoverageLow say what the report says, on two rule engines.

The churn history (test_report_churn.py's pods that come and go, with the status poller beside
every patched server, as the chart runs it) and the demo are backfilled once; the recording rules
get their history and the alerts their state from each engine's own tool: on Prometheus,
`promtool tsdb create-blocks-from rules` and the alert expressions at the window's end (promtool
writes no alert state); on VictoriaMetrics, `vmalert` in replay mode for the rules and the alerts,
whose `ALERTS{alertstate="firing"}` is read back. On each engine the report, raw and from the
recorded series, retires exactly the versions ModelVersionIdle fires for, and says
`unknown: scrape-gaps` for exactly those ModelVersionTrafficCoverageLow fires for.
"""

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fleet_helpers import END, WEEK
from test_report_churn import CHURN
from victoria import LocalVictoriaMetrics, replay

from tfs_traffic.prometheus import backfill, scenario
from tfs_traffic.prometheus.api import PrometheusAccess, PrometheusClient
from tfs_traffic.prometheus.local import LocalPrometheus
from tfs_traffic.queries import mixin
from tfs_traffic.queries.history import RuleRange, backfill_rules
from tfs_traffic.queries.render import rule_file_text
from tfs_traffic.report import verdicts as rep

HOUR = 3600.0
Ident = tuple[str, str]
EXPECTED: dict[str, tuple[set[Ident], set[Ident]]] = {
    # (retire / ModelVersionIdle, scrape-gaps / ModelVersionTrafficCoverageLow)
    "churn": (
        {("autoscaled", "1"), ("fresh", "1"), ("monthly", "1"), ("rolled", "1")},
        {("gapmodel", "1"), ("geo", "1")},  # down-0 down 12 h beside down-1; eu-1's pod beside us-1's
    ),
    "demo": (
        {("bert", "10"), ("resnet", "1"), ("resnet", "3"), ("search", "30"), ("search", "31")},
        {("ranker", "100"), ("ranker", "101")},  # tfserving-2 down 12 h
    ),
}


def history(name: str) -> scenario.Scenario:
    if name == "demo":
        return scenario.load("demo")
    return scenario.parse({"end": END, "days": 8, **CHURN, "sources": ["patched", "poller"]}, "churn")


def replayable_alerts() -> list[dict[str, Any]]:
    """The alert groups as vmalert's replay mode can run them: the same expressions, without the idle
    alert's memory sentence (replay has no `query` template function)."""
    groups = mixin.alert_rule_groups(replace(mixin.DEFAULT, memory_in_description=False))
    exprs = lambda gs: [r["expr"] for g in gs for r in g["rules"]]  # noqa: E731
    assert exprs(groups) == exprs(mixin.alert_rule_groups())
    return groups


def vmalert_replays(vm: LocalVictoriaMetrics, sc: scenario.Scenario, workdir: Path) -> None:
    """The hourly rules over the history, the per-minute rules and the alerts over its last two
    hours, one vmalert replay each (a replay does not read what it writes itself)."""
    fast, hourly = mixin.recording_rule_groups()
    runs = [("hourly", [hourly], sc.start + HOUR), ("rules", [fast], sc.end - 2 * HOUR)]
    for name, groups, start in [*runs, ("alerts", replayable_alerts(), sc.end - 2 * HOUR)]:
        path = workdir / f"{name}.yml"
        path.write_text(rule_file_text(groups))
        replay(vm, path, groups[0]["interval"], start, sc.end)


@pytest.fixture(scope="module")
def churn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    sc = history("churn")
    workdir = tmp_path_factory.mktemp("churn-alerts")
    result = backfill.backfill(sc, workdir)
    fast, hourly = mixin.recording_rule_groups()
    with LocalPrometheus(result.tsdb) as prom, LocalVictoriaMetrics(result.openmetrics) as vm:
        ranges = [RuleRange([hourly], sc.start + HOUR, sc.end), RuleRange([fast], sc.end - 2 * HOUR, sc.end)]
        assert backfill_rules(prom, ranges) > 0
        vmalert_replays(vm, sc, workdir)
        yield {"prometheus": prom.url, "victoriametrics": vm.url}


@pytest.fixture(scope="module")
def demo_victoriametrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo on VictoriaMetrics (tests/queries/test_queries_prometheus.py has it on Prometheus)."""
    sc = history("demo")
    workdir = tmp_path_factory.mktemp("demo-alerts")
    result = backfill.backfill(sc, workdir)
    with LocalVictoriaMetrics(result.openmetrics) as vm:
        vmalert_replays(vm, sc, workdir)
        yield vm.url


def idents(samples: list[dict[str, Any]]) -> set[Ident]:
    return {(s["metric"]["model_name"], s["metric"]["model_version"]) for s in samples}


def fired(client: PrometheusClient, engine: str, alert: str, at: float) -> set[Ident]:
    """What the engine's rule evaluator says fires at `at`."""
    if engine == "victoriametrics":
        return idents(client.query(f'ALERTS{{alertname="{alert}",alertstate="firing"}}', at))
    expr = next(r["expr"] for r in mixin.alert_rule_groups()[0]["rules"] if r["alert"] == alert)
    return idents(client.query(expr, at))


def check(url: str, engine: str, sc: scenario.Scenario, expected: tuple[set[Ident], set[Ident]]) -> None:
    client = PrometheusClient(PrometheusAccess(url=url, retries=0, timeout=120))
    idle = fired(client, engine, "ModelVersionIdle", sc.end)
    low = fired(client, engine, "ModelVersionTrafficCoverageLow", sc.end)
    assert (idle, low) == expected
    for rules in (False, True):
        report = rep.run(client, rep.Options(at=sc.end, window=WEEK, rules=rules))
        sources = {s for v in report.versions for s in v.calls_by_source}
        assert (sources == {"rules"}) is rules  # the recorded series answered, or the raw ones
        retire = {(v.model_name, v.model_version) for v in report.versions if v.verdict == "retire"}
        gaps = {(v.model_name, v.model_version) for v in report.versions if v.reason == "scrape-gaps"}
        assert (retire, gaps) == (idle, low), rules


@pytest.mark.parametrize("engine", ["prometheus", "victoriametrics"])
def test_churn_alerts_say_what_the_report_says(churn: dict[str, str], engine: str) -> None:
    check(churn[engine], engine, history("churn"), EXPECTED["churn"])


def test_demo_alerts_on_vmalert_say_what_the_report_says(demo_victoriametrics: str) -> None:
    check(demo_victoriametrics, "victoriametrics", history("demo"), EXPECTED["demo"])
