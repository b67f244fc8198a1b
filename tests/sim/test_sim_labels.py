"""Version labels under TF Serving 2.20's rules (`model_servers/server_core.cc`), in the stand-in.

`ServerCore::ReloadConfig` runs `UpdateModelVersionLabelMap` for the startup config and every reload
before it adds or changes any model; it refuses a label whose version is not AVAILABLE
(FAILED_PRECONDITION) unless `--allow_version_labels_for_unavailable_models`, which still refuses
moving an existing label to such a version. A refused config changes nothing served (it still
becomes the stored config: `test_sim_lifecycle.py`).
"""

import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from tensorflow_serving.apis import (
    model_management_pb2,
    model_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2
from tfs_api import predict_request, served_version
from waiting import wait_for

from tfs_traffic.sim.server import Sim, StartupError

BIN = Path(sys.executable).parent
REFUSED = "Request to assign label to version {v} of model m, which is not currently available for inference"


def write(path: Path, base: Path, labels: dict[str, int], policy: str = "all {}") -> Path:
    entries = "".join(f' version_labels {{ key: "{k}" value: {v} }}' for k, v in labels.items())
    path.write_text(
        f'model_config_list {{ config {{ name: "m" base_path: "{base}" model_platform: "tensorflow"'
        f" model_version_policy {{ {policy} }}{entries} }} }}\n"
    )
    return path


@pytest.fixture
def base(tmp_path: Path) -> Path:
    root = tmp_path / "models" / "m"
    for v in (1, 2):
        (root / str(v)).mkdir(parents=True)
    return root


def served_by(sim: Sim, label: str) -> int | str:
    """The version a Predict by label ran on, or the error's status code and message."""
    try:
        return served_version(sim.grpc_target, predict_request("m", version_label=label))
    except grpc.RpcError as e:
        return f"{e.code().name}: {e.details()}"


def reload(sim: Sim, path: Path) -> str:
    """HandleReloadConfigRequest with the file's config: "OK" or the refusal."""
    from google.protobuf import text_format

    config = text_format.Parse(path.read_text(), model_server_config_pb2.ModelServerConfig())
    with grpc.insecure_channel(sim.grpc_target) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        try:
            stub.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(config=config), timeout=10)
        except grpc.RpcError as e:
            return f"{e.code().name}: {e.details()}"
    return "OK"


def test_startup_config_with_labels_is_refused_without_the_flag(tmp_path: Path, base: Path) -> None:
    """`server_core.cc:ServerCore::Create` -> `ReloadConfig` -> `UpdateModelVersionLabelMap` before any
    model is added, so nothing is AVAILABLE; `main.cc:main` prints `Failed to start server. Error: ...`
    on stdout and exits with -1 (255). With `--allow_version_labels_for_unavailable_models` (`main.cc` flag list)
    the same config starts and the labels resolve once the versions load."""
    config = write(tmp_path / "models.config", base, {"stable": 2})
    command = [str(BIN / "tfs-traffic"), "sim", f"--model_config_file={config}"]
    command += ["--grpc-addr", "127.0.0.1:0", "--rest-addr", "127.0.0.1:0"]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 255
    assert refused.stdout.splitlines() == ["Failed to start server. Error: FAILED_PRECONDITION: " + REFUSED.format(v=2)]
    assert refused.stderr == ""
    with pytest.raises(StartupError, match="FAILED_PRECONDITION: " + REFUSED.format(v=2).replace("(", r"\(")):
        Sim(config)

    write(config, base, {"stable": 1, "canary": 2})
    started = subprocess.Popen(
        [*command, "--allow_version_labels_for_unavailable_models"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert started.stdout is not None
        assert started.stdout.readline().startswith("grpc=127.0.0.1:")
    finally:
        started.terminate()
        started.wait(10)
    assert started.returncode == 0
    with Sim(config, allow_labels_for_unavailable=True) as sim:
        assert (served_by(sim, "stable"), served_by(sim, "canary")) == (1, 2)


def test_reload_without_the_flag_needs_every_label_available(tmp_path: Path, base: Path) -> None:
    """`server_core.cc:UpdateModelVersionLabelMap` without the flag: *every* label of the new config, unchanged ones
    too, must point at an AVAILABLE version; a refusal returns before `AddModelsViaModelConfigList`
    and before the map swap, so the old labels and the old version policy stay."""
    config = tmp_path / "models.config"
    with Sim(write(config, base, {}), poll_seconds=0.1) as sim:
        assert reload(sim, write(config, base, {"stable": 1})) == "OK"
        assert served_by(sim, "stable") == 1
        # moving the label to a version that is not loaded: refused, stable stays on 1
        assert reload(sim, write(config, base, {"stable": 3})) == "FAILED_PRECONDITION: " + REFUSED.format(v=3)
        assert served_by(sim, "stable") == 1
        # a refused config does not apply its version policy either
        assert reload(sim, write(config, base, {"stable": 3}, "specific { versions: 2 }")).startswith("FAILED")
        assert sim.core.version_states("m") == [(2, 30), (1, 30)]
        # an unchanged label whose version went away is refused too (no flag)
        (base / "1").rmdir()
        assert wait_for(lambda: sim.version_available()[("m", "1")] == 0)
        assert reload(sim, write(config, base, {"stable": 1})) == "FAILED_PRECONDITION: " + REFUSED.format(v=1)
        assert served_by(sim, "stable") == "NOT_FOUND: Servable not found for request: Specific(m, 1)"
        assert reload(sim, write(config, base, {"stable": 2})) == "OK"
        assert served_by(sim, "stable") == 2
        assert reload(sim, write(config, base, {})) == "OK"  # labels not in the new config are gone
        assert served_by(sim, "stable") == "INVALID_ARGUMENT: Unrecognized servable version label: stable"


def test_reload_with_the_flag_allows_new_and_unchanged_labels_anywhere(tmp_path: Path, base: Path) -> None:
    """`server_core.cc:UpdateModelVersionLabelMap` with `allow_version_labels_for_unavailable_models`: a label that is
    new, or keeps its version, may point at a version that is not loaded; moving an existing label
    (`GetModelVersionForLabel(...).ok() && existing_version != version`) still needs it AVAILABLE."""
    config = tmp_path / "models.config"
    with Sim(write(config, base, {"stable": 1}), allow_labels_for_unavailable=True) as sim:
        assert reload(sim, write(config, base, {"stable": 1, "canary": 3})) == "OK"
        assert served_by(sim, "canary") == "NOT_FOUND: Servable not found for request: Specific(m, 3)"
        assert reload(sim, write(config, base, {"stable": 3, "canary": 3})) == "FAILED_PRECONDITION: " + (
            REFUSED.format(v=3)
        )
        assert (served_by(sim, "stable"), sim.core.labels("m")) == (1, {"stable": 1, "canary": 3})
        assert reload(sim, write(config, base, {"stable": 2, "canary": 3})) == "OK"  # 2 is AVAILABLE
        assert served_by(sim, "stable") == 2


def test_config_poll_reloads_every_period_and_retries_a_refused_config(tmp_path: Path, base: Path) -> None:
    """`server.cc:Server::PollFilesystemAndReloadConfig` reads the file and calls `ReloadConfig` every
    `--model_config_file_poll_wait_seconds`, logging a refusal: a label moved to a version that is not
    loaded yet is refused (the old label serves) until that version loads under the old policy."""
    config = write(tmp_path / "models.config", base, {"stable": 1})
    with Sim(config, poll_seconds=0.1, config_poll_seconds=0.1, allow_labels_for_unavailable=True) as sim:
        write(config, base, {"stable": 3})
        assert wait_for(lambda: sim.reload_error == REFUSED.format(v=3))
        assert served_by(sim, "stable") == 1
        (base / "3").mkdir()  # policy `all` (still the old one) loads it; the next poll succeeds
        assert wait_for(lambda: sim.reload_error is None and sim.core.labels("m") == {"stable": 3})
        assert served_by(sim, "stable") == 3
