"""A minimal protobuf wire-format reader for the few fields the sidecar needs.

The relay forwards raw bytes and must not pay for decoding tensors (a PredictRequest can be many
megabytes), nor depend on TensorFlow (which `tensorflow_serving.apis` imports). So this module reads
only `model_spec` (and, for the status poller, `GetModelStatusResponse`) straight from the wire:
every other field is skipped by its length or width, never decoded.

It follows protobuf's parsing rules for the fields it reads, so it agrees with the real messages
(tests compare it with `tensorflow-serving-api`): repeated occurrences of a message field merge,
scalars take the last value, the `version`/`version_label` oneof keeps the last member set, a field
with an unexpected wire type is an unknown field, strings must be UTF-8. It never raises: anything
that is not a well-formed message gives `None`.

Field numbers (tensorflow_serving/apis/*.proto, checked in 2.20.0):
  ModelSpec: name=1, version=2 (google.protobuf.Int64Value, value=1), signature_name=3, version_label=4
  Predict/Classify/Regress/GetModelMetadata/GetModelStatus requests: model_spec=1
  Predict/Classification/Regression responses: model_spec=2; GetModelMetadataResponse: model_spec=1
  MultiInferenceRequest: tasks=1 (InferenceTask: model_spec=1)
  MultiInferenceResponse: results=1 (InferenceResult: model_spec=1)
  GetModelStatusResponse: model_version_status=1 (ModelVersionStatus: version=1, state=2,
  status=3 (StatusProto: error_code=1, error_message=2))
"""

from dataclasses import dataclass

# The wire types, named as protobuf's encoding documentation names them (`protoscan` reads them too).
VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5
MAX_DEPTH = 100  # protobuf's default recursion limit, for nested unknown groups
_U64 = 1 << 64

# ModelVersionStatus.State
STATE_AVAILABLE = 30
STATE_END = 50


class Malformed(Exception):
    """The bytes are not a well-formed message (raised inside this module and `protoscan`)."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What a request asked for, or (in a response) what served it.

    `version` is set when the message carries the `version` member of the oneof (even with value 0),
    `version_label` when it carries the label; at most one of them is set.
    """

    name: str = ""
    version: int | None = None
    version_label: str | None = None
    signature_name: str = ""


@dataclass(frozen=True, slots=True)
class VersionStatus:
    """One `ModelVersionStatus` of a GetModelStatusResponse."""

    version: int = 0
    state: int = 0
    error_code: int = 0
    error_message: str = ""

    @property
    def available(self) -> bool:
        return self.state == STATE_AVAILABLE


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Decode a varint at `pos`: (value modulo 2**64, next position). At most 10 bytes, as protobuf."""
    result = 0
    shift = 0
    while True:
        if pos >= end or shift >= 70:
            raise Malformed
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & (_U64 - 1), pos
        shift += 7


def _tag(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(field number, wire type, next position); rejects what protobuf rejects."""
    key, pos = _varint(buf, pos, end)
    if key > 0xFFFFFFFF:
        raise Malformed
    number, wire_type = key >> 3, key & 7
    if number == 0 or wire_type > 5:
        raise Malformed
    return number, wire_type, pos


def _skip(buf: bytes, pos: int, end: int, number: int, wire_type: int) -> int:
    """Skip one field's value without decoding it; returns the next position."""
    if wire_type == VARINT:
        return _varint(buf, pos, end)[1]
    if wire_type == LEN:
        length, pos = _varint(buf, pos, end)
        if length > end - pos:
            raise Malformed
        return pos + length
    if wire_type == I64:
        pos += 8
    elif wire_type == I32:
        pos += 4
    elif wire_type == SGROUP:
        return _skip_group(buf, pos, end, number)
    else:  # an end-group tag outside of its group
        raise Malformed
    if pos > end:
        raise Malformed
    return pos


def _skip_group(buf: bytes, pos: int, end: int, number: int) -> int:
    """Skip a (deprecated) group up to its matching end tag, nested groups included."""
    open_groups = [number]
    while open_groups:
        if len(open_groups) > MAX_DEPTH:
            raise Malformed
        field, wire_type, pos = _tag(buf, pos, end)
        if wire_type == EGROUP:
            if field != open_groups.pop():
                raise Malformed
        elif wire_type == SGROUP:
            open_groups.append(field)
        else:
            pos = _skip(buf, pos, end, field, wire_type)
    return pos


def _field(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """`_tag`, with the one-byte tags of fields 1 to 15 (all the sidecar reads) decoded in place."""
    key = buf[pos]
    if 8 <= key < 0x80 and key & 7 <= 5:
        return key >> 3, key & 7, pos + 1
    return _tag(buf, pos, end)


def _value(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """`_length`, with lengths under 16 KiB decoded in place (names, labels, small messages and tensors)."""
    if pos + 1 < end:
        length = buf[pos]
        if length < 0x80:
            pos += 1
        else:
            high = buf[pos + 1]
            if high >= 0x80:
                return _length(buf, pos, end)
            length = length & 0x7F | high << 7
            pos += 2
        if length > end - pos:
            raise Malformed
        return pos, pos + length
    return _length(buf, pos, end)


def _length(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """(start, end) of a length-delimited value at `pos`."""
    length, pos = _varint(buf, pos, end)
    if length > end - pos:
        raise Malformed
    return pos, pos + length


def _string(buf: bytes, start: int, stop: int) -> str:
    try:
        return buf[start:stop].decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed from None


def _int64(value: int) -> int:
    return value - _U64 if value >= 1 << 63 else value


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


class SpecBuilder:
    """Accumulates every occurrence of a ModelSpec field, merging as protobuf does."""

    __slots__ = ("label", "name", "signature", "version", "which")

    def __init__(self) -> None:
        self.name = ""
        self.signature = ""
        self.which = 0  # 0: no version choice, 2: version, 4: version_label
        self.version = 0
        self.label = ""

    def merge(self, buf: bytes, pos: int, end: int) -> None:
        while pos < end:
            number, wire_type, pos = _field(buf, pos, end)
            if wire_type == LEN and number in (1, 2, 3, 4):
                start, pos = _value(buf, pos, end)
                if number == 1:
                    self.name = _string(buf, start, pos)
                elif number == 3:
                    self.signature = _string(buf, start, pos)
                elif number == 4:
                    self.label = _string(buf, start, pos)
                    self.which = 4
                else:
                    if self.which != 2:
                        self.version = 0
                        self.which = 2
                    self._merge_int64_value(buf, start, pos)
            else:
                pos = _skip(buf, pos, end, number, wire_type)

    def _merge_int64_value(self, buf: bytes, pos: int, end: int) -> None:
        while pos < end:
            number, wire_type, pos = _tag(buf, pos, end)
            if number == 1 and wire_type == VARINT:
                value, pos = _varint(buf, pos, end)
                self.version = _int64(value)
            else:
                pos = _skip(buf, pos, end, number, wire_type)

    def build(self) -> ModelSpec:
        return ModelSpec(
            name=self.name,
            version=self.version if self.which == 2 else None,
            version_label=self.label if self.which == 4 else None,
            signature_name=self.signature,
        )


_NO_SPEC = ModelSpec()
_SPECS: dict[bytes, ModelSpec] = {}  # a model_spec's bytes -> what they read as (ModelSpec is immutable)
_SPECS_ENTRIES = 256
_SPECS_MAX_BYTES = 256


def _spec(buf: bytes, start: int, stop: int) -> ModelSpec:
    """The ModelSpec encoded in buf[start:stop], alone (not merged with another occurrence).

    Responses carry the same few specs over and over (one per model version served), so their
    bytes are looked up before they are parsed again (in this process, for every connection).
    """
    if stop - start > _SPECS_MAX_BYTES:
        builder = SpecBuilder()
        builder.merge(buf, start, stop)
        return builder.build()
    raw = bytes(buf[start:stop])  # hashable, to look it up (free for bytes)
    spec = _SPECS.get(raw)
    if spec is None:
        builder = SpecBuilder()
        builder.merge(raw, 0, len(raw))
        spec = builder.build()
        if len(_SPECS) >= _SPECS_ENTRIES:
            _SPECS.clear()
        _SPECS[raw] = spec
    return spec


def _message_spec(buf: bytes, pos: int, end: int, spec_field: int) -> ModelSpec:
    """The merged ModelSpec at `spec_field` of the message in buf[pos:end]; other fields skipped."""
    first = -1, -1  # the first occurrence of the spec, read once the message is walked
    builder = None  # from a second occurrence on: merged as they come
    while pos < end:
        number, wire_type, pos = _field(buf, pos, end)
        if wire_type == LEN:
            start, pos = _value(buf, pos, end)
            if number == spec_field:
                if first[0] < 0:
                    first = start, pos
                else:
                    if builder is None:
                        builder = SpecBuilder()
                        builder.merge(buf, *first)
                    builder.merge(buf, start, pos)
        else:
            pos = _skip(buf, pos, end, number, wire_type)
    if builder is not None:
        return builder.build()
    return _NO_SPEC if first[0] < 0 else _spec(buf, *first)


def repeated_specs(buf: bytes, outer_field: int, spec_field: int, pos: int = 0, end: int = -1) -> list[ModelSpec]:
    """The ModelSpec of each element of a repeated message field (MultiInference tasks/results)
    of the message in buf[pos:end] (end -1: the end of `buf`).

    Raises `Malformed` (or IndexError) for bytes that are not a well-formed message.
    """
    out = []
    if end < 0:
        end = len(buf)
    while pos < end:
        number, wire_type, pos = _tag(buf, pos, end)
        if number == outer_field and wire_type == LEN:
            start, pos = _length(buf, pos, end)
            out.append(_message_spec(buf, start, pos, spec_field))
        else:
            pos = _skip(buf, pos, end, number, wire_type)
    return out


def model_spec(data: bytes, field: int = 1, pos: int = 0, end: int = -1) -> ModelSpec | None:
    """The `model_spec` at field number `field` of a message, the whole of `data` or data[pos:end];
    None if that is not a valid message.

    field=1: Predict/Classification/Regression/GetModelMetadata/GetModelStatus requests and
    GetModelMetadataResponse. field=2: Predict/Classification/Regression responses.
    An absent model_spec reads as the empty ModelSpec, as protobuf's default instance.
    """
    try:
        return _message_spec(data, pos, len(data) if end < 0 else end, field)
    except (Malformed, IndexError):
        return None


def request_spec(data: bytes) -> ModelSpec | None:
    """`model_spec` of a Predict/Classification/Regression/GetModelMetadata/GetModelStatus request."""
    return model_spec(data, 1)


def response_spec(data: bytes) -> ModelSpec | None:
    """`model_spec` of a Predict/Classification/Regression response (the version that served it)."""
    return model_spec(data, 2)


def multi_inference_request_specs(data: bytes) -> list[ModelSpec] | None:
    """The `model_spec` of each task of a MultiInferenceRequest; None if not a valid message."""
    try:
        return repeated_specs(data, 1, 1)
    except (Malformed, IndexError):
        return None


def multi_inference_response_specs(data: bytes) -> list[ModelSpec] | None:
    """The `model_spec` of each result of a MultiInferenceResponse; None if not a valid message."""
    try:
        return repeated_specs(data, 1, 1)
    except (Malformed, IndexError):
        return None


def _version_status(buf: bytes, pos: int, end: int) -> VersionStatus:
    version = state = code = 0
    message = ""
    while pos < end:
        number, wire_type, pos = _tag(buf, pos, end)
        if number in (1, 2) and wire_type == VARINT:
            value, pos = _varint(buf, pos, end)
            if number == 1:
                version = _int64(value)
            else:
                state = _int32(value)
        elif number == 3 and wire_type == LEN:
            inner, pos = _length(buf, pos, end)
            while inner < pos:
                field, inner_type, inner = _tag(buf, inner, pos)
                if field == 1 and inner_type == VARINT:
                    value, inner = _varint(buf, inner, pos)
                    code = _int32(value)
                elif field == 2 and inner_type == LEN:
                    s, inner = _length(buf, inner, pos)
                    message = _string(buf, s, inner)
                else:
                    inner = _skip(buf, inner, pos, field, inner_type)
        else:
            pos = _skip(buf, pos, end, number, wire_type)
    return VersionStatus(version, state, code, message)


def model_status(data: bytes) -> list[VersionStatus] | None:
    """Every `model_version_status` of a GetModelStatusResponse; None if not a valid message."""
    try:
        out = []
        pos, end = 0, len(data)
        while pos < end:
            number, wire_type, pos = _tag(data, pos, end)
            if number == 1 and wire_type == LEN:
                start, pos = _length(data, pos, end)
                out.append(_version_status(data, start, pos))
            else:
                pos = _skip(data, pos, end, number, wire_type)
        return out
    except (Malformed, IndexError):
        return None


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _encode_len(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | LEN) + _encode_varint(len(payload)) + payload


def status_request(model_name: str) -> bytes:
    """A serialized GetModelStatusRequest for every version of `model_name` (as protobuf writes it)."""
    name = model_name.encode("utf-8")
    spec = _encode_len(1, name) if name else b""
    return _encode_len(1, spec)


def metadata_request(model_name: str, version_label: str | None = None) -> bytes:
    """A serialized GetModelMetadataRequest for `model_name` (by label, or latest) asking for
    `signature_def`, the one metadata field TF Serving supports."""
    name = model_name.encode("utf-8")
    spec = _encode_len(1, name) if name else b""
    if version_label is not None:
        spec += _encode_len(4, version_label.encode("utf-8"))
    return _encode_len(1, spec) + _encode_len(2, b"signature_def")
