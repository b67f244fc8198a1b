"""What the reload guard costs the calls it lets through (README, "Guarding the control plane").

The guard reads every chunk a gRPC client sends before the relay forwards it, so it is the one part
of the relay that parses on the data path. Two measures, printed side by side:

- micro: a real grpcio client's connection (CALLS Predicts of 1 KiB to the stand-in), recorded by a
  forwarder, replayed warm through `ReloadGuard.feed` and through the counting parse (`GrpcObserver`,
  both directions, what the backlog runs later): microseconds per call of each, and their ratio;
- macro: h2load through a guarded sidecar and one started with --allow-config-reload (no guard) in
  front of the same stand-in (2 ms model time, 1 KiB), ROUNDS interleaved rounds at concurrency 1 and
  16, the order reversed every other round: each sidecar's CPU microseconds per call and throughput,
  and the guarded one's as ratios to the unguarded one's (medians of the per-round ratios).
"""

import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
from prometheus_client import CollectorRegistry

from bench.bench_sidecar import ROUNDS, Load, _check, grpc_body
from tfs_traffic.sidecar.grpc_relay import GrpcObserver
from tfs_traffic.sidecar.guard import ReloadGuard
from tfs_traffic.sidecar.metrics import CallMetrics
from tfs_traffic.sidecar.view import ModelView, View, ViewHolder

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from sidecar_support import Sidecar, Sim, write_models
from tcp_server import tcp_server

CALLS = 200
REPLAYS = 30
CONCURRENCY = (1, 16)
PREDICT = "/tensorflow.serving.PredictionService/Predict"


def record(sim: Sim, body: bytes) -> tuple[list[bytes], list[bytes]]:
    """The chunks a grpcio client sent and received over one connection of CALLS Predicts."""
    chunks: dict[bool, list[bytes]] = {True: [], False: []}

    def pump(source: socket.socket, target: socket.socket, upward: bool) -> None:
        try:
            while data := source.recv(65536):
                chunks[upward].append(data)
                target.sendall(data)
            target.shutdown(socket.SHUT_WR)
        except OSError:  # the other pump closed both
            pass
        finally:
            source.close()
            target.close()

    def handle(client: socket.socket) -> None:
        server = socket.create_connection(("127.0.0.1", sim.grpc_port))
        threading.Thread(target=pump, args=(client, server, True), daemon=True).start()
        threading.Thread(target=pump, args=(server, client, False), daemon=True).start()

    with tcp_server(handle) as port, grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(PREDICT)
        for _ in range(CALLS):
            call(body, timeout=10)
    time.sleep(0.2)  # the pumps pass on the last bytes
    return chunks[True], chunks[False]


def micro(client: list[bytes], server: list[bytes]) -> tuple[float, float]:
    """(guard, counting parse) microseconds per call, medians of REPLAYS warm replays."""
    holder = ViewHolder(View({"m": ModelView(labels={}, available=frozenset({1}), seen={1})}))
    metrics = CallMetrics(registry=CollectorRegistry())

    def guard() -> float:
        reload_guard = ReloadGuard()
        started = time.perf_counter()
        for chunk in client:
            reload_guard.feed(chunk)
        return time.perf_counter() - started

    def counting() -> float:
        observer = GrpcObserver(holder, metrics)
        started = time.perf_counter()
        for chunk in client:
            observer.client_data(chunk)
        for chunk in server:
            observer.server_data(chunk)
        return time.perf_counter() - started

    guard_runs = [guard() for _ in range(REPLAYS)]
    counting_runs = [counting() for _ in range(REPLAYS)]
    return statistics.median(guard_runs) / CALLS * 1e6, statistics.median(counting_runs) / CALLS * 1e6


def main() -> None:
    if shutil.which("h2load") is None:
        print("h2load is missing (make setup installs nghttp2-client)")
        return
    root = Path(tempfile.mkdtemp(prefix="bench-guard-"))
    config = write_models(root, {"m": [1]})
    body_file = grpc_body(1 << 10, root)
    print(f"cores: {os.cpu_count()}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    try:
        with Sim(config, root / "sim.log", extra=["--latency-ms", "2"]) as sim:
            client, server = record(sim, body_file.read_bytes()[5:])
            guard_us, counting_us = micro(client, server)
            print(
                f"micro: a grpcio connection of {CALLS} Predicts (1 KiB; {len(client)} client chunks), replayed warm: "
                f"guard {guard_us:.2f} us per call, counting parse {counting_us:.2f} us per call "
                f"(guard / counting {guard_us / counting_us:.2f})"
            )
            guarded = Sidecar(config, sim, root / "guarded.log", poll="15s", count_delay=None).start()
            open_ = Sidecar(
                config, sim, root / "open.log", poll="15s", count_delay=None, extra=["--allow-config-reload"]
            ).start()
            try:
                _check(guarded.grpc, body_file)
                _check(open_.grpc, body_file)
                print("macro: h2load, 2 ms model time, 1 KiB; guarded = default, open = --allow-config-reload")
                header = f"{'conc':>4} | {'open rps':>8} {'cpu us':>6} | {'guarded rps':>11} {'cpu us':>6}"
                print(header + " | rps g/o cpu g/o")
                for conc in CONCURRENCY:
                    load = Load("grpc", conc, body_file, body_file, root)
                    rounds = [load.round({"open": open_, "guarded": guarded}, n) for n in range(ROUNDS)]
                    o = [statistics.median(r["open"][i] for r in rounds) for i in (0, 3)]
                    g = [statistics.median(r["guarded"][i] for r in rounds) for i in (0, 3)]
                    rps_ratio = statistics.median(r["guarded"][0] / r["open"][0] for r in rounds)
                    cpu_ratio = statistics.median(r["guarded"][3] / r["open"][3] for r in rounds)
                    print(
                        f"{conc:>4} | {o[0]:>8.0f} {o[1]:>6.0f} | {g[0]:>11.0f} {g[1]:>6.0f} | "
                        f"{rps_ratio:>7.3f} {cpu_ratio:>7.3f}  (medians of {ROUNDS} rounds)",
                        flush=True,
                    )
            finally:
                guarded.stop()
                open_.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
        print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
