"""The sidecar's wire reader agrees with tensorflow-serving-api's real messages, and never raises."""

import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_pb2,
    predict_pb2,
    regression_pb2,
)
from tfs_api import model_specs

from tfs_traffic.sidecar import wire

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
TEXT = st.text(max_size=12)


def expected(spec: Any) -> wire.ModelSpec:
    """Our dataclass from a real ModelSpec, field for field."""
    which = spec.WhichOneof("version_choice")
    return wire.ModelSpec(
        name=spec.name,
        version=spec.version.value if which == "version" else None,
        version_label=spec.version_label if which == "version_label" else None,
        signature_name=spec.signature_name,
    )


def _tensor(draw: st.DrawFn, message: Any) -> None:
    message.dtype = 1
    message.tensor_shape.dim.add().size = 2
    message.float_val.extend(draw(st.lists(st.floats(width=32, allow_nan=False), max_size=4)))
    message.tensor_content = draw(st.binary(max_size=64))


@st.composite
def requests(draw: st.DrawFn) -> tuple[Any, Any]:
    """A real request of any single-spec kind, with other fields filled in, and its spec."""
    kind = draw(st.sampled_from(["predict", "classify", "regress", "metadata", "status"]))
    spec = draw(model_specs(TEXT))
    if kind == "predict":
        message = predict_pb2.PredictRequest()
        for key in draw(st.lists(TEXT, max_size=3)):
            _tensor(draw, message.inputs[key])
        message.output_filter.extend(draw(st.lists(TEXT, max_size=2)))
    elif kind in ("classify", "regress"):
        cls = classification_pb2.ClassificationRequest if kind == "classify" else regression_pb2.RegressionRequest
        message = cls()
        example = message.input.example_list.examples.add()
        example.features.feature["x"].float_list.value.extend(draw(st.lists(st.floats(width=32), max_size=3)))
    elif kind == "metadata":
        message = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=draw(st.lists(TEXT, max_size=2)))
    else:
        message = get_model_status_pb2.GetModelStatusRequest()
    if draw(st.booleans()):
        message.model_spec.CopyFrom(spec)
    return message, message.model_spec


@st.composite
def responses(draw: st.DrawFn) -> tuple[Any, Any]:
    kind = draw(st.sampled_from(["predict", "classify", "regress"]))
    spec = draw(model_specs(TEXT))
    if kind == "predict":
        message = predict_pb2.PredictResponse()
        for key in draw(st.lists(TEXT, max_size=3)):
            _tensor(draw, message.outputs[key])
    elif kind == "classify":
        message = classification_pb2.ClassificationResponse()
        message.result.classifications.add().classes.add(label=draw(TEXT), score=1.5)
    else:
        message = regression_pb2.RegressionResponse()
        message.result.regressions.add(value=draw(st.floats(width=32)))
    if draw(st.booleans()):
        message.model_spec.CopyFrom(spec)
    return message, message.model_spec


@given(requests())
@FUZZ
def test_request_spec_matches_real_messages(case: tuple[Any, Any]) -> None:
    message, spec = case
    assert wire.request_spec(message.SerializeToString()) == expected(spec)


@given(responses())
@FUZZ
def test_response_spec_matches_real_messages(case: tuple[Any, Any]) -> None:
    message, spec = case
    assert wire.response_spec(message.SerializeToString()) == expected(spec)


def test_field_numbers_checked_against_the_protos() -> None:
    """The numbers the reader hard-codes are the ones in tensorflow-serving-api's descriptors."""
    fields = model_pb2.ModelSpec.DESCRIPTOR.fields_by_name
    assert {n: f.number for n, f in fields.items()} == {
        "name": 1,
        "version": 2,
        "signature_name": 3,
        "version_label": 4,
    }
    for cls in (
        predict_pb2.PredictRequest,
        classification_pb2.ClassificationRequest,
        regression_pb2.RegressionRequest,
        get_model_metadata_pb2.GetModelMetadataRequest,
        get_model_metadata_pb2.GetModelMetadataResponse,
        get_model_status_pb2.GetModelStatusRequest,
        inference_pb2.InferenceTask,
        inference_pb2.InferenceResult,
    ):
        assert cls.DESCRIPTOR.fields_by_name["model_spec"].number == 1, cls
    for cls in (
        predict_pb2.PredictResponse,
        classification_pb2.ClassificationResponse,
        regression_pb2.RegressionResponse,
    ):
        assert cls.DESCRIPTOR.fields_by_name["model_spec"].number == 2, cls
    assert inference_pb2.MultiInferenceRequest.DESCRIPTOR.fields_by_name["tasks"].number == 1
    assert inference_pb2.MultiInferenceResponse.DESCRIPTOR.fields_by_name["results"].number == 1
    status = get_model_status_pb2.ModelVersionStatus.DESCRIPTOR.fields_by_name
    assert (status["version"].number, status["state"].number, status["status"].number) == (1, 2, 3)
    assert get_model_status_pb2.GetModelStatusResponse.DESCRIPTOR.fields_by_name["model_version_status"].number == 1
    assert get_model_status_pb2.ModelVersionStatus.AVAILABLE == wire.STATE_AVAILABLE


@given(st.lists(requests(), min_size=2, max_size=4))
@FUZZ
def test_repeated_occurrences_merge_as_protobuf_does(cases: list[tuple[Any, Any]]) -> None:
    """Concatenated messages are one merged message: the oneof and last-wins rules must match."""
    data = b"".join(m.SerializeToString() for m, _ in cases)
    real = model_pb2.ModelSpec()
    for message, _ in cases:
        if message.HasField("model_spec"):
            real.MergeFrom(message.model_spec)
    parsed = get_model_status_pb2.GetModelStatusRequest()
    parsed.ParseFromString(data)
    assert wire.request_spec(data) == expected(parsed.model_spec) == expected(real)


@given(st.lists(model_specs(TEXT), max_size=4), st.lists(model_specs(TEXT), max_size=4))
@FUZZ
def test_multi_inference_specs(task_specs: list[Any], result_specs: list[Any]) -> None:
    request = inference_pb2.MultiInferenceRequest()
    for spec in task_specs:
        request.tasks.add(model_spec=spec, method_name="tensorflow/serving/regress")
    request.input.example_list.examples.add()
    response = inference_pb2.MultiInferenceResponse()
    for spec in result_specs:
        response.results.add(model_spec=spec).regression_result.regressions.add(value=2.5)
    assert wire.multi_inference_request_specs(request.SerializeToString()) == [expected(s) for s in task_specs]
    assert wire.multi_inference_response_specs(response.SerializeToString()) == [expected(s) for s in result_specs]


@given(
    st.lists(
        st.tuples(INT64, st.sampled_from([0, 10, 20, 30, 40, 50, 7]), st.integers(0, 16), TEXT),
        max_size=5,
    )
)
@FUZZ
def test_model_status_matches_real_messages(rows: list[tuple[int, int, int, str]]) -> None:
    response = get_model_status_pb2.GetModelStatusResponse()
    for version, state, code, message in rows:
        status = response.model_version_status.add(version=version, state=state)
        status.status.error_code = code
        status.status.error_message = message
    got = wire.model_status(response.SerializeToString())
    assert got == [
        wire.VersionStatus(s.version, s.state, s.status.error_code, s.status.error_message)
        for s in response.model_version_status
    ]


@given(TEXT)
@FUZZ
def test_status_request_is_byte_identical(name: str) -> None:
    real = get_model_status_pb2.GetModelStatusRequest(model_spec=model_pb2.ModelSpec(name=name))
    assert wire.status_request(name) == real.SerializeToString()


def _mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    buf = bytearray(data)
    for kind, position, value in edits:
        if not buf:
            buf.append(value)
            continue
        i = position % len(buf)
        if kind == 0:
            buf[i] = value
        elif kind == 1:
            buf.insert(i, value)
        elif kind == 2:
            del buf[i]
        else:
            del buf[i:]
    return bytes(buf)


EDITS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=4)


@given(requests(), EDITS)
@FUZZ
def test_mutated_requests_never_raise_and_agree_when_protobuf_parses(case: tuple[Any, Any], edits: Any) -> None:
    """Differential fuzz: corrupt a real message; if protobuf still parses it, the reader agrees."""
    message, _ = case
    data = _mutate(message.SerializeToString(), edits)
    started = time.perf_counter()
    got = wire.request_spec(data)
    assert time.perf_counter() - started < 1.0
    real = type(message)()
    try:
        real.ParseFromString(data)
    except Exception:
        return  # the reader may accept what protobuf rejects: it does not validate skipped fields
    assert got == expected(real.model_spec)


@given(responses(), EDITS)
@FUZZ
def test_mutated_responses_agree_when_protobuf_parses(case: tuple[Any, Any], edits: Any) -> None:
    message, _ = case
    data = _mutate(message.SerializeToString(), edits)
    got = wire.response_spec(data)
    real = type(message)()
    try:
        real.ParseFromString(data)
    except Exception:
        return
    assert got == expected(real.model_spec)


@given(st.binary(max_size=256))
@settings(max_examples=1000, deadline=None)
def test_garbage_never_raises(data: bytes) -> None:
    for reader in (
        wire.request_spec,
        wire.response_spec,
        wire.multi_inference_request_specs,
        wire.multi_inference_response_specs,
        wire.model_status,
    ):
        result = reader(data)
        assert result is None or isinstance(result, wire.ModelSpec | list)


@pytest.mark.parametrize(
    "data",
    [
        b"\x0a\x05ab",  # length beyond the end
        b"\x0a\x02\x0a\xff",  # truncated inner
        b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # varint longer than 10 bytes
        b"\x00",  # field number 0
        b"\x0f",  # wire type 7
        b"\x0c",  # end group without a start
        b"\x0b" * 5000,  # deeply nested groups
        b"\x0a\x03\x0a\x01\xff",  # name that is not UTF-8
    ],
)
def test_malformed_is_none(data: bytes) -> None:
    assert wire.request_spec(data) is None
    real = predict_pb2.PredictRequest()
    with pytest.raises(Exception):  # noqa: B017 - protobuf agrees it is malformed
        real.ParseFromString(data)


def test_large_request_is_skipped_not_decoded() -> None:
    """A 4 MiB tensor after model_spec costs the same as none: the reader skips it by length."""
    request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="m", version_label="stable"))
    request.inputs["x"].tensor_content = b"\x01" * (4 << 20)
    data = request.SerializeToString()
    assert wire.request_spec(data) == wire.ModelSpec(name="m", version_label="stable")
