"""Every verdict and reason of docs/verdicts.md, each from its own model in a backfilled fleet,
judged by the report against a real Prometheus."""

from collections.abc import Iterator
from typing import Any

import pytest
from fleet_helpers import by_version, fleet_prometheus, run_report

from tfs_traffic import modelconfig
from tfs_traffic.report import verdicts as rep
from tfs_traffic.report.display import display_calls

ALL = ["a", "b"]
SITUATIONS: dict[str, Any] = {
    "days": 7.25,
    "replicas": [
        {"name": "a", "ip": "10.0.0.1"},
        {"name": "b", "ip": "10.0.0.2", "scrape_offset": 17},
        {"name": "c", "ip": "10.0.0.3", "scrape_offset": 41},  # has a 12 h scrape gap
        {"name": "d", "ip": "10.0.0.4", "scrape_offset": 5},  # restarts at end-3d
    ],
    "models": [
        {"name": "traffic", "versions": [{"version": 1, "replicas": ALL}, {"version": 2, "replicas": ALL}]},
        {"name": "only", "versions": [{"version": 5, "replicas": ALL}]},
        {"name": "latest", "versions": [{"version": 1, "replicas": ALL}, {"version": 2, "replicas": ALL}]},
        {
            "name": "labels",
            "version_labels": {"zeta": 1, "alpha": 1},
            "versions": [{"version": v, "replicas": ALL} for v in (1, 2, 3, 4)],
        },
        {
            "name": "fresh",
            "versions": [{"version": 1, "loaded": "end-3d", "replicas": ALL}, {"version": 2, "replicas": ALL}],
        },
        {"name": "gappy", "versions": [{"version": v, "replicas": ["c"]} for v in (1, 2, 3)]},
        {"name": "onereplica", "versions": [{"version": v, "replicas": ALL} for v in (1, 2)]},
        {"name": "sixdays", "versions": [{"version": v, "replicas": ALL} for v in (1, 2)]},
        {"name": "stopped", "versions": [{"version": v, "replicas": ALL} for v in (1, 2)]},
        {
            "name": "unloaded",
            "versions": [{"version": 1, "unloaded": "end-1d", "replicas": ALL}]
            + [{"version": v, "replicas": ALL} for v in (2, 3)],
        },
        {
            "name": "unloadedtop",
            "versions": [{"version": v, "replicas": ALL} for v in (1, 2)]
            + [{"version": 3, "unloaded": "end-1d", "replicas": ALL}],
        },
        {"name": "reset", "versions": [{"version": v, "replicas": ["d"]} for v in (1, 2, 3, 4)]},
        {
            "name": "bornreset",
            "versions": [
                {"version": 1, "loaded": "end-4d23h59m50s", "replicas": ["d"]},
                {"version": 2, "replicas": ["d"]},
            ],
        },
        {
            "name": "freshtraffic",
            "versions": [{"version": 1, "loaded": "end-2d", "replicas": ALL}, {"version": 2, "replicas": ALL}],
        },
        {"name": "textual", "versions": [{"version": v, "replicas": ALL} for v in ("1", "canary")]},
    ],
    "traffic": [
        {"model": "traffic", "version": 1, "rate": "1/min"},
        {"model": "gappy", "version": 2, "rate": "1/h"},
        {"model": "onereplica", "version": 1, "rate": "10/h", "replicas": ["a"]},
        {"model": "sixdays", "version": 1, "calls": 1, "at": "end-6d", "replicas": ["b"]},
        {"model": "stopped", "version": 1, "rate": "1/min", "to": "end-7d3m"},
        {"model": "reset", "version": 1, "rate": "6/h"},
        {"model": "reset", "version": 2, "calls": 5, "at": "end-4d"},
        {"model": "bornreset", "version": 1, "calls": 3, "at": "end-4d23h59m45s"},
        {"model": "freshtraffic", "version": 1, "rate": "1/min", "from": "end-2d"},
    ],
    "events": [
        {"gap": "c", "from": "end-5d", "to": "end-4d12h"},
        {"restart": "d", "at": "end-3d"},
    ],
}
JUDGED = 34  # the 36 versions but unloaded 1 and unloadedtop 3: AVAILABLE at the end


@pytest.fixture(scope="module")
def situations(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with fleet_prometheus(SITUATIONS, tmp_path_factory.mktemp("situations")) as (_sc, result, prom):
        labels = {
            (e.name, str(v)): names
            for e in modelconfig.load_entries(result.models_config)
            for v, names in e.labels_by_version().items()
        }
        report, requests = run_report(prom.url, labels=labels, keep=frozenset({("labels", "2")}))
        yield prom, report, requests


def verdict(report: rep.Report, model: str, version: str) -> tuple[str, str]:
    v = by_version(report)[(model, version)]
    return v.verdict, v.reason


@pytest.mark.parametrize(
    ("model", "version", "expected"),
    [
        ("traffic", "1", ("keep", "traffic")),
        ("only", "5", ("keep", "only-version")),
        ("latest", "2", ("keep", "latest")),
        ("latest", "1", ("retire", "idle")),
        ("labels", "1", ("keep", "label:alpha")),  # two labels: the first in sorted order
        ("labels", "2", ("keep", "label:keep")),
        ("labels", "3", ("retire", "idle")),
        ("labels", "4", ("keep", "latest")),
        ("fresh", "1", ("unknown", "not-observed-long-enough")),
        ("gappy", "1", ("unknown", "scrape-gaps")),
        ("gappy", "2", ("keep", "traffic")),  # traffic is checked before coverage
        ("gappy", "3", ("keep", "latest")),
        ("onereplica", "1", ("keep", "traffic")),
        ("unloadedtop", "2", ("keep", "latest")),  # the highest AVAILABLE version, not the highest ever
        ("unloadedtop", "1", ("retire", "idle")),
        ("sixdays", "1", ("keep", "traffic")),
        ("stopped", "1", ("retire", "idle")),
        ("reset", "1", ("keep", "traffic")),
        ("reset", "2", ("keep", "traffic")),
        ("reset", "3", ("retire", "idle")),  # a restart alone is no reason for doubt
        ("bornreset", "1", ("keep", "traffic")),
        ("freshtraffic", "1", ("keep", "traffic")),
        ("textual", "1", ("keep", "latest")),  # a non-numeric version is never the latest
        ("textual", "canary", ("retire", "idle")),
    ],
)
def test_verdict(situations: Any, model: str, version: str, expected: tuple[str, str]) -> None:
    _, report, _ = situations
    assert verdict(report, model, version) == expected


def test_exact_counts(situations: Any) -> None:
    _, report, _ = situations
    v = by_version(report)
    assert v[("onereplica", "1")].calls == 1680  # 10/h for 168 h on one replica, exact
    assert v[("sixdays", "1")].calls == 1
    assert v[("stopped", "1")].calls == 0
    assert v[("latest", "1")].calls == 0
    # 1/min on two replicas: each counter's difference over the window, +-1 per replica at the edges.
    assert 20158 <= v[("traffic", "1")].calls <= 20162  # type: ignore[operator]
    # Born inside the window (counters start at 0): the last value is the count.
    assert 5758 <= v[("freshtraffic", "1")].calls <= 5762  # type: ignore[operator]
    assert v[("freshtraffic", "1")].calls == round(v[("freshtraffic", "1")].calls or 0)


def test_counter_reset_inside_the_window(situations: Any) -> None:
    _, report, _ = situations
    v = by_version(report)
    # 6/h for 168 h, restart at end-3d: reset-aware, never the post-restart value alone.
    assert 1000 <= v[("reset", "1")].calls <= 1015  # type: ignore[operator]
    # five calls before the restart, none after: still 5 (a reset is not the end of history).
    assert display_calls(v[("reset", "2")].calls) == 5
    # Loaded, called before the first scrape saw it, then restarted: increase() alone says 0.
    assert v[("bornreset", "1")].calls == 3


def test_hourly_qps(situations: Any) -> None:
    _, report, _ = situations
    v = by_version(report)
    assert v[("onereplica", "1")].max_hourly_qps == pytest.approx(10 / 3600, rel=0.05)
    assert v[("traffic", "1")].max_hourly_qps == pytest.approx(2 / 60, rel=0.05)
    assert v[("latest", "1")].max_hourly_qps == 0


def test_coverage(situations: Any) -> None:
    _, report, _ = situations
    v = by_version(report)
    assert v[("latest", "1")].coverage == pytest.approx(1.0, abs=0.002)
    assert v[("fresh", "1")].coverage == pytest.approx(3 / 7, abs=0.01)
    assert v[("fresh", "1")].available_at_window_start is False
    assert v[("gappy", "1")].coverage == pytest.approx(1 - 12 / 168, abs=0.01)
    assert v[("gappy", "1")].available_at_window_start is True
    assert v[("reset", "3")].coverage >= 0.99


def test_unloaded_version_is_not_listed(situations: Any) -> None:
    _, report, _ = situations
    listed = {v.model_version for v in report.versions if v.model_name == "unloaded"}
    assert listed == {"2", "3"}


def test_instances_are_listed(situations: Any) -> None:
    _, report, _ = situations
    assert by_version(report)[("gappy", "1")].instances == ["10.0.0.3:8501"]
    assert by_version(report)[("traffic", "1")].instances == ["10.0.0.1:8501", "10.0.0.2:8501"]


def test_min_calls_and_max_qps_thresholds(situations: Any) -> None:
    prom, _, _ = situations
    report, _ = run_report(prom.url, min_calls=2000)
    assert verdict(report, "onereplica", "1") == ("retire", "idle")  # 1680 < 2000
    assert verdict(report, "traffic", "1") == ("keep", "traffic")
    report, _ = run_report(prom.url, max_qps=0.01)
    assert verdict(report, "onereplica", "1") == ("retire", "idle")  # 0.0028 qps
    assert verdict(report, "traffic", "1") == ("keep", "traffic")  # 0.033 qps
    report, _ = run_report(prom.url, max_gap_ratio=0.1)
    assert verdict(report, "gappy", "1") == ("retire", "idle")  # a 7 % gap is now tolerated


def test_window_and_at(situations: Any) -> None:
    prom, _, _ = situations
    from fleet_helpers import END_TS

    # A day earlier, `unloaded` v1 was still AVAILABLE; over 1 d, the call six days ago is out.
    report, _ = run_report(prom.url, at=END_TS - 86400 - 3600, window=86400.0)
    listed = {v.model_version for v in report.versions if v.model_name == "unloaded"}
    assert listed == {"1", "2", "3"}
    assert verdict(report, "sixdays", "1") == ("retire", "idle")


def test_fixed_number_of_queries(situations: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    _, big, big_requests = situations
    tiny = {"replicas": ["a"], "models": [{"name": "m", "versions": [1]}]}
    with fleet_prometheus(tiny, tmp_path_factory.mktemp("tiny")) as (_, _, prom):
        small, small_requests = run_report(prom.url)
        with_html, html_requests = run_report(prom.url, hourly=True)
    assert len(small.versions) == 1 and len(big.versions) == JUDGED
    assert big_requests == small_requests == 6  # 5, and whether the recording rules cover the window
    assert html_requests == 7  # the sparklines' hourly range query
    assert with_html.versions[0].hourly_calls == [0.0] * 168


def test_recording_rule_expression_agrees_with_the_report(situations: Any) -> None:
    """`promql.calls` (one expression, for recording rules) gives the report's numbers, which the
    report computes from `promql.calls_inputs` in Python (fewer passes over the window)."""
    from fleet_helpers import END_TS, WEEK

    from tfs_traffic import contract
    from tfs_traffic.prometheus import promql
    from tfs_traffic.prometheus.api import PrometheusAccess, PrometheusClient

    prom, report, _ = situations
    answer = PrometheusClient(PrometheusAccess(url=prom.url)).query(promql.calls(contract.PATCHED_CALLS, WEEK), END_TS)
    expression = {(s["metric"]["model_name"], s["metric"]["model_version"]): float(s["value"][1]) for s in answer}
    from_report = {(v.model_name, v.model_version): v.calls_by_source["patched"] for v in report.versions}
    assert len(from_report) == JUDGED and set(from_report) <= set(expression)
    assert from_report == pytest.approx({k: expression[k] for k in from_report})


@pytest.mark.parametrize(
    ("before_end", "window", "versions"),
    [
        (0.0, 2400.0, 36),  # the usual: no reset anywhere near (every version's counter)
        (3 * 86400 - 600, 1800.0, 35),  # replica d restarted 10 minutes into the window: increase()
        # ... 30 minutes before it: no reset inside, the max: also the 2 calls (6/h) between the
        # restart at end-3d (2 minutes down) and the window's start.
        (3 * 86400 - 5400, 3600.0, 35),
        (4 * 86400 - 1800, 3600.0, 34),  # reset's 5 calls at end-4d (fresh 1, loaded at end-3d, not yet)
    ],
)
def test_calls_since_the_last_hourly_count_agree_with_the_report(
    situations: Any, before_end: float, window: float, versions: int
) -> None:
    """`promql.calls_since` (the recent part added to the recorded hourly counts) counts what the
    report's `promql.calls` counts, with fewer passes, but after a reset just before the window."""
    from fleet_helpers import END_TS

    from tfs_traffic import contract
    from tfs_traffic.prometheus import promql
    from tfs_traffic.prometheus.api import PrometheusAccess, PrometheusClient

    prom, _, _ = situations
    client = PrometheusClient(PrometheusAccess(url=prom.url))
    at, c = END_TS - before_end, contract.PATCHED_CALLS
    exact = client.query(promql.calls(c, window), at)
    recent = client.query(f"sum by ({promql.BY_VERSION}) ({promql.calls_since(c, window)})", at)
    as_dict = lambda r: {(s["metric"]["model_name"], s["metric"]["model_version"]): float(s["value"][1]) for s in r}  # noqa: E731
    more = {("reset", "1"): 2.0} if before_end == 3 * 86400 - 5400 else {}
    expected = {k: v + more.get(k, 0.0) for k, v in as_dict(exact).items()}
    assert (len(exact), as_dict(recent)) == (versions, expected)
