"""Every rule, alert and dashboard expression on a real Prometheus over the demo's backfilled week.

The demo scenario (tfs_traffic.prometheus.scenario.DEMO, both sources, three replicas, a restart, a scrape
gap, a Deployment rolled twice and autoscaled pods) is backfilled, its recording rules get their
history from `promtool tsdb create-blocks-from rules`, and each expression is checked against what
the scenario says happened and what `tfs-traffic report` says. The demo has no failed call, so this
adds NOT_FOUND answers for resnet (clearly marked below).
"""

import math
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from tfs_traffic.prometheus import backfill, scenario
from tfs_traffic.prometheus.api import PrometheusAccess, PrometheusClient
from tfs_traffic.prometheus.local import LocalPrometheus, Series, backfilled_prometheus
from tfs_traffic.queries import dashboards, mixin
from tfs_traffic.queries.history import RuleRange, backfill_rules
from tfs_traffic.report import verdicts as rep

DEMO = scenario.load("demo")
END = DEMO.end
WEEK = 7 * 86400
# What `tfs-traffic report --window 7d` says of the demo (tests/report has it too).
RETIRE = {("bert", "10"), ("resnet", "1"), ("resnet", "3"), ("search", "30"), ("search", "31")}
SCRAPE_GAPS = {("ranker", "100"), ("ranker", "101")}  # tfserving-2 was down for 12 h: 7% > 5%
# Versions with diurnal traffic, loaded now, averaging at least 60 calls an hour over the week.
BUSY = {("resnet", "4"), ("resnet", "5"), ("bert", "13"), ("ranker", "102"), ("search", "32"), ("search", "33")}
SIDECAR = {"namespace": "serving", "pod": "tfserving-0", "job": "tfs-traffic-sidecar", "instance": "10.0.0.1:9102"}


def extra_series() -> Iterator[Series]:
    """NOT_FOUND answers for a resnet version that was never loaded (counted under `__other__`,
    docs/metrics.md)."""
    times = [END - 3 * 3600 + 60 * i for i in range(181)]
    labels = {**SIDECAR, "model_name": "resnet", "model_version": "__other__", "api": "predict", "code": "NOT_FOUND"}
    yield "tfserving_model_calls_total", labels, [(t, float(i)) for i, t in enumerate(times[-61:])]


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusClient]:
    series = [*backfill.iter_series(DEMO), *extra_series()]
    server: LocalPrometheus = backfilled_prometheus(series, tmp_path_factory.mktemp("demo")).start()
    try:
        fast, hourly = mixin.recording_rule_groups()
        unloaded = END - 2 * 86400  # bert 9 is unloaded here, while it still gets 1 call/s
        added = backfill_rules(
            server,
            [
                RuleRange([hourly], DEMO.start + 3600, END),
                RuleRange([fast], END - 2 * 3600, END),
                RuleRange([fast], unloaded - 3600, unloaded + 3600),
            ],
        )
        assert added >= 3
        # The memory group reads the recorded series: a second pass, once their blocks are loaded.
        assert backfill_rules(server, [RuleRange([mixin.alert_rule_groups()[1]], END - 2 * 3600, END)]) == 1
        yield PrometheusClient(PrometheusAccess(server.url))
    finally:
        server.stop()


def versions(result: list[dict[str, Any]], model: str | None = None) -> dict[str, float]:
    return {
        s["metric"]["model_version"]: float(s["value"][1])
        for s in result
        if model is None or s["metric"].get("model_name") == model
    }


def idents(result: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(s["metric"]["model_name"], s["metric"]["model_version"]) for s in result}


def by_ident(result: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    return {(s["metric"]["model_name"], s["metric"]["model_version"]): float(s["value"][1]) for s in result}


def substitute(expr: str, model: str, window: str = "7d") -> str:
    return (
        expr.replace("$__range", window)
        .replace("$__rate_interval", "5m")
        .replace(f"${dashboards.NAMESPACE_VAR}", "serving")
        .replace(f"${dashboards.MODEL_VAR}", model)
    )


def test_recorded_rules_equal_their_expressions_and_the_scenario(prom: PrometheusClient) -> None:
    for group in mixin.recording_rule_groups():
        for rule in group["rules"]:
            # The last evaluation promtool recorded (the hourly group's lies within the hour before
            # END); scrape gaps exist only while tfserving-2 was down (end-5d to end-4d12h).
            near = END - 4.75 * 86400 if rule["record"] == mixin.GAP_1H else END
            history = prom.query(f"{rule['record']}[2h]", near)
            assert history, f"{rule['record']} has no backfilled history"
            at = max(float(ts) for series in history for ts, _ in series["values"])
            recorded, computed = prom.query(rule["record"], at), prom.query(rule["expr"], at)
            got = {tuple(sorted(s["metric"].items() - {("__name__", rule["record"])})): s for s in recorded}
            want = {tuple(sorted(s["metric"].items())): s for s in computed}
            assert want and got.keys() == want.keys(), rule["record"]
            for key, sample in want.items():
                assert float(got[key]["value"][1]) == pytest.approx(float(sample["value"][1]), rel=1e-9, abs=1e-9)


def test_hourly_calls_sum_to_the_scenarios_calls(prom: PrometheusClient) -> None:
    week = versions(prom.query(f"sum_over_time({mixin.CALLS_1H}[7d])", END), "resnet")
    # resnet 2: 3 calls at end-6d on tfserving-0, counted by both sources: max, not 6.
    assert week["2"] == 3
    assert week["1"] == 0 and week["3"] == 0  # resnet 1 stopped at end-7d2h; 3 was never called
    assert week["4"] > 1e6 and week["5"] > 0
    # The recorded count is never below the raw count (the report's exact formula), and above it
    # by at most the hour before the window and the last hour (counted by the raw part and by the
    # last hourly sample when they overlap). resnet 5 was loaded inside the window, at end-3d12h.
    raw = versions(prom.query(mixin.window_calls("7d", recorded=False), END), "resnet")
    rec = versions(prom.query(mixin.window_calls("7d"), END), "resnet")
    raw_plus = versions(prom.query(mixin.window_calls("7d1h", recorded=False), END), "resnet")
    last_hour = versions(prom.query(mixin.calls_in("1h"), END), "resnet")
    assert rec.keys() == raw.keys() == {"1", "2", "3", "4", "5", "__other__"}  # the NOT_FOUND calls too
    for version, calls in raw.items():
        assert calls <= rec[version] <= raw_plus[version] + last_hour[version], version
    # The busiest hour, recorded and raw.
    rec_qps = versions(prom.query(mixin.window_max_hourly_qps("7d"), END), "resnet")
    raw_qps = versions(prom.query(mixin.window_max_hourly_qps("7d", recorded=False), END), "resnet")
    assert rec_qps["4"] == pytest.approx(raw_qps["4"], rel=0.02) and rec_qps["1"] == 0
    reach = {s["metric"]["tfs_q"]: float(s["value"][1]) for s in prom.query(mixin.rules_reach("7d"), END)}
    last = max(float(ts) for series in prom.query(f"{mixin.CALLS_1H}[1h]", END) for ts, _ in series["values"])
    # Observed within an hour of the window's start: every version loaded before then (as the demo's
    # rolled `search` pods serve 30-32 throughout).
    there = [v for m in DEMO.models for v in m.versions if DEMO.start + v.loaded < END - WEEK + 3600]
    assert reach == {"start": len(there), "last": last} and END - 3600 < last < END
    # No rule history that old (a 30d window: use raw); stopped for over an hour (use raw too).
    assert {s["metric"]["tfs_q"] for s in prom.query(mixin.rules_reach("30d"), END)} == {"last"}
    assert {s["metric"]["tfs_q"] for s in prom.query(mixin.rules_reach("7d"), END + 7200)} == {"start"}


def test_coverage_shows_the_scrape_gap(prom: PrometheusClient) -> None:
    """tfserving-2 (ranker's only replica, scraped at :41 of each minute) failed its scrapes from end-5d
    to end-4d12h. Its last report before that (end-5d-19s) stays fresh for Prometheus' 5-minute
    lookback, so the one-minute steps from end-5d+5m to end-4d12h, 716 of them, are in the scrape gap
    (`up == 0`, nothing reported, the last report AVAILABLE) and not observed. The hourly records
    count the week's 10,080 minutes (168 hours of 60 steps: their slot is not on a whole minute),
    the raw subquery its 10,081 steps (both ends)."""
    observed = versions(prom.query(mixin.window_observed("7d"), END), "ranker")
    raw = versions(prom.query(mixin.window_observed("7d", recorded=False), END), "ranker")
    gap = versions(prom.query(mixin.window_worst_gap("7d"), END), "ranker")
    assert observed == {v: pytest.approx((10080 - 716) / 10080, rel=1e-12) for v in ("100", "101", "102")} | {
        # 103, loaded at end-20h: recorded up to the hourly group's last run, 40 minutes before END.
        "103": pytest.approx((20 * 60 - 40) / 60 / 168, rel=1e-12)
    }
    assert {v: x for v, x in raw.items() if v != "103"} == {
        v: pytest.approx((10081 - 716) / 10081, rel=1e-12) for v in ("100", "101", "102")
    }
    assert gap == {v: pytest.approx(716 / 10080, rel=1e-12) for v in ("100", "101", "102")}
    # Served across a rollout and by autoscaled pods: observed all along, never in a gap.
    search = versions(prom.query(mixin.window_observed("7d"), END), "search")
    assert {v: x for v, x in search.items() if v != "33"} == {"30": 1.0, "31": 1.0, "32": 1.0}
    assert versions(prom.query(mixin.window_worst_gap("7d"), END), "search") == {}


def alert_expr(name: str, config: mixin.MixinConfig = mixin.DEFAULT, reason: str = "") -> str:
    for rule in mixin.alert_rule_groups(config)[0]["rules"]:
        if rule["alert"] == name and rule["labels"].get("reason", "") == reason:
            return str(rule["expr"])
    raise AssertionError(name)


def test_memory_held_by_idle_versions_on_the_demo(prom: PrometheusClient) -> None:
    """The recorded estimate per version is TF Serving's formula over the demo's file sizes (x 1.2,
    truncated), and the memory rule sums it over the versions the idle expression selects, per model:
    the report's retires."""
    ram = by_ident(prom.query(mixin.ESTIMATED_RAM, END))
    assert ram[("resnet", "1")] == 123_312_537 and ram[("ranker", "100")] == 15_461_882_265
    assert ram[("fraud", "7")] == 50_331_649  # 41943041 x 1.2 = 50331649.2
    held = {s["metric"]["model_name"]: float(s["value"][1]) for s in prom.query(mixin.IDLE_RAM, END)}
    # Retired: resnet 1 and 3, bert 10 (11 is labelled), search 30 and 31 (ranker 100 and 101 are
    # in scrape gaps, fraud 7 is its model's only version).
    assert held == {
        "resnet": 2 * 123_312_537,
        "bert": 525_609_369,
        "search": ram[("search", "30")] + ram[("search", "31")],
    }


@pytest.mark.parametrize("max_gap_ratio", [0.05, 0.1])
def test_idle_and_coverage_alerts_say_what_the_report_says(prom: PrometheusClient, max_gap_ratio: float) -> None:
    """ModelVersionIdle fires for exactly the report's retires, ModelVersionTrafficCoverageLow for
    exactly its `unknown: scrape-gaps`, with the same window and tolerance (the report reads the
    version labels from the sidecar's poller, as the alerts do). Neither alert has a `for`: each
    fires when its expression holds (vmalert's replay checks that on VictoriaMetrics, tests/report)."""
    config = replace(mixin.DEFAULT, max_gap_ratio=max_gap_ratio)
    idle = idents(prom.query(alert_expr("ModelVersionIdle", config), END))
    low = idents(prom.query(alert_expr("ModelVersionTrafficCoverageLow", config), END))
    for rules in (False, True):
        report = rep.run(prom, rep.Options(at=END, window=WEEK, max_gap_ratio=max_gap_ratio, rules=rules))
        assert {v.reason for v in report.versions if v.model_name == "bert" and v.model_version == "11"} == {
            "label:rollback"
        }
        retire = {(v.model_name, v.model_version) for v in report.versions if v.verdict == "retire"}
        gaps = {(v.model_name, v.model_version) for v in report.versions if v.reason == "scrape-gaps"}
        assert (idle, low) == (retire, gaps), rules
    if max_gap_ratio == 0.05:
        assert (idle, low) == (RETIRE, SCRAPE_GAPS)
    else:  # the ranker's 12 h (7%) are tolerated: its idle versions retire
        assert (idle, low) == (RETIRE | SCRAPE_GAPS, set())


def test_other_alerts_on_the_demo(prom: PrometheusClient) -> None:
    not_found = prom.query(alert_expr("ModelVersionCalledWhileUnavailable", reason="not-found"), END)
    assert idents(not_found) == {("resnet", "__other__")} and float(not_found[0]["value"][1]) == 15
    unloaded_expr = alert_expr("ModelVersionCalledWhileUnavailable", reason="unloaded-in-use")
    assert idents(prom.query(unloaded_expr, END - 2 * 86400 + 600)) == {("bert", "9")}
    assert prom.query(unloaded_expr, END - 2 * 86400 + 1800) == []
    # Diurnal traffic neither "drops" nor "fades" at night: for every busy version the last hour
    # lies above the band and the week's fit stays above zero in 14 days.
    busy = {v for v, calls in by_ident(prom.query(f"avg_over_time({mixin.CALLS_1H}[7d])", END)).items() if calls >= 60}
    assert busy - {("bert", "9")} == BUSY  # bert 9 was unloaded two days ago
    band, last_hour = by_ident(prom.query(mixin.drop_band_lower(), END)), by_ident(prom.query(mixin.CALLS_RATE1H, END))
    assert all(3600 * last_hour[v] >= band[v] > 0 for v in BUSY)
    assert prom.query(alert_expr("ModelVersionTrafficDrop"), END) == []
    fit = by_ident(prom.query(f"predict_linear({mixin.CALLS_1H}[{mixin.DEFAULT.fading_lookback}], {14 * 86400})", END))
    assert all(fit[v] > 0 for v in BUSY)
    assert prom.query(alert_expr("ModelVersionTrafficFading"), END) == []


def test_every_dashboard_query_returns_the_scenarios_data(prom: PrometheusClient) -> None:
    model = dashboards.build_dashboards()[dashboards.MODEL_DASHBOARD]
    exprs = dashboards.dashboard_exprs(model)
    panels = dashboards.panel_queries()
    assert sorted(exprs) == sorted(e for queries in panels.values() for e, _ in queries)
    results = {title: [prom.query(substitute(e, "resnet"), END) for e, _ in q] for title, q in panels.items()}
    for title, per_query in results.items():
        for result in per_query:
            assert result, f"panel {title!r} has no data on the demo"
    qps = versions(results["Calls per second by version"][0])
    assert set(qps) == {"1", "2", "3", "4", "5", "__other__"}  # the NOT_FOUND calls show too
    assert (
        qps["4"] > qps["5"] > 0 and qps["1"] == qps["2"] == qps["3"] == 0 and qps["__other__"] == pytest.approx(1 / 60)
    )
    share = versions(results["Share of traffic by version"][0])
    assert math.fsum(share.values()) == pytest.approx(1.0) and share["4"] > 0.5 and share["1"] == 0
    idle = versions(results["Idle loaded versions (hours observed in range)"][0])
    assert set(idle) == {"1", "3"} and all(167 <= h <= 169 for h in idle.values())
    assert set(versions(results["Loaded versions"][0]).values()) == {1.0}
    codes = {s["metric"]["code"]: float(s["value"][1]) for s in results["Calls by status code (sidecar)"][0]}
    assert set(codes) == {"OK", "NOT_FOUND"} and codes["NOT_FOUND"] == pytest.approx(1 / 60)
    p50, p99 = (versions(r) for r in results["Latency by version (sidecar round trip)"])
    # backfill.LATENCY_PROFILE puts half the calls at or under 10 ms and 99 % at or under 100 ms.
    busy = {"4", "5"}
    assert busy <= set(p50) and busy <= set(p99)
    assert all(p50[v] == pytest.approx(0.01, rel=0.02) and p99[v] == pytest.approx(0.1, rel=0.02) for v in busy)
    title = "Scrape coverage by version (observed share of each hour, fleet-wide)"
    cover = versions(results[title][0])
    assert set(cover) == {"1", "2", "3", "4", "5"} and min(cover.values()) > 0.95
    # The ranker's scrape gap shows on its coverage panel at the time of the gap.
    coverage_expr = panels[title][0][0]
    assert prom.query(substitute(coverage_expr, "ranker"), END - 4.75 * 86400) == []


def test_dashboard_variables_list_the_demo(prom: PrometheusClient) -> None:
    for name, (selector, label) in dashboards.variable_selectors().items():
        values = {s["metric"].get(label) for s in prom.query(f"count by ({label}) ({substitute(selector, '')})", END)}
        expected = {"serving"} if name == dashboards.NAMESPACE_VAR else {"resnet", "bert", "ranker", "fraud", "search"}
        assert values == expected, name


def test_report_uses_the_rules_and_agrees_with_raw_queries(prom: PrometheusClient) -> None:
    """Same verdicts from the hourly series as from the raw counters; raw when rules are too young."""
    for window in (7 * 86400.0, 2 * 86400.0):
        raw = rep.run(prom, rep.Options(at=END, window=window, rules=False))
        rules = rep.run(prom, rep.Options(at=END, window=window))
        assert rules.queries == raw.queries + 2  # whether the rules cover the window; the calls since their last run
        got = {(v.model_name, v.model_version): (v.verdict, v.reason) for v in rules.versions}
        want = {(v.model_name, v.model_version): (v.verdict, v.reason) for v in raw.versions}
        assert got == want
        by_key = {(v.model_name, v.model_version): v for v in raw.versions}
        for v in rules.versions:
            assert v.calls_by_source.keys() == {"rules"}
            r = by_key[(v.model_name, v.model_version)]
            # Hourly pieces: up to the last hour missing (the group's last run), up to an hour
            # before the window included (its first); the report clamps at 1.
            assert v.coverage == pytest.approx(r.coverage, abs=3600 / window + 0.005)
            assert r.calls is not None and v.calls is not None and v.calls >= r.calls
    # The rule history starts with the demo's history: a 9-day window falls back to raw queries.
    nine = rep.run(prom, rep.Options(at=END, window=9 * 86400.0))
    # Versions never called have no sidecar counter (prometheus_client creates it at the first call).
    sources = {frozenset(v.calls_by_source) for v in nine.versions}
    assert sources == {frozenset({"patched"}), frozenset({"patched", "sidecar"})}
