"""Sidecar mode's stand-in for `tensorflow_model_server`: clients -> `tfs-traffic sidecar` -> `tfs-traffic sim`.

    python wrapper.py --state DIR --tfs-traffic PATH -- TF_SERVING_FLAGS...

The test starts "the server" with TF Serving's flags and talks to the ports it chose. Here the sim
gets those flags unchanged except where it must not take the test's endpoints: `--port`,
`--rest_api_port` and `--grpc_socket_path` become private ones. The sidecar then listens on the
test's ports and relays to the sim. It listens on TCP only, so the test's unix socket is served by
this wrapper, which relays it byte for byte to the sidecar's gRPC port: every call the suite makes
passes the sidecar.

What the test can see of the process is the sim's: its stderr is copied to ours (the test reads it
when the config is bad) and, when the sim exits, we exit with its status. The sidecar's models
config is `--model_config_file`'s file, or, for `--model_name`/`--model_base_path`, a file written
with the one model TF Serving builds from them (`main.cc`).

Once both serve, `DIR/server-PID.json` records the processes and where their metrics are, for
`run.py` to compare the counts after the test process has ended (the test kills this wrapper with
SIGKILL at exit; the sim and the sidecar are left running for that and stopped by `run.py`).
"""

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tfs_traffic.files import write_atomic
from tfs_traffic.prometheus.local import free_port

START_TIMEOUT = 60.0


def flag_values(argv: list[str]) -> dict[str, str]:
    """TF Serving's `--name=value` flags (its parser takes no other form for valued flags)."""
    out = {}
    for arg in argv:
        if arg.startswith("--") and "=" in arg:
            name, value = arg[2:].split("=", 1)
            out[name] = value
    return out


def replace_flags(argv: list[str], values: dict[str, str]) -> list[str]:
    """argv with the given `--name=value` flags' values replaced, everything else as it was."""
    out = []
    for arg in argv:
        name = arg[2:].split("=", 1)[0] if arg.startswith("--") and "=" in arg else None
        out.append(f"--{name}={values[name]}" if name in values else arg)
    return out


def copy_log(path: Path, stop: threading.Event) -> None:
    """Copy what the sim writes to its log to our stderr, as it comes."""
    with path.open("rb") as f:
        while True:
            chunk = f.read(65536)
            if chunk:
                with contextlib.suppress(OSError):
                    sys.stderr.buffer.write(chunk)
                    sys.stderr.buffer.flush()
            elif stop.is_set():
                return
            else:
                time.sleep(0.05)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def single_model_config(path: Path, name: str, base_path: str) -> Path:
    """`main.cc`'s `BuildSingleModelConfig(model_name, model_base_path)` as a config file."""
    write_atomic(
        path,
        "model_config_list {\n"
        f'  config {{ name: "{name}" base_path: "{base_path}" model_platform: "tensorflow" }}\n'
        "}\n",
    )
    return path


def serve_socket(path: str, port: int) -> None:
    """Relay connections on the unix socket `path` to 127.0.0.1:port, byte for byte, in a thread."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                writer.close()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def main() -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # as gRPC does before it binds a unix socket: the last server started owns it
        server = await asyncio.start_unix_server(connection, path)
        async with server:
            await server.serve_forever()

    threading.Thread(target=lambda: asyncio.run(main()), name="uds-relay", daemon=True).start()


def wait_until(ready: Callable[[], bool], proc: subprocess.Popen, what: str) -> bool:
    """True once `ready()`; False if `proc` exits first. Gives up (exit 1) after START_TIMEOUT."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if ready():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    sys.stderr.write(f"upstream-suite wrapper: {what} not ready within {START_TIMEOUT:.0f}s\n")
    return False


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state", required=True, type=Path)
    parser.add_argument("--tfs-traffic", required=True)
    parser.add_argument("tf_flags", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    tf_flags = args.tf_flags[1:] if args.tf_flags[:1] == ["--"] else args.tf_flags
    flags = flag_values(tf_flags)
    me = os.getpid()
    state: Path = args.state
    record: dict = {"wrapper_pid": me, "flags": tf_flags}

    sim_grpc, sim_rest = free_port(), free_port()
    private = {"port": str(sim_grpc), "rest_api_port": str(sim_rest)}
    if "grpc_socket_path" in flags:
        private["grpc_socket_path"] = str(state / f"sim-{me}.sock")
    sim_log = state / f"server-{me}.sim.log"
    with sim_log.open("wb") as log:
        sim = subprocess.Popen(
            [args.tfs_traffic, "sim", *replace_flags(tf_flags, private)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    record.update(sim_pid=sim.pid, sim_grpc=sim_grpc, sim_rest=sim_rest, sim_log=str(sim_log))
    stop_copy = threading.Event()
    copier = threading.Thread(target=copy_log, args=(sim_log, stop_copy), daemon=True)
    copier.start()

    def finish(code: int) -> int:
        stop_copy.set()
        copier.join(2)
        return code

    def sim_serves() -> bool:
        return port_open(sim_grpc) and (not flags.get("rest_api_port") or port_open(sim_rest))

    if not wait_until(sim_serves, sim, "the sim"):
        code = sim.wait() if sim.poll() is not None else 1
        record["sim_exit"] = code
        write_atomic(state / f"server-{me}.json", json.dumps(record))
        return finish(code)

    if flags.get("model_config_file"):
        models_config = Path(flags["model_config_file"])
    else:
        models_config = single_model_config(
            state / f"server-{me}.models.config", flags.get("model_name", "default"), flags.get("model_base_path", "")
        )
    metrics_port = free_port()
    sidecar_args = [
        args.tfs_traffic,
        "sidecar",
        "--models-config",
        str(models_config),
        "--upstream-grpc",
        f"127.0.0.1:{sim_grpc}",
        "--metrics-addr",
        f"127.0.0.1:{metrics_port}",
        "--listen-grpc",
        f"127.0.0.1:{flags['port']}",
    ]
    if flags.get("rest_api_port"):
        sidecar_args += [
            "--upstream-rest",
            f"127.0.0.1:{sim_rest}",
            "--listen-rest",
            f"127.0.0.1:{flags['rest_api_port']}",
        ]
    sidecar_log = state / f"server-{me}.sidecar.log"
    with sidecar_log.open("wb") as log:
        sidecar = subprocess.Popen(
            sidecar_args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    record.update(sidecar_pid=sidecar.pid, sidecar_metrics=metrics_port, sidecar_log=str(sidecar_log))

    def sidecar_ready() -> bool:
        return b"ready:" in sidecar_log.read_bytes()

    if not wait_until(sidecar_ready, sidecar, "the sidecar"):
        sys.stderr.write(f"upstream-suite wrapper: the sidecar did not start, see {sidecar_log}\n")
        record["sidecar_exit"] = sidecar.poll()
        write_atomic(state / f"server-{me}.json", json.dumps(record))
        for proc in (sidecar, sim):
            if proc.poll() is None:
                proc.terminate()
        return finish(1)
    if "grpc_socket_path" in flags:
        serve_socket(flags["grpc_socket_path"], int(flags["port"]))
    write_atomic(state / f"server-{me}.json", json.dumps(record))

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    while sim.poll() is None and not stopping.is_set():
        time.sleep(0.2)
    for proc in (sidecar, sim):
        if proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
    return finish(sim.returncode if sim.returncode is not None else 0)


if __name__ == "__main__":
    sys.exit(main())
