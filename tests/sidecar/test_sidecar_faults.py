"""The sidecar under faults and change: upstream killed and back, config edits, garbage, many names, workers."""

import json
import os
import random
import re
import socket
import string
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest
import requests
from sidecar_support import Sidecar, Sim, delta, write_models
from tfs_api import METHODS, request_bytes
from waiting import wait_for

from tfs_traffic.contract import OTHER, UNRESOLVED

PREDICT = METHODS["predict"]


def _predict(target: str, model: dict, timeout: float = 5.0) -> str:
    with grpc.insecure_channel(target) as channel:
        try:
            channel.unary_unary(PREDICT)(request_bytes("predict", model), timeout=timeout)
        except grpc.RpcError as e:
            return str(e.code().name)
    return "OK"


def test_upstream_killed_mid_load_fails_fast_and_resumes(tmp_path: Path) -> None:
    config = write_models(tmp_path, {"m": [1, 2]})
    with (
        Sim(config, tmp_path / "sim.log") as sim,
        Sidecar(config, sim, tmp_path / "sidecar.log", poll="0.2s") as sidecar,
    ):
        results: list[tuple[float, float, str]] = []  # (start, seconds, code)
        stop = threading.Event()

        def load(_: int) -> None:
            with grpc.insecure_channel(sidecar.grpc) as channel:
                stub = channel.unary_unary(PREDICT)
                data = request_bytes("predict", {"name": "m"})
                while not stop.is_set():
                    started = time.monotonic()
                    try:
                        stub(data, timeout=10)
                        code = "OK"
                    except grpc.RpcError as e:
                        code = e.code().name
                    results.append((started, time.monotonic() - started, code))
                    time.sleep(0.005)

        threads = [threading.Thread(target=load, args=(i,), daemon=True) for i in range(4)]
        for t in threads:
            t.start()
        assert wait_for(lambda: sum(1 for r in results if r[2] == "OK") >= 20)
        killed_at = time.monotonic()
        sim.stop(9)  # SIGKILL: connections die mid-call
        assert wait_for(lambda: any(r[0] > killed_at + 0.2 and r[2] == "UNAVAILABLE" for r in results), timeout=10)
        # REST too: a quick 503 with TF Serving's error body shape, not a hang.
        started = time.monotonic()
        response = requests.post(sidecar.rest + "/v1/models/m:predict", json={"instances": [1.0]}, timeout=10)
        assert response.status_code == 503 and "error" in response.json()
        assert time.monotonic() - started < 2.0
        assert wait_for(lambda: sidecar.gauge("tfserving_sidecar_upstream_up") == {(): 0.0}, timeout=5)
        time.sleep(1.0)
        down = [r for r in results if r[0] > killed_at + 0.2]
        assert down and all(code == "UNAVAILABLE" for _, _, code in down)
        assert max(seconds for _, seconds, _ in down) < 2.0  # fast failures, no hangs

        with Sim(config, tmp_path / "sim2.log", grpc_port=sim.grpc_port, rest_port=sim.rest_port):
            back_at = time.monotonic()
            try:
                assert wait_for(lambda: any(r[0] > back_at and r[2] == "OK" for r in results), timeout=15)
                resumed = min(r[0] for r in results if r[0] > back_at and r[2] == "OK")
                assert resumed - back_at < 5.0
                assert wait_for(lambda: sidecar.gauge("tfserving_sidecar_upstream_up") == {(): 1.0}, timeout=5)
                ok = requests.post(sidecar.rest + "/v1/models/m:predict", json={"instances": [1.0]}, timeout=10)
                assert ok.status_code == 200
            finally:
                stop.set()
                for t in threads:
                    t.join(15)
                assert not any(t.is_alive() for t in threads), "a client call hung"
        assert {r[2] for r in results} == {"OK", "UNAVAILABLE"}
        # Each answered call is counted once (the REST one too) ...
        answered = sum(1 for r in results if r[2] == "OK")
        assert sidecar.calls(api="predict", code="OK") == {("m", "2"): answered + 1.0}
        # ... and every failed one named no version (latest, unanswered). How many failed is the sidecar's
        # to say: the clients' gRPC library retries some attempts the sidecar ended, and fails some calls
        # locally on a connection the sidecar was closing, so the clients' own count differs either way.
        failed = sidecar.calls(api="predict", code="UNAVAILABLE")
        assert list(failed) == [("m", UNRESOLVED)] and failed[("m", UNRESOLVED)] > 0
        assert sidecar.alive() and "Traceback" not in sidecar.output()


def test_models_config_changes_are_picked_up_without_restart(tmp_path: Path) -> None:
    # One file for both, as in a pod: first only model m (label stable -> 1), then n too and stable -> 2.
    full = write_models(tmp_path, {"m": [1, 2], "n": [7]}, {"m": {"stable": 2}}).read_text()
    config = write_models(tmp_path, {"m": [1, 2]}, {"m": {"stable": 1}})
    with (
        Sim(config, tmp_path / "sim.log", extra=["--config-poll-interval", "0.2s"]) as sim,
        Sidecar(config, sim, tmp_path / "sidecar.log", poll="30s") as sidecar,
    ):
        labelled = sidecar.rest + "/v1/models/m/labels/stable:predict"
        assert requests.post(labelled, json={"instances": [1.0]}, timeout=10).status_code == 200
        assert sidecar.calls(code="OK") == {("m", "1"): 1.0}
        assert ("n", "7") not in sidecar.gauge("tfserving_model_version_available")

        # The poll interval is long: only the sidecar's config check can notice the edit.
        config.write_text(full)
        assert wait_for(lambda: sidecar.gauge("tfserving_model_version_available").get(("n", "7")) == 1.0)
        time.sleep(0.5)  # workers pick up the supervisor's new view within 0.2 s
        sim_before, before = sim.call_counts(), sidecar.calls(code="OK")
        assert wait_for(lambda: _predict(sidecar.grpc, {"name": "n"}) == "OK")
        assert requests.post(labelled, json={"instances": [1.0]}, timeout=10).status_code == 200
        moved = delta(sidecar.calls(code="OK"), before)
        assert moved == delta(sim.call_counts(), sim_before) == {("n", "7"): 1.0, ("m", "2"): 1.0}

        # A broken edit keeps the last good config (and the process).
        config.write_text("model_config_list { config { name: ")
        assert wait_for(lambda: "models config unchanged in memory" in sidecar.output(), timeout=5)
        assert sidecar.alive()
        assert sidecar.gauge("tfserving_model_version_available").get(("n", "7")) == 1.0


def test_cardinality_is_bounded_for_10000_random_model_names(tmp_path: Path) -> None:
    config = write_models(tmp_path, {"m": [1]})
    rng = random.Random(5)
    with Sim(config, tmp_path / "sim.log") as sim, Sidecar(config, sim, tmp_path / "sidecar.log") as sidecar:
        names = ["".join(rng.choices(string.ascii_lowercase, k=12)) for _ in range(10_000)]
        with grpc.insecure_channel(sidecar.grpc) as channel:
            stub = channel.unary_unary(PREDICT)
            for start in range(0, len(names), 250):
                futures = [
                    stub.future(request_bytes("predict", {"name": n, "version": rng.randint(1, 10**6)}), timeout=30)
                    for n in names[start : start + 250]
                ]
                for f in futures:
                    assert f.code() == grpc.StatusCode.NOT_FOUND
        with requests.Session() as session:
            for name in names[:300]:
                session.post(f"{sidecar.rest}/v1/models/{name}/versions/3:predict", json={"instances": [1]}, timeout=10)
        series = [s for s in sidecar.samples() if s[0].startswith("tfserving_model_call")]
        calls = [s for s in series if s[0] == "tfserving_model_calls_total"]
        assert sum(value for _, _, value in calls) == 10_300
        assert {(labels["model_name"], labels["model_version"]) for _, labels, _ in calls} == {(OTHER, OTHER)}
        assert len(series) < 50


def test_garbage_on_the_wire_does_not_hurt(tmp_path: Path) -> None:
    config = write_models(tmp_path, {"m": [1]})
    rng = random.Random(7)
    with Sim(config, tmp_path / "sim.log") as sim, Sidecar(config, sim, tmp_path / "sidecar.log") as sidecar:
        for port in (sidecar.grpc_port, sidecar.rest_port):
            for size in (0, 1, 24, 100, 5000):
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.sendall(bytes(rng.randrange(256) for _ in range(size)))
                    s.shutdown(socket.SHUT_WR)
                    s.settimeout(5)
                    try:
                        while s.recv(65536):
                            pass
                    except (ConnectionResetError, TimeoutError):
                        pass
        # HTTP/1.1 nonsense on the REST port: the upstream's 400, relayed (not counted), and service goes on.
        with socket.create_connection(("127.0.0.1", sidecar.rest_port), timeout=5) as s:
            s.sendall(b"BLAH /\x00\x01 HTTP/9.9\r\n\r\n")
            assert b" 400 " in s.recv(4096).split(b"\r\n")[0] + b" "
        assert _predict(sidecar.grpc, {"name": "m"}) == "OK"
        ok = requests.post(sidecar.rest + "/v1/models/m:predict", json={"instances": [1.0]}, timeout=10)
        assert ok.status_code == 200
        assert sidecar.alive() and "Traceback" not in sidecar.output()


def _per_process_calls(directory: Path) -> dict[int, float]:
    """tfserving_model_calls_total per worker pid, read from prometheus_client's multiprocess files."""
    from prometheus_client.mmap_dict import MmapedDict

    out: dict[int, float] = {}
    for path in directory.glob("counter_*.db"):
        pid = int(re.findall(r"\d+", path.name)[0])
        for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path)):
            if json.loads(key)[1] == "tfserving_model_calls_total":
                out[pid] = out.get(pid, 0.0) + value
    return out


def test_two_workers_share_the_ports_and_one_scrape_sums_them(tmp_path: Path) -> None:
    config = write_models(tmp_path, {"m": [1, 2]})
    with Sim(config, tmp_path / "sim.log") as sim, Sidecar(config, sim, tmp_path / "sidecar.log", workers=2) as sidecar:
        directory = Path(re.findall(r"counting into ([^;\s]+)", sidecar.output())[0])
        # Many connections: SO_REUSEPORT spreads them over both workers.
        for i in range(24):
            options = [("grpc.use_local_subchannel_pool", 1)]
            with grpc.insecure_channel(sidecar.grpc, options=options) as channel:
                channel.unary_unary(PREDICT)(request_bytes("predict", {"name": "m", "version": 1 + i % 2}), timeout=10)
            with requests.Session() as session:
                session.post(sidecar.rest + "/v1/models/m/versions/2:predict", json={"instances": [1.0]}, timeout=10)
        # The scrape first: it has each worker count its backlog into its file, which is read next.
        assert sidecar.calls(code="OK") == {("m", "1"): 12.0, ("m", "2"): 36.0}
        per_process = _per_process_calls(directory)
        assert len([v for v in per_process.values() if v > 0]) == 2, per_process
        assert sum(per_process.values()) == 48
        assert sidecar.gauge("tfserving_model_version_available") == {("m", "1"): 1.0, ("m", "2"): 1.0}
    assert not directory.exists()  # the supervisor cleans up its multiprocess files


BLOCKER = """
import sys, os
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow.") or name.startswith("tensorflow_serving.apis"):
            with open(os.environ["TFS_BLOCK_LOG"], "a") as f:
                f.write(f"{os.getpid()} {name}\\n")
            raise ImportError(f"blocked for the test: {name}")
        return None
sys.meta_path.insert(0, _Block())
"""


@pytest.mark.parametrize("module", [True, False], ids=["python-m", "tfs-traffic-cli"])
def test_sidecar_runs_without_tensorflow(tmp_path: Path, module: bool) -> None:
    """Every sidecar process (supervisor and spawned workers) runs with TensorFlow imports blocked."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    attempts = tmp_path / "attempts.log"
    attempts.write_text("")
    config = write_models(tmp_path, {"m": [1, 2]}, {"m": {"stable": 1}})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path[1:]]), "TFS_BLOCK_LOG": str(attempts)}
    with (
        Sim(config, tmp_path / "sim.log") as sim,
        Sidecar(config, sim, tmp_path / "sidecar.log", env=env, module=module, workers=2) as sidecar,
    ):
        assert _predict(sidecar.grpc, {"name": "m", "version_label": "stable"}) == "OK"
        response = requests.post(sidecar.rest + "/v1/models/m:predict", json={"instances": [1.0]}, timeout=10)
        assert response.status_code == 200
        assert sidecar.calls(code="OK") == {("m", "1"): 1.0, ("m", "2"): 1.0}
        assert attempts.read_text() == ""
        assert "blocked for the test" not in sidecar.output()
    # The blocker really was active in the sidecar's processes: it sees a deliberate import.
    probe = tmp_path / "probe.py"
    probe.write_text("import tensorflow_serving.apis.predict_pb2\n")
    import subprocess

    result = subprocess.run([sys.executable, str(probe)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "blocked for the test" in result.stderr


def test_status_only_mode_polls_without_proxying(tmp_path: Path) -> None:
    config = write_models(tmp_path, {"m": [1, 2], "n": [4]})
    with (
        Sim(config, tmp_path / "sim.log") as sim,
        Sidecar(config, sim, tmp_path / "sidecar.log", proxy=False) as sidecar,
    ):
        gauge = sidecar.gauge("tfserving_model_version_available")
        assert gauge == {("m", "1"): 1.0, ("m", "2"): 1.0, ("n", "4"): 1.0}
        # Unload version 1 (the sim follows its version directories): the gauge goes to 0 and stays.
        (tmp_path / "models" / "m" / "1").rmdir()
        assert wait_for(lambda: sidecar.gauge("tfserving_model_version_available").get(("m", "1")) == 0.0, 10)
        assert sidecar.gauge("tfserving_model_version_available").get(("m", "2")) == 1.0
        before = sim.call_counts()
        time.sleep(0.5)  # several polls: GetModelStatus is not counted by the server as traffic
        assert delta(sim.call_counts(), before) == {}
