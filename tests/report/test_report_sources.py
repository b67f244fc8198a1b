"""Patched server and sidecar together, the sidecar alone, and per-source gaps: counted once (max)."""

from typing import Any

import pytest
from fleet_helpers import END_TS, WEEK, by_version, fleet_prometheus, run_report

from tfs_traffic import contract

BOTH: dict[str, Any] = {
    "sources": ["patched", "sidecar"],
    "replicas": [{"name": "a", "ip": "10.0.0.1"}, {"name": "b", "ip": "10.0.0.2", "scrape_offset": 30}],
    "models": [{"name": "m", "versions": [1, 2, 3]}, {"name": "n", "versions": [1, 2]}],
    "traffic": [
        {"model": "m", "version": 1, "rate": "10/h", "replicas": ["a"]},
        {"model": "n", "version": 2, "rate": "1/min"},
    ],
    "events": [{"restart": "b", "at": "end-2d", "sidecar": True}],
}


def test_both_sources_count_once(tmp_path: Any) -> None:
    with fleet_prometheus(BOTH, tmp_path) as (_, _, prom):
        report, _ = run_report(prom.url)
    v = by_version(report)
    assert v[("m", "1")].calls == 1680  # not 3360: max of the two sources, never the sum
    assert v[("m", "1")].calls_by_source == {"patched": 1680, "sidecar": 1680}
    assert (v[("m", "1")].verdict, v[("m", "1")].reason) == ("keep", "traffic")
    assert (v[("m", "2")].verdict, v[("m", "2")].reason) == ("retire", "idle")
    assert v[("m", "2")].calls == 0
    assert v[("m", "2")].coverage >= 0.99
    # Both sources' instances of one pod are one replica (coverage is not halved by the sidecar).
    assert v[("m", "1")].instances == ["10.0.0.1:8501", "10.0.0.1:9102", "10.0.0.2:8501", "10.0.0.2:9102"]
    assert v[("n", "2")].max_hourly_qps == pytest.approx(2 / 60, rel=0.05)


def test_sidecar_alone(tmp_path: Any) -> None:
    sidecar_only = {**BOTH, "sources": ["sidecar"]}
    with fleet_prometheus(sidecar_only, tmp_path) as (_, _, prom):
        report, _ = run_report(prom.url)
    v = by_version(report)
    assert v[("m", "1")].calls == 1680
    assert v[("m", "1")].calls_by_source == {"sidecar": 1680}
    # An idle version has no sidecar counter series at all (prometheus_client creates it at the
    # first call): that is 0 calls, since the sidecar does count for this fleet.
    assert (v[("m", "2")].verdict, v[("m", "2")].reason, v[("m", "2")].calls) == ("retire", "idle", 0)
    assert (v[("m", "3")].verdict, v[("m", "3")].reason) == ("keep", "latest")


STEP = 60
START = END_TS - WEEK - 3600


def _gauge(gap: tuple[float, float] | None = None) -> list[tuple[float, float]]:
    return [
        (t, 1.0) for t in range(int(START), int(END_TS) + 1, STEP) if gap is None or not gap[0] <= t - END_TS < gap[1]
    ]


def _counter(increments_at: tuple[float, ...] = ()) -> list[tuple[float, float]]:
    return [(t, float(sum(1 for x in increments_at if x < t))) for t in range(int(START), int(END_TS) + 1, STEP)]


GAP = (-5 * 86400.0, -4.5 * 86400.0)  # 12 h, 7 % of the week


def test_hand_written_series(prometheus_factory: Any) -> None:
    """Series as another exporter setup might label them: no pod, only instance, or no instance."""
    v = lambda model, version, **extra: {"model_name": model, "model_version": version, **extra}  # noqa: E731
    series = [
        # A failed call (NOT_FOUND) through the sidecar still shows a client uses the version.
        (contract.SIDECAR_AVAILABLE, v("s", "1", instance="h1:9102"), _gauge()),
        (contract.SIDECAR_AVAILABLE, v("s", "2", instance="h1:9102"), _gauge()),
        (
            contract.SIDECAR_CALLS,
            v("s", "1", instance="h1:9102", api="predict", code="NOT_FOUND"),
            _counter((END_TS - 3 * 86400,)),
        ),
        (contract.SIDECAR_CALLS, v("s", "2", instance="h1:9102", api="predict", code="OK"), _counter()),
        # The patched target has a gap, the sidecar on the same host saw everything: observed.
        (contract.PATCHED_AVAILABLE, v("g", "1", instance="h2:8501"), _gauge(GAP)),
        (contract.SIDECAR_AVAILABLE, v("g", "1", instance="h2:9102"), _gauge()),
        (contract.PATCHED_AVAILABLE, v("g", "2", instance="h2:8501"), _gauge()),
        (contract.PATCHED_CALLS, v("g", "1", instance="h2:8501"), _counter()),
        # Only one source, with the gap: unknown. No instance label at all.
        (contract.PATCHED_AVAILABLE, v("p", "1"), _gauge(GAP)),
        (contract.PATCHED_AVAILABLE, v("p", "2"), _gauge()),
        (contract.PATCHED_CALLS, v("p", "1"), _counter()),
        # Excluded from judging: the sidecar's bounded-cardinality buckets.
        (contract.SIDECAR_AVAILABLE, v("__other__", "1", instance="h1:9102"), _gauge()),
        (contract.SIDECAR_CALLS, v("s", "unresolved", instance="h1:9102", api="predict", code="OK"), _counter()),
    ]
    prom = prometheus_factory(series)
    report, _ = run_report(prom.url)
    got = {(x.model_name, x.model_version): (x.verdict, x.reason, x.calls) for x in report.versions}
    assert got == {
        ("s", "1"): ("keep", "traffic", 1),
        ("s", "2"): ("keep", "latest", 0),
        ("g", "1"): ("retire", "idle", 0),
        ("g", "2"): ("keep", "latest", 0),
        ("p", "1"): ("unknown", "scrape-gaps", 0),
        ("p", "2"): ("keep", "latest", 0),
    }


def test_no_call_counters_at_all_is_never_retire(prometheus_factory: Any) -> None:
    # Only the sidecar's status poller (no proxy): inventory without any call counter.
    series = [
        (contract.SIDECAR_AVAILABLE, {"model_name": "q", "model_version": str(n), "instance": "h:9102"}, _gauge())
        for n in (1, 2)
    ]
    report, _ = run_report(prometheus_factory(series).url)
    got = {x.model_version: (x.verdict, x.reason, x.calls) for x in report.versions}
    assert got == {"1": ("unknown", "no-call-data", None), "2": ("keep", "latest", None)}


def test_history_exactly_one_window_long(tmp_path: Any) -> None:
    """The first scrape lands 40 s after the window's start: a version there from the beginning
    with a gap is `scrape-gaps`, not `not-observed-long-enough`; an idle one is still `idle`."""
    fleet = {
        "days": 7,
        "replicas": [{"name": "a", "scrape_offset": 40}],
        "models": [{"name": "m", "versions": [1, 2, 3]}, {"name": "n", "versions": [1, 2]}],
        "events": [{"gap": "a", "from": "2d", "to": "2d12h"}],
    }
    with fleet_prometheus(fleet, tmp_path) as (_, _, prom):
        gaps, _ = run_report(prom.url)
        tolerant, _ = run_report(prom.url, max_gap_ratio=0.1)
    assert {(x.model_name, x.model_version): x.reason for x in gaps.versions} == {
        ("m", "1"): "scrape-gaps",
        ("m", "2"): "scrape-gaps",
        ("m", "3"): "latest",
        ("n", "1"): "scrape-gaps",
        ("n", "2"): "latest",
    }
    assert by_version(gaps)[("m", "1")].available_at_window_start is True
    assert {(x.model_name, x.model_version): x.verdict for x in tolerant.versions if x.reason != "latest"} == {
        ("m", "1"): "retire",
        ("m", "2"): "retire",
        ("n", "1"): "retire",
    }
