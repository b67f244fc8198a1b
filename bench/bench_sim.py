"""Throughput of `tfs-traffic sim` itself: how far it is from being the bottleneck of other benchmarks.

gRPC Predict is driven by h2load (a C client: 4 connections x 4 streams = 16 in flight), REST
predict by wrk (16 connections), both with ~1 KiB requests, at 0 ms and 2 ms model time. Printed:
requests/s, REST relative to gRPC, and at 2 ms the share of the ideal 16 / 2 ms = 8000 req/s.
"""

import json
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SECONDS = 5
CONCURRENCY = 16


def _start(config: Path, latency_ms: int) -> tuple[subprocess.Popen, str, str]:
    cli = Path(sys.executable).parent / "tfs-traffic"
    proc = subprocess.Popen(
        [
            str(cli),
            "sim",
            "--models-config",
            str(config),
            "--grpc-addr",
            "127.0.0.1:0",
            "--rest-addr",
            "127.0.0.1:0",
            "--latency-ms",
            str(latency_ms),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    parts = dict(p.split("=", 1) for p in proc.stdout.readline().split())
    return proc, parts["grpc"], parts["rest"]


def _h2load(target: str, body: Path) -> float:
    out = subprocess.run(
        [
            "h2load",
            "-D",
            str(SECONDS),
            "-c",
            "4",
            "-m",
            str(CONCURRENCY // 4),
            "-t",
            "1",
            "-d",
            str(body),
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            f"http://{target}/tensorflow.serving.PredictionService/Predict",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("finished in"))
    return float(line.split(",")[1].split()[0])


def _wrk(target: str, lua: Path) -> float:
    out = subprocess.run(
        [
            "wrk",
            "-t",
            "2",
            "-c",
            str(CONCURRENCY),
            "-d",
            f"{SECONDS}s",
            "-s",
            str(lua),
            f"http://{target}/v1/models/m:predict",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("Requests/sec:"))
    return float(line.split()[1])


def main() -> None:
    if not (shutil.which("h2load") and shutil.which("wrk")):
        print("skipped: h2load and wrk are needed (Debian nghttp2-client, wrk)")
        return
    from tfs_traffic.sim import protos as sim_protos

    protos = sim_protos.load()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "m" / "1").mkdir(parents=True)
        config = tmp / "models.config"
        config.write_text(
            f'model_config_list {{ config {{ name: "m" base_path: "{tmp / "m"}" model_platform: "tensorflow" }} }}\n'
        )
        request = protos.predict.PredictRequest()
        request.model_spec.name = "m"
        x = request.inputs["x"]
        x.dtype = 1
        x.tensor_shape.dim.add(size=256)
        x.tensor_content = np.arange(256, dtype=np.float32).tobytes()  # 1 KiB of floats
        data = request.SerializeToString()
        grpc_body = tmp / "grpc.bin"
        grpc_body.write_bytes(b"\x00" + struct.pack(">I", len(data)) + data)
        rest_body = tmp / "rest.json"
        rest_body.write_text(json.dumps({"instances": [round(float(v), 3) for v in np.linspace(0, 100, 150)]}))
        lua = tmp / "post.lua"
        lua.write_text(
            f'wrk.method = "POST"\nwrk.body = io.open("{rest_body}"):read("*a")\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
        print(f"concurrency {CONCURRENCY}, gRPC request {len(data)} B, REST body {rest_body.stat().st_size} B")
        for latency_ms in (0, 2):
            proc, grpc_target, rest_target = _start(config, latency_ms)
            try:
                grpc_rps = _h2load(grpc_target, grpc_body)
                rest_rps = _wrk(rest_target, lua)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
            line = f"model time {latency_ms} ms: gRPC {grpc_rps:8.0f} req/s, REST {rest_rps:8.0f} req/s"
            line += f", REST/gRPC {rest_rps / grpc_rps:.2f}"
            if latency_ms:
                ideal = CONCURRENCY / (latency_ms / 1000)
                line += f", share of ideal {ideal:.0f} req/s: gRPC {grpc_rps / ideal:.2f} REST {rest_rps / ideal:.2f}"
            print(line, flush=True)
