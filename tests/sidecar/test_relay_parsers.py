"""The relay's readers on exact byte streams: real messages, hand-laid frames, and fuzzed input.

The streaming `model_spec` scanner must agree with `wire` (itself checked against protobuf) on
every message however DATA frames split it; the HTTP/2 and HTTP/1.1 readers must count every
framing a peer may choose exactly once; and on bytes that are not what they expect they raise
their own ParseError and nothing else (the relay then stops counting that connection).
"""

import itertools
import random
from typing import Any

import hpack
import pytest
from h2_support import (
    CONTINUATION,
    END_HEADERS,
    GOAWAY,
    HEADER_TABLE_SIZE,
    PREFACE,
    RST_STREAM,
    data_frames,
    frame,
    header_frames,
    settings,
)
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    predict_pb2,
)
from tfs_api import METHODS, grpc_message, grpc_predict, model_specs

from tfs_traffic.contract import OTHER, UNRESOLVED
from tfs_traffic.sidecar import http1, http2, wire
from tfs_traffic.sidecar.grpc_relay import GrpcObserver
from tfs_traffic.sidecar.metrics import CallMetrics
from tfs_traffic.sidecar.protoscan import MessageReader, SpecScanner
from tfs_traffic.sidecar.rest_relay import RestObserver
from tfs_traffic.sidecar.view import ModelView, View, ViewHolder

FUZZ = hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PREDICT = METHODS["predict"]


def view() -> View:
    return View({"m": ModelView(labels={"stable": 1}, available=frozenset({1, 2, 3}), seen={1, 2, 3})})


class Counts:
    """A GrpcObserver or RestObserver counting into a private registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.metrics = CallMetrics(self.registry)
        self.holder = ViewHolder(view())

    def calls(self) -> dict[tuple[str, ...], float]:
        out = {}
        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name == "tfserving_model_calls_total":
                    labels = sample.labels
                    key = (labels["model_name"], labels["model_version"], labels["api"], labels["code"])
                    out[key] = sample.value
        return out


# --- the streaming model_spec scanner ---------------------------------------------------------

TEXT = st.text(max_size=8)


@st.composite
def messages(draw: st.DrawFn) -> tuple[bytes, int, int]:
    """(serialized message, spec field, outer field) of a real request or response."""
    kind = draw(
        st.sampled_from(["predict_request", "predict_response", "classify_response", "multi_request", "multi_response"])
    )
    if kind.startswith("multi"):
        if kind == "multi_request":
            message: Any = inference_pb2.MultiInferenceRequest()
            for _ in range(draw(st.integers(0, 3))):
                message.tasks.add(model_spec=draw(model_specs(TEXT)), method_name="tensorflow/serving/regress")
            message.input.example_list.examples.add().features.feature["x"].float_list.value.extend(
                [1.0] * draw(st.integers(0, 300))
            )
        else:
            message = inference_pb2.MultiInferenceResponse()
            for _ in range(draw(st.integers(0, 3))):
                result = message.results.add(model_spec=draw(model_specs(TEXT)))
                result.regression_result.regressions.add(value=1.5)
        return message.SerializeToString(), 1, 1
    if kind == "predict_request":
        message = predict_pb2.PredictRequest()
        field = 1
    elif kind == "predict_response":
        message = predict_pb2.PredictResponse()
        field = 2
    else:
        message = classification_pb2.ClassificationResponse()
        message.result.classifications.add().classes.add(label="a", score=0.5)
        field = 2
    if draw(st.booleans()):
        message.model_spec.CopyFrom(draw(model_specs(TEXT)))
    if kind != "classify_response":
        target = message.inputs if kind == "predict_request" else message.outputs
        for key in draw(st.lists(TEXT, max_size=3)):
            tensor = target[key]
            tensor.dtype = 1
            tensor.tensor_content = b"\x00\x00\x80\x3f" * draw(st.integers(0, 500))
    data = message.SerializeToString()
    if draw(st.booleans()):  # a second occurrence of model_spec after the tensors: protobuf merges them
        extra = draw(model_specs(TEXT)).SerializeToString()
        data += bytes([field << 3 | 2]) + wire._encode_varint(len(extra)) + extra
    return data, field, 0


def _whole(data: bytes, field: int, outer: int) -> Any:
    if outer:
        try:
            return wire.repeated_specs(data, outer, field)
        except (wire.Malformed, IndexError):
            return None
    return wire.model_spec(data, field)


def _pieces(data: bytes, cuts: list[int]) -> list[tuple[int, int]]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return list(itertools.pairwise(points))


@FUZZ
@given(messages(), st.lists(st.integers(min_value=0), max_size=12))
def test_scanner_agrees_with_wire_however_the_message_is_split(case: tuple[bytes, int, int], cuts: list[int]) -> None:
    data, field, outer = case
    framed = grpc_message(data)
    reader = MessageReader(field, outer)
    for start, stop in _pieces(framed, cuts):
        reader.feed(framed, start, stop)
    assert reader.done
    expected = _whole(data, field, outer)
    assert (reader.specs() if outer else reader.spec()) == expected


@FUZZ
@given(
    st.binary(max_size=200), st.sampled_from([(1, 0), (2, 0), (1, 1)]), st.lists(st.integers(min_value=0), max_size=6)
)
def test_scanner_agrees_with_wire_on_any_bytes(data: bytes, fields: tuple[int, int], cuts: list[int]) -> None:
    field, outer = fields
    scanner = SpecScanner(len(data), field, outer)
    for start, stop in _pieces(data, cuts):
        scanner.feed(data, start, stop)
    got = scanner.specs() if outer else scanner.spec()
    assert got == _whole(data, field, outer)


@FUZZ
@given(messages(), st.binary(max_size=8), st.binary(max_size=8))
def test_wire_reads_a_message_in_place_and_a_remembered_spec_as_parsed(
    case: tuple[bytes, int, int], before: bytes, after: bytes
) -> None:
    data, field, outer = case
    wire._SPECS.clear()
    parsed = _whole(data, field, outer)
    assert _whole(data, field, outer) == parsed  # its spec's bytes now remembered
    buf, start, stop = before + data + after, len(before), len(before) + len(data)
    if outer:
        assert wire.repeated_specs(buf, outer, field, start, stop) == parsed
    else:
        assert wire.model_spec(buf, field, start, stop) == parsed


def test_a_response_spec_after_large_outputs_is_read_from_a_later_frame() -> None:
    response = predict_pb2.PredictResponse()
    response.outputs["y"].tensor_content = bytes(100_000)
    response.model_spec.name = "m"
    response.model_spec.version.value = 2
    data = grpc_message(response.SerializeToString())
    offset = len(data) - len(response.model_spec.SerializeToString()) - 2
    assert offset > 6 * 16384  # the spec's bytes begin in the seventh 16 KiB frame
    reader = MessageReader(2)
    for start in range(0, len(data), 16384):
        reader.feed(data, start, min(len(data), start + 16384))
    assert reader.spec() == wire.ModelSpec(name="m", version=2)
    assert reader.scanner is not None and reader.scanner.complete  # streamed, not buffered


# --- HTTP/2: hand-laid frames ----------------------------------------------------------------


def predict_response(version: int) -> bytes:
    response = predict_pb2.PredictResponse()
    response.outputs["y"].float_val.extend([2.5, 3.0])
    response.model_spec.name = "m"
    response.model_spec.version.value = version
    return grpc_message(response.SerializeToString())


class Wire:
    """Both byte streams of one HTTP/2 connection, laid out by the test."""

    def __init__(self, client_table: int | None = None) -> None:
        self.client_encoder = hpack.Encoder()
        self.server_encoder = hpack.Encoder()
        values = {HEADER_TABLE_SIZE: client_table} if client_table is not None else {}
        self.client = PREFACE + settings(values)
        self.server = settings() + settings(ack=True)
        self.client += settings(ack=True)
        if client_table is not None:
            self.server_encoder.header_table_size = client_table

    def call(self, stream: int, request: bytes, status: int = 0, response: bytes | None = None, **layout: Any) -> None:
        block = self.client_encoder.encode(
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", PREDICT),
                (":authority", "x"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                ("x-id", f"call-{stream}"),
            ]
        )
        self.client += header_frames(stream, block, **layout) + data_frames(stream, request, size=7)
        head = self.server_encoder.encode([(":status", "200"), ("content-type", "application/grpc")])
        trailers = self.server_encoder.encode([("grpc-status", str(status)), ("grpc-message", "")])
        if response is None:  # trailers-only
            self.server += header_frames(stream, head + trailers, end_stream=True)
        else:
            self.server += header_frames(stream, head) + data_frames(stream, response, size=5, end_stream=False)
            self.server += header_frames(stream, trailers, end_stream=True)


def run(wire_bytes: Wire, pieces: int = 1) -> Counts:
    counts = Counts()
    observer = GrpcObserver(counts.holder, counts.metrics)
    for stream, feed in ((wire_bytes.client, observer.client_data), (wire_bytes.server, observer.server_data)):
        size = max(1, -(-len(stream) // pieces))
        for i in range(0, len(stream), size):
            feed(stream[i : i + size])
    return counts


def test_http2_calls_are_counted_whatever_the_framing() -> None:
    w = Wire()
    w.call(1, grpc_predict(version=2), response=predict_response(2))
    w.call(3, grpc_predict(version_label="stable"), response=predict_response(1), pieces=3, pad=7, priority=True)
    w.call(5, grpc_predict(), response=predict_response(3), pieces=5)
    w.call(7, grpc_predict(version=9), status=5)  # NOT_FOUND, trailers-only
    w.call(9, grpc_predict(name="zz"), status=5)
    expected = {
        ("m", "2", "predict", "OK"): 1.0,
        ("m", "1", "predict", "OK"): 1.0,
        ("m", "3", "predict", "OK"): 1.0,
        ("m", OTHER, "predict", "NOT_FOUND"): 1.0,
        (OTHER, UNRESOLVED, "predict", "NOT_FOUND"): 1.0,
    }
    assert run(w).calls() == expected
    assert run(w, pieces=len(w.client)).calls() == expected  # one byte at a time


def test_the_request_decoder_follows_the_servers_table_size_once_the_client_acks() -> None:
    observer = GrpcObserver(Counts().holder, Counts().metrics)
    decoder = observer.connection.directions[True].decoder  # decodes what the client sends
    observer.client_data(PREFACE + settings())
    observer.server_data(settings({HEADER_TABLE_SIZE: 0x10000}) + settings(ack=True))
    assert decoder.allowed_table_size == 0x10000  # may be in force before the ACK: allowed
    observer.client_data(settings(ack=True))
    assert decoder.allowed_table_size == 0x10000
    observer.server_data(settings({HEADER_TABLE_SIZE: 100}))
    assert decoder.allowed_table_size == 0x10000  # a decrease holds only once acknowledged
    observer.client_data(settings(ack=True))
    assert decoder.allowed_table_size == 100
    # ... and the client's own SETTINGS govern the other direction, not this one.
    observer.client_data(settings({HEADER_TABLE_SIZE: 0}))
    observer.server_data(settings(ack=True))
    assert decoder.allowed_table_size == 100
    assert observer.connection.directions[False].decoder.allowed_table_size == 0


def test_table_size_updates_and_a_zero_table_keep_both_decoders_in_step() -> None:
    w = Wire(client_table=0)  # the server may not index what it sends
    w.call(1, grpc_predict(version=2), response=predict_response(2))
    w.client_encoder.header_table_size = 256  # the client shrinks its own table ...
    w.call(3, grpc_predict(version=1), response=predict_response(1))
    w.client_encoder.header_table_size = 4096  # ... and grows it back
    w.call(5, grpc_predict(version=3), response=predict_response(3))
    assert run(w, pieces=17).calls() == {
        ("m", "2", "predict", "OK"): 1.0,
        ("m", "1", "predict", "OK"): 1.0,
        ("m", "3", "predict", "OK"): 1.0,
    }


def test_a_table_size_beyond_what_the_server_allowed_is_a_parse_error() -> None:
    observer = GrpcObserver(Counts().holder, Counts().metrics)
    observer.client_data(PREFACE + settings())
    observer.server_data(settings({HEADER_TABLE_SIZE: 0}))
    observer.client_data(settings(ack=True))
    indexing = hpack.Encoder().encode([(":path", PREDICT), ("x-a", "b")])  # a 4096-byte table, indexing
    with pytest.raises(http2.ParseError, match="HPACK"):
        observer.client_data(header_frames(1, indexing))


def test_resets_goaway_and_a_dying_upstream() -> None:
    counts = Counts()
    observer = GrpcObserver(counts.holder, counts.metrics)
    encoder = hpack.Encoder()

    def request(stream: int, version: int) -> bytes:
        block = encoder.encode([(":method", "POST"), (":path", PREDICT), ("grpc-timeout", "100S")])
        return header_frames(stream, block) + data_frames(stream, grpc_predict(version=version))

    observer.client_data(
        PREFACE + settings() + b"".join(request(s, v) for s, v in ((1, 1), (3, 2), (5, 3), (7, 1), (9, 2)))
    )
    observer.server_data(settings())
    observer.client_data(frame(RST_STREAM, 0, 1, (8).to_bytes(4, "big")))  # the client cancels
    observer.server_data(frame(RST_STREAM, 0, 3, (7).to_bytes(4, "big")))  # REFUSED_STREAM
    observer.server_data(frame(GOAWAY, 0, 0, (7).to_bytes(4, "big") + bytes(4)))  # 9 was never processed
    observer.closed(by_upstream=True)  # 5 and 7 were in flight
    assert counts.calls() == {
        ("m", "1", "predict", "CANCELLED"): 1.0,
        ("m", "2", "predict", "UNAVAILABLE"): 1.0,
        ("m", "3", "predict", "UNAVAILABLE"): 1.0,
        ("m", "1", "predict", "UNAVAILABLE"): 1.0,
    }


def test_other_methods_are_followed_not_counted() -> None:
    counts = Counts()
    observer = GrpcObserver(counts.holder, counts.metrics)
    block = hpack.Encoder().encode([(":path", "/tensorflow.serving.ModelService/GetModelStatus")])
    observer.client_data(
        PREFACE + settings() + header_frames(1, block) + data_frames(1, grpc_message(b"\x0a\x03\x0a\x01m"))
    )
    observer.server_data(
        settings()
        + header_frames(1, hpack.Encoder().encode([(":status", "200"), ("grpc-status", "0")]), end_stream=True)
    )
    assert counts.calls() == {}
    assert observer.data_sink(True, 1) is None


@pytest.mark.parametrize(
    "bad",
    [
        b"GET / HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello
        PREFACE + frame(CONTINUATION, END_HEADERS, 1, b"\x82"),
        PREFACE + header_frames(1, b"\x82")[:-1].replace(b"\x01\x04", b"\x01\x00") + frame(0, 0, 1, b"x"),
        PREFACE + frame(1, END_HEADERS, 1, b"\xff\xff\xff\xff\x0f"),  # an index far beyond the table
        PREFACE + frame(4, 0, 0, b"\x00\x01\x00"),  # SETTINGS not a multiple of 6
    ],
)
def test_not_http2_is_a_parse_error(bad: bytes) -> None:
    observer = GrpcObserver(Counts().holder, Counts().metrics)
    with pytest.raises(http2.ParseError):
        observer.client_data(bad)


def _mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        choice = rng.random()
        i = rng.randrange(len(out) + 1)
        if choice < 0.4 and out:
            out[min(i, len(out) - 1)] = rng.randrange(256)
        elif choice < 0.6:
            del out[i : i + rng.randint(1, 20)]
        elif choice < 0.8:
            j = rng.randrange(len(out) + 1)
            out[i:i] = out[j : j + rng.randint(1, 40)]
        else:
            out[i:i] = rng.randbytes(rng.randint(1, 12))
    return bytes(out)


def _feed_tolerant(feed: Any, data: bytes, error: type[Exception], cuts: list[int]) -> bool:
    """Feed in pieces; True if the reader raised its ParseError (anything else fails the test)."""
    for start, stop in _pieces(data, cuts):
        try:
            feed(data[start:stop])
        except error:
            return True
    return False


@FUZZ
@given(st.integers(0, 2**32), st.lists(st.integers(min_value=0), max_size=8))
def test_fuzz_mutated_http2_streams_raise_only_parse_errors(seed: int, cuts: list[int]) -> None:
    rng = random.Random(seed)
    w = Wire(client_table=rng.choice([None, 0, 512]))
    for stream in range(1, 2 * rng.randint(1, 4), 2):
        w.call(
            stream,
            grpc_predict(version=rng.randint(1, 3)),
            response=predict_response(2),
            pieces=rng.randint(1, 3),
            pad=rng.choice([0, 3]),
        )
    counts = Counts()
    observer = GrpcObserver(counts.holder, counts.metrics)
    client = _mutate(w.client, rng) if rng.random() < 0.8 else w.client
    server = _mutate(w.server, rng) if rng.random() < 0.8 else w.server
    if not _feed_tolerant(observer.client_data, client, http2.ParseError, cuts):
        _feed_tolerant(observer.server_data, server, http2.ParseError, cuts)
    observer.closed(by_upstream=rng.random() < 0.5)
    assert sum(counts.calls().values()) <= 4


@FUZZ
@given(st.binary(max_size=300), st.binary(max_size=300))
def test_fuzz_random_bytes_after_the_preface(client: bytes, server: bytes) -> None:
    observer = GrpcObserver(Counts().holder, Counts().metrics)
    if not _feed_tolerant(observer.client_data, PREFACE + client, http2.ParseError, [30]):
        _feed_tolerant(observer.server_data, server, http2.ParseError, [])


# --- HTTP/1.1 --------------------------------------------------------------------------------

POST = b"POST /v1/models/m/versions/2:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 16\r\n\r\n" + b'{"instances":[]}'
CHUNKED = (
    b"POST /v1/models/m/labels/stable:regress HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\n0\r\nX-Trailer: y\r\n\r\n"
)
GET = b"GET /v1/models/m HTTP/1.1\r\nHost: x\r\n\r\n"
HEAD = b"HEAD /v1/models/m HTTP/1.1\r\nHost: x\r\n\r\n"
LATEST = b"POST /v1/models/m:classify HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n{}"


def rest_run(client: bytes, server: bytes, pieces: int = 1, closed: bool = False) -> Counts:
    counts = Counts()
    observer = RestObserver(counts.holder, counts.metrics)
    for stream, feed in ((client, observer.client_data), (server, observer.server_data)):
        size = max(1, -(-len(stream) // pieces))
        for i in range(0, len(stream), size):
            feed(stream[i : i + size])
    if closed:
        observer.closed(by_upstream=True, upstream_ended=True)
    return counts


def test_http1_pipelined_keep_alive_chunked_and_interim_responses() -> None:
    client = POST + GET + CHUNKED + HEAD + LATEST
    server = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabcde"
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nxyz"
        b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n"  # HEAD: no body whatever it says
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\nnot found, until the connection closes"
    )
    expected = {
        ("m", "2", "predict", "OK"): 1.0,
        ("m", "1", "regress", "INVALID_ARGUMENT"): 1.0,
        ("m", UNRESOLVED, "classify", "NOT_FOUND"): 1.0,
    }
    assert rest_run(client, server, closed=True).calls() == expected
    assert rest_run(client, server, pieces=len(server), closed=True).calls() == expected


def test_http1_requests_left_unanswered_fail_as_the_client_sees_them() -> None:
    assert rest_run(POST + LATEST, b"", closed=True).calls() == {
        ("m", "2", "predict", "UNAVAILABLE"): 1.0,
        ("m", UNRESOLVED, "classify", "UNAVAILABLE"): 1.0,
    }


@pytest.mark.parametrize(
    "bad",
    [
        b"BLAH /\x00\x01 HTTP/9.9\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"\x16\x03\x01\x02\x00\x01",
        b"POST /v1/models/m:predict\r\n\r\n",  # HTTP/0.9's request line
    ],
)
def test_not_http1_is_a_parse_error(bad: bytes) -> None:
    observer = RestObserver(Counts().holder, Counts().metrics)
    with pytest.raises(http1.ParseError):
        observer.client_data(bad)


@FUZZ
@given(st.integers(0, 2**32), st.lists(st.integers(min_value=0), max_size=8))
def test_fuzz_mutated_http1_streams_raise_only_parse_errors(seed: int, cuts: list[int]) -> None:
    rng = random.Random(seed)
    client = _mutate(POST + CHUNKED + GET + LATEST, rng)
    server = _mutate(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
        rng,
    )
    counts = Counts()
    observer = RestObserver(counts.holder, counts.metrics)
    if not _feed_tolerant(observer.client_data, client, http1.ParseError, cuts):
        _feed_tolerant(observer.server_data, server, http1.ParseError, cuts)
    observer.closed(by_upstream=True, upstream_ended=True)
    assert sum(counts.calls().values()) <= 4


# --- fast paths: a frame or head read whole in place reads as it does in pieces ----------------


class Recorder:
    """An `http2.Observer` and `http1.Observer` that writes down everything it is told, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def headers(self, from_client: bool, stream: int, fields: http2.Fields, end_stream: bool) -> None:
        self.events.append(("headers", from_client, stream, list(fields), end_stream))

    def data_sink(self, from_client: bool, stream: int) -> Any:
        self.events.append(("sink", from_client, stream))
        return self if stream % 4 == 1 else None  # some streams' DATA is skipped

    def feed(self, data: bytes, pos: int, stop: int) -> None:
        last = self.events[-1]
        if last[0] == "data":  # the pieces of one frame's data read as one
            self.events[-1] = ("data", last[1] + data[pos:stop])
        else:
            self.events.append(("data", data[pos:stop]))

    def end_stream(self, from_client: bool, stream: int) -> None:
        self.events.append(("end", from_client, stream))

    def reset(self, from_client: bool, stream: int, code: int) -> None:
        self.events.append(("reset", from_client, stream, code))

    def goaway(self, from_client: bool, last_stream: int, code: int) -> None:
        self.events.append(("goaway", from_client, last_stream, code))

    def frame(self, *args: Any) -> None:
        raise AssertionError("no frame_hook")

    def request(self, method: str, target: str) -> object:
        self.events.append(("request", method, target))
        return len(self.events)

    def response(self, token: object, status: int) -> None:
        self.events.append(("response", token, status))


def _recorded(connection: Any, recorder: Recorder, streams: tuple[bytes, bytes], error: type, cuts: list[int]) -> Any:
    """What `recorder` heard from `connection` fed the client's then the server's bytes in pieces."""
    outcome = None
    for data, feed in zip(streams, (connection.client_data, connection.server_data), strict=True):
        try:
            for start, stop in _pieces(data, cuts):
                feed(data[start:stop])
        except error as e:
            outcome = str(e)
            break
    return recorder.events, outcome


def _h2(streams: tuple[bytes, bytes], cuts: list[int]) -> Any:
    recorder = Recorder()
    return _recorded(http2.Connection(recorder), recorder, streams, http2.ParseError, cuts)


def _h2_wire(rng: random.Random) -> tuple[bytes, bytes]:
    """A connection of calls in every framing, with the frames that are read by length only."""
    w = Wire(client_table=rng.choice([None, 0, 512]))
    for stream in range(1, 2 * rng.randint(1, 5), 2):
        w.call(
            stream,
            grpc_predict(version=rng.randint(1, 3)),
            status=rng.choice([0, 5]),
            response=predict_response(2) if rng.random() < 0.8 else None,
            pieces=rng.randint(1, 3),
            pad=rng.choice([0, 0, 3]),
            priority=rng.random() < 0.3,
        )
    extra = [
        frame(6, 0, 0, bytes(8)),  # PING
        frame(8, 0, 0, (1000).to_bytes(4, "big")),  # WINDOW_UPDATE
        frame(2, 0, 3, bytes(5)),  # PRIORITY
        frame(0x20, 0xFF, 1, b"unknown"),
        frame(0, 0x9, 5, bytes((2,)) + b"ab" + bytes(2)),  # padded DATA that ends its stream
        frame(0, 0x1, 9, b""),  # empty DATA that ends its stream
        frame(RST_STREAM, 0, 7, (8).to_bytes(4, "big")),
        frame(GOAWAY, 0, 0, bytes(8)),
    ]
    client, server = w.client, w.server
    for _ in range(rng.randint(0, 6)):
        piece = rng.choice(extra)
        if rng.random() < 0.5:
            i = client.find(b"\x00\x00", rng.randrange(len(PREFACE), len(client)))  # not always a frame boundary
            client = client[:i] + piece + client[i:] if i > 0 else client + piece
        else:
            server += piece
    return client, server


@FUZZ
@given(st.integers(0, 2**32), st.lists(st.integers(min_value=0), max_size=8), st.booleans())
def test_http2_frames_read_whole_read_as_in_pieces(seed: int, cuts: list[int], mutate: bool) -> None:
    rng = random.Random(seed)
    client, server = _h2_wire(rng)
    if mutate:
        client, server = _mutate(client, rng), _mutate(server, rng)
    whole = _h2((client, server), [])
    assert whole == _h2((client, server), cuts)
    assert whole == _h2((client, server), list(range(max(len(client), len(server)))))  # byte by byte


def test_http2_frames_read_whole_report_exactly_what_they_carry() -> None:
    client = PREFACE + settings() + frame(0, 0x1, 9, b"") + frame(0x20, 0, 1, b"x") + frame(8, 0, 0, bytes(4))
    block = hpack.Encoder().encode([(":path", PREDICT)])
    server = header_frames(5, block, end_stream=True) + data_frames(1, b"abc", end_stream=False)
    server += data_frames(3, b"skipped")
    expected = [
        ("end", True, 9),  # an empty DATA frame asks for no sink
        ("headers", False, 5, [(b":path", PREDICT.encode())], True),
        ("end", False, 5),
        ("sink", False, 1),
        ("data", b"abc"),
        ("sink", False, 3),  # no sink for stream 3: its data is skipped
        ("end", False, 3),
    ]
    assert _h2((client, server), []) == (expected, None)
    assert _h2((client, server), list(range(len(client)))) == (expected, None)


def _h1(streams: tuple[bytes, bytes], cuts: list[int], remembered: bool) -> Any:
    """What an HTTP/1.1 reader reports, with the heads it has parsed before remembered or not."""
    if not remembered:
        http1._REQUEST_HEADS.clear()
        http1._RESPONSE_HEADS.clear()
    recorder = Recorder()
    connection = http1.Connection(recorder)
    events, outcome = _recorded(connection, recorder, streams, http1.ParseError, cuts)
    if outcome is None:
        connection.server_closed()
    return events, outcome, [(p.method, p.complete) for p in connection.pending]


H1_CLIENT = POST + CHUNKED + HEAD + GET + LATEST + POST
H1_SERVER = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"  # HEAD: its body is not framed
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"  # the same head, framed: malformed
)


@FUZZ
@given(st.integers(0, 2**32), st.lists(st.integers(min_value=0), max_size=8))
def test_http1_heads_read_as_before_once_remembered(seed: int, cuts: list[int]) -> None:
    rng = random.Random(seed)
    streams = _mutate(H1_CLIENT, rng), _mutate(H1_SERVER, rng)
    first = _h1(streams, [], remembered=False)
    assert _h1(streams, [], remembered=True) == first
    assert _h1(streams, cuts, remembered=True) == first
    assert _h1(streams, cuts, remembered=False) == first


def test_http1_a_remembered_head_frames_its_body_only_when_there_is_one() -> None:
    events, outcome, pending = _h1((H1_CLIENT, H1_SERVER), [], remembered=False)
    assert outcome == "conflicting Content-Length"  # the last response, whose head was read for HEAD unframed
    assert [e for e in events if e[0] == "response"] == [
        ("response", 1, 200),
        ("response", 2, 204),
        ("response", 3, 200),
        ("response", 4, 200),
        ("response", 5, 200),
    ]
    assert pending == [("POST", True)]
    assert _h1((H1_CLIENT, H1_SERVER), [], remembered=True) == (events, outcome, pending)
