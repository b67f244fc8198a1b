"""The stand-in through a config change and an unload, rule by rule as TF Serving 2.20 goes through them.

Each test names the upstream file and function it follows. Most run a sim whose file-system poll
is an hour (`poll_seconds=3600`: one poll at startup) and call `Sim.poll_now()` for "the next
file-system poll", so what happens before and after it is an event, not a race.
"""

import concurrent.futures
import json
from collections.abc import Sequence
from pathlib import Path

import grpc
import pytest
import requests
from google.protobuf import text_format
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2
from tfs_api import predict_request, served_version
from waiting import wait_for

from tfs_traffic import contract
from tfs_traffic.sim.server import Sim

AVAILABLE, UNLOADING, END, START, LOADING = "AVAILABLE", "UNLOADING", "END", "START", "LOADING"


def versions(root: Path, name: str, *numbers: int) -> Path:
    base = root / "models" / name
    base.mkdir(parents=True, exist_ok=True)
    for number in numbers:
        (base / str(number)).mkdir()
    return base


def entry(
    name: str, base: Path, policy: str = "all {}", labels: dict[str, int] | None = None, platform: str = "tensorflow"
) -> str:
    label_text = "".join(f' version_labels {{ key: "{k}" value: {v} }}' for k, v in (labels or {}).items())
    return (
        f'config {{ name: "{name}" base_path: "{base}" model_platform: "{platform}"'
        f" model_version_policy {{ {policy} }}{label_text} }}"
    )


def config_text(*entries: str) -> str:
    return "model_config_list { " + " ".join(entries) + " }\n"


def write(path: Path, *entries: str) -> Path:
    path.write_text(config_text(*entries))
    return path


def reload(sim: Sim, *entries: str, metric_names: Sequence[str] = (), timeout: float = 10) -> str:
    """HandleReloadConfigRequest: "OK" or "CODE: message"."""
    return reload_response(sim, *entries, metric_names=metric_names, timeout=timeout)[0]


def reload_response(
    sim: Sim, *entries: str, metric_names: Sequence[str] = (), timeout: float = 10
) -> tuple[str, model_management_pb2.ReloadConfigResponse | None]:
    config = text_format.Parse(config_text(*entries), model_server_config_pb2.ModelServerConfig())
    request = model_management_pb2.ReloadConfigRequest(config=config, metric_names=list(metric_names))
    with grpc.insecure_channel(sim.grpc_target) as channel:
        try:
            response = model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(
                request, timeout=timeout
            )
        except grpc.RpcError as e:
            return f"{e.code().name}: {e.details()}", None
    return "OK", response


def status(sim: Sim, name: str, version: int | None = None) -> list[tuple[int, str]] | str:
    """GetModelStatus over gRPC: [(version, state)] newest first, or "CODE: message"."""
    spec: dict[str, object] = {"name": name}
    if version is not None:
        spec["version"] = {"value": version}
    with grpc.insecure_channel(sim.grpc_target) as channel:
        try:
            response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
                get_model_status_pb2.GetModelStatusRequest(model_spec=spec), timeout=10
            )
        except grpc.RpcError as e:
            return f"{e.code().name}: {e.details()}"
    state = get_model_status_pb2.ModelVersionStatus.State.Name
    return [(s.version, state(s.state)) for s in response.model_version_status]


def served(sim: Sim, name: str = "m", version: int | None = None, label: str | None = None) -> int | str:
    """The version a gRPC Predict ran on, or "CODE: message"."""
    try:
        return served_version(sim.grpc_target, predict_request(name, version, label))
    except grpc.RpcError as e:
        return f"{e.code().name}: {e.details()}"


def predict_in_background(
    pool: concurrent.futures.Executor, sim: Sim, version: int | None = None
) -> concurrent.futures.Future:
    def call() -> tuple[int, list[float]]:
        with grpc.insecure_channel(sim.grpc_target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            response = stub.Predict(predict_request("m", version, x=[2.0]), timeout=30)
        return response.model_spec.version.value, list(response.outputs["y"].float_val)

    return pool.submit(call)


# --- HandleReloadConfigRequest and ServerCore::ReloadConfig ---


def test_reload_takes_only_a_model_config_list(tmp_path: Path) -> None:
    """`model_servers/model_service_impl.cc:HandleReloadConfigRequest`: any config case but
    `model_config_list` is INVALID_ARGUMENT before `ReloadConfig` runs; the server keeps serving."""
    base = versions(tmp_path, "m", 1)
    with Sim(write(tmp_path / "models.config", entry("m", base)), poll_seconds=3600) as sim:
        for config in (
            model_server_config_pb2.ModelServerConfig(),
            model_server_config_pb2.ModelServerConfig(custom_model_config={"type_url": "x"}),
        ):
            with grpc.insecure_channel(sim.grpc_target) as channel, pytest.raises(grpc.RpcError) as info:
                model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(
                    model_management_pb2.ReloadConfigRequest(config=config), timeout=10
                )
            assert (info.value.code(), info.value.details()) == (
                grpc.StatusCode.INVALID_ARGUMENT,
                "ServerModelConfig type not supported by HandleReloadConfigRequest. "
                "Only ModelConfigList is currently supported",
            )
        assert served(sim) == 1


def test_reload_validates_before_it_stores_the_config(tmp_path: Path) -> None:
    """`model_servers/server_core.cc:ServerCore::ReloadConfig` runs `ValidateModelConfigList` (unique
    names, absolute base paths) before `config_ = new_config`: a config refused there is not stored,
    so the next reload's `ValidateNoModelsChangePlatforms` compares with the config before it — model
    n, in the refused config only, may arrive with any platform and is refused later, for being
    unsupported (`CreateStoragePathRoutes`), not for changing platform."""
    m, n = versions(tmp_path, "m", 1), versions(tmp_path, "n", 1)
    with Sim(write(tmp_path / "models.config", entry("m", m)), poll_seconds=3600) as sim:
        assert reload(sim, entry("m", m), entry("n", n), entry("n", n)) == (
            "INVALID_ARGUMENT: Illegal to list model n multiple times in config list"
        )
        assert reload(sim, entry("m", m), entry("n", "relative/n")) == (  # type: ignore[arg-type]
            "INVALID_ARGUMENT: Expected model n to have an absolute path or URI; got base_path()=relative/n"
        )
        assert reload(sim, entry("m", m), entry("n", n, platform="other")) == (
            "INVALID_ARGUMENT: Model n requests unsupported platform other"
        )
        assert status(sim, "n") == "NOT_FOUND: Could not find any versions of model n"
        assert served(sim) == 1


def test_a_refused_label_keeps_serving_but_the_next_reload_starts_from_the_refused_config(tmp_path: Path) -> None:
    """`model_servers/server_core.cc:ServerCore::ReloadConfig`: `config_ = new_config` comes before
    `UpdateModelVersionLabelMap`. A label on a version that is not AVAILABLE refuses the reload
    (FAILED_PRECONDITION) with nothing served changed — not the labels, not the new model n — yet the
    refused config is the stored one (the label moves an existing label, which
    `--allow_version_labels_for_unavailable_models` does not allow either): the next reload giving n
    another platform is refused by
    `ValidateNoModelsChangePlatforms` against it ("platform was tensorflow"), though n never loaded."""
    m, n = versions(tmp_path, "m", 1, 2), versions(tmp_path, "n", 1)
    startup = write(tmp_path / "models.config", entry("m", m, labels={"stable": 1}))
    with Sim(startup, poll_seconds=3600, allow_labels_for_unavailable=True) as sim:
        assert reload(sim, entry("m", m, labels={"stable": 9}), entry("n", n)) == (
            "FAILED_PRECONDITION: Request to assign label to version 9 of model m, "
            "which is not currently available for inference"
        )
        assert (served(sim, label="stable"), status(sim, "n")) == (
            1,
            "NOT_FOUND: Could not find any versions of model n",
        )
        assert reload(sim, entry("m", m, labels={"stable": 1}), entry("n", n, platform="other")) == (
            "INVALID_ARGUMENT: Illegal to change a model's platform. For model n platform was tensorflow "
            "and new platform requested is other"
        )
        assert sim.core.config == text_format.Parse(
            config_text(entry("m", m, labels={"stable": 9}), entry("n", n)), model_server_config_pb2.ModelServerConfig()
        )


def test_reload_returns_before_versions_change_and_waits_only_for_new_names(tmp_path: Path) -> None:
    """`model_servers/server_core.cc:AddModelsViaModelConfigList`: the source gets the new config
    (`FileSystemStoragePathSource::UpdateConfig` un-aspires only models that left it) and the RPC
    waits for new model names only (`WaitUntilModelsAvailable`). A policy change of a model it
    already has waits for the next file-system poll (`PollFileSystemAndInvokeCallback`); a new
    name holds the RPC until a poll has found and loaded it."""
    m, n = versions(tmp_path, "m", 1, 2), versions(tmp_path, "n", 7)
    with Sim(write(tmp_path / "models.config", entry("m", m)), poll_seconds=3600) as sim:
        assert reload(sim, entry("m", m, "specific { versions: 2 }")) == "OK"
        assert status(sim, "m") == [(2, AVAILABLE), (1, AVAILABLE)]  # returned before any unload
        sim.poll_now()
        assert wait_for(lambda: status(sim, "m") == [(2, AVAILABLE), (1, END)])

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(reload, sim, entry("m", m, "specific { versions: 2 }"), entry("n", n), timeout=30)
            with pytest.raises(concurrent.futures.TimeoutError):
                pending.result(timeout=0.5)  # no poll since: n is not found yet, the RPC waits
            sim.poll_now()
            assert pending.result(timeout=10) == "OK"
        assert status(sim, "n") == [(7, AVAILABLE)]


def test_versions_go_one_manager_action_at_a_time_lowest_first(tmp_path: Path) -> None:
    """`core/aspired_versions_manager.cc:InvokePolicyAndExecuteAction` takes one action per round
    for the whole server, and `core/availability_preserving_policy.cc:GetNextAction` unloads the
    lowest un-aspired version first. With `--num_unload_threads=0` the unload runs on the manager's
    own thread, and `core/basic_manager.cc:ExecuteUnload` waits there until every request holding
    the previous serving map is done — here one Predict on version 4, a version that stays: a
    request holds the whole map (`ServingMap::GetUntypedServableHandle`). Until it ends version 1
    is UNLOADING and versions 2 and 3 do not move."""
    base = versions(tmp_path, "m", 1, 2, 3, 4)
    with (
        Sim(write(tmp_path / "models.config", entry("m", base)), poll_seconds=3600, latency_ms=2000) as sim,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        in_flight = predict_in_background(pool, sim, version=4)
        assert wait_for(lambda: sim.call_counts()[("m", "4")] == 1)  # resolved: it holds the map now
        assert reload(sim, entry("m", base, "specific { versions: 4 }")) == "OK"
        sim.poll_now()
        assert wait_for(lambda: status(sim, "m", 1) == [(1, UNLOADING)])
        assert status(sim, "m") == [(4, AVAILABLE), (3, AVAILABLE), (2, AVAILABLE), (1, UNLOADING)]
        assert not in_flight.done()
        assert in_flight.result(timeout=10) == (4, [3.0])
        assert wait_for(lambda: status(sim, "m") == [(4, AVAILABLE), (3, END), (2, END), (1, END)])
        assert sim.core.monitor.history("m")[-6:] == [(v, s) for v in (1, 2, 3) for s in (40, 50)]


# --- an unload, as clients see it ---


def test_unload_lets_running_requests_finish_and_refuses_new_ones(tmp_path: Path) -> None:
    """`core/basic_manager.cc:ExecuteUnload`: UNLOADING, a serving map without the version, a wait
    for the requests that hold the old one, END. A Predict that resolved to version 3 before
    finishes with version 3; requests for 3 that arrive after the swap are NOT_FOUND
    `Servable not found for request: Specific(m, 3)` (`ServingMap::GetUntypedServableHandle`; gRPC 5,
    REST 404 with `{"error": ...}` by `http_server.cc:ToHTTPStatusCode`); a request without a version
    gets the next-highest AVAILABLE one (`ServingMap::Update` builds `Latest`); GetModelStatus keeps
    version 3 as END with status OK (`get_model_status_impl.cc`, `ServableStateMonitor`), and a
    version never seen is NOT_FOUND."""
    base = versions(tmp_path, "m", 1, 2, 3)
    with (
        Sim(write(tmp_path / "models.config", entry("m", base)), poll_seconds=3600, latency_ms=2000) as sim,
        concurrent.futures.ThreadPoolExecutor(2) as pool,
    ):
        in_flight = predict_in_background(pool, sim)
        assert wait_for(lambda: sim.call_counts()[("m", "3")] == 1)
        assert reload(sim, entry("m", base, "specific { versions: 1 versions: 2 }")) == "OK"
        sim.poll_now()
        assert wait_for(lambda: status(sim, "m", 3) == [(3, UNLOADING)])
        assert served(sim, version=3) == "NOT_FOUND: Servable not found for request: Specific(m, 3)"
        rest = requests.post(f"{sim.rest_url}/v1/models/m/versions/3:predict", json={"instances": [1.0]}, timeout=10)
        assert (rest.status_code, rest.json()) == (404, {"error": "Servable not found for request: Specific(m, 3)"})
        latest = predict_in_background(pool, sim)
        assert not in_flight.done()
        assert in_flight.result(timeout=10) == (3, [3.0])
        assert latest.result(timeout=10) == (2, [3.0])
        assert wait_for(lambda: status(sim, "m") == [(3, END), (2, AVAILABLE), (1, AVAILABLE)])
        assert status(sim, "m", 3) == [(3, END)]
        rest = requests.get(f"{sim.rest_url}/v1/models/m/versions/3", timeout=10)
        assert (rest.status_code, rest.json()["model_version_status"][0]["state"]) == (200, "END")
        assert status(sim, "m", 9) == "NOT_FOUND: Could not find version 9 of model m"
        assert sim.version_available()[("m", "3")] == 0
        assert sim.call_counts()[("m", "3")] == 1


# --- the config-file poll and the file-system poll ---


def test_config_poll_reapplies_the_file_each_time(tmp_path: Path) -> None:
    """`model_servers/server.cc:Server::PollFilesystemAndReloadConfig` reads the file and calls
    `ReloadConfig` on every run — no check whether the file changed — so a config pushed over gRPC
    that differs from the file lasts until the poll's next run. One run is `Sim.reload_now()`; the
    poll thread (`--model_config_file_poll_wait_seconds`, here 1 s) then does it on its own."""
    base = versions(tmp_path, "m", 1, 2)
    path = write(tmp_path / "models.config", entry("m", base, labels={"stable": 1}))
    with Sim(path, poll_seconds=3600, allow_labels_for_unavailable=True) as sim:
        assert reload(sim, entry("m", base, labels={"stable": 2})) == "OK"
        assert served(sim, label="stable") == 2
        sim.reload_now()
        assert served(sim, label="stable") == 1
    with Sim(path, poll_seconds=3600, config_poll_seconds=1, allow_labels_for_unavailable=True) as sim:
        assert reload(sim, entry("m", base, labels={"stable": 2})) == "OK"
        assert wait_for(lambda: served(sim, label="stable") == 1)
        assert path.read_text() == config_text(entry("m", base, labels={"stable": 1}))


def test_config_poll_zero_reads_the_file_once(tmp_path: Path) -> None:
    """`model_servers/server.cc:BuildAndStart` creates the config poll thread only for
    `fs_model_config_poll_wait_seconds > 0` (default 0): a changed file is never read again. Side by
    side, a sim polling every second applies the change; the one with 0, after as long and then
    two polling periods more, still serves the startup config."""
    base = versions(tmp_path, "m", 1, 2)
    path = write(tmp_path / "models.config", entry("m", base, "specific { versions: 1 }"))
    with (
        Sim(path, poll_seconds=1) as once,
        Sim(path, poll_seconds=1, config_poll_seconds=1) as polling,
    ):
        write(path, entry("m", base, "specific { versions: 2 }"))
        assert wait_for(lambda: status(polling, "m") == [(2, AVAILABLE), (1, END)])
        assert not wait_for(lambda: status(once, "m") != [(1, AVAILABLE)], timeout=2.5)


def test_file_system_poll_zero_never_applies_version_changes(tmp_path: Path) -> None:
    """`sources/storage_path/file_system_storage_path_source.cc:SetAspiredVersionsCallback`: with
    `--file_system_poll_wait_seconds=0` the file system is polled once, at startup. A reload that
    drops a version returns OK but the version stays AVAILABLE, and a new version directory is never
    loaded (a sim polling every second, side by side, does both); a reload adding a model waits
    for it forever (tensorflow/serving#1519), so the client's deadline ends it."""
    base = versions(tmp_path, "m", 1, 2)
    new = versions(tmp_path, "n", 1)
    path = write(tmp_path / "models.config", entry("m", base))
    with Sim(path, poll_seconds=0) as once, Sim(path, poll_seconds=1) as polling:
        for sim in (once, polling):
            assert reload(sim, entry("m", base, "specific { versions: 2 versions: 3 }")) == "OK"
        (base / "3").mkdir()
        assert wait_for(lambda: status(polling, "m") == [(3, AVAILABLE), (2, AVAILABLE), (1, END)])
        assert not wait_for(lambda: status(once, "m") != [(2, AVAILABLE), (1, AVAILABLE)], timeout=2.5)
        assert reload(once, entry("m", base), entry("n", new), timeout=1) == "DEADLINE_EXCEEDED: Deadline Exceeded"


def test_a_missing_base_path_is_waited_for_at_startup(tmp_path: Path) -> None:
    """`model_servers/server_core.cc:ConnectAdaptersToManagerAndAwaitModelLoads` waits, without a
    timeout, until every model has a version AVAILABLE, before any port is bound;
    `file_system_storage_path_source.cc:PollFileSystemForServable` fails each poll on a missing base
    path, logged by `PollFileSystemAndInvokeCallback`. Once the directory and a version appear, the
    server starts and serves it."""
    base = tmp_path / "models" / "m"
    logged: list[str] = []
    sim = Sim(
        write(tmp_path / "models.config", entry("m", base)),
        poll_seconds=1,
        log=lambda severity, message: logged.append(f"{severity} {message}"),
    )
    error = (
        f"E FileSystemStoragePathSource encountered a filesystem access error: Could not find base path {base} "
        f"for servable m with error NOT_FOUND: {base} not found"
    )
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        starting = pool.submit(sim.start)
        try:
            assert wait_for(lambda: logged.count(error) >= 2)
            assert (starting.done(), sim.grpc_port) == (False, 0)
            versions(tmp_path, "m", 4)
            starting.result(timeout=10)
            assert served(sim) == 4
        finally:
            sim.stop()


def test_a_missing_base_path_stops_every_models_updates(tmp_path: Path) -> None:
    """`file_system_storage_path_source.cc:PollFileSystemForConfig` returns at the first model whose
    base path is missing, so no model gets its versions that round. A reload adding such a model
    waits for it; meanwhile a new version of model m is not loaded, poll after poll. When the path
    appears, the reload returns and m's new version loads."""
    m = versions(tmp_path, "m", 1)
    k = tmp_path / "models" / "k"
    logged: list[str] = []
    with (
        Sim(
            write(tmp_path / "models.config", entry("m", m)),
            poll_seconds=1,
            log=lambda severity, message: logged.append(message),
        ) as sim,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        pending = pool.submit(reload, sim, entry("m", m), entry("k", k), timeout=30)
        failed = f"FileSystemStoragePathSource encountered a filesystem access error: Could not find base path {k}"

        def failures() -> int:
            return sum(line.startswith(failed) for line in logged)

        assert wait_for(lambda: failures() >= 1)
        (m / "2").mkdir()
        seen = failures()
        assert wait_for(lambda: failures() >= seen + 2)  # a whole poll after the new directory
        assert (status(sim, "m"), pending.done()) == ([(1, AVAILABLE)], False)
        versions(tmp_path, "k", 5)
        assert pending.result(timeout=10) == "OK"
        assert wait_for(lambda: status(sim, "m") == [(2, AVAILABLE), (1, AVAILABLE)])
        assert status(sim, "k") == [(5, AVAILABLE)]


# --- ReloadConfigRequest.metric_names ---


def test_reload_reports_the_change_of_each_named_metrics_first_cell(tmp_path: Path) -> None:
    """`model_servers/model_service_impl.cc:GetMetrics` / `RecordMetricsIncrease` (TF Serving 2.15 and
    later; older servers ignore the field): for each requested name, once, the first cell's int64
    value after the reload minus before, 0 for a metric that does not exist. Cells are in label
    order, so adding model "a" makes ("a", "1") the first cell of model_call_count: 0 - 3."""
    m, a = versions(tmp_path, "m", 1), versions(tmp_path, "a", 1)
    with Sim(write(tmp_path / "models.config", entry("m", m)), poll_seconds=1) as sim:
        for _ in range(3):
            assert served(sim) == 1
        names = [contract.TF_CALLS, contract.TF_CALLS, "/no/such/metric", contract.TF_AVAILABLE]
        code, response = reload_response(sim, entry("m", m), entry("a", a), metric_names=names)
        assert code == "OK" and response is not None
        assert {(metric.name, metric.int64_value_increase) for metric in response.metric} == {
            (contract.TF_CALLS, -3),
            ("/no/such/metric", 0),
            (contract.TF_AVAILABLE, 0),
        }
        assert len(response.metric) == 3
        assert (
            json.loads(requests.get(f"{sim.rest_url}/v1/models/a", timeout=10).text)["model_version_status"][0]["state"]
            == AVAILABLE
        )
