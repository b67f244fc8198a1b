"""The sidecar proxy against the stand-in server, over real gRPC and HTTP on 127.0.0.1.

Through the proxy a client gets the very bytes it gets from the server directly, errors included,
and the sidecar's per-version counts equal the server's own patched counters for every API, both
protocols and every way of naming a version (number, label, latest).
"""

import contextlib
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
from sidecar_support import Sidecar, Sim, delta
from tfs_api import METHODS, SIGNATURES, request_bytes

from tfs_traffic.contract import OTHER, UNRESOLVED

MODELS = {"m": [1, 2, 3], "n": [5]}
LABELS = {"m": {"stable": 1, "canary": 3}}

# How each way of naming a version resolves (the sim and the sidecar must both agree).
RESOLVING = [
    ({"name": "m", "version": 2}, ("m", "2")),
    ({"name": "m", "version_label": "stable"}, ("m", "1")),
    ({"name": "m"}, ("m", "3")),  # latest
    ({"name": "n"}, ("n", "5")),
]
FAILING = [
    ({"name": "m", "version": 9}, ("m", OTHER)),  # a version that was never loaded
    ({"name": "m", "version_label": "nope"}, ("m", OTHER)),  # an unknown label
    ({"name": "zz"}, (OTHER, UNRESOLVED)),  # a model that is not in the config
]


def call(target: str, method: str, data: bytes, metadata: tuple[tuple[str, str], ...] = ()) -> tuple[Any, ...]:
    """Everything a client can observe of a unary call."""
    with grpc.insecure_channel(target) as channel:
        try:
            response, rpc = channel.unary_unary(method).with_call(data, timeout=10, metadata=metadata)
        except grpc.RpcError as e:
            return None, e.code().name, e.details(), tuple(e.trailing_metadata() or ())
        return response, "OK", rpc.details(), tuple(rpc.trailing_metadata() or ())


@pytest.mark.parametrize("api", list(METHODS))
def test_grpc_responses_are_byte_identical(stack: tuple[Sim, Sidecar], api: str) -> None:
    sim, sidecar = stack
    for model, _ in RESOLVING + FAILING:
        data = request_bytes(api, model)
        direct = call(sim.grpc, METHODS[api], data)
        proxied = call(sidecar.grpc, METHODS[api], data)
        assert proxied == direct, (api, model)
        if (model, _) in RESOLVING:
            assert direct[1] == "OK" and direct[0], (api, model, direct)
        elif api != "status":  # GetModelStatus ignores version labels, as TF Serving does
            assert direct[1] != "OK", (api, model, direct)


def test_grpc_garbage_and_truncated_requests_get_the_upstreams_status(stack: tuple[Sim, Sidecar]) -> None:
    sim, sidecar = stack
    valid = request_bytes("predict", {"name": "m"})
    before = sidecar.calls(api="predict")
    for data in (b"\xff\xfe\xfd garbage", valid[: len(valid) // 2], b"\x0a\x05ab", b""):
        direct = call(sim.grpc, METHODS["predict"], data)
        proxied = call(sidecar.grpc, METHODS["predict"], data)
        assert proxied == direct
        assert direct[1] != "OK"
    # Unknown services and methods pass through too (the upstream answers UNIMPLEMENTED).
    for method in ("/tensorflow.serving.PredictionService/NoSuchMethod", "/other.Service/Call"):
        assert call(sidecar.grpc, method, b"x") == call(sim.grpc, method, b"x")
    after = sidecar.calls(api="predict")
    moved = delta(after, before)
    # None of the four is a message the sidecar can read (the half one is cut in its inputs): no model named.
    assert moved == {(OTHER, UNRESOLVED): 4.0}
    assert sidecar.alive()


def test_grpc_metadata_passes_both_ways(stack: tuple[Sim, Sidecar]) -> None:
    _, sidecar = stack
    data = request_bytes("predict", {"name": "m"})
    response, code, _, _ = call(sidecar.grpc, METHODS["predict"], data, metadata=(("x-request-id", "abc"),))
    assert code == "OK" and response


def _grpc_batch(target: str, api: str, cases: list[tuple[dict[str, Any], tuple[str, str]]], times: int) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = channel.unary_unary(METHODS[api])
        for model, _ in cases:
            for _ in range(times):
                with contextlib.suppress(grpc.RpcError):
                    stub(request_bytes(api, model), timeout=10)


@pytest.mark.parametrize("api", ["predict", "classify", "regress", "multi_inference"])
def test_grpc_counts_match_the_servers_patched_counters(stack: tuple[Sim, Sidecar], api: str) -> None:
    sim, sidecar = stack
    sim_before, ok_before, all_before = sim.call_counts(), sidecar.calls(api=api, code="OK"), sidecar.calls(api=api)
    for i, (model, _) in enumerate(RESOLVING):
        _grpc_batch(sidecar.grpc, api, [(model, ("", ""))], times=i + 1)
    _grpc_batch(sidecar.grpc, api, FAILING, times=2)
    expected = {key: float(i + 1) for i, (_, key) in enumerate(RESOLVING)}
    assert delta(sim.call_counts(), sim_before) == expected
    assert delta(sidecar.calls(api=api, code="OK"), ok_before) == expected
    failed = {k: v for k, v in delta(sidecar.calls(api=api), all_before).items() if k not in expected}
    assert failed == {(OTHER, UNRESOLVED): 2.0, ("m", OTHER): 4.0}


def rest_request(api: str, model: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    path = f"/v1/models/{model['name']}"
    if "version" in model:
        path += f"/versions/{model['version']}"
    elif "version_label" in model:
        path += f"/labels/{model['version_label']}"
    if api == "predict":
        return path + ":predict", {"instances": [1.0, 2.0, 5.0]}
    return path + f":{api}", {"signature_name": SIGNATURES[api], "examples": [{"x": 4.0}]}


@pytest.mark.parametrize("api", ["predict", "classify", "regress"])
def test_rest_inference_is_byte_identical_and_counted_like_the_server(stack: tuple[Sim, Sidecar], api: str) -> None:
    sim, sidecar = stack
    sim_before, ok_before, all_before = sim.call_counts(), sidecar.calls(api=api, code="OK"), sidecar.calls(api=api)
    with requests.Session() as direct, requests.Session() as proxied:
        for i, (model, _) in enumerate(RESOLVING):
            path, body = rest_request(api, model)
            for _ in range(i + 1):
                want = direct.post(sim.rest + path, json=body, timeout=10)
                got = proxied.post(sidecar.rest + path, json=body, timeout=10)
                assert (got.status_code, got.content) == (want.status_code, want.content)
                assert want.status_code == 200
                assert got.headers["Content-Type"] == want.headers["Content-Type"]
        # TF Serving's REST statuses for FAILING: NOT_FOUND, INVALID_ARGUMENT, NOT_FOUND
        for (model, _), status in zip(FAILING, (404, 400, 404), strict=True):
            path, body = rest_request(api, model)
            want = direct.post(sim.rest + path, json=body, timeout=10)
            got = proxied.post(sidecar.rest + path, json=body, timeout=10)
            assert (got.status_code, got.content) == (want.status_code, want.content)
            assert want.status_code == status
    # The direct calls counted in the sim too: each resolving call went once direct, once proxied.
    expected = {key: float(i + 1) for i, (_, key) in enumerate(RESOLVING)}
    assert delta(sim.call_counts(), sim_before) == {k: 2 * v for k, v in expected.items()}
    assert delta(sidecar.calls(api=api, code="OK"), ok_before) == expected
    failed = {k: v for k, v in delta(sidecar.calls(api=api), all_before).items() if k not in expected}
    assert failed == {(OTHER, UNRESOLVED): 1.0, ("m", OTHER): 2.0}


def test_rest_status_metadata_and_errors_are_byte_identical_and_not_counted(stack: tuple[Sim, Sidecar]) -> None:
    sim, sidecar = stack
    before, invalid_before = sidecar.calls(), sidecar.calls(code="INVALID_ARGUMENT")
    gets = [
        "/v1/models/m",
        "/v1/models/m/versions/2",
        "/v1/models/m/labels/stable",
        "/v1/models/m/metadata",
        "/v1/models/m/versions/3/metadata",
        "/v1/models/zz",
        "/v1/models/m/versions/9",
        "/v1/nothing/here",
        "/v1/models/m?x=1&y=%20",
    ]
    for path in gets:
        want = requests.get(sim.rest + path, timeout=10)
        got = requests.get(sidecar.rest + path, timeout=10)
        assert (got.status_code, got.content) == (want.status_code, want.content), path
    posts = [
        ("/v1/models/m:predict", b"{not json"),
        ("/v1/models/m:predict", b""),
        ("/v1/models/m:predict", b'{"instances": ["a"]}'),
        ("/v1/models/m:explode", b"{}"),
    ]
    for path, body in posts:
        want = requests.post(sim.rest + path, data=body, timeout=10)
        got = requests.post(sidecar.rest + path, data=body, timeout=10)
        assert (got.status_code, got.content) == (want.status_code, want.content), path
        assert want.status_code == 400
    moved = delta(sidecar.calls(), before)
    # Only the three bad :predict calls count, as failed calls that named no version.
    assert moved == {("m", UNRESOLVED): 3.0}
    assert delta(sidecar.calls(code="INVALID_ARGUMENT"), invalid_before) == {("m", UNRESOLVED): 3.0}


def test_availability_gauges(stack: tuple[Sim, Sidecar]) -> None:
    _, sidecar = stack
    available = sidecar.gauge("tfserving_model_version_available")
    assert available == {("m", "1"): 1.0, ("m", "2"): 1.0, ("m", "3"): 1.0, ("n", "5"): 1.0}
    assert sidecar.gauge("tfserving_sidecar_upstream_up") == {(): 1.0}


def test_durations_are_observed(stack: tuple[Sim, Sidecar]) -> None:
    _, sidecar = stack

    def observed() -> dict[tuple[str, str], float]:
        return {
            (labels["model_name"], labels["model_version"]): value
            for name, labels, value in sidecar.samples()
            if name == "tfserving_model_call_duration_seconds_count" and labels["api"] == "predict"
        }

    before = observed()
    _grpc_batch(sidecar.grpc, "predict", RESOLVING[:1], times=1)
    assert delta(observed(), before) == {("m", "2"): 1.0}


def test_log_is_clean(stack: tuple[Sim, Sidecar], tmp_path: Path) -> None:
    _, sidecar = stack
    assert "Traceback" not in sidecar.output()
