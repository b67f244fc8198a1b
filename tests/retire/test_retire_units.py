"""`retire`'s parts without a fleet: the plan's refusals, the signals, the journal, the refusals of
apply and rollback, and its one-line errors (README, "Retiring versions")."""

import json
from pathlib import Path

import pytest
from fleet import retire

from tfs_traffic import modelconfig
from tfs_traffic.errors import UsageError
from tfs_traffic.report.model import KEEP, RETIRE, Options, Report, VersionReport
from tfs_traffic.retire import apply, journal, lock, recheck, render, signals, verify
from tfs_traffic.retire import plan as plans
from tfs_traffic.retire.verify import Reachability, VerifyFailed

AT = 1_750_000_000.0
CONFIG = """
model_config_list {
  config { name: "spec" base_path: "/m/spec" model_version_policy { specific { versions: [1, 2, 3, 4, 5] } }
           version_labels { key: "stable" value: 3 } }
  config { name: "late" base_path: "/m/late" model_version_policy { latest { num_versions: 3 } } }
  config { name: "every" base_path: "/m/every" model_version_policy { all {} } }
  config { name: "drift" base_path: "/m/drift" model_version_policy { specific { versions: [1, 2] } } }
  config { name: "spread" base_path: "/m/spread" model_version_policy { specific { versions: [1, 2] } } }
}
"""
BOTH = ["127.0.0.1:1", "127.0.0.1:2"]


def judged(model: str, version: int, verdict: str = RETIRE, reason: str = "idle", **more: object) -> VersionReport:
    fields: dict[str, object] = {
        "calls": 0.0,
        "max_hourly_qps": 0.0,
        "coverage": 1.0,
        "labels": [],
        "instances": BOTH,
        "calls_by_source": {"patched": 0.0},
        "available_at_window_start": True,
        **more,
    }
    return VersionReport(model, str(version), verdict, reason, **fields)  # type: ignore[arg-type]


def build(*versions: VersionReport, **flags: bool) -> plans.Plan:
    report = Report(AT, 3600.0, "http://u:p@prom:9090", Options(at=AT, window=3600.0), list(versions))
    message = modelconfig.parse_text(CONFIG)
    return plans.build(report, message, CONFIG, "models.config", AT + 5, **flags)  # type: ignore[arg-type]


def actions(plan: plans.Plan, model: str) -> dict[str, tuple[str, str]]:
    return {v.model_version: (v.action, v.reason) for v in plan.model(model).versions}


FLEET = (
    judged("spec", 1, estimated_ram_bytes=3 * 2**29),
    judged("spec", 2, last_call_at=AT - 86400),
    judged("spec", 3, KEEP, "label:stable", labels=["stable"]),
    judged("spec", 4),
    judged("spec", 5, KEEP, "latest"),
    judged("late", 1),
    judged("late", 2, KEEP, "latest"),
    judged("every", 1),
    judged("every", 2, KEEP, "traffic", calls=5.0),
    judged("drift", 1),
    judged("drift", 2, KEEP, "latest"),
    judged("drift", 3, KEEP, "latest"),
    judged("spread", 1, instances=BOTH[:1]),
    judged("spread", 2, KEEP, "latest"),
)


def test_the_plan_refuses_beyond_the_verdict() -> None:
    """A retire verdict is refused for a recent caller, a policy that is not `specific`, and a model
    whose fleet and config disagree (a version AVAILABLE but not in the policy; one AVAILABLE on
    only some targets)."""
    plan = build(*FLEET)
    assert actions(plan, "spec") == {
        "1": ("retire", "idle"),
        "2": ("refused", "recent-caller"),
        "3": ("keep", "label:stable"),
        "4": ("retire", "idle"),
        "5": ("keep", "latest"),
    }
    assert actions(plan, "late") == {"1": ("refused", "policy:latest"), "2": ("keep", "latest")}
    assert actions(plan, "every") == {"1": ("refused", "policy:all"), "2": ("keep", "traffic")}
    assert actions(plan, "drift") == {"1": ("refused", "drift"), "2": ("keep", "latest"), "3": ("keep", "latest")}
    assert plan.model("drift").drift == ["version 3 is AVAILABLE but not in the policy"]
    assert plan.model("spread").drift == ["version 1 is AVAILABLE on 1 of 2 targets (not on 127.0.0.1:2)"]
    assert [(m.model_name, m.new_versions) for m in plan.changed()] == [("spec", [2, 3, 5])]
    assert plan.prometheus == "http://prom:9090"  # no credentials in a file
    assert plan.counts() == {"retire": 2, "keep": 7, "refused": 5}
    assert plan.frees() == (2, 3 * 2**29, 1)  # spec:4 has no estimate
    assert "retiring frees ≈ 1.50 GiB per server (TF Serving's estimate; 1 retire versions without an estimate)\n" in (
        render.plan_table(plan)
    )
    entries = {e.name: e for e in modelconfig.entries(modelconfig.parse_text(plan.new_config))}
    assert (entries["spec"].policy_versions, dict(entries["spec"].version_labels)) == ((2, 3, 5), {"stable": 3})
    assert (entries["late"].policy, entries["every"].policy) == ("latest", "all")


def test_convert_policy_and_allow_recent_caller() -> None:
    """--convert-policy lists the versions AVAILABLE now; --allow-recent-caller retires a recent caller."""
    plan = build(*FLEET, convert_policy=True, allow_recent_caller=True)
    assert actions(plan, "spec")["2"] == ("retire", "idle")
    assert [(m.model_name, m.converted, m.new_versions) for m in plan.changed()] == [
        ("spec", False, [3, 5]),
        ("late", True, [2]),
        ("every", True, [2]),
    ]
    assert actions(plan, "drift")["1"] == ("refused", "drift")


def test_a_plan_reads_back_as_written(tmp_path: Path) -> None:
    plan = build(*FLEET)
    again = plans.load("plan.json", plan.to_text())
    assert again.to_text() == plan.to_text()
    data = json.loads(plan.to_text())
    assert list(data) == [
        "kind", "format", "created_at", "evaluated_at", "window_seconds", "lookback_seconds", "selector",
        "thresholds", "prometheus", "models_config", "models_config_sha256", "convert_policy",
        "allow_recent_caller", "summary", "retire_estimated_ram_bytes", "retire_without_estimate", "memory",
        "models", "new_config", "diff", "values",
    ]  # fmt: skip
    assert "jemalloc" in data["memory"] and "tensorflow/serving#1664, #2142" in data["memory"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "plan.json is not a retire plan: not JSON"),
        ('{"kind": "report"}', 'plan.json is not a retire plan (no "kind": "tfs-traffic retire plan")'),
        ('{"kind": "tfs-traffic retire plan", "format": 9}', "plan.json: plan format 9 is not 1"),
        ('{"kind": "tfs-traffic retire plan", "format": 1}', "plan.json is not a complete retire plan: KeyError"),
    ],
)
def test_what_is_not_a_plan_is_refused(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plans.load("plan.json", text)


def test_apply_refuses_a_changed_file_or_an_old_plan() -> None:
    plan = build(*FLEET)
    apply.refuse_stale(plan, CONFIG, 3600, AT + 60)
    with pytest.raises(apply.PlanRefused, match=r"models.config changed since the plan \(sha256 "):
        apply.refuse_stale(plan, CONFIG + "\n", 3600, AT + 60)
    with pytest.raises(apply.PlanRefused, match="the plan is 1h5s old, more than --max-plan-age 1h"):
        apply.refuse_stale(plan, CONFIG, 3600, AT + 3610)


PAGE = """# TYPE :tensorflow:serving:model_call_count counter
:tensorflow:serving:model_call_count{model_name="m",model_version="1"} 7
:tensorflow:serving:model_call_count{model_name="m",model_version="2"} 3
# TYPE :tensorflow:serving:request_count counter
:tensorflow:serving:request_count{model_name="m",status="NOT_FOUND"} 2
:tensorflow:serving:request_count{model_name="m",status="OK"} 10
tfserving_model_calls_total{api="predict",code="NOT_FOUND",model_name="m",model_version="1"} 1.0
tfserving_model_calls_total{api="predict",code="OK",model_name="n",model_version="1"} 4.0
"""


def test_signals_from_two_readings_of_a_page() -> None:
    """A rise of a retired version's counter, of the model's NOT_FOUND requests; not of another
    version or another status; a counter that went down was reset (its value counts)."""
    before = signals.parse_page(PAGE)
    after = signals.parse_page(
        PAGE.replace('"1"} 7', '"1"} 9').replace('"2"} 3', '"2"} 5').replace('NOT_FOUND"} 2', 'NOT_FOUND"} 3')
        .replace('model_version="1"} 1.0', 'model_version="1"} 0.5')
    )  # fmt: skip
    found = signals.page_signals("http://h:1/metrics", before, after, {"m": [1]})
    assert [s.line() for s in found] == [
        "m:1 (:tensorflow:serving:model_call_count +2 at http://h:1/metrics)",
        'm:1 (:tensorflow:serving:request_count{status="NOT_FOUND"} +1 at http://h:1/metrics)',
        'm:1 (tfserving_model_calls_total{code="NOT_FOUND"} +0.5 at http://h:1/metrics)',
    ]
    assert signals.page_signals("u", before, before, {"m": [1]}) == []


def test_calls_since_the_last_scrape_are_matched_by_labels() -> None:
    reading = signals.parse_page(PAGE)
    scraped = [
        (":tensorflow:serving:model_call_count", {"model_name": "m", "model_version": "1", "job": "x"}, 5.0),
        (":tensorflow:serving:model_call_count", {"model_name": "m", "model_version": "2", "job": "x"}, 4.0),
    ]
    rose = signals.since_last_scrape(reading, scraped)
    call = ":tensorflow:serving:model_call_count"
    assert rose[(call, (("model_name", "m"), ("model_version", "1")))] == 2.0  # 7 on the page, 5 scraped
    assert rose[(call, (("model_name", "m"), ("model_version", "2")))] == 3.0  # reset since the scrape
    sidecar = ("tfserving_model_calls_total", (("api", "predict"), ("code", "NOT_FOUND"), ("model_name", "m"),
                                                ("model_version", "1")))  # fmt: skip
    assert rose[sidecar] == 1.0  # Prometheus holds no such series: all of it
    assert signals.page_instance("http://10.0.0.5:9102/metrics") == "10.0.0.5:9102"
    assert signals.page_instance("https://h/metrics") == "h:443"


def test_a_target_is_unreachable_only_after_the_grace() -> None:
    now = [0.0]
    reach = Reachability(grace=5.0, clock=lambda: now[0])
    reach.failed("t:1", "refused")
    now[0] = 4.9
    reach.failed("t:1", "refused")
    reach.answered("t:1", "http://page")  # another way in answering does not reset the gRPC port's
    now[0] = 5.0
    with pytest.raises(VerifyFailed, match=r"^t:1 unreachable for 5s \(refused\)$"):
        reach.failed("t:1", "refused")


def test_the_journal_is_lines_written_before_the_act(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with journal.Journal(path, run="r1") as j:
        j.write("begin", journal.START, previous_config="x", models_config="m.config")
        j.write("write", journal.START, model="m", versions=[1], sha256="abc")
    lines = path.read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == ["begin", "write"]
    assert list(json.loads(lines[1])) == ["time", "run", "step", "model", "versions", "targets", "result", "sha256"]
    with path.open("a") as f:
        f.write('{"time": "2026-')  # a crash in the middle of the last line
    run = journal.last_apply(path)
    assert (run.run, run.previous_config, len(run.entries)) == ("r1", "x", 2)
    path.write_text('{"step": "x"}\n{"time": 1, "run": "a", "step": "end", "result": "ok"}\n')
    with pytest.raises(UsageError, match=r"j.jsonl:1: not a journal line \(step, run and result expected\)"):
        journal.read(path)


def test_rollback_refuses_a_file_changed_since_the_apply(tmp_path: Path) -> None:
    config = tmp_path / "models.config"
    config.write_text("model_config_list {}\n")
    path = tmp_path / "j.jsonl"
    with journal.Journal(path, run="r1") as j:
        j.write(
            "begin",
            journal.START,
            models_config=str(config),
            previous_config="before\n",
            previous_sha256=plans.sha256_text("before\n"),
            models=[],
            prometheus="http://p",
        )
    done = retire("rollback", "--journal", str(path))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"tfs-traffic: error: {config} changed since the apply of ")
    assert config.read_text() == "model_config_list {}\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["apply", "{plan}", "--models-config", "{config}", "--targets", "nope"], "--targets expects HOST:PORT"),
        (["apply", "{plan}", "--models-config", "{config}", "--reload", "h:99999"], "--reload expects HOST:PORT"),
        (["apply", "{plan}", "--models-config", "{config}", "--targets", "h:1,ftp://x"], "with http(s) URLs"),
        (["apply", "{plan}", "--models-config", "{config}", "--soak", "1x"], "invalid duration '1x'"),
        (["apply", "{missing}", "--models-config", "{config}"], "cannot read plan"),
        (["apply", "{config}", "--models-config", "{config}"], "is not a retire plan: not JSON"),
        (["apply", "{plan}", "--models-config", "{missing}"], "cannot read models config"),
        (["apply", "{plan}"], "the following arguments are required: --models-config"),
        (["rollback", "--journal", "{config}"], "not a journal line (JSON expected)"),
        (["plan", "--prometheus", "http://127.0.0.1:1"], "give --models-config FILE (or --values VALUES.yaml"),
        (["plan", "--prometheus", "http://127.0.0.1:1", "--values", "{config}"], "is not valid YAML (line 3)"),
        (
            ["plan", "--prometheus", "http://127.0.0.1:1", "--models-config", "{config}", "--values-output", "x"],
            "--values-output needs --values",
        ),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    config = tmp_path / "models.config"
    config.write_text(CONFIG)
    plan = tmp_path / "plan.json"
    plan.write_text(build(*FLEET).to_text())
    paths = {"plan": plan, "config": config, "missing": tmp_path / "missing"}
    done = retire(*(a.format(**paths) for a in args))
    assert (done.returncode, done.stderr.count("\n")) == (2, 1), done.stderr
    assert message in done.stderr
    assert done.stdout == ""


def test_an_unreachable_fleet_before_any_change_is_exit_1_and_changes_nothing(tmp_path: Path) -> None:
    """Apply checks every target before it writes: one that does not answer for 10 s ends it (exit 1),
    no journal."""
    config = tmp_path / "models.config"
    config.write_text(CONFIG)
    plan = tmp_path / "plan.json"
    data = json.loads(build(*FLEET).to_text())
    data["created_at"] = "2099-01-01T00:00:00Z"  # never too old
    plan.write_text(json.dumps(data))
    done = retire("apply", str(plan), "--models-config", str(config), "--targets", "127.0.0.1:1")
    assert done.returncode == 1
    assert done.stderr.startswith("tfs-traffic: error: could not complete: 127.0.0.1:1 unreachable for 10s (")
    assert done.stderr.rstrip().endswith("; nothing was changed") and done.stderr.count("\n") == 1
    assert config.read_text() == CONFIG and not (tmp_path / "plan.journal.jsonl").exists()


class Answers:
    """A Querier that answers the re-check's two queries: nothing rose in Prometheus' window; the
    last scrape of the page's instance held `scraped`."""

    def __init__(self, instance: str, scraped: float) -> None:
        self.instance, self.scraped = instance, scraped
        self.asked: list[str] = []

    def query(self, promql: str, at: float) -> list[dict[str, object]]:
        self.asked.append(promql)
        if "instance=~" not in promql:
            return []
        labels = {"__name__": ":tensorflow:serving:model_call_count", "model_name": "m", "model_version": "1"}
        return [{"metric": {**labels, "instance": self.instance, "job": "tfs"}, "value": [at, str(self.scraped)]}]

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[dict[str, object]]:
        raise AssertionError("the re-check asks instant queries only")


def test_a_call_since_the_last_scrape_drops_the_version() -> None:
    """The page counts 7 calls of m:1, Prometheus' last scrape of it 5: two calls no scrape holds yet.
    m:2's counter (3) is a series Prometheus does not hold: all of it counts (the safe side)."""
    import http.server
    import threading

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = PAGE.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    try:
        client = Answers(f"127.0.0.1:{server.server_port}", 5.0)
        fresh = recheck.recheck(client, {"m": [1, 2]}, 900.0, [url])
    finally:
        server.shutdown()
    assert fresh.dropped == {
        ("m", "1"): [
            f":tensorflow:serving:model_call_count +2 since Prometheus' last scrape of {url}",
            f'tfserving_model_calls_total{{code="NOT_FOUND"}} +1 since Prometheus\' last scrape of {url}',
        ],
        ("m", "2"): [f":tensorflow:serving:model_call_count +3 since Prometheus' last scrape of {url}"],
    }
    assert fresh.notes == [] and len(client.asked) == 2
    assert fresh.readings[url] == signals.parse_page(PAGE)


def test_one_apply_at_a_time_per_models_config(tmp_path: Path) -> None:
    """While one run holds the config's lock, another apply is refused (exit 2) before it reads the
    fleet or writes anything; the lock goes with the process that held it."""
    import os

    config = tmp_path / "models.config"
    config.write_text(CONFIG)
    plan = tmp_path / "plan.json"
    data = json.loads(build(*FLEET).to_text())
    data["created_at"] = "2099-01-01T00:00:00Z"
    plan.write_text(json.dumps(data))
    with lock.held(config):
        done = retire("apply", str(plan), "--models-config", str(config), "--targets", "127.0.0.1:1")
    assert (done.returncode, done.stderr.count("\n")) == (2, 1)
    assert done.stderr == (
        f"tfs-traffic: error: another retire apply or rollback is changing {config} (pid {os.getpid()}): "
        "nothing was changed\n"
    )
    assert config.read_text() == CONFIG and not (tmp_path / "plan.journal.jsonl").exists()
    assert lock.lock_path(config) == tmp_path / ".models.config.retire-lock"
    done = retire("apply", str(plan), "--models-config", str(config), "--targets", "127.0.0.1:1")
    assert done.returncode == 1  # the lock free again: it goes on to the fleet, which does not answer


def test_verification_from_prometheus_reads_availability_latest_and_labels() -> None:
    """Every instance with fresh samples must report the retired version not AVAILABLE and the others
    AVAILABLE; where a sidecar answers for latest and the labels, they must resolve as before."""

    def sample(name: str, instance: str, version: int, value: int, label: str | None = None) -> dict[str, object]:
        metric = {"__name__": name, "instance": instance, "model_name": "m", "model_version": str(version)}
        if label is not None:
            metric["version_label"] = label
        return {"metric": metric, "value": [AT, str(value)]}

    expect = verify.Expect("m", available=(2, 3), gone=(1,), latest=3, labels={"stable": 2})
    sidecar = "tfserving_model_version_available"
    fleet = [
        sample(":tensorflow:serving:model_version_available", "s:8501", 1, 0),
        sample(":tensorflow:serving:model_version_available", "s:8501", 2, 1),
        sample(":tensorflow:serving:model_version_available", "s:8501", 3, 1),
        sample(sidecar, "c:9102", 1, 0),
        sample(sidecar, "c:9102", 2, 1),
        sample(sidecar, "c:9102", 3, 1),
        sample("tfserving_model_version_latest", "c:9102", 3, 1),
        sample("tfserving_model_version_latest", "c:9102", 2, 0),
        sample("tfserving_model_version_label", "c:9102", 2, 1, "stable"),
    ]
    assert verify.check_gauges(fleet, expect) == ""
    assert verify.check_gauges(fleet, expect, ["s:8501", "gone:1"]) == "m: no scrape of gone:1 since the change"
    assert verify.check_gauges([*fleet[:3], sample(sidecar, "c:9102", 1, 1)], expect) == "c:9102: m:1 is AVAILABLE"
    moved = [*fleet[:-1], sample("tfserving_model_version_label", "c:9102", 3, 1, "stable")]
    assert verify.check_gauges(moved, expect) == "c:9102: m label 'stable' resolves to 3, not 2"
    assert verify.check_gauges(fleet[:1], expect) == "s:8501: m:2 is not AVAILABLE"
    assert verify.check_gauges([], expect) == "m: no availability gauge scraped since the change"
