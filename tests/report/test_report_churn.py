"""The report on a Kubernetes fleet whose pods come and go, on two query engines.

One history — a deployment rolled twice inside the window, pods an autoscaler adds a few hours a
day, a pod down for 12 hours, a version loaded mid-window on rolling pods, a new pod whose first
scrape already shows calls, two clusters with the same pod names, a version last called before
the window — backfilled once into a real Prometheus and copied into a real VictoriaMetrics (MetricsQL:
other `increase`, lookback and staleness rules). Both must give the same verdicts and calls.
"""

import csv
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from fleet_helpers import END_TS, by_version, fleet_engines, run_report

from tfs_traffic.report import verdicts as rep

HOUR, DAY = 3600.0, 86400.0
WEB = ["web-0a", "web-0b", "web-1a", "web-1b", "web-2a", "web-2b"]
CHURN: dict[str, Any] = {
    "days": 10,
    "replicas": [
        # A two-replica deployment rolled at end-5d and end-2d: each new pod starts, the old one
        # is deleted five minutes later (its series end, its `up` too).
        {"name": "web-0a", "ip": "10.1.0.1", "to": "end-4d23h55m"},
        {"name": "web-0b", "ip": "10.1.0.2", "scrape_offset": 30, "to": "end-4d23h55m"},
        {"name": "web-1a", "ip": "10.1.1.1", "from": "end-5d", "to": "end-1d23h55m"},
        {"name": "web-1b", "ip": "10.1.1.2", "scrape_offset": 30, "from": "end-5d", "to": "end-1d23h55m"},
        {"name": "web-2a", "ip": "10.1.2.1", "from": "end-2d"},
        {"name": "web-2b", "ip": "10.1.2.2", "scrape_offset": 30, "from": "end-2d"},
        # A pod that always runs, and the pods an autoscaler adds every day from 10:00 to 14:00.
        {"name": "base", "ip": "10.2.0.1"},
        {"name": "burst", "ip": "10.2.0.2", "daily": ["10h", "14h"]},
        {"name": "new-0", "ip": "10.2.0.3", "from": "end-23h59m30s"},
        # down-0 is down (up == 0) for 12 h; down-1 serves the same versions all along.
        {"name": "down-0", "ip": "10.3.0.1"},
        {"name": "down-1", "ip": "10.3.0.2"},
        # Two clusters, one pod name; the one in eu-1 is down for 12 h.
        {"name": "eu", "pod": "tfserving-0", "cluster": "eu-1", "ip": "10.4.0.1"},
        {"name": "us", "pod": "tfserving-0", "cluster": "us-1", "ip": "10.5.0.1", "scrape_offset": 30},
    ],
    "models": [
        {"name": "rolled", "versions": [{"version": v, "replicas": WEB} for v in (1, 2, 3)]},
        {
            "name": "fresh",
            "versions": [
                {"version": 1, "replicas": WEB},
                {"version": 2, "loaded": "end-3d", "replicas": WEB},
                {"version": 3, "replicas": WEB},
            ],
        },
        {"name": "autoscaled", "versions": [{"version": v, "replicas": ["base", "burst"]} for v in (1, 2, 3)]},
        {"name": "newpod", "versions": [{"version": v, "replicas": ["base", "new-0"]} for v in (1, 2)]},
        {"name": "gapmodel", "versions": [{"version": v, "replicas": ["down-0", "down-1"]} for v in (1, 2)]},
        {"name": "geo", "versions": [{"version": v, "replicas": ["eu", "us"]} for v in (1, 2, 3)]},
        {"name": "monthly", "versions": [{"version": v, "replicas": ["base"]} for v in (1, 2)]},
    ],
    "traffic": [
        {"model": "rolled", "version": 2, "rate": "1/min"},
        {"model": "autoscaled", "version": 2, "rate": "1/min", "replicas": ["burst"]},
        # 20 calls in the 30 s between the pod's start and its first scrape, none after.
        {
            "model": "newpod",
            "version": 1,
            "rate": "1/s",
            "from": "end-23h59m30s",
            "to": "end-23h59m10s",
            "replicas": ["new-0"],
        },
        {"model": "geo", "version": 2, "rate": "1/min"},
        {"model": "monthly", "version": 1, "calls": 1, "at": "end-9d"},
    ],
    "events": [
        {"gap": "down-0", "from": "end-4d", "to": "end-3d12h"},
        {"gap": "eu", "from": "end-6d", "to": "end-5d12h"},
    ],
}

EXPECTED = {
    ("rolled", "1"): ("retire", "idle", 0),
    # 1/min on two pods per generation, three generations, each pod's own counter: 2,884 + 2,885
    # (deleted at end-4d23h55m, last scraped a minute or 30 s before), 4,324 + 4,324, 2,880 + 2,879.
    ("rolled", "2"): ("keep", "traffic", 20176),
    ("rolled", "3"): ("keep", "latest", 0),
    ("fresh", "1"): ("retire", "idle", 0),
    ("fresh", "2"): ("unknown", "not-observed-long-enough", 0),  # loaded at end-3d on rolling pods
    ("fresh", "3"): ("keep", "latest", 0),
    ("autoscaled", "1"): ("retire", "idle", 0),
    # Seven autoscaled pods, 10:00-14:00 each day: 239 calls each (the last minute is never scraped).
    ("autoscaled", "2"): ("keep", "traffic", 1673),
    ("autoscaled", "3"): ("keep", "latest", 0),
    ("newpod", "1"): ("keep", "traffic", 20),  # all 20 calls before the pod's first scrape
    ("newpod", "2"): ("keep", "latest", 0),
    ("gapmodel", "1"): ("unknown", "scrape-gaps", 0),  # down-0: up == 0 for 12 h (7 % > 5 %)
    ("gapmodel", "2"): ("keep", "latest", 0),
    ("geo", "1"): ("unknown", "scrape-gaps", 0),  # eu-1's tfserving-0, not masked by us-1's
    ("geo", "2"): ("keep", "traffic", 20160),  # 10,080 in each cluster
    ("geo", "3"): ("keep", "latest", 0),
    ("monthly", "1"): ("retire", "idle", 0),
    ("monthly", "2"): ("keep", "latest", 0),
}
ENGINES = ("prometheus", "victoriametrics")


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with fleet_engines(CHURN, tmp_path_factory.mktemp("churn")) as (_, _, urls):
        yield urls


@pytest.fixture(scope="module")
def reports(engines: dict[str, str]) -> dict[str, rep.Report]:
    return {name: run_report(url)[0] for name, url in engines.items()}


@pytest.mark.parametrize("engine", ENGINES)
def test_verdicts_and_calls(reports: dict[str, rep.Report], engine: str) -> None:
    got = {(v.model_name, v.model_version): (v.verdict, v.reason, v.calls) for v in reports[engine].versions}
    assert got == EXPECTED


def test_both_engines_agree(reports: dict[str, rep.Report]) -> None:
    prom, vm = (by_version(reports[e]) for e in ENGINES)
    assert prom.keys() == vm.keys() == EXPECTED.keys()
    for key, p in prom.items():
        v = vm[key]
        assert (p.verdict, p.reason, p.calls, p.last_call_at) == (v.verdict, v.reason, v.calls, v.last_call_at), key
        # Windows are [start, end] in Prometheus 2, (start, end] in VictoriaMetrics: one step of 1,009.
        assert p.coverage == pytest.approx(v.coverage, abs=0.002), key


@pytest.mark.parametrize("engine", ENGINES)
def test_coverage_is_fleet_wide(reports: dict[str, rep.Report], engine: str) -> None:
    v = by_version(reports[engine])
    for key in [("rolled", "1"), ("autoscaled", "1"), ("gapmodel", "1"), ("geo", "1"), ("monthly", "1")]:
        assert v[key].coverage >= 0.998, key  # across rollouts, autoscaling, and the other pod
    assert v[("fresh", "2")].coverage == pytest.approx(3 / 7, abs=0.002)
    assert v[("fresh", "2")].available_at_window_start is False
    assert v[("rolled", "1")].available_at_window_start is True
    # Only the pods serving it now are listed: the last generation.
    assert v[("rolled", "1")].instances == ["10.1.2.1:8501", "10.1.2.2:8501"]


@pytest.mark.parametrize("engine", ENGINES)
def test_last_call(reports: dict[str, rep.Report], engine: str) -> None:
    v = by_version(reports[engine])
    # One call at end-9d, seen by the next scrape: the hour ending at end-9d+1h. A retire with a
    # call within the lookback gets a note.
    assert v[("monthly", "1")].last_call_at == END_TS - 9 * DAY + HOUR
    assert v[("monthly", "1")].note is not None and "8d ago (2025-03-01T01:00:00Z)" in v[("monthly", "1")].note
    assert v[("newpod", "1")].last_call_at == END_TS - DAY + HOUR  # a series born with its calls
    assert v[("rolled", "2")].last_call_at == END_TS
    assert v[("autoscaled", "2")].last_call_at == END_TS - 10 * HOUR  # the last burst ended at 13:59 yesterday
    assert v[("rolled", "1")].last_call_at is None and v[("rolled", "1")].note is None
    assert v[("rolled", "2")].note is None  # notes are for retires


@pytest.mark.parametrize("engine", ENGINES)
def test_selector_narrows_to_one_cluster(engines: dict[str, str], engine: str) -> None:
    report, requests = run_report(engines[engine], selector='cluster="us-1"')
    got = {(v.model_name, v.model_version): (v.verdict, v.reason, v.calls) for v in report.versions}
    assert got == {
        ("geo", "1"): ("retire", "idle", 0),  # us-1's pod had no gap
        ("geo", "2"): ("keep", "traffic", 10080),
        ("geo", "3"): ("keep", "latest", 0),
    }
    assert requests == 5  # no recording-rule check: recorded series have no cluster label


def test_cli_formats_show_the_last_call(engines: dict[str, str], capsys: Any) -> None:
    from fleet_helpers import END

    from tfs_traffic import cli

    common = ["report", "--prometheus", engines["victoriametrics"], "--at", END]
    assert cli.main([*common, "--format", "json", "--selector", '{cluster="us-1"}', "--lookback", "10d"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["selector"] == 'cluster="us-1"' and data["lookback_seconds"] == 10 * 86400
    last = {v["model_version"]: (v["last_call_at"], v["note"]) for v in data["versions"]}
    assert last == {"1": (None, None), "2": (END, None), "3": (None, None)}
    assert cli.main([*common]) == 0
    table = capsys.readouterr().out
    assert "LAST CALL" in table and "8d ago" in table and "none in 30d" in table
    assert "note: monthly:1 retire: last called 8d ago (2025-03-01T01:00:00Z)" in table
    assert cli.main([*common, "--format", "csv"]) == 0
    rows = {(r["model_name"], r["model_version"]): r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert rows[("monthly", "1")]["last_call_at"] == "2025-03-01T01:00:00Z" and rows[("monthly", "1")]["note"]
    assert cli.main([*common, "--format", "markdown"]) == 0
    # VictoriaMetrics' left-open ranges: 1,008 of Prometheus' 1,009 steps, 99.9%.
    assert "| monthly | 1 | **retire** | idle | 0 | 0 | 99.9% | 8d ago |" in capsys.readouterr().out


@pytest.mark.parametrize("selector", ["cluster=eu-1", 'cluster="eu-1" namespace="ml"', "up{a='b'}"])
def test_bad_selector_is_one_line(selector: str) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfs_traffic.cli",
            "report",
            "--prometheus",
            "http://127.0.0.1:9",
            "--selector",
            selector,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and out.stdout == "" and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        f'tfs-traffic: error: --selector expects PromQL label matchers like \'cluster="eu-1",namespace="ml"\', '
        f"got {selector!r}"
    ]


def test_a_pod_scraped_by_two_jobs_counts_once(prometheus_factory: Any) -> None:
    """An annotation job beside a PodMonitor: every series twice, under another `job` (and the
    Operator's `endpoint`); the calls are one pod's, counted once."""
    from tfs_traffic import contract

    start = END_TS - 7 * DAY - HOUR
    times = range(int(start), int(END_TS) + 1, 60)
    series = []
    for job, extra in (("tfserving", {}), ("serving/tfserving", {"endpoint": "http"})):
        target = {"namespace": "ml", "pod": "p-0", "instance": "10.0.0.1:8501", "job": job, **extra}
        for version in ("1", "2"):
            labels = {**target, "model_name": "m", "model_version": version}
            series.append((contract.PATCHED_AVAILABLE, labels, [(t, 1.0) for t in times]))
            calls = (lambda t: (t - start) // 60) if version == "1" else (lambda t: 0)
            series.append((contract.PATCHED_CALLS, labels, [(t, float(calls(t))) for t in times]))
        series.append(("up", target, [(t, 1.0) for t in times]))
    report, _ = run_report(prometheus_factory(series).url)
    got = {v.model_version: (v.verdict, v.reason, v.calls) for v in report.versions}
    assert got == {"1": ("keep", "traffic", 10080), "2": ("keep", "latest", 0)}
