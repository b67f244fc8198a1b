"""The sidecar follows the server, not only its models config file (docs/metrics.md, "Which models").

TF Serving reads its config file at start and then only every `--model_config_file_poll_wait_seconds`
(0, the default: never; `model_servers/server.cc:Server::BuildAndStart` starts
`PollFilesystemAndReloadConfig` only when it is > 0), so the file can name what the server does not
serve and drop what it still serves. GetModelStatus keeps END entries after an unload
(`core/servable_state_monitor.cc:ServableStateMonitor::HandleEvent` never erases a version;
`model_servers/get_model_status_impl.cc:GetModelStatusWithModelSpec` lists them), which is how the
sidecar tells a model the server no longer serves and keeps an unloaded version's number.
"""

import functools
import os
from collections.abc import Callable
from pathlib import Path

import grpc
import requests
from google.protobuf import text_format
from sidecar_support import Sidecar, Sim, delta, write_models
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2
from tfs_api import METHODS, SIGNATURES, predict_request, request_bytes, served_version
from waiting import wait_for

from tfs_traffic.contract import OTHER, UNRESOLVED

END, AVAILABLE = 50, 30  # ModelVersionStatus.State
NO_CONFIG_POLL = "--model_config_file_poll_wait_seconds=0"  # TF Serving's default, spelt out
Counts = dict[tuple[str, str], float]


def replace_file(config: Path, text: str) -> None:
    """Swap in the next models config atomically, as a ConfigMap update does."""
    staging = config.with_suffix(".next")
    staging.write_text(text)
    os.replace(staging, config)


def states(sim: Sim, name: str) -> dict[int, int]:
    """GetModelStatus of `name`, asked of the server itself: {version: state}."""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    with grpc.insecure_channel(sim.grpc) as channel:
        response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=10)
    return {s.version: s.state for s in response.model_version_status}


def reload_from(sim: Sim, config: Path) -> None:
    """HandleReloadConfigRequest with the file's config: how a server that does not poll its file is told."""
    message = text_format.Parse(config.read_text(), model_server_config_pb2.ModelServerConfig())
    with grpc.insecure_channel(sim.grpc) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        stub.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(config=message), timeout=10)


def grpc_code(target: str, api: str, model: dict[str, object]) -> str:
    """The status code and message of one gRPC call of `api`."""
    with grpc.insecure_channel(target) as channel:
        try:
            channel.unary_unary(METHODS[api])(request_bytes(api, model), timeout=10)
        except grpc.RpcError as e:
            return f"{e.code().name}: {e.details()}"
    return "OK"


def rest_call(target: str, api: str, path: str) -> requests.Response:
    body = (
        {"instances": [1.0, 2.0, 5.0]}
        if api == "predict"
        else {"signature_name": SIGNATURES[api], "examples": [{"x": 4.0}]}
    )
    return requests.post(f"{target}{path}:{api}", json=body, timeout=10)


def probe_until(sidecar: Sidecar, send: Callable[[], str], key: tuple[str, str]) -> tuple[list[str], Counts]:
    """Send a failing call until one counts under `key` (NOT_FOUND): what the calls answered, and how
    they moved the sidecar's NOT_FOUND counts."""
    before, answers = sidecar.calls(code="NOT_FOUND"), []

    def counted() -> bool:
        answers.append(send())
        return sidecar.calls(code="NOT_FOUND").get(key, 0.0) > before.get(key, 0.0)

    assert wait_for(counted)
    return answers, delta(sidecar.calls(code="NOT_FOUND"), before)


def until(key: tuple[str, str], answers: int, earlier: tuple[str, str]) -> Counts:
    """The counts of `probe_until` when only its last call counted under `key`, the others under `earlier`."""
    return {**({earlier: answers - 1.0} if answers > 1 else {}), key: 1.0}


def test_a_model_the_file_drops_is_counted_while_the_server_serves_it(tmp_path: Path) -> None:
    """With the config poll off the file goes from {m, n} to {n, k}, then to {n}; the server keeps serving
    `m` and never loads `k`. The sidecar follows `k` while the file names it and drops it once the file
    does not (GetModelStatus: NOT_FOUND); it counts `m`'s calls under `m` and its versions, as the
    server's own counter does, never under `__other__`, and drops `m` only once a reload has unloaded
    every version of it (GetModelStatus: all END)."""
    config = write_models(tmp_path, {"m": [1, 2], "n": [7]})
    staging = tmp_path / "next"
    staging.mkdir()
    with_k = write_models(staging, {"n": [7], "k": [3]}).read_text().replace(str(staging), str(tmp_path))
    only_n = write_models(staging, {"n": [7]}).read_text().replace(str(staging), str(tmp_path))
    (tmp_path / "models" / "k" / "3").mkdir(parents=True)  # the server would load k if it read the file
    k_latest = functools.partial(grpc_code, api="predict", model={"name": "k"})
    m_2 = functools.partial(grpc_code, api="predict", model={"name": "m", "version": 2})
    with (
        Sim(config, tmp_path / "sim.log", extra=[NO_CONFIG_POLL]) as sim,
        Sidecar(config, sim, tmp_path / "sidecar.log") as sidecar,
    ):
        assert served_version(sidecar.grpc, predict_request("m")) == 2
        replace_file(config, with_k)
        answers, moved = probe_until(sidecar, lambda: k_latest(sidecar.grpc), ("k", UNRESOLVED))
        assert set(answers) == {"NOT_FOUND: Servable not found for request: Latest(k)"}  # the server has no k
        assert moved == until(("k", UNRESOLVED), len(answers), (OTHER, UNRESOLVED))
        assert states(sim, "m") == {1: AVAILABLE, 2: AVAILABLE}  # the server did not read the file

        def counted_like_the_server() -> None:
            sim_before, before = sim.call_counts(), sidecar.calls(code="OK")
            assert served_version(sidecar.grpc, predict_request("m")) == 2
            assert served_version(sidecar.grpc, predict_request("m", version=1)) == 1
            for path in ("/v1/models/m", "/v1/models/m/versions/1"):
                r = rest_call(sidecar.rest, "predict", path)
                assert (r.status_code, r.json()) == (200, {"predictions": [2.5, 3.0, 4.5]})
            assert delta(sim.call_counts(), sim_before) == {("m", "1"): 2.0, ("m", "2"): 2.0}
            assert delta(sidecar.calls(code="OK"), before) == {("m", "1"): 2.0, ("m", "2"): 2.0}
            gauge = sidecar.gauge("tfserving_model_version_available")
            assert {k: v for k, v in gauge.items() if k[0] == "m"} == {("m", "1"): 1.0, ("m", "2"): 1.0}

        counted_like_the_server()
        assert "model m left the models config; still counted while the server serves it" in sidecar.output()

        replace_file(config, only_n)
        answers, moved = probe_until(sidecar, lambda: k_latest(sidecar.grpc), (OTHER, UNRESOLVED))
        assert set(answers) == {"NOT_FOUND: Servable not found for request: Latest(k)"}
        assert moved == until((OTHER, UNRESOLVED), len(answers), ("k", UNRESOLVED))
        counted_like_the_server()
        assert sidecar.calls(code="OK") == {("m", "1"): 4.0, ("m", "2"): 5.0}  # none under __other__

        # The server is told (gRPC, as its file poll is off): it unloads `m`.
        reload_from(sim, config)
        assert wait_for(lambda: states(sim, "m") == {1: END, 2: END})
        answers, moved = probe_until(sidecar, lambda: m_2(sidecar.grpc), (OTHER, OTHER))
        assert set(answers) == {"NOT_FOUND: Servable not found for request: Specific(m, 2)"}
        assert moved == until((OTHER, OTHER), len(answers), ("m", "2"))
        gauge = sidecar.gauge("tfserving_model_version_available")
        assert {k: v for k, v in gauge.items() if k[0] == "m"} == {("m", "1"): 0.0, ("m", "2"): 0.0}
        log = sidecar.output()
        assert "model k: the server serves no version of it; its calls count as __other__" in log
        assert "model m: the server serves no version of it; its calls count as __other__" in log


def test_an_unloaded_versions_not_found_calls_count_under_its_number(tmp_path: Path) -> None:
    """The file (polled every second) drops version 1 of `m` from its `specific` policy: the server unloads
    it (`core/basic_manager.cc:BasicManager::ExecuteUnload` publishes UNLOADING then END) and answers a
    call for it NOT_FOUND "Servable not found for request: Specific(m, 1)"
    (`core/basic_manager.cc:ServingMap::GetUntypedServableHandle`; REST 404). Every API, over gRPC and
    REST, counts those calls as {model_name=m, model_version=1, code=NOT_FOUND}: through a sidecar that saw
    1 AVAILABLE, and through one started after the unload, which knows 1 only as END."""
    write_models(tmp_path, {"m": [1, 2]})
    base = tmp_path / "models" / "m"

    def specific(*versions: int) -> str:
        listed = " ".join(f"versions: {v}" for v in versions)
        return (
            f'model_config_list {{ config {{ name: "m" base_path: "{base}" model_platform: "tensorflow"'
            f" model_version_policy {{ specific {{ {listed} }} }} }} }}\n"
        )

    config = tmp_path / "models.config"
    config.write_text(specific(1, 2))
    with (
        Sim(config, tmp_path / "sim.log", extra=["--model_config_file_poll_wait_seconds=1"]) as sim,
        Sidecar(config, sim, tmp_path / "sidecar.log") as early,
    ):
        assert served_version(early.grpc, predict_request("m", version=1)) == 1
        replace_file(config, specific(2))
        assert wait_for(lambda: states(sim, "m") == {1: END, 2: AVAILABLE})
        assert wait_for(lambda: early.gauge("tfserving_model_version_available").get(("m", "1")) == 0.0)
        with Sidecar(config, sim, tmp_path / "late.log") as late:
            gone = "Servable not found for request: Specific(m, 1)"
            for sidecar in (early, late):
                for api in ("predict", "classify", "regress", "multi_inference"):
                    assert grpc_code(sidecar.grpc, api, {"name": "m", "version": 1}) == "NOT_FOUND: " + gone
                for api in ("predict", "classify", "regress"):
                    r = rest_call(sidecar.rest, api, "/v1/models/m/versions/1")
                    assert (r.status_code, r.json()) == (404, {"error": gone})
                for api in ("predict", "classify", "regress", "multi_inference"):
                    want = 1.0 if api == "multi_inference" else 2.0  # REST has no MultiInference
                    assert sidecar.calls(code="NOT_FOUND", api=api) == {("m", "1"): want}, (sidecar.log.name, api)
