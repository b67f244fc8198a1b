"""The sidecar's pure pieces: label resolution, REST path parsing, status mapping, flags, parse error lines."""

import logging
import random
import string
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tfs_traffic import cli
from tfs_traffic.contract import OTHER, UNRESOLVED
from tfs_traffic.errors import UsageError
from tfs_traffic.sidecar import http1, http2, main, relay, rest_relay
from tfs_traffic.sidecar.backlog import Backlog
from tfs_traffic.sidecar.metrics import CallMetrics
from tfs_traffic.sidecar.view import MAX_LEARNED, ModelView, View


def view() -> View:
    return View({"m": ModelView(labels={"stable": 1, "gone": 9}, available=frozenset({1, 3}), seen={1, 2, 3})})


def test_requested_labels_for_failed_calls() -> None:
    v = view()
    assert v.requested("m", 3, None) == ("m", "3")
    assert v.requested("m", 2, None) == ("m", "2")  # seen AVAILABLE once: still a known version
    assert v.requested("m", 99, None) == ("m", OTHER)  # never AVAILABLE
    assert v.requested("m", None, "stable") == ("m", "1")  # a label is mapped to its number
    assert v.requested("m", None, "gone") == ("m", OTHER)  # ... which must have been AVAILABLE
    assert v.requested("m", None, "nope") == ("m", OTHER)
    assert v.requested("m", None, None) == ("m", UNRESOLVED)
    assert v.requested("zz", None, None) == (OTHER, UNRESOLVED)
    assert v.requested("zz", 4, None) == (OTHER, OTHER)


def test_served_labels_and_learning_is_bounded() -> None:
    v = view()
    assert v.served("m", 3) == ("m", "3")
    assert v.served("zz", 3) == (OTHER, OTHER)
    assert v.served("m", None) == ("m", UNRESOLVED)
    # A version that a successful response says served the call is accepted (it is loaded) ...
    assert v.served("m", 4) == ("m", "4")
    # ... but only so many: a misbehaving upstream cannot grow the label set without bound.
    labels = {v.served("m", 1000 + i)[1] for i in range(10 * MAX_LEARNED)}
    assert len(labels - {OTHER}) == MAX_LEARNED - 1 and OTHER in labels
    # Learned versions survive a new view from the poller; the poller's own ones are not duplicated.
    fresh = view()
    fresh.carry_learned(v)
    assert fresh.served("m", 4) == ("m", "4")


def test_rest_resolution() -> None:
    v = view()
    assert v.resolved_version("m", 2, None) == 2
    assert v.resolved_version("m", None, "stable") == 1
    assert v.resolved_version("m", None, None) == 3  # the highest AVAILABLE
    assert v.resolved_version("m", None, "nope") is None
    assert v.resolved_version("zz", None, None) is None
    assert rest_relay.call_labels(v, "m", None, None, ok=True) == ("m", "3")
    assert rest_relay.call_labels(v, "m", None, None, ok=False) == ("m", UNRESOLVED)
    assert rest_relay.call_labels(v, "m", None, "stable", ok=False) == ("m", "1")


def test_view_round_trips_through_json() -> None:
    v = view()
    again = View.from_json(v.to_json())
    assert again.models["m"].labels == v.models["m"].labels
    assert again.models["m"].available == v.models["m"].available
    assert again.models["m"].seen == v.models["m"].seen


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/v1/models/m:predict", ("predict", "m", None, None)),
        ("POST", "/v1/models/m/versions/7:classify", ("classify", "m", 7, None)),
        ("POST", "/v1/models/m/labels/stable:regress", ("regress", "m", None, "stable")),
        ("POST", "/V1/MODELS/m/versions/7:predict", ("predict", "m", 7, None)),  # TF Serving's (?i)
        ("POST", "/v1/models/my%20model/labels/a%2Fb:predict", ("predict", "my model", None, "a/b")),
        ("POST", "/v1/models/m:PREDICT", None),  # matched, but TF Serving dispatches lower case only
        ("POST", "/v1/models/m", None),
        ("POST", "/v1/models/m/versions/x:predict", None),
        ("POST", "/v1/models/m:predict/extra", None),
        ("GET", "/v1/models/m:predict", None),
        ("GET", "/v1/models/m", None),
        ("POST", "/v1/models/m/versions/99999999999999999999:predict", ("predict", "m", -1, None)),
        # the query takes part in TF Serving's match (evhttp_request.cc: uri_path is path and query)
        ("POST", "/v1/models/m:predict?x=1", None),
        ("POST", "/v1/models/m/labels/st?x=1:predict", ("predict", "m", None, "st?x=1")),
    ],
)
def test_rest_inference_paths(method: str, path: str, expected: tuple | None) -> None:
    assert rest_relay.parse_inference_path(method, path) == expected


def test_http_status_maps_back_to_grpc_names() -> None:
    assert [rest_relay.grpc_code(s) for s in (200, 400, 404, 409, 429, 500, 501, 503, 504)] == [
        "OK",
        "INVALID_ARGUMENT",
        "NOT_FOUND",
        "ABORTED",
        "RESOURCE_EXHAUSTED",
        "INTERNAL",
        "UNIMPLEMENTED",
        "UNAVAILABLE",
        "DEADLINE_EXCEEDED",
    ]
    assert rest_relay.grpc_code(418) == "INVALID_ARGUMENT"
    assert rest_relay.grpc_code(502) == "UNKNOWN"


def test_random_names_stay_bounded_in_the_label_set() -> None:
    v = view()
    rng = random.Random(1)
    labels = set()
    for _ in range(10_000):
        name = "".join(rng.choices(string.ascii_letters, k=10))
        labels.add(v.requested(name, rng.randint(0, 10**9), None))
        labels.add(v.served(name, rng.randint(0, 10**9)))
        labels.add(v.requested("m", rng.randint(10, 10**9), None))
    assert labels == {(OTHER, OTHER), ("m", OTHER)}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:8500", ("127.0.0.1", 8500)), (":9102", ("0.0.0.0", 9102)), ("9102", ("0.0.0.0", 9102))],
)
def test_addresses(text: str, expected: tuple[str, int]) -> None:
    assert main.parse_addr(text, "--x") == expected


def test_bad_addresses_and_flags_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UsageError):
        main.parse_addr("host:port", "--x")
    config = tmp_path / "models.config"
    config.write_text('model_config_list { config { name: "m" base_path: "/m" } }')
    assert cli.main(["sidecar", "--models-config", str(config), "--upstream-grpc", "x:1", "--listen-rest", ":0"]) == 2
    assert "--listen-rest needs --upstream-rest" in capsys.readouterr().err
    config.write_text("model_config_list { config { name: ")
    assert cli.main(["sidecar", "--models-config", str(config), "--upstream-grpc", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfs-traffic: error:") and "malformed ModelServerConfig" in err
    assert cli.main(["sidecar", "--models-config", str(tmp_path / "missing"), "--upstream-grpc", "127.0.0.1:1"]) == 2


def test_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["sidecar", "--help"])
    out = capsys.readouterr().out
    assert "--listen-grpc" in out and "examples:" in out and "tfserving_model_calls_total" in out


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (http1.ParseError("malformed status line"), "malformed status line"),
        (http2.ParseError("GOAWAY shorter than 8 bytes"), "GOAWAY shorter than 8 bytes"),
        (ValueError("a bug in a reader"), "ValueError: a bug in a reader"),
    ],
)
def test_a_parse_error_is_logged_by_its_reason_any_other_error_with_its_type(
    error: Exception, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    errors = relay.ParseErrors(CallMetrics(registry))
    # The connection has no observer yet: neither factory is called.
    listener = relay.Listener("rest", ("127.0.0.1", 1), pytest.fail, pytest.fail, errors, Backlog(1.0))
    client = relay.ClientSide(listener)
    client.peer = ("127.0.0.1", 5)
    with caplog.at_level(logging.WARNING, logger="tfs_traffic.sidecar"):
        client.parse_failed(error)
    assert [r.getMessage() for r in caplog.records] == [
        f"rest connection from 127.0.0.1:5: cannot parse ({reason}): still relayed, no longer counted"
    ]
    assert registry.get_sample_value("tfserving_sidecar_parse_errors_total", {"protocol": "rest"}) == 1.0
