"""The mixin's rendered files: current, valid for Prometheus 2.42, and covered by promtool tests."""

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tfs_traffic.cli import main
from tfs_traffic.prometheus.local import promtool
from tfs_traffic.queries import dashboards, mixin
from tfs_traffic.queries.render import ALERTS_FILE, RULES_FILE, rendered_files

QUERIES = Path(__file__).resolve().parents[2] / "queries"


def test_committed_rendered_files_are_current(tmp_path: Path) -> None:
    assert main(["queries", "render", "--out", str(tmp_path)]) == 0
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(rendered_files())
    for rel in written:
        committed = QUERIES / rel
        assert committed.exists(), f"{rel} is not committed: run `make render`"
        assert committed.read_text() == (tmp_path / rel).read_text(), f"queries/{rel} is stale: run `make render`"
    committed_dashboards = sorted(p.name for p in (QUERIES / "dashboards").glob("*.json"))
    assert committed_dashboards == sorted(dashboards.build_dashboards()), "a dashboard file is left over: remove it"


def test_promtool_check_rules() -> None:
    proc = subprocess.run(
        [promtool(), "check", "rules", RULES_FILE, ALERTS_FILE], cwd=QUERIES, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 8 rules found" in proc.stdout
    assert "SUCCESS: 7 rules found" in proc.stdout  # 6 alerts and the memory the idle versions hold


def test_promtool_unit_tests_pass() -> None:
    tests = sorted(str(p.relative_to(QUERIES)) for p in (QUERIES / "tests").glob("*.yml"))
    assert tests == ["tests/hourly_test.yml", "tests/rules_test.yml", "tests/scraped_twice_test.yml"]
    proc = subprocess.run([promtool(), "test", "rules", *tests], cwd=QUERIES, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(tests)


def test_promtool_tests_cover_every_rule_and_alert() -> None:
    """Each recorded series is asserted somewhere, and each alert is expected to fire somewhere."""
    asserted_exprs = ""
    fired: set[str] = set()
    for path in (QUERIES / "tests").glob("*.yml"):
        doc = yaml.safe_load(path.read_text())
        for group in doc["tests"]:
            for case in group.get("promql_expr_test", []):
                asserted_exprs += case["expr"] + "\n"
            for case in group.get("alert_rule_test", []):
                if case.get("exp_alerts"):
                    for alert in case["exp_alerts"]:
                        fired.add(case["alertname"] + "/" + alert["exp_labels"].get("reason", ""))
    for group in [*mixin.recording_rule_groups(), *mixin.alert_rule_groups()]:
        for rule in group["rules"]:
            if "record" in rule:
                assert re.search(re.escape(rule["record"]) + r"\b", asserted_exprs), (
                    f"no promtool test reads {rule['record']}"
                )
                continue
            key = rule["alert"] + "/" + rule["labels"].get("reason", "")
            assert key in fired, f"no promtool test expects {key} to fire"


def test_rules_read_raw_series_only() -> None:
    """One pass of `create-blocks-from rules` must be able to backfill every recording rule."""
    recorded = [r["record"] for g in mixin.recording_rule_groups() for r in g["rules"]]
    for group in mixin.recording_rule_groups():
        for rule in group["rules"]:
            for name in recorded:
                assert name not in rule["expr"], f"{rule['record']} reads the recorded {name}"


def test_no_prometheus_3_only_syntax() -> None:
    text = (QUERIES / RULES_FILE).read_text() + (QUERIES / ALERTS_FILE).read_text()
    for marker in ('{"', "info(", "double_exponential_smoothing", "sort_by_label", "limitk", "anchored", "smoothed"):
        assert marker not in text


def test_config_changes_grouping_and_selector() -> None:
    config = mixin.MixinConfig(group_labels=("cluster", "model_name", "model_version"), selector='job="tfs"')
    rules = mixin.recording_rule_groups(config)
    rate5m = rules[0]["rules"][0]["expr"]
    assert "max by (cluster, model_name, model_version)" in rate5m
    assert ':tensorflow:serving:model_call_count{job="tfs"}[5m]' in rate5m
    assert "namespace" not in rate5m
    alerts = mixin.alert_rule_groups(mixin.MixinConfig(idle_window="3d", max_gap_ratio=0.05))
    idle = next(r for r in alerts[0]["rules"] if r["alert"] == "ModelVersionIdle")
    assert "[3d]" in idle["expr"] and ">= 0.95" in idle["expr"] and "/ 72," in idle["expr"]


def test_dashboard_has_the_panels_and_variables_the_issue_asks_for() -> None:
    model = dashboards.build_dashboards()[dashboards.MODEL_DASHBOARD]
    titles = [p["title"] for p in model["panels"] if p["type"] != "row"]
    for needed in (
        "Calls per second",
        "Share of traffic",
        "Idle loaded versions",
        "status code",
        "Latency",
        "coverage",
        "Memory held by idle versions",
    ):
        assert any(needed.lower() in t.lower() for t in titles), needed
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert set(variables) == {"datasource", "namespace", "model"}
    assert variables["datasource"]["query"] == "prometheus"
    stacked = next(p for p in model["panels"] if p["title"].startswith("Calls per second"))
    assert stacked["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"
    for panel in model["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"
    assert json.loads(json.dumps(model)) == model


def test_dashboards_need_the_render_extra_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_sdk(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("grafana_foundation_sdk"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_sdk)
    from tfs_traffic.errors import ToolError

    with pytest.raises(ToolError, match=r"tfs-traffic\[render\]"):
        dashboards.build_dashboards()
    assert mixin.recording_rule_groups()  # rules need nothing beyond the core install
