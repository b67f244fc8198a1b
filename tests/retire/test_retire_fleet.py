"""`tfs-traffic retire` on a live fleet (tests/retire/fleet.py): plan, apply, verify, rollback.

What TF Serving does on a reload and an unload, which these tests hold the tool to, is in the README
("Retiring versions"): the reload RPC returns before the unload, which happens at the next
file-system poll (`model_servers/server_core.cc:ServerCore::ReloadConfig`,
`sources/storage_path/file_system_storage_path_source.cc`); a retired version then answers NOT_FOUND
and GetModelStatus lists it END (`core/basic_manager.cc`, `model_servers/get_model_status_impl.cc`);
a file-polling server re-applies its file every tick (`model_servers/server.cc`).

Each test retires versions of its own model, so they share one fleet; the one that stops a replica
runs last.
"""

import difflib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from fleet import (
    AVAILABLE,
    END,
    Call,
    Fleet,
    Model,
    plan,
    retire,
    specific,
    start_retire,
    states,
    steps,
    target,
)
from tfs_api import predict_request, served_version
from waiting import wait_for

POLLING = [
    Model("alpha", range(1, 7), specific(1, 2, 3, 4, 5, 6), {"stable": 2, "canary": 5}),
    Model("beta", (1, 2, 3), specific(1, 2, 3)),
    Model("gamma", (1, 2), specific(1, 2)),
    Model("delta", (1, 2, 3), specific(1, 2, 3), {"stable": 2}),
    Model("epsilon", (1, 2), specific(1, 2)),
    Model("zeta", (1, 2, 3), "latest { num_versions: 3 }"),
    Model("eta", (1, 2), specific(1, 2, 9)),
    Model("iota", (1, 2), specific(1, 2)),
    Model("kappa", (1, 2, 3), specific(1, 2, 3)),
]
NOT_POLLING = [Model("theta", (1, 2, 3), specific(1, 2, 3))]
FAST = ["--recheck", "1m", "--soak", "3s", "--timeout", "30s"]
# A journal up to the soak of one model's change (README, "The journal").
SOAKING = [
    ("begin", "start"),
    ("recheck", "ok"),
    ("write", "start"),
    ("write", "ok"),
    ("verify", "start"),
    ("verify", "ok"),
    ("soak", "start"),
]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path_factory.mktemp("fleet"), POLLING, NOT_POLLING)
    try:
        fleet.start([])
        a, b, c = fleet.sidecars
        q = fleet.quiet
        for call in (
            Call("grpc", a, "alpha", version=3),
            Call("rest", b, "alpha", version=3),
            Call("grpc", b, "alpha", label="stable"),
            Call("rest", c, "alpha", label="stable"),
            Call("grpc", c, "alpha"),
            Call("rest", a, "alpha"),
            Call("grpc", a, "beta"),
            Call("rest", b, "gamma"),
            Call("grpc", c, "delta", label="stable"),
            Call("rest", a, "delta"),
            Call("grpc", b, "epsilon"),
            Call("grpc", c, "zeta"),
            Call("rest", a, "eta"),
            Call("rest", b, "iota"),
            Call("grpc", c, "kappa", version=2),
            Call("rest", a, "kappa"),
            Call("grpc", q[0], "theta"),
            Call("rest", q[1], "theta"),
            Call("grpc", q[2], "theta"),
        ):
            assert fleet.load is not None
            fleet.load.add(call)
        yield fleet
    finally:
        fleet.stop()


def model_states(fleet: Fleet, model: str, sims: Any = None) -> list[dict[int, int]]:
    return [states(sim.grpc, model) for sim in (sims if sims is not None else fleet.sims)]


def versions(plan_json: dict[str, Any], model: str) -> dict[str, tuple[str, str]]:
    """{version: (action, reason)} of one model of a plan."""
    (entry,) = [m for m in plan_json["models"] if m["model_name"] == model]
    return {v["model_version"]: (v["action"], v["reason"]) for v in entry["versions"]}


def apply(tmp_path: Path, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`retire apply` of the test's plan to `config`, its journal in the test's directory."""
    return retire("apply", str(tmp_path / "plan.json"), "--models-config", str(config), *args,
                  "--journal", str(tmp_path / "journal.jsonl"))  # fmt: skip


def start_apply(tmp_path: Path, config: Path, *args: str) -> subprocess.Popen[str]:
    """`apply` in the background, its output in apply.log."""
    return start_retire("apply", str(tmp_path / "plan.json"), "--models-config", str(config), *args,
                        "--journal", str(tmp_path / "journal.jsonl"), log=tmp_path / "apply.log")  # fmt: skip


def changed_lines(diff: str) -> list[str]:
    """The removed and added lines of a unified diff."""
    return [x for x in diff.splitlines() if x[:1] in "-+" and not x.startswith(("---", "+++"))]


def last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


def test_1_idle_versions_retired_on_every_replica_with_no_failed_call(fleet: Fleet, tmp_path: Path) -> None:
    """alpha: 1 and 4 idle; 2 (label stable, called by it), 3 (called by number), 5 (label canary,
    never called) and 6 (latest, called without a version) stay. The load runs throughout: not one
    call fails; the journal holds every step in order."""
    original = fleet.config.read_text()
    done, planned = plan(fleet, tmp_path / "plan.json", fleet.config, "--model", "alpha")
    assert done.returncode == 0, done.stderr
    assert versions(planned, "alpha") == {
        "1": ("retire", "idle"),
        "2": ("keep", "traffic"),
        "3": ("keep", "traffic"),
        "4": ("retire", "idle"),
        "5": ("keep", "label:canary"),
        "6": ("keep", "traffic"),
    }
    (alpha,) = planned["models"]
    assert (alpha["retire"], alpha["new_versions"], alpha["latest"]) == (["1", "4"], [2, 3, 5, 6], 6)
    assert planned["models_config_sha256"] and fleet.config.read_text() == original  # planning changes nothing
    assert changed_lines(planned["diff"]) == ["-        versions: 1", "-        versions: 4"]

    journal = tmp_path / "journal.jsonl"
    assert fleet.load is not None
    start = time.time()
    done = apply(tmp_path, fleet.config, *fleet.targets(), *FAST)
    end = time.time()
    assert done.returncode == 0, done.stderr
    assert fleet.load.failed_between(start, end) == []
    retired = {1: END, 2: AVAILABLE, 3: AVAILABLE, 4: END, 5: AVAILABLE, 6: AVAILABLE}
    assert model_states(fleet, "alpha") == [retired] * 3
    for car in fleet.sidecars:  # latest and both labels resolve as before
        assert served_version(car.grpc, predict_request("alpha")) == 6
        assert served_version(car.grpc, predict_request("alpha", version_label="stable")) == 2
        assert served_version(car.grpc, predict_request("alpha", version_label="canary")) == 5
    assert fleet.config.read_text() == planned["new_config"]
    assert steps(journal) == [*SOAKING, ("soak", "ok"), ("end", "ok")]
    lines = [json.loads(x) for x in journal.read_text().splitlines()]
    assert lines[0]["previous_config"] == original
    assert {(e["step"], tuple(e["versions"])) for e in lines if e["step"] in ("write", "verify")} == {
        ("write", ("1", "4")),
        ("verify", ("1", "4")),
    }
    assert lines[-1]["status"] == "done" and lines[-1]["exit_status"] == 0
    assert "retired" in done.stdout and last_line(done.stderr).startswith("tfs-traffic: retired 2 version(s)")

    # The GitOps path's check, from Prometheus' gauges alone: the change is served, nobody asks.
    checked = retire(
        "verify",
        str(tmp_path / "plan.json"),
        "--prometheus",
        fleet.url,
        "--soak",
        "2s",
        "--timeout",
        "30s",
        "--format",
        "json",
    )
    assert checked.returncode == 0, checked.stderr
    outcome = json.loads(checked.stdout)
    assert (outcome["status"], outcome["exit_status"], outcome["models"][0]["retired"]) == ("verified", 0, ["1", "4"])
    assert fleet.load.failed_between(start, time.time()) == []

    # A client of a retired version while `verify` soaks: exit 3, and nothing changed.
    log = tmp_path / "verify.log"
    checking = start_retire("verify", str(tmp_path / "plan.json"), *fleet.targets(), "--soak", "60s", log=log)
    try:
        assert wait_for(lambda: "soaking for 1m" in log.read_text(), timeout=60)
        with pytest.raises(grpc.RpcError) as failed:  # to the server itself: only its per-model counter says it
            served_version(fleet.sims[1].grpc, predict_request("alpha", version=4))
        assert failed.value.code() == grpc.StatusCode.NOT_FOUND
        assert checking.wait(timeout=60) == 3
    finally:
        checking.kill()
    wants = 'a client still wants alpha:1,4 (:tensorflow:serving:request_count{status="NOT_FOUND"} +1 at '
    assert last_line(log.read_text()).startswith(f"tfs-traffic: error: {wants}")
    assert last_line(log.read_text()).endswith("): revert the change (verify changed nothing)")
    assert model_states(fleet, "alpha") == [retired] * 3

    # And back: the journal's config before the change, restored and verified on the three targets.
    undone = retire("rollback", "--journal", str(journal), "--timeout", "30s")
    assert undone.returncode == 0, undone.stderr
    assert fleet.config.read_text() == original
    assert model_states(fleet, "alpha") == [{v: AVAILABLE for v in range(1, 7)}] * 3
    assert steps(journal)[9:] == [
        ("rollback", "start"),
        ("restore", "start"),
        ("restore", "ok"),
        *[("verify", "start"), ("verify", "ok")] * 3,
        ("end", "ok"),
    ]
    assert last_line(undone.stderr) == "tfs-traffic: previous config restored and verified"
    assert fleet.load.failed_between(start, time.time()) == []


def test_2_a_planned_version_called_after_the_plan_is_dropped(fleet: Fleet, tmp_path: Path) -> None:
    """beta: 1 and 2 idle at plan time; then a client calls 1. The re-check drops it, 2 goes."""
    done, planned = plan(fleet, tmp_path / "plan.json", fleet.config, "--model", "beta")
    assert done.returncode == 0, done.stderr
    assert versions(planned, "beta") == {"1": ("retire", "idle"), "2": ("retire", "idle"), "3": ("keep", "traffic")}
    for car in fleet.sidecars:
        assert served_version(car.grpc, predict_request("beta", version=1)) == 1
    journal = tmp_path / "journal.jsonl"
    done = apply(tmp_path, fleet.config, *fleet.targets(), *FAST, "--format", "json")
    assert done.returncode == 0, done.stderr
    dropped = [line for line in done.stderr.splitlines() if "dropped" in line]
    assert len(dropped) == 1 and dropped[0].startswith("tfs-traffic: dropped beta:1 from the change: ")
    outcome = json.loads(done.stdout)
    (beta,) = outcome["models"]
    assert (outcome["status"], beta["retired"], [d["model_version"] for d in beta["dropped"]]) == ("done", ["2"], ["1"])
    assert model_states(fleet, "beta") == [{1: AVAILABLE, 2: END, 3: AVAILABLE}] * 3
    recheck = [json.loads(x) for x in journal.read_text().splitlines() if '"recheck"' in x]
    assert [(r["versions"], sorted(r["dropped"])) for r in recheck] == [(["2"], ["1"])]


def test_3_a_client_of_a_retired_version_during_the_soak_rolls_back(fleet: Fleet, tmp_path: Path) -> None:
    """gamma: 1 retired and verified; then a client asks for it (NOT_FOUND): apply restores the
    previous config at once, 1 is AVAILABLE again on all three, exit status 3, the journal says why."""
    original = fleet.config.read_text()
    done, planned = plan(fleet, tmp_path / "plan.json", fleet.config, "--model", "gamma")
    assert done.returncode == 0, done.stderr
    assert versions(planned, "gamma") == {"1": ("retire", "idle"), "2": ("keep", "traffic")}
    journal = tmp_path / "journal.jsonl"
    long_soak = ["--recheck", "1m", "--soak", "60s", "--timeout", "30s"]
    applying = start_apply(tmp_path, fleet.config, *fleet.targets(), *long_soak)
    try:
        assert wait_for(lambda: ("soak", "start") in (steps(journal) if journal.exists() else []), timeout=60)
        with pytest.raises(grpc.RpcError) as failed:
            served_version(fleet.sidecars[0].grpc, predict_request("gamma", version=1))
        assert failed.value.code() == grpc.StatusCode.NOT_FOUND
        assert applying.wait(timeout=60) == 3
    finally:
        applying.kill()
    output = (tmp_path / "apply.log").read_text()
    assert last_line(output).startswith("tfs-traffic: error: rolled back: a client still wants gamma:1 (")
    assert last_line(output).endswith("); previous config restored and verified")
    assert model_states(fleet, "gamma") == [{1: AVAILABLE, 2: AVAILABLE}] * 3
    assert fleet.config.read_text() == original
    entries = [json.loads(x) for x in journal.read_text().splitlines()]
    (watch,) = [e for e in entries if e["step"] == "watch"]
    assert watch["result"] == "failed" and {s["model"] for s in watch["signals"]} == {"gamma"}
    assert [(e["step"], e["result"]) for e in entries] == [
        *SOAKING,
        ("watch", "failed"),
        ("restore", "start"),
        ("restore", "ok"),
        *[("verify", "start"), ("verify", "ok")] * 3,
        ("end", "ok"),
    ]
    assert entries[-1]["step"] == "end" and entries[-1]["status"] == "rolled-back"


def test_4_a_file_edited_after_the_plan_is_refused_before_anything_is_written(fleet: Fleet, tmp_path: Path) -> None:
    """delta: 1 planned; then the file's label `stable` moves onto 1. Apply refuses (exit status 2)
    before it writes anything: the file stays as edited, no journal."""
    done, planned = plan(fleet, tmp_path / "plan.json", fleet.config, "--model", "delta")
    assert done.returncode == 0, done.stderr
    assert versions(planned, "delta") == {"1": ("retire", "idle"), "2": ("keep", "traffic"), "3": ("keep", "traffic")}
    edited = fleet.config.read_text().replace('key: "stable"\n      value: 2', 'key: "stable"\n      value: 1')
    assert edited != fleet.config.read_text()
    staging = fleet.config.with_suffix(".next")
    staging.write_text(edited)
    staging.replace(fleet.config)
    journal = tmp_path / "journal.jsonl"
    done = apply(tmp_path, fleet.config, *fleet.targets(), *FAST)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"tfs-traffic: error: {fleet.config} changed since")
    assert fleet.config.read_text() == edited and not journal.exists()
    assert model_states(fleet, "delta") == [{1: AVAILABLE, 2: AVAILABLE, 3: AVAILABLE}] * 3


def test_6_servers_that_do_not_poll_get_the_canary_first_then_the_rest(fleet: Fleet, tmp_path: Path) -> None:
    """theta on servers that read their file once: with --reload the first is pushed and verified
    before the others are pushed; the file is written too; theta 1 is END everywhere."""
    done, planned = plan(fleet, tmp_path / "plan.json", fleet.quiet_config, "--model", "theta")
    assert done.returncode == 0, done.stderr
    assert versions(planned, "theta") == {"1": ("retire", "idle"), "2": ("retire", "idle"), "3": ("keep", "traffic")}
    journal = tmp_path / "journal.jsonl"
    reload = [a for sim in fleet.quiet for a in ("--reload", sim.grpc)]
    targets = [a for sim in fleet.quiet for a in ("--targets", target(sim))]
    done = apply(tmp_path, fleet.quiet_config, *reload, *targets, *FAST)
    assert done.returncode == 0, done.stderr
    assert model_states(fleet, "theta", fleet.quiet) == [{1: END, 2: END, 3: AVAILABLE}] * 3
    assert fleet.quiet_config.read_text() == planned["new_config"]
    checked = retire("verify", str(tmp_path / "plan.json"), *targets, "--soak", "1s", "--timeout", "30s")
    assert checked.returncode == 0, checked.stderr
    assert last_line(checked.stderr) == "tfs-traffic: verified 2 retired version(s); no client asked for them in 1s"
    entries = [json.loads(x) for x in journal.read_text().splitlines()]
    canary, second, third = (sim.grpc for sim in fleet.quiet)
    assert [(e["step"], e["result"], e["targets"]) for e in entries if e["step"] in ("push", "verify")] == [
        ("push", "start", [canary]),
        ("push", "ok", [canary]),
        ("verify", "start", [canary]),
        ("verify", "ok", [canary]),
        ("push", "start", [second]),
        ("push", "ok", [second]),
        ("push", "start", [third]),
        ("push", "ok", [third]),
        ("verify", "start", [canary, second, third]),
        ("verify", "ok", [canary, second, third]),
    ]


def test_7_drift_and_a_latest_policy_are_refused_and_convert_policy_plans_it(fleet: Fleet, tmp_path: Path) -> None:
    """zeta (`latest { num_versions: 3 }`): its idle 1 and 2 refused, planned with --convert-policy;
    eta lists 9, which no replica serves: every idle version of it refused, with or without."""
    original = fleet.config.read_text()
    done, planned = plan(fleet, tmp_path / "plan.json", fleet.config, "--model", "zeta", "--model", "eta")
    assert done.returncode == 0, done.stderr
    assert versions(planned, "zeta") == {
        "1": ("refused", "policy:latest"),
        "2": ("refused", "policy:latest"),
        "3": ("keep", "traffic"),
    }
    assert versions(planned, "eta") == {"1": ("refused", "drift"), "2": ("keep", "traffic")}
    eta = next(m for m in planned["models"] if m["model_name"] == "eta")
    assert eta["drift"] == ["version 9 is in the policy but AVAILABLE on no target"]
    assert (planned["new_config"], planned["diff"]) == (original, "")

    done, converted = plan(
        fleet, tmp_path / "convert.json", fleet.config, "--model", "zeta", "--model", "eta", "--convert-policy"
    )
    assert done.returncode == 0, done.stderr
    assert versions(converted, "zeta") == {"1": ("retire", "idle"), "2": ("retire", "idle"), "3": ("keep", "traffic")}
    assert versions(converted, "eta") == {"1": ("refused", "drift"), "2": ("keep", "traffic")}
    zeta = next(m for m in converted["models"] if m["model_name"] == "zeta")
    assert (zeta["converted"], zeta["policy"], zeta["new_versions"]) == (True, "latest", [3])
    assert "tfs-traffic: zeta: policy latest becomes specific [3] (--convert-policy)" in done.stderr
    assert changed_lines(converted["diff"]) == [
        "-      latest {",
        "-        num_versions: 3",
        "+      specific {",
        "+        versions: 3",
    ]


VALUES = """\
# The release's values (a GitOps repository's file): comments and key order are the reviewer's.
replicaCount: 3  # one per zone
image:
  repository: tensorflow/serving
  tag: "2.20.0"
modelsConfig: |
{config}
# Below modelsConfig: kept as it is.
sidecar:
  enabled: true
"""


def test_the_gitops_path_values_committed_then_verify(fleet: Fleet, tmp_path: Path) -> None:
    """kappa: `plan --values` (no --models-config: the values file's modelsConfig is the config) writes
    the values copy, only modelsConfig changed; its modelsConfig committed and rolled out (written to
    the file the replicas poll, as a ConfigMap update is), `verify` from Prometheus alone sees kappa 1
    gone everywhere and nobody asking for it."""
    held = fleet.config.read_text()
    values = tmp_path / "values.yaml"
    values.write_text(VALUES.format(config="".join("  " + line for line in held.splitlines(keepends=True)).rstrip()))
    fleet.wait_ready()
    done = retire("plan", "--prometheus", fleet.url, "--values", str(values), "--model", "kappa", "--window", "1m",
                  "--output", str(tmp_path / "plan.json"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    planned = json.loads((tmp_path / "plan.json").read_text())
    assert versions(planned, "kappa") == {"1": ("retire", "idle"), "2": ("keep", "traffic"), "3": ("keep", "traffic")}
    copy = tmp_path / "values.retired.yaml"
    assert planned["values"] == {"input": str(values), "output": str(copy)}
    assert planned["models_config"] == f"{values} (modelsConfig)"
    assert f"tfs-traffic: wrote {copy}: {values} with the new models config, to commit" in done.stderr
    before, after = yaml.safe_load(values.read_text()), yaml.safe_load(copy.read_text())
    assert after == {**before, "modelsConfig": planned["new_config"]}
    outside = [x for x in difflib.ndiff(values.read_text().splitlines(), copy.read_text().splitlines()) if x[0] in "-+"]
    assert all(x[2:].startswith("  ") for x in outside)  # only modelsConfig's lines changed
    assert [x for x in outside if "versions: 1" in x] == ["- " + "  " + "        versions: 1"]  # ndiff, block, config

    # Committed; the ConfigMap's new text reaches the replicas' file.
    staging = fleet.config.with_suffix(".next")
    staging.write_text(after["modelsConfig"])
    staging.replace(fleet.config)
    checked = retire("verify", str(tmp_path / "plan.json"), "--prometheus", fleet.url, "--soak", "2s",
                     "--timeout", "30s")  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert last_line(checked.stderr) == "tfs-traffic: verified 1 retired version(s); no client asked for them in 2s"
    assert model_states(fleet, "kappa") == [{1: END, 2: AVAILABLE, 3: AVAILABLE}] * 3

    # The values file no longer holds the config the replicas read: a plan from both is refused.
    done = retire("plan", "--prometheus", fleet.url, "--values", str(values), "--models-config", str(fleet.config))
    assert (done.returncode, done.stderr) == (
        2,
        f"tfs-traffic: error: {values}: its modelsConfig is not the config of {fleet.config}\n",
    )


def test_sigterm_during_the_soak_restores_the_previous_config(fleet: Fleet, tmp_path: Path) -> None:
    """iota: 1 retired and verified, then the apply is stopped (SIGTERM, as a cancelled job is):
    it writes the previous config back, verifies it, and exits 130."""
    original = fleet.config.read_text()
    done, planned = plan(fleet, tmp_path / "plan.json", fleet.config, "--model", "iota")
    assert done.returncode == 0, done.stderr
    assert versions(planned, "iota") == {"1": ("retire", "idle"), "2": ("keep", "traffic")}
    journal = tmp_path / "journal.jsonl"
    applying = start_apply(tmp_path, fleet.config, *fleet.targets(), "--recheck", "1m", "--soak", "60s")
    try:
        assert wait_for(lambda: ("soak", "start") in (steps(journal) if journal.exists() else []), timeout=60)
        assert model_states(fleet, "iota") == [{1: END, 2: AVAILABLE}] * 3
        applying.terminate()
        assert applying.wait(timeout=60) == 130
    finally:
        applying.kill()
    assert last_line((tmp_path / "apply.log").read_text()) == (
        "tfs-traffic: error: interrupted; previous config restored and verified"
    )
    assert fleet.config.read_text() == original
    assert model_states(fleet, "iota") == [{1: AVAILABLE, 2: AVAILABLE}] * 3
    assert steps(journal) == [
        *SOAKING,
        ("restore", "start"),
        ("restore", "ok"),
        *[("verify", "start"), ("verify", "ok")] * 3,
        ("end", "ok"),
    ]


def test_5_a_replica_unreachable_mid_apply_stops_restores_and_exits_1(fleet: Fleet, tmp_path: Path) -> None:
    """epsilon: the third replica stops right after the file is written. Apply stops, writes the
    previous config back, verifies it on the two that answer, exits 1; restarted, the third serves
    epsilon 1 again (it reads the restored file)."""
    original = fleet.config.read_text()
    done, planned = plan(fleet, tmp_path / "plan.json", fleet.config, "--model", "epsilon")
    assert done.returncode == 0, done.stderr
    assert versions(planned, "epsilon") == {"1": ("retire", "idle"), "2": ("keep", "traffic")}
    journal = tmp_path / "journal.jsonl"
    # A soak longer than the 10 s a target may stay silent: stopped after the change is verified, it
    # still ends the run the same way.
    applying = start_apply(tmp_path, fleet.config, *fleet.targets(), "--recheck", "1m", "--soak", "30s")
    third = fleet.sims[2]
    try:
        assert wait_for(lambda: ("write", "ok") in (steps(journal) if journal.exists() else []), timeout=60)
        third.stop()
        assert applying.wait(timeout=60) == 1
    finally:
        applying.kill()
    output = (tmp_path / "apply.log").read_text()
    assert last_line(output).startswith(f"tfs-traffic: error: could not complete: {third.grpc} unreachable for 10s")
    assert last_line(output).endswith(f"; previous config restored, verified on 2 of 3 target(s); not on {third.grpc}")
    assert fleet.config.read_text() == original
    assert model_states(fleet, "epsilon", fleet.sims[:2]) == [{1: AVAILABLE, 2: AVAILABLE}] * 2
    entries = [json.loads(x) for x in journal.read_text().splitlines()]
    assert (entries[-1]["step"], entries[-1]["status"], entries[-1]["exit_status"]) == ("end", "failed", 1)
    third.start()  # its log already holds a ready line: wait for the port itself

    def answers() -> dict[int, int] | None:
        try:
            return states(third.grpc, "epsilon")
        except grpc.RpcError:
            return None

    assert wait_for(answers, timeout=30) == {1: AVAILABLE, 2: AVAILABLE}
