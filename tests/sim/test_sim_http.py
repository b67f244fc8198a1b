"""The stand-in's REST layer where a client can tell it from TF Serving 2.20: paths with query strings,
libevent's own pages and headers, bodies, JSON parsing, quoting and number output, b64, CORS preflight.

Raw sockets where headers and connection handling matter; every expected answer is what the cited
upstream function produces.
"""

import base64
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
import requests
from tensorflow.core.example import example_pb2, feature_pb2

from tfs_traffic import exposition
from tfs_traffic.sim.server import Sim, monitoring_path

METRICS = "/monitoring/prometheus/metrics"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    tmp = tmp_path_factory.mktemp("http")
    for v in (1, 2):
        (tmp / "m" / str(v)).mkdir(parents=True)
    config = tmp / "models.config"
    config.write_text(
        f'model_config_list {{ config {{ name: "m" base_path: "{tmp / "m"}" model_platform: "tensorflow"'
        ' model_version_policy { all {} } version_labels { key: "stable" value: 1 } } }\n'
    )
    with Sim(config, allow_labels_for_unavailable=True) as s:
        yield s


def raw(sim: Sim, request: bytes) -> tuple[str, dict[str, str], bytes, bool]:
    """Send one HTTP/1.1 request: (status line, headers, body, whether the server then closed).

    The body is read by its framing; whether the connection stayed open is asked, not waited for: a
    second request on it (the metrics page, which counts nothing) gets an answer only if it did."""
    with socket.create_connection(("127.0.0.1", sim.rest_port), timeout=10) as conn, conn.makefile("rb") as stream:
        conn.sendall(request)
        status, headers, body = read_response(stream)
        try:
            conn.sendall(f"GET {METRICS} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            closed = stream.read(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            closed = True
    return status, headers, body, closed


def read_response(stream: BinaryIO) -> tuple[str, dict[str, str], bytes]:
    """One response off the connection: its status line, headers and body, framed by Content-Length, by
    chunked transfer coding or by the server closing the connection (RFC 9112 section 6.3)."""
    status = stream.readline().decode("latin-1").rstrip("\r\n")
    headers: dict[str, str] = {}
    while line := stream.readline().decode("latin-1").rstrip("\r\n"):
        name, value = line.split(": ", 1)
        headers[name] = value
    if "Content-Length" in headers:
        return status, headers, stream.read(int(headers["Content-Length"]))
    if headers.get("Transfer-Encoding") != "chunked":
        return status, headers, stream.read()  # delimited by the server closing the connection
    body = b""
    while size := int(stream.readline().split(b";")[0], 16):
        body += stream.read(size)
        stream.readline()  # the CRLF after the chunk
    while stream.readline() not in (b"\r\n", b""):  # trailer fields, up to the blank line
        pass
    return status, headers, body


def get(sim: Sim, target: str, method: str = "GET", extra: str = "", body: bytes = b"") -> tuple:
    length = f"Content-Length: {len(body)}\r\n" if body or method == "POST" else ""
    return raw(sim, f"{method} {target} HTTP/1.1\r\nHost: x\r\n{extra}{length}\r\n".encode() + body)


def request_count(sim: Sim, model: str, status: str) -> int:
    return sim.request_counts().get((model, status), 0)


# --- the query string is part of what TF Serving matches -------------------------------------------


def test_query_string_takes_part_in_rest_matching(sim: Sim) -> None:
    """`evhttp_request.cc:EvHTTPRequest::uri_path` is path + `?query`; `http_server.cc:
    RestApiRequestDispatcher::Dispatch` and `http_rest_api_util.cc:ParseModelInfo` FullMatch it, and
    `DecodeArg` unescapes the model name after matching."""
    before = request_count(sim, "", "INVALID_ARGUMENT")
    r = requests.post(f"{sim.rest_url}/v1/models/m:predict?x=1", data='{"instances": [1.0]}', timeout=10)
    assert (r.status_code, r.json()) == (400, {"error": "Malformed request: POST /v1/models/m:predict?x=1"})
    assert request_count(sim, "", "INVALID_ARGUMENT") == before + 1  # no model name was parsed
    assert sim.call_counts()[("m", "2")] == 0

    r = requests.get(f"{sim.rest_url}/v1/models/m?x=1&y=%20", timeout=10)
    assert (r.status_code, r.json()) == (404, {"error": "Could not find any versions of model m?x=1&y= "})
    assert request_count(sim, "m?x=1&y= ", "NOT_FOUND") == 1
    for target in ("/v1/models/m/metadata?x=1", "/v1/models/m/versions/2?x=1"):
        r = requests.get(sim.rest_url + target, timeout=10)
        assert (r.status_code, r.json()) == (400, {"error": f"Malformed request: GET {target}"})
    r = requests.get(f"{sim.rest_url}/v1/models/m/labels/stable?x=1", timeout=10)  # status ignores the label
    assert [(s["version"], s["state"]) for s in r.json()["model_version_status"]] == [
        ("2", "AVAILABLE"),
        ("1", "AVAILABLE"),
    ]


def test_metrics_page_with_a_query_string_is_refused(sim: Sim) -> None:
    """`evhttp_server.cc:DispatchEvRequest` finds the exporter by the path alone, then
    `http_server.cc:ProcessPrometheusRequest` compares `uri_path()` (with the query) to its path."""
    status, headers, body, _ = get(sim, METRICS + "?x=1")
    assert (status, headers["Content-Type"]) == ("HTTP/1.1 400 Bad Request", "text/plain")
    assert body == b"Unexpected path: /monitoring/prometheus/metrics?x=1. Should be /monitoring/prometheus/metrics"
    status, headers, body, _ = get(sim, METRICS)
    assert (status, headers["Content-Type"]) == ("HTTP/1.1 200 OK", "text/plain")
    assert "Server" not in headers


def test_monitoring_config_sets_or_turns_off_the_page(tmp_path: Path) -> None:
    """`http_server.cc:CreateAndStartHttpServer`: the exporter exists only with
    `prometheus_config.enable`, at `prometheus_config.path` or `PrometheusExporter::kPrometheusPath`."""
    config = tmp_path / "monitoring.config"
    config.write_text('prometheus_config {\n  enable: true\n  path: "/metrics/tf"\n}\n')
    assert monitoring_path(config) == "/metrics/tf"
    config.write_text("prometheus_config { enable: true }\n")
    assert monitoring_path(config) == METRICS
    config.write_text("prometheus_config { enable: false path: '/x' }\n")
    assert monitoring_path(config) is None


# --- libevent's own answers --------------------------------------------------------------------------


def test_unknown_paths_get_libevents_404_page_and_close(sim: Sim) -> None:
    """`evhttp_server.cc:DispatchEvRequest` -> `evhttp_send_error(req, HTTP_NOTFOUND)`; libevent's
    `evhttp_send_page_` sets exactly `Content-Type: text/html` and `Connection: close`."""
    status, headers, body, closed = get(sim, "/v2/models/m?x=1")
    assert status == "HTTP/1.1 404 Not Found"
    assert body == b"<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n<H1>Not Found</H1>\n</BODY></HTML>\n"
    assert sorted(headers) == ["Connection", "Content-Length", "Content-Type", "Date"]
    assert (headers["Content-Type"], headers["Connection"], closed) == ("text/html", "close", True)


@pytest.mark.parametrize("target", ["/v1/models/m%zz:predict", "/v1/models/m|x", '/v1/models/"m"', "//v1/models/m"])
def test_targets_libevent_cannot_parse_get_its_400_page(sim: Sim, target: str) -> None:
    """`evhttp_request.cc:ParsedEvRequest::decode` -> `evhttp_uri_parse` (strict: pchar, `%XX`, no
    leading `//`) fails -> `evhttp_send_error(req, HTTP_BADREQUEST)`; nothing is counted."""
    before = sim.request_counts()
    status, headers, body, closed = get(sim, target)
    assert status == "HTTP/1.1 400 Bad Request"
    assert body == (
        b"<HTML><HEAD>\n<TITLE>400 Bad Request</TITLE>\n</HEAD><BODY>\n<H1>Bad Request</H1>\n</BODY></HTML>\n"
    )
    assert (headers["Content-Type"], closed) == ("text/html", True)
    assert sim.request_counts() == before


def test_cors_preflight_has_libevents_default_content_type_and_no_body(sim: Sim) -> None:
    """`http_server.cc:ProcessRequest` answers OPTIONS without the handler (no headers of its own):
    libevent's `evhttp_make_header_response` adds the server's default content type."""
    status, headers, body, closed = get(sim, "/v1/models/m", "OPTIONS", "Origin: https://app.example\r\n")
    assert (status, body, closed) == ("HTTP/1.1 200 OK", b"", False)
    assert headers["Content-Type"] == "text/html; charset=ISO-8859-1"
    before = request_count(sim, "", "FAILED_PRECONDITION")
    status, _, body, _ = get(sim, "/v1/models/m", "OPTIONS")
    assert (status, body) == ("HTTP/1.1 400 Bad Request", b"")
    assert request_count(sim, "", "FAILED_PRECONDITION") == before + 1


# --- bodies --------------------------------------------------------------------------------------


def test_version_out_of_int64_range_is_a_400_with_no_body(sim: Sim) -> None:
    """`http_rest_api_handler.cc:ProcessRequest`: `TF_RETURN_IF_ERROR(ParseModelInfo(...))` returns
    `Failed to convert version: ... to numeric.` before `MakeJsonFromStatus`, after `AddHeaders`."""
    status, headers, body, _ = get(sim, "/v1/models/m/versions/9223372036854775808:predict", "POST")
    assert (status, headers["Content-Type"], body) == ("HTTP/1.1 400 Bad Request", "application/json", b"")
    status, _, body, _ = get(sim, "/v1/models/m/versions/9223372036854775807")
    assert (status, body) == (
        "HTTP/1.1 404 Not Found",
        b'{\n    "error": "Could not find version 9223372036854775807 of model m"\n}',
    )


def test_error_messages_are_escaped_like_rapidjsons_writer(sim: Sim) -> None:
    """`json_tensor.cc:MakeJsonFromStatus` writes the message with rapidjson's `Writer::String`:
    control characters as `\\u00XX` in upper case; the model name was `DecodeArg`-unescaped."""
    _, _, body, _ = get(sim, "/v1/models/a%1Fb%22c:predict", "POST", body=b'{"instances": [1]}')
    assert body == b'{\n    "error": "Servable not found for request: Latest(a\\u001Fb\\"c)"\n}'


def predict(sim: Sim, body: bytes) -> tuple[int, str]:
    r = requests.post(f"{sim.rest_url}/v1/models/m:predict", data=body, timeout=10)
    return r.status_code, r.text


def error(text: str) -> str:
    return requests.models.complexjson.loads(text)["error"]


def test_json_is_parsed_the_way_rapidjson_does(sim: Sim) -> None:
    """`json_tensor.cc:ParseJson`: rapidjson with kParseStopWhenDoneFlag (trailing bytes ignored),
    duplicate keys kept with `FindMember` finding the first, its own empty-body text without the
    period, and `GetParseError_En` texts with offsets for the rest."""
    assert predict(sim, b'{"instances": [1.0]} and then anything') == (200, '{\n    "predictions": [2.5\n    ]\n}')
    assert predict(sim, b'{"instances": [1.0], "instances": [5.0]}')[1] == '{\n    "predictions": [2.5\n    ]\n}'
    assert predict(sim, b'\xef\xbb\xbf{"instances": [Infinity, -Inf]}')[1] == (
        '{\n    "predictions": [Infinity, -Infinity\n    ]\n}'
    )
    status, text = predict(sim, b"")
    assert (status, error(text)) == (400, "JSON Parse error: The document is empty")
    assert error(predict(sim, b" \n ")[1]) == "JSON Parse error: The document is empty. at offset: 3"
    assert error(predict(sim, b'{"instances": [1.0,]}')[1]) == "JSON Parse error: Invalid value. at offset: 19"
    assert error(predict(sim, b'{"instances" [1]}')[1]) == (
        "JSON Parse error: Missing a colon after a name of object member. at offset: 13"
    )
    assert error(predict(sim, b'{"instances": ["\xff\x01"]}')[1]) == (
        "JSON Parse error: Invalid escape character in string. at offset: 17"
    )


def test_request_values_are_quoted_like_json_value_to_debug_string(sim: Sim) -> None:
    """`json_tensor.cc:JsonValueToDebugString`: PrettyWriter (objects on several lines, arrays on one),
    rapidjson's number forms, duplicate keys all printed, cut at the first event after 256 bytes."""
    status, text = predict(sim, b'{"instances": "x", "b": 1e16, "b": -0.0}')
    assert (status, error(text)) == (
        400,
        'JSON Value: {\n    "instances": "x",\n    "b": 10000000000000000.0,\n    "b": -0.0\n}'
        " Expecting 'instances' to be an list/array",
    )
    long = b'{"instances": [' + b", ".join(b'"value %d"' % i for i in range(40)) + b"]}"
    message = error(predict(sim, long)[1])
    prefix = "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: JSON Value: "
    assert message.startswith(prefix + '"value 0" Type: String is not of expected type: float')
    status, text = predict(sim, b'{"instances": {"x": [' + b", ".join(b"1.5" for _ in range(100)) + b"]}}")
    quoted = error(text).removeprefix("JSON Value: ").removesuffix(" Expecting 'instances' to be an list/array")
    assert quoted.startswith('{\n    "instances": {\n        "x": [1.5, 1.5, ')
    assert len(quoted.encode()) == 258 and not quoted.endswith("]")  # cut at the first event after 256 bytes


def test_b64_values_need_no_padding(sim: Sim) -> None:
    """`json_tensor.cc:JsonDecodeBase64Object` -> `absl::Base64Unescape`: unpadded input decodes; a
    single leftover character or a wrong number of pads is `Unable to base64 decode`."""
    example = example_pb2.Example(
        features=feature_pb2.Features(feature={"x": feature_pb2.Feature(float_list=feature_pb2.FloatList(value=[3.0]))})
    )
    b64 = base64.b64encode(example.SerializeToString()).decode()
    assert b64.endswith("=")
    for value in (b64, b64.rstrip("="), b64.rstrip("=") + "\\n"):  # the last with a JSON-escaped newline
        body = f'{{"signature_name": "regress_x_to_y", "instances": [{{"b64": "{value}"}}]}}'.encode()
        assert predict(sim, body) == (200, '{\n    "predictions": [[3.5]\n    ]\n}'), value
    body = b'{"signature_name": "regress_x_to_y", "instances": [{"b64": "QQ="}]}'
    assert error(predict(sim, body)[1]).endswith("INVALID_ARGUMENT: Unable to base64 decode")


def test_large_float_outputs_are_written_like_write_decimal(sim: Sim) -> None:
    """`json_tensor.cc:WriteDecimal<float>`: six digits when they round-trip (`1e+10`), else `%.9g`,
    `.0` only on whole numbers printed without an exponent."""
    body = b'{"instances": [2e10, 246913580, 6.4e37, -3e9, 1e7, 2.9e38]}'
    assert predict(sim, body)[1] == (
        '{\n    "predictions": [1e+10, 123456792.0, 3.2e+37, -1.5e+09, 5000002.0, 1.45e+38\n    ]\n}'
    )


def test_stock_families_count_rest_and_grpc_like_upstream(sim: Sim) -> None:
    """`util.cc`: `request_latency{model_name, API, entrypoint}` for OK requests only, API empty for
    status GETs (`http_server.cc` passes ParseModelInfo's `method`); `runtime_latency{..., runtime="TF1"}`."""
    before = page(sim)
    requests.get(f"{sim.rest_url}/v1/models/m", timeout=10)
    requests.post(f"{sim.rest_url}/v1/models/m/labels/stable:predict", json={"instances": [1.0]}, timeout=10)
    requests.post(f"{sim.rest_url}/v1/models/m:predict", data=b"{", timeout=10)  # fails: in neither family
    after = page(sim)
    assert moved(before, after, ":tensorflow:serving:request_latency_count") == {
        (("API", ""), ("entrypoint", "REST"), ("model_name", "m")): 1,
        (("API", "predict"), ("entrypoint", "REST"), ("model_name", "m")): 1,
    }
    assert moved(before, after, ":tensorflow:serving:runtime_latency_count") == {
        (("API", "Predict"), ("model_name", "m"), ("runtime", "TF1")): 1
    }
    buckets = [k for k in after[":tensorflow:serving:request_latency_bucket"] if dict(k)["model_name"] == "m"]
    assert len(buckets) == 2 * 34  # API "" and "predict": Exponential(10, 1.8, 33) and +Inf, zero buckets kept


Page = dict[str, dict[tuple[tuple[str, str], ...], float]]


def page(sim: Sim) -> Page:
    """The sim's Prometheus page as a client scrapes it: metric -> {labels: value}."""
    return exposition.parse(requests.get(sim.rest_url + METRICS, timeout=10).text)


def moved(before: Page, after: Page, metric: str) -> dict[tuple[tuple[str, str], ...], float]:
    """How `metric`'s samples grew from one page to the next, without those that did not."""
    old = before.get(metric, {})
    return {labels: v - old.get(labels, 0) for labels, v in after[metric].items() if v != old.get(labels, 0)}
