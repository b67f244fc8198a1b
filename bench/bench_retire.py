"""Retirement speed: from `retire apply` to the retirement verified on every replica, in poll intervals.

The live fleet of the retire tests (tests/retire/fleet.py): three `tfs-traffic sim` replicas that
re-read one models config and their version directories every second
(`--model_config_file_poll_wait_seconds=1 --file_system_poll_wait_seconds=1`: the poll interval), a
sidecar relay before each, a real Prometheus scraping all of them every second, and a client load
on the versions that stay. Each of RUNS models has one idle version; each run plans it
(`retire plan --model M --window 1m`) and applies it (`retire apply PLAN --models-config FILE
--targets ... --soak 1ms`, the shortest soak apply takes), then reads the apply's journal: from the
models config written (`write` ok) to every replica verified (`verify` ok) — the goal: within 2
poll intervals plus the soak —, and, for the whole command, from its launch and from its first
journal line to the same point, in seconds and in poll intervals.
"""

import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent / "tests"

RUNS = int(os.environ.get("BENCH_RETIRE_RUNS", "3"))
POLL_SECONDS = 1.0  # the replicas' --model_config_file_poll_wait_seconds and --file_system_poll_wait_seconds
SOAK_SECONDS = 0.001  # the shortest soak apply takes (a duration must be positive): the goal's soak is 0
GOAL_INTERVALS = 2.0


def _at(entry: dict[str, object]) -> float:
    return datetime.fromisoformat(str(entry["time"]).replace("Z", "+00:00")).timestamp()


def _one(fleet: Any, model: str, root: Path) -> tuple[float, float, float, float]:
    """(launch, first line, file written) to verified, and the apply's wall time, in seconds."""
    from fleet import journal, plan, retire

    planned = root / f"{model}.plan.json"
    done, plan_json = plan(fleet, planned, fleet.config, "--model", model)
    if done.returncode != 0 or [m["retire"] for m in plan_json["models"]] != [["1"]]:
        raise RuntimeError(f"retire plan for {model}: exit {done.returncode}: {done.stderr.strip()[-500:]}")
    lines = root / f"{model}.journal.jsonl"
    launched = time.time()
    done = retire(
        "apply",
        str(planned),
        "--models-config",
        str(fleet.config),
        *fleet.targets(),
        "--recheck",
        "1m",
        "--soak",
        f"{SOAK_SECONDS * 1000:g}ms",
        "--timeout",
        "30s",
        "--journal",
        str(lines),
    )
    wall = time.time() - launched
    if done.returncode != 0:
        raise RuntimeError(f"retire apply for {model}: exit {done.returncode}: {done.stderr.strip()[-500:]}")
    entries = journal(lines)
    begun = _at(entries[0])
    written = _at(next(e for e in entries if e["step"] == "write" and e["result"] == "ok"))
    verified = _at([e for e in entries if e["step"] == "verify" and e["result"] == "ok"][-1])
    return verified - launched, verified - begun, verified - written, wall


def main() -> None:
    if shutil.which("prometheus") is None:
        print("prometheus is missing (make setup installs it)")
        return
    if not (TESTS / "retire" / "fleet.py").exists():
        print("needs `tfs-traffic retire` and its test fleet (tests/retire/fleet.py)")
        return
    sys.path[:0] = [str(TESTS), str(TESTS / "retire")]
    from fleet import Call, Fleet, Model, specific

    root = Path(tempfile.mkdtemp(prefix="bench-retire-"))
    models = [Model(f"m{i}", (1, 2, 3), specific(1, 2, 3)) for i in range(RUNS)]
    fleet = Fleet(root, models, [])
    print(f"cores: {os.cpu_count()}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"3 replicas polling every {POLL_SECONDS:g}s, a sidecar each, Prometheus scraping every 1s")
    rows = []
    try:
        fleet.start([])
        assert fleet.load is not None
        for i, model in enumerate(m.name for m in models):  # versions 2 and 3 stay busy; 1 is idle
            fleet.load.add(Call("grpc", fleet.sidecars[i % 3], model, version=2))
            fleet.load.add(Call("rest", fleet.sidecars[(i + 1) % 3], model))
        print(f"{'model':>5} | {'launch->verified':>16} | {'begin->verified':>15} | {'written->verified':>17} | wall")
        for model in (m.name for m in models):
            launch, begin, written, wall = _one(fleet, model, root)
            rows.append((launch, begin, written, wall))
            iv = [f"{seconds:>6.2f}s {seconds / POLL_SECONDS:>5.2f} iv" for seconds in (launch, begin, written)]
            print(f"{model:>5} | {iv[0]:>16} | {iv[1]:>15} | {iv[2]:>17} | {wall:.2f}s", flush=True)
        failed = fleet.load.failures
        first = f" (the first: {failed[0]})" if failed else ""
        print(f"client calls failed during the runs: {len(failed)} of {fleet.load.sent}{first}")
        median = statistics.median(r[2] for r in rows) / POLL_SECONDS
        worst = max(r[2] for r in rows) / POLL_SECONDS
        goal = GOAL_INTERVALS + SOAK_SECONDS / POLL_SECONDS
        verdict = "met" if worst <= goal else f"missed by {worst - goal:.2f} intervals"
        print(
            f"written -> verified on every replica: median {median:.2f}, worst {worst:.2f} poll intervals; "
            f"goal <= {goal:.2f} (2 poll intervals plus the soak): {verdict}"
        )
        launch = statistics.median(r[0] for r in rows) / POLL_SECONDS
        print(f"launch -> verified (the whole command, re-check included): median {launch:.2f} intervals")
    finally:
        fleet.stop()
        shutil.rmtree(root, ignore_errors=True)
        print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
