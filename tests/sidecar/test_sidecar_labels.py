"""The sidecar counts label calls under the version TF Serving actually serves, not the one the file names.

TF Serving refuses a reload whose label moves to a version that is not AVAILABLE and keeps its
previous label map (`model_servers/server_core.cc:ServerCore::UpdateModelVersionLabelMap`), so after
such a reload the models config file and the server disagree. The sidecar asks the server
(`GetModelMetadata` with the label in `model_spec`, `servables/tensorflow/get_model_metadata_impl.cc`)
on each poll.
"""

import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import requests
from sidecar_support import Sidecar, Sim, delta, write_models
from tensorflow_serving.apis import get_model_metadata_pb2, prediction_service_pb2_grpc
from tfs_api import predict_request, served_version
from waiting import wait_for

from tfs_traffic.contract import OTHER, UNRESOLVED

REFUSED = "Request to assign label to version 3 of model m, which is not currently available for inference"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Sim, Sidecar, Path]]:
    """(sim, sidecar, models config) afresh for each test, unlike conftest's: the first test edits the
    config, and the stand-in polls it."""
    config = write_models(tmp_path, {"m": [1, 2]}, {"m": {"stable": 1}})
    with (
        Sim(config, tmp_path / "sim.log", extra=["--config-poll-interval", "0.2s"]) as sim,
        Sidecar(config, sim, tmp_path / "sidecar.log") as sidecar,
    ):
        yield sim, sidecar, config


def replace_config(root: Path, config: Path) -> None:
    """The next models config, swapped in atomically: `stable` moves to 3 (not on disk) and model `n`
    (on disk) appears, so the proxy's view is seen to have it."""
    staging = root / "staging"
    staging.mkdir()
    write_models(staging, {"m": [1, 2], "n": [7]}, {"m": {"stable": 3}})
    text = (staging / "models.config").read_text().replace(str(staging), str(root))
    (root / "models" / "n" / "7").mkdir(parents=True)
    (staging / "models.config").write_text(text)
    os.replace(staging / "models.config", config)


def test_label_moved_to_an_unloaded_version_counts_under_the_version_that_served(
    tmp_path: Path, stack: tuple[Sim, Sidecar, Path]
) -> None:
    """The file moves `stable` from 1 to 3 (not on disk): the stand-in refuses the reload as TF Serving
    does and keeps serving `stable` from 1; the sidecar, through its proxy, counts REST
    `/labels/stable` and gRPC label calls under 1 (the server's answer), not 3 (the file's)."""
    sim, sidecar, config = stack
    assert served_version(sidecar.grpc, predict_request(version_label="stable")) == 1
    replace_config(tmp_path, config)
    assert wait_for(lambda: "config reload failed: " + REFUSED in sim.output())

    # The proxy's view has the new file once a failed call to "n" (only in the new file) counts as "n".
    probes = []

    def view_has_new_file() -> bool:
        probes.append(requests.post(sidecar.rest + "/v1/models/n:predict", json={"instances": [1.0]}, timeout=10))
        return sidecar.calls(code="NOT_FOUND").get(("n", UNRESOLVED), 0.0) > 0

    assert wait_for(view_has_new_file)
    assert {p.json()["error"] for p in probes} == {"Servable not found for request: Latest(n)"}  # refused config
    before_sidecar, before_sim = sidecar.calls(code="OK"), sim.call_counts()
    for _ in range(3):
        r = requests.post(sidecar.rest + "/v1/models/m/labels/stable:predict", json={"instances": [1.0]}, timeout=10)
        assert (r.status_code, r.text) == (200, '{\n    "predictions": [2.5\n    ]\n}')
        assert served_version(sidecar.grpc, predict_request(version_label="stable")) == 1
    r = requests.post(sidecar.rest + "/v1/models/m:predict", json={"instances": [1.0]}, timeout=10)
    assert r.status_code == 200
    assert delta(sim.call_counts(), before_sim) == {("m", "1"): 6.0, ("m", "2"): 1.0}
    assert delta(sidecar.calls(code="OK"), before_sidecar) == {("m", "1"): 6.0, ("m", "2"): 1.0}
    # Probes made before the view had "n" count as __other__ (none, if the first probe already saw it:
    # the supervisor announces a new view to the workers at once).
    before_view = {(OTHER, UNRESOLVED): len(probes) - 1.0} if len(probes) > 1 else {}
    assert sidecar.calls() == {("m", "1"): 7.0, ("m", "2"): 1.0, ("n", UNRESOLVED): 1.0, **before_view}


def test_server_resolution_is_asked_with_get_model_metadata(stack: tuple[Sim, Sidecar, Path]) -> None:
    """`prediction_service_impl.cc:GetModelMetadata` records no `request_count` (only Predict,
    Classify and Regress do) and `SavedModelGetSignatureDef` answers with the resolved version: the
    sidecar's polls leave both counters of the stand-in untouched."""
    sim, _sidecar, _ = stack  # started: its first poll (status and label resolution) ran before "ready"
    page = requests.get(sim.rest + "/monitoring/prometheus/metrics", timeout=10).text
    assert ":tensorflow:serving:request_count{" not in page
    assert sim.call_counts() == {("m", "1"): 0.0, ("m", "2"): 0.0}
    with grpc.insecure_channel(sim.grpc) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = "m"
        request.model_spec.version_label = "stable"
        assert stub.GetModelMetadata(request, timeout=10).model_spec.version.value == 1


def test_query_strings_through_the_proxy_get_tf_servings_answers(stack: tuple[Sim, Sidecar, Path]) -> None:
    """The proxy forwards the target as sent; TF Serving matches the path *with* its query
    (`evhttp_request.cc:EvHTTPRequest::uri_path`, `http_rest_api_util.cc:ParseModelInfo`)."""
    sim, sidecar, _ = stack
    before, counted = sim.call_counts(), sidecar.calls()
    r = requests.get(sidecar.rest + "/v1/models/m?x=1&y=%20", timeout=10)
    assert (r.status_code, r.json()) == (404, {"error": "Could not find any versions of model m?x=1&y= "})
    r = requests.post(sidecar.rest + "/v1/models/m:predict?x=1", json={"instances": [1.0]}, timeout=10)
    assert (r.status_code, r.json()) == (400, {"error": "Malformed request: POST /v1/models/m:predict?x=1"})
    r = requests.get(sidecar.rest + "/monitoring/prometheus/metrics?x=1", timeout=10)
    assert (r.status_code, r.text) == (
        400,
        "Unexpected path: /monitoring/prometheus/metrics?x=1. Should be /monitoring/prometheus/metrics",
    )
    assert sim.call_counts() == before
    assert sidecar.calls() == counted  # no call of m: upstream never resolved one


def test_the_servers_answers_are_exported_for_the_alerts(tmp_path: Path) -> None:
    """The poller's answers (what a request without a version and each label resolve to) as gauges:
    1 for the current answer, 0 for an earlier one. TF Serving sends a request without a version to
    its highest AVAILABLE version (`core/basic_manager.cc`, `ServingMap::Update` marks the last of
    the sorted available harnesses as `ServableRequest::Latest`)."""
    config = write_models(tmp_path, {"m": [1, 2]}, {"m": {"stable": 1}})
    sim = Sim(config, tmp_path / "sim.log", extra=["--config-poll-interval", "0.2s"]).start()
    sidecar = Sidecar(config, sim, tmp_path / "sidecar.log", proxy=False).start()
    try:
        assert sidecar.gauge("tfserving_model_version_latest") == {("m", "2"): 1.0}
        assert sidecar.gauge("tfserving_model_version_label") == {("m", "1", "stable"): 1.0}
        # Version 3 appears on disk and `stable` moves to 2 (AVAILABLE, so the server accepts it).
        (tmp_path / "models" / "m" / "3").mkdir()
        staging = tmp_path / "staging"
        staging.mkdir()
        write_models(staging, {"m": [1, 2, 3]}, {"m": {"stable": 2}})
        text = (staging / "models.config").read_text().replace(str(staging), str(tmp_path))
        (staging / "models.config").write_text(text)
        os.replace(staging / "models.config", config)
        moved = (
            {("m", "2"): 0.0, ("m", "3"): 1.0},
            {("m", "1", "stable"): 0.0, ("m", "2", "stable"): 1.0},
        )
        answers = lambda: tuple(sidecar.gauge(f"tfserving_model_version_{x}") for x in ("latest", "label"))  # noqa: E731
        assert wait_for(lambda: answers() == moved), answers()
    finally:
        sidecar.stop()
        sim.stop()
