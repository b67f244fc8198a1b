"""`make upstream-suite`: TF Serving's own integration suite run against `tfs-traffic sim`, directly and
through `tfs-traffic sidecar`.

    python tools/upstream_suite/run.py --source TF_SERVING_SRC [--mode direct|sidecar|both]

TF_SERVING_SRC is a TF Serving source tree (an export of a release tag, e.g. 2.20.0); nothing of it
is copied into this repository. Its `tensorflow_serving/model_servers/tensorflow_model_server_test.py`
runs unchanged, with its `test_util/tensorflow_model_server_test_base.py` and the SavedModels of
`servables/tensorflow/testdata/`, in one test process as upstream runs it (`suite_main.py`). The
base class starts `$TEST_SRCDIR/tf_serving/tensorflow_serving/model_servers/tensorflow_model_server`
with TF Serving's flags; that layout is built in a work directory, with the testdata linked from the
source tree and, in the binary's place, a script that runs:

- `direct`: `tfs-traffic sim` with the test's flags, unchanged (the script execs it);
- `sidecar`: `wrapper.py`, which starts the sim on private ports and `tfs-traffic sidecar` on the
  test's ports (clients -> sidecar -> sim).

Each test is printed as pass, fail (with a one-line reason) or out-of-scope (not run, with the
reason: what a stand-in without TensorFlow's runtime cannot be). In sidecar mode, once the tests
are done, every server's sidecar counts (`tfserving_model_calls_total`, per model and version) are
compared with what the sim served (its patched `model_call_count`, which counts every call the
server resolved, docs/metrics.md); calls the server resolved to no version are compared with the
sim's `request_count` for the names it never served. Then `checks.py` compares the sim with the
source tree itself (metadata file, SavedModel signature defs, TensorFlow's own results).

Exit status 0 when nothing failed and every count matched, 1 otherwise, 2 for bad usage.
"""

import argparse
import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEST_FILE = Path("tensorflow_serving/model_servers/tensorflow_model_server_test.py")
TEST_BASE = Path("tensorflow_serving/model_servers/test_util/tensorflow_model_server_test_base.py")
TESTDATA = Path("tensorflow_serving/servables/tensorflow/testdata")
TEST_CLASS = "TensorflowModelServerTest"

_TFLITE = "TFLite model content (--prefer_tflite_model): the stand-in computes the arithmetic SavedModels only"
_BUILT = "a model the test builds with TensorFlow itself, whose content the stand-in does not compute"
OUT_OF_SCOPE = {
    "test_profiler_service_with_valid_trace_request": "the TF profiler (ProfilerService): no TensorFlow to trace",
    "testPredictOnTfLite": _TFLITE,
    "testPredictWithSignatureDefOnTfLite": _TFLITE,
    "test_tf_saved_model_save": _BUILT + " (tf.saved_model.save)",
    "test_tf_saved_model_save_multiple_signatures": _BUILT + " (tf.saved_model.save, two signatures)",
    "test_sequential_keras_saved_model_save": _BUILT + " (a Keras Sequential model)",
    "test_distrat_sequential_keras_saved_model_save": _BUILT + " (Keras under tf.distribute)",
    "test_tf_text": "tf_text_regression runs TF Text ops, not arithmetic: the stand-in does not compute it",
}

PATCHED_CALLS = ":tensorflow:serving:model_call_count"
REQUEST_COUNT = ":tensorflow:serving:request_count"
SIDECAR_CALLS = "tfserving_model_calls_total"
# How /proc/PID/cmdline shows the processes we start (a console script run by its interpreter).
SIM_MARK = "tfs-traffic\0sim\0"
SIDECAR_MARK = "tfs-traffic\0sidecar\0"


@dataclass
class Outcome:
    status: str  # "pass", "fail", "out-of-scope"
    reason: str = ""


@dataclass
class ModeResult:
    mode: str
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    count_lines: list[str] = field(default_factory=list)
    counts_equal: bool = True
    servers_compared: int = 0
    server_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def test_names(source: Path) -> list[str]:
    """The test methods of the test class, in the order unittest runs them (sorted by name)."""
    tree = ast.parse((source / TEST_FILE).read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == TEST_CLASS:
            return sorted(f.name for f in node.body if isinstance(f, ast.FunctionDef) and f.name.startswith("test"))
    raise SystemExit(f"upstream-suite: no class {TEST_CLASS} in {source / TEST_FILE}")


def one_line(message: str) -> str:
    """A failure message in one line; a gRPC error as its code and details."""
    code = re.search(r"status = StatusCode\.(\w+)", message)
    details = re.search(r'details = "(.*?)"\n', message, re.DOTALL)
    text = message
    if code:
        text = f"gRPC {code.group(1)}" + (f": {details.group(1)}" if details else "")
    text = " ".join(text.split())
    return text if len(text) <= 240 else text[:237] + "..."


def read_xml(path: Path) -> dict[str, Outcome]:
    """absltest's XML report: test name -> pass or fail (with the first failure's message)."""
    out: dict[str, Outcome] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is not None:
            out[case.get("name", "")] = Outcome("fail", one_line(problem.get("message") or problem.text or ""))
        elif case.find("skipped") is not None:
            out[case.get("name", "")] = Outcome("fail", "skipped by the test itself")
        else:
            out[case.get("name", "")] = Outcome("pass")
    return out


def server_errors(log: str, work: Path) -> list[str]:
    """The distinct refusals servers printed when they would not start (argparse's or TF Serving's
    words), with how many servers printed each; the work directory shortened to `WORK`."""
    counts: dict[str, int] = {}
    for line in log.splitlines():
        if re.match(r"(tfs-traffic[\w ]*: error: |Failed to start server)", line):
            text = line.replace(str(work), "WORK")
            counts[text] = counts.get(text, 0) + 1
    return [f"{n} x {text if len(text) <= 300 else text[:297] + '...'}" for text, n in counts.items()]


def make_layout(work: Path, source: Path, script: str) -> Path:
    """`$TEST_SRCDIR/tf_serving/tensorflow_serving/...` with the testdata and our server in place."""
    srcdir = work / "srcdir"
    root = srcdir / "tf_serving" / "tensorflow_serving"
    (root / "model_servers").mkdir(parents=True)
    (root / "servables" / "tensorflow").mkdir(parents=True)
    (root / "servables" / "tensorflow" / "testdata").symlink_to(source / TESTDATA)
    binary = root / "model_servers" / "tensorflow_model_server"
    binary.write_text(script)
    binary.chmod(0o755)
    return srcdir


def server_script(mode: str, state: Path, tfs_traffic: str) -> str:
    if mode == "direct":
        return f'#!/bin/sh\necho $$ >> "{state}/pids"\nexec "{tfs_traffic}" sim "$@"\n'
    wrapper = f'"{sys.executable}" "{HERE / "wrapper.py"}" --state "{state}" --tfs-traffic "{tfs_traffic}"'
    return f'#!/bin/sh\nexec {wrapper} -- "$@"\n'


def ours(pid: int, marker: str) -> bool:
    """Whether pid is still a process we started (its command line names `marker`)."""
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


def stop_pid(pid: int, marker: str) -> None:
    """SIGTERM, then SIGKILL after 10 s, to one process of ours that is still running."""
    if not ours(pid, marker):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and ours(pid, marker):
        time.sleep(0.1)
    if ours(pid, marker):
        os.kill(pid, signal.SIGKILL)


def scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    from tfs_traffic import exposition

    with urllib.request.urlopen(url, timeout=20) as response:
        return exposition.parse(response.read().decode())


def describe(flags: list[str]) -> str:
    shown = []
    for flag in flags:
        name, _, value = flag[2:].partition("=")
        if name in ("model_name", "model_config_file", "model_config_file_poll_wait_seconds", "monitoring_config_file"):
            shown.append(f"--{name}={os.path.basename(value) or value}")
        elif name == "model_base_path":
            shown.append(f"--{name}=.../{os.path.basename(value.rstrip('/'))}")
        elif name in ("grpc_channel_arguments", "prefer_tflite_model", "enable_batching"):
            shown.append(flag)
    return " ".join(shown)


def compare_counts(record: dict) -> tuple[list[str], bool]:
    """One sidecar-mode server: the sidecar's calls per (model, version) against the sim's."""
    from tfs_traffic.sim.server import PROMETHEUS_PATH, monitoring_path

    flags = dict(f[2:].split("=", 1) for f in record["flags"] if f.startswith("--") and "=" in f)
    path = monitoring_path(flags["monitoring_config_file"]) if flags.get("monitoring_config_file") else PROMETHEUS_PATH
    if path is None:
        return ["  the sim serves no metrics page (its monitoring config turns it off): not compared"], False
    try:
        sim_page = scrape(f"http://127.0.0.1:{record['sim_rest']}{path}")
        side_page = scrape(f"http://127.0.0.1:{record['sidecar_metrics']}/metrics")
    except OSError as e:
        return [f"  cannot scrape: {e}"], False
    sim = {(dict(k)["model_name"], dict(k)["model_version"]): v for k, v in sim_page.get(PATCHED_CALLS, {}).items()}
    side: dict[tuple[str, str], float] = {}
    side_codes: dict[tuple[str, str], dict[str, float]] = {}
    for labels, value in side_page.get(SIDECAR_CALLS, {}).items():
        d = dict(labels)
        key = (d["model_name"], d["model_version"])
        side[key] = side.get(key, 0.0) + value
        codes = side_codes.setdefault(key, {})
        codes[d["code"]] = codes.get(d["code"], 0.0) + value
    lines: list[str] = []
    equal = True
    served = {k for k in set(sim) | set(side) if k[1].isdigit() and k[0] != "__other__"}
    for key in sorted(served):
        a, b = sim.get(key, 0.0), side.get(key, 0.0)
        if a == 0 and b == 0:
            continue
        ok = a == b
        equal &= ok
        lines.append(f"  {key[0]}/{key[1]}: sim {a:.0f}, sidecar {b:.0f}  {'equal' if ok else 'DIFFER'}")
    others = {k: v for k, v in side.items() if k not in served}
    unresolved = sum(others.values())
    served_names = {k[0] for k in sim}
    requests = {
        (dict(k)["model_name"], dict(k)["status"]): v
        for k, v in sim_page.get(REQUEST_COUNT, {}).items()
        if dict(k)["model_name"] not in served_names
    }
    never_served = sum(requests.values())
    if unresolved or never_served:
        ok = unresolved == never_served
        equal &= ok
        detail = ", ".join(
            f"{m}/{v} {c} {n:.0f}"
            for (m, v), codes in sorted(side_codes.items())
            if (m, v) in others
            for c, n in codes.items()
        )
        names = ", ".join(f"{m} {s} {n:.0f}" for (m, s), n in sorted(requests.items()))
        lines.append(
            f"  not resolved to a version: sidecar {unresolved:.0f} ({detail or 'none'}), "
            f"sim request_count for names it never served {never_served:.0f} ({names or 'none'})  "
            f"{'equal' if ok else 'DIFFER'}"
        )
    if not lines:
        lines.append("  no calls")
    return lines, equal


def run_mode(mode: str, source: Path, work: Path, tfs_traffic: str, tests: list[str], timeout: float) -> ModeResult:
    result = ModeResult(mode)
    if work.exists():
        shutil.rmtree(work)
    state = work / "state"
    state.mkdir(parents=True)
    (work / "tmp").mkdir()
    srcdir = make_layout(work, source, server_script(mode, state, tfs_traffic))
    run = [t for t in tests if t not in OUT_OF_SCOPE]
    xml = work / "results.xml"
    env = {**os.environ, "TEST_SRCDIR": str(srcdir), "PYTHONUNBUFFERED": "1"}
    log_path = work / "test.log"
    print(f"== {mode}: {len(run)} of {len(tests)} tests run, log {log_path}", flush=True)
    start = time.monotonic()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(HERE / "suite_main.py"), str(source), str(work / "tmp"), str(xml), *run],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=work,
        )
        assert proc.stdout is not None
        deadline = start + timeout
        os.set_blocking(proc.stdout.fileno(), False)
        while True:
            chunk = proc.stdout.read()
            if chunk:
                log.write(chunk)
                for line in chunk.decode(errors="replace").splitlines():
                    if line.startswith(("[ RUN", "[       OK", "[  FAILED")):
                        print("   " + line.strip(), flush=True)
            if proc.poll() is not None and not chunk:
                break
            if time.monotonic() > deadline:
                print(f"   the test process ran over {timeout:.0f}s: stopped", flush=True)
                stop_pid(proc.pid, "suite_main.py")
            time.sleep(0.1)
    result.seconds = time.monotonic() - start
    outcomes = read_xml(xml) if xml.exists() else {}
    log_text = log_path.read_text(errors="replace") if log_path.exists() else ""
    result.server_errors = server_errors(log_text, work)
    tail = " ".join(log_text.strip().splitlines()[-1:])
    for name in tests:
        if name in OUT_OF_SCOPE:
            result.outcomes[name] = Outcome("out-of-scope", OUT_OF_SCOPE[name])
        else:
            result.outcomes[name] = outcomes.get(
                name, Outcome("fail", f"no result: the test process exited {proc.returncode} ({tail[:160]})")
            )

    if mode == "sidecar":
        records = sorted(state.glob("server-*.json"), key=lambda p: p.stat().st_mtime)
        for number, path in enumerate(records, 1):
            record = json.loads(path.read_text())
            head = f"server {number}: {describe(record['flags'])}"
            if "sidecar_metrics" not in record or "sidecar_exit" in record:
                why = f"the sim exited {record['sim_exit']}" if "sim_exit" in record else "the sidecar did not start"
                result.count_lines.append(f"{head}\n  not serving ({why}): no calls reached it")
                continue
            lines, equal = compare_counts(record)
            result.counts_equal &= equal
            result.servers_compared += 1
            result.count_lines.append("\n".join([head, *lines]))
        for path in records:
            record = json.loads(path.read_text())
            for key, marker in (("sidecar_pid", SIDECAR_MARK), ("sim_pid", SIM_MARK), ("wrapper_pid", "wrapper.py")):
                if key in record:
                    stop_pid(record[key], marker)
    pids = state / "pids"
    if pids.exists():
        for line in pids.read_text().split():
            stop_pid(int(line), SIM_MARK)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, type=Path, help="TF Serving source tree (TF_SERVING_SRC)")
    parser.add_argument("--mode", choices=("direct", "sidecar", "both"), default="both")
    parser.add_argument("--tfs-traffic", default=str(Path(sys.executable).parent / "tfs-traffic"))
    parser.add_argument("--work", type=Path, default=Path("out/upstream-suite"), help="logs and the test layout")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per mode (default 3600)")
    args = parser.parse_args()
    source = args.source.resolve()
    for needed in (TEST_FILE, TEST_BASE, TESTDATA):
        if not (source / needed).exists():
            print(f"upstream-suite: {source / needed} not found: TF_SERVING_SRC must be a TF Serving source tree")
            return 2
    if not os.access(args.tfs_traffic, os.X_OK):
        print(f"upstream-suite: {args.tfs_traffic} is not executable (give --tfs-traffic)")
        return 2
    tests = test_names(source)
    stale = sorted(set(OUT_OF_SCOPE) - set(tests))
    if stale:
        print(f"upstream-suite: out-of-scope names not in this test file: {', '.join(stale)}")
    modes = ("direct", "sidecar") if args.mode == "both" else (args.mode,)
    results = [
        run_mode(mode, source, args.work.resolve() / mode, args.tfs_traffic, tests, args.timeout) for mode in modes
    ]

    ok = True
    for result in results:
        print(f"\n== {result.mode} ({result.seconds:.0f} s)")
        for name, outcome in result.outcomes.items():
            print(f"{outcome.status:<13} {name}" + (f": {outcome.reason}" if outcome.reason else ""))
        tally = {s: sum(o.status == s for o in result.outcomes.values()) for s in ("pass", "out-of-scope", "fail")}
        print(f"{result.mode}: {tally['pass']} pass, {tally['out-of-scope']} out of scope, {tally['fail']} fail")
        ok &= tally["fail"] == 0
        if result.server_errors:
            print("servers that would not start said (their output; what a test reads itself is not shown):")
            print("\n".join(f"  {line}" for line in result.server_errors))
        if result.mode == "sidecar":
            print("\ncounts per server, sidecar tfserving_model_calls_total against the sim's model_call_count:")
            print("\n".join(result.count_lines) or "  no server served")
            if not result.servers_compared:
                print("counts: nothing to compare, no server served")
            else:
                print(f"counts: {'all equal' if result.counts_equal else 'DIFFER'} ({result.servers_compared} servers)")
            ok &= result.counts_equal and result.servers_compared > 0
    print("\n== checks against the source tree")
    quiet = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}  # TensorFlow logs each refused feed as a warning
    checks = subprocess.run([sys.executable, str(HERE / "checks.py"), str(source)], env=quiet, stderr=subprocess.PIPE)
    if checks.returncode != 0:
        sys.stdout.write(checks.stderr.decode(errors="replace")[-4000:])
    ok &= checks.returncode == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
