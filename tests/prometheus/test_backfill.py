"""Simulated history: exactly the series the metric contract describes, and the demo built on it."""

import hashlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from tfs_traffic import contract, modelconfig
from tfs_traffic.errors import UsageError
from tfs_traffic.prometheus import backfill, scenario
from tfs_traffic.prometheus.local import LocalPrometheus, write_openmetrics

END = "2025-03-10T00:00:00Z"
TINY: dict[str, Any] = {
    "end": END,
    "days": 0.125,  # 3 h
    "sources": ["patched", "sidecar"],
    "replicas": ["a", {"name": "b", "ip": "10.9.0.2", "scrape_offset": 30}],
    "models": [
        {
            "name": "m",
            "version_labels": {"stable": 1},
            "versions": [{"version": 1, "loaded": "30m", "unloaded": "2h30m"}, 2],
        }
    ],
    "traffic": [{"model": "m", "version": 1, "rate": "1/min", "replicas": ["a"]}],
    "events": [{"restart": "a", "at": "1h", "down": "2m"}, {"gap": "b", "from": "1h30m", "to": "1h45m"}],
}


def series_of(data: dict[str, Any]) -> dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]]:
    sc = scenario.parse(data, "tiny")
    return {(name, tuple(sorted(labels.items()))): list(samples) for name, labels, samples in backfill.iter_series(sc)}


def find(all_series: dict[Any, Any], name: str, **labels: str) -> list[tuple[float, float]]:
    [match] = [v for (n, ls), v in all_series.items() if n == name and labels.items() <= dict(ls).items()]
    return match


def test_patched_counter_and_gauge_follow_the_contract() -> None:
    s = series_of(TINY)
    start = scenario.parse(TINY, "tiny").start
    rel = lambda samples: [(t - start, v) for t, v in samples]  # noqa: E731
    calls = rel(find(s, contract.PATCHED_CALLS, model_version="1", pod="a"))
    gauge = dict(rel(find(s, contract.PATCHED_AVAILABLE, model_version="1", pod="a")))
    counts = dict(calls)
    assert calls[0] == (1800, 0)  # created at 0 when AVAILABLE at 30m
    assert counts[1800 + 20 * 60] == 20  # 1/min
    assert counts[3600 - 60] == 29  # last scrape before the restart at 1h
    assert 3600 not in counts and 3660 not in counts  # down for 2 minutes: no samples
    assert counts[3720] == 0  # a new process: the counter starts again at 0
    assert counts[9000] == counts[10740] == 88  # frozen after the unload at 2h30m (88 min after 1h02m)
    assert gauge[8940] == 1 and gauge[9000] == 0 and gauge[10800] == 0
    # Replica b: no calls there, and no samples inside its gap.
    b_calls = rel(find(s, contract.PATCHED_CALLS, model_version="1", pod="b"))
    assert {v for _, v in b_calls} == {0}
    assert not [t for t, _ in b_calls if 5400 <= t < 6300]
    assert b_calls[0][0] == 1800 + 30  # scraped 30 s after each minute
    up_b = dict(rel(find(s, "up", pod="b", job="tfserving")))
    assert up_b[5430] == 0 and up_b[6330] == 1 and up_b[5370] == 1
    up_a = dict(rel(find(s, "up", pod="a", job="tfserving")))
    assert up_a[3600] == 0 and up_a[3660] == 0 and up_a[3720] == 1
    labels = dict(next(ls for (n, ls) in s if n == contract.PATCHED_CALLS))
    assert labels["job"] == "tfserving" and labels["namespace"] == "serving"
    assert {dict(ls)["instance"] for (n, ls) in s if n == contract.PATCHED_CALLS} == {"10.0.0.1:8501", "10.9.0.2:8501"}


def test_sidecar_series() -> None:
    s = series_of(TINY)
    start = scenario.parse(TINY, "tiny").start
    calls = find(s, contract.SIDECAR_CALLS, model_version="1", pod="a")
    assert dict(find(s, "up", pod="a", job="tfs-traffic-sidecar").__iter__())  # scraped
    # Created at the first call; the sidecar lives through the server's restart: no reset.
    assert calls[0][0] - start == 1800 + 60 and calls[0][1] == 1
    values = [v for _, v in calls]
    assert values == sorted(values) and values[-1] == 30 + 88  # the call the server lost at its restart, too
    labels = dict(next(ls for (n, ls) in s if n == contract.SIDECAR_CALLS))
    assert labels["api"] == "predict" and labels["code"] == "OK" and labels["instance"] == "10.0.0.1:9102"
    # Never called on b: no sidecar counter there (prometheus_client creates it at the first call).
    assert not [1 for (n, ls) in s if n == contract.SIDECAR_CALLS and dict(ls)["pod"] == "b"]
    upstream = dict((t - start, v) for t, v in find(s, contract.SIDECAR_UP, pod="a"))
    assert upstream[3600] == 0 and upstream[3720] == 1
    gauge = dict((t - start, v) for t, v in find(s, contract.SIDECAR_AVAILABLE, model_version="1", pod="a"))
    assert gauge[1800] == 1 and gauge[3600] == 0 and gauge[9000] == 0  # kept at 0 after the unload


def test_deterministic_and_seeded() -> None:
    diurnal = {**TINY, "days": 2, "traffic": [{"model": "m", "version": 2, "rate": "5/s", "shape": "diurnal"}]}

    def digest(data: dict[str, Any]) -> str:
        out = io.StringIO()
        write_openmetrics(out, backfill.iter_series(scenario.parse(data, "x")))
        return hashlib.sha256(out.getvalue().encode()).hexdigest()

    assert digest(diurnal) == digest(diurnal)
    assert digest(diurnal) != digest({**diurnal, "seed": 2})


def test_the_pollers_answers() -> None:
    """The status poller beside a patched server (source `poller`): no call of its own, and per replica
    what the server resolves a request without a version to (its highest AVAILABLE version; the last
    answer while none is) and each label to; earlier answers at 0; all gone when the sidecar restarts."""
    data = {
        "end": END,
        "days": 1,
        "sources": ["patched", "poller"],
        "replicas": ["a", "b"],
        "models": [
            {
                "name": "m",
                "version_labels": {"stable": 1},
                "versions": [1, {"version": 2, "loaded": "12h", "replicas": ["a"]}],
            }
        ],
        "events": [{"restart": "a", "at": "18h", "down": "10m", "sidecar": True}],
    }
    s = series_of(data)
    start = scenario.parse(data, "poller").start
    assert not [n for n, _ in s if n == contract.SIDECAR_CALLS]
    minutes = lambda samples: [(round((t - start) / 60), v) for t, v in samples]  # noqa: E731
    # Replica a: 1 is the latest until 2 is loaded at 12h, then 0 until the sidecar restarts at 18h;
    # the new sidecar never saw 1 as the latest. 2 from 12h on, but for the 10 minutes down.
    a1 = find(s, contract.SIDECAR_LATEST, pod="a", model_version="1")
    assert minutes(a1) == [(m, 1.0) for m in range(720)] + [(m, 0.0) for m in range(720, 1080)]
    a2 = find(s, contract.SIDECAR_LATEST, pod="a", model_version="2")
    assert minutes(a2) == [(m, 1.0) for m in range(720, 1440 + 1) if not 1080 <= m < 1090]
    # Replica b never serves 2: 1 is its latest all day.
    b1 = find(s, contract.SIDECAR_LATEST, pod="b", model_version="1")
    assert len(b1) == 1441 and {v for _, v in b1} == {1.0}
    assert not [
        ls for n, ls in s if n == contract.SIDECAR_LATEST and ("pod", "b") in ls and ("model_version", "2") in ls
    ]
    label = find(s, contract.SIDECAR_LABEL, pod="a", model_version="1", version_label="stable")
    assert len(label) == 1431 and {v for _, v in label} == {1.0}
    assert len(find(s, contract.SIDECAR_LABEL, pod="b", version_label="stable")) == 1441


def test_models_config_matches_the_end_state() -> None:
    text = backfill.models_config_text(scenario.parse(TINY, "tiny"))
    [entry] = modelconfig.entries(modelconfig.parse_text(text))
    assert entry.name == "m" and entry.base_path == "/models/m"
    assert entry.policy == "specific" and entry.policy_versions == (2,)  # 1 was unloaded
    assert dict(entry.version_labels) == {"stable": 1}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"models": [{"name": "m", "versions": [{"version": 1, "loaded": "tomorrow"}]}]},
         r"models\[0\]\.versions\[0\]\.loaded: invalid time 'tomorrow'"),
        ({"models": [{"name": "m", "versions": [1]}], "traffic": [{"model": "m", "version": 1, "rate": "fast"}]},
         r"traffic\[0\]\.rate: invalid rate 'fast'"),
        ({"models": [{"name": "m", "versions": [1]}], "traffic": [{"model": "m", "version": 3, "rate": 1}]},
         r"traffic\[0\]\.version: model m has no version 3"),
        ({"replicas": ["a", "a"]}, r"replicas\[1\]: replica 'a' is listed twice"),
        ({"events": [{"gap": "z", "from": 0, "to": "1h"}]}, r"events\[0\]\.gap\[0\]: unknown replica 'z'"),
        ({"colour": "red"}, r"colour: unknown field"),
        ({"models": [{"name": "m", "versions": [{"version": 1, "loaded": "end+1d"}]}]}, r"outside the history"),
        ({"sources": ["prometheus"]}, r"sources\[0\]: unknown source 'prometheus'"),
        ({"sources": ["sidecar", "poller"]}, r"sources: sidecar includes the poller: name one of them"),
        ({"models": [{"name": "m", "version_labels": {"s": 9}, "versions": [1]}]},
         r"models\[0\]\.version_labels\.s: points at version 9"),
        ({"models": [{"name": "m", "version_labels": 5, "versions": [1]}]},
         r"models\[0\]\.version_labels: expected a mapping, got int"),
    ],
)  # fmt: skip
def test_scenario_errors_name_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        scenario.parse({**TINY, **change}, "bad.yaml")


def test_backfill_command_end_to_end(tmp_path: Path) -> None:
    file = tmp_path / "fleet.yaml"
    import yaml

    file.write_text(yaml.safe_dump({k: v for k, v in TINY.items() if k not in ("end", "days")}))
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "tfs_traffic.cli", "backfill", "--scenario", str(file), "--days", "0.125",
         "--end", END, "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert (out / "history.om").read_text().endswith("# EOF\n")
    assert modelconfig.load_entries(out / "models.config")[0].policy_versions == (2,)
    with LocalPrometheus(out / "tsdb") as prom:
        answer = requests.get(
            f"{prom.url}/api/v1/query",
            params={"query": f"sum({contract.PATCHED_CALLS}{{model_version='1'}})", "time": "2025-03-10T00:00:00Z"},
            timeout=10,
        ).json()
    assert answer["data"]["result"][0]["value"][1] == "88"

    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  - name: m\n    versions: [1]\n    colour: red\n")
    failed = subprocess.run(
        [sys.executable, "-m", "tfs_traffic.cli", "backfill", "--scenario", str(bad), "--out", str(tmp_path / "x")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert failed.stderr.strip().splitlines() == [
        f"tfs-traffic: error: scenario {bad}: models[0].colour: unknown field "
        "(allowed: name, base_path, version_labels, versions)"
    ]
    assert not (tmp_path / "x").exists()


def test_demo_fleet_has_every_situation() -> None:
    sc = scenario.load("demo")
    assert len(sc.models) == 5 and sum(len(m.versions) for m in sc.models) == 20 and len(sc.replicas) == 17
    assert sc.restarts and sc.gaps and set(sc.sources) == {"patched", "sidecar"}


def test_demo_command(tmp_path: Path) -> None:
    def demo() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tfs_traffic.cli", "demo", "--out", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=300,
        )

    first = demo()
    assert first.returncode == 0, first.stderr
    for word in (
        "retire",
        "keep",
        "unknown",
        "not-observed-long-enough",
        "scrape-gaps",
        "label:rollback",
        "only-version",
    ):
        assert word in first.stdout
    assert "+++ " in first.stdout  # the emitted config's diff
    # search: a Deployment rolled twice and autoscaled pods; its idle versions retire across the
    # churn, and the one last called before the window gets a note.
    assert re.search(r"│ search │ +30 │ retire +│ idle ", first.stdout)
    assert re.search(r"│ search │ +31 │ retire +│ idle .*│ +7d ago │", first.stdout)
    assert "note: search:31 retire: last called 7d ago" in first.stdout
    page = (tmp_path / "report.html").read_text()
    assert page.count("<svg") == 19 and "<th>last call</th>" in page and ">7d ago</td>" in page
    assert f"HTML report: {(tmp_path / 'report.html').resolve()}" in first.stdout
    # TF Serving's estimate of each version: its files' size in the scenario (DEMO_SIZES) x 1.2, truncated.
    data = json.loads((tmp_path / "report.json").read_text())
    ram = {(v["model_name"], v["model_version"]): v["estimated_ram_bytes"] for v in data["versions"]}
    assert ram[("bert", "10")] == 525_609_369 and ram[("ranker", "100")] == 15_461_882_265
    assert ram[("fraud", "7")] == 50_331_649  # 41943041 x 1.2 = 50331649.2
    retire = sorted(f"{v['model_name']}:{v['model_version']}" for v in data["versions"] if v["verdict"] == "retire")
    assert retire == ["bert:10", "resnet:1", "resnet:3", "search:30", "search:31"]
    # 525609369 + 2 x 123312537 + 2 x 2576980377
    assert (data["retire_estimated_ram_bytes"], data["retire_without_estimate"]) == (5_926_195_197, 0)
    # The demo ends with a dry `retire plan`: the report's retires less those called within --lookback.
    assert "Retirement plan (dry: nothing is applied):" in first.stdout
    assert re.search(r"│ search │ +31 │ refused │ recent-caller: last called 2025-06-22T13:00:00Z", first.stdout)
    plan = json.loads((tmp_path / "retire-plan.json").read_text())
    planned = {(m["model_name"], v["model_version"]): v["action"] for m in plan["models"] for v in m["versions"]}
    assert sorted(f"{m}:{v}" for (m, v), action in planned.items() if action == "retire") == [
        "bert:10",
        "resnet:3",
        "search:30",
    ]
    assert sorted(f"{m}:{v}" for (m, v), action in planned.items() if action == "refused") == [
        "resnet:1",
        "search:31",
    ]
    assert "retiring frees ≈ 5.52 GiB per server (TF Serving&#x27;s estimate)" in page
    assert "retiring frees ≈ 5.52 GiB per server (TF Serving's estimate)" in first.stdout
    second = demo()
    assert second.returncode == 0 and "reusing the demo history" in second.stderr


def test_backfill_replaces_only_its_own_tsdb(tmp_path: Path) -> None:
    sc = scenario.parse({**TINY, "sources": ["patched"]}, "tiny")
    backfill.backfill(sc, tmp_path / "mine")
    (tmp_path / "mine" / backfill.STAMP).unlink()  # as if a run had been interrupted
    again = backfill.ensure(sc, tmp_path / "mine")
    assert not again.reused and backfill.is_current(tmp_path / "mine", sc)
    assert backfill.ensure(sc, tmp_path / "mine").reused
    foreign = tmp_path / "theirs" / "tsdb"
    foreign.mkdir(parents=True)
    (foreign / "01H00000000000000000000000").mkdir()
    with pytest.raises(UsageError, match="was not written by tfs-traffic backfill"):
        backfill.backfill(sc, tmp_path / "theirs")
    assert (foreign / "01H00000000000000000000000").exists()


def test_a_version_with_a_size_has_the_sidecars_estimate_beside_its_availability() -> None:
    """`size_bytes` is the version directory's total: the sidecar's gauge is TF Serving's estimate of it
    (x 1.2, truncated) wherever its availability gauge is 1, and 0 wherever that is 0 (docs/metrics.md)."""
    data = {**TINY, "models": [{"name": "m", "versions": [{"version": 1, "unloaded": "2h30m", "size_bytes": 9}, 2]}]}
    all_series = series_of(data)
    for replica in ("a", "b"):
        available = find(all_series, contract.SIDECAR_AVAILABLE, pod=replica, model_version="1")
        ram = find(all_series, contract.SIDECAR_ESTIMATED_RAM, pod=replica, model_version="1")
        assert ram == [(t, 10.0 * v) for t, v in available]
        assert {v for _, v in ram} == {0.0, 10.0}
    assert not [k for k in all_series if k[0] == contract.SIDECAR_ESTIMATED_RAM and ("model_version", "2") in k[1]]
    with pytest.raises(UsageError, match=r"models\[0\]\.versions\[0\]\.size_bytes: expected a whole number of bytes"):
        scenario.parse({**data, "models": [{"name": "m", "versions": [{"version": 1, "size_bytes": 1.5}]}]}, "x")
