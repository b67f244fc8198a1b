"""TF Serving's REST JSON, byte for byte where we can: rapidjson's PrettyWriter and TF's number format.

`util/json_tensor.cc` writes responses with rapidjson's `PrettyWriter` (4-space indent, arrays
inside each row of `predictions` on one line) and floats as `absl::StrCat(float)` (six significant
digits, `%.9g` when that does not round-trip, `.0` appended to whole numbers, `NaN`/`Infinity`);
model status and metadata go through protobuf's JSON printer with whitespace (1-space indent).
"""

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

INDENT = "    "


class PrettyWriter:
    """rapidjson::PrettyWriter<StringBuffer> with the calls TF Serving makes, plus bulk values."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.stack: list[list[Any]] = []  # [in_array, value_count]
        self.single_line = False

    def _prefix(self) -> None:
        if not self.stack:
            return
        level = self.stack[-1]
        if level[0]:
            if level[1] > 0:
                self.out.append(", " if self.single_line else ",")
            if not self.single_line:
                self.out.append("\n" + INDENT * len(self.stack))
        else:
            if level[1] > 0:
                self.out.append(",\n" if level[1] % 2 == 0 else ": ")
            else:
                self.out.append("\n")
            if level[1] % 2 == 0:
                self.out.append(INDENT * len(self.stack))
        level[1] += 1

    def raw(self, text: str) -> None:
        self._prefix()
        self.out.append(text)

    def string(self, text: str) -> None:
        self.raw(json_string(text))

    key = string

    def raw_values(self, texts: Sequence[str]) -> None:
        """Many raw values into the current array (what a loop of `raw` would write)."""
        if not texts:
            return
        level = self.stack[-1]
        if self.single_line:
            sep = ", "
            first = ", " if level[1] > 0 else ""
        else:
            sep = ",\n" + INDENT * len(self.stack)
            first = ("," if level[1] > 0 else "") + "\n" + INDENT * len(self.stack)
        self.out.append(first + sep.join(texts))
        level[1] += len(texts)

    def start_array(self) -> None:
        self._prefix()
        self.stack.append([True, 0])
        self.out.append("[")

    def end_array(self) -> None:
        level = self.stack.pop()
        if level[1] > 0 and not self.single_line:
            self.out.append("\n" + INDENT * len(self.stack))
        self.out.append("]")

    def start_object(self) -> None:
        self._prefix()
        self.stack.append([False, 0])
        self.out.append("{")

    def end_object(self) -> None:
        level = self.stack.pop()
        if level[1] > 0:
            self.out.append("\n" + INDENT * len(self.stack))
        self.out.append("}")

    def text(self) -> str:
        return "".join(self.out)


def json_string(text: str) -> str:
    """A JSON string as rapidjson writes it (UTF-8 kept, control characters escaped)."""
    return json.dumps(text, ensure_ascii=False)


def format_floats(values: np.ndarray) -> list[str]:
    """`WriteDecimal<float>` for every element, vectorised."""
    flat = np.ascontiguousarray(values, dtype=np.float32).ravel()
    if flat.size == 0:
        return []
    as_double = flat.astype(np.float64)
    short = np.char.mod("%g", as_double)
    finite = np.isfinite(flat)
    with np.errstate(all="ignore"):
        back = np.where(finite, short, "0").astype(np.float64).astype(np.float32)
    redo = finite & (back != flat)
    if redo.any():
        short = short.astype(object)
        short[redo] = np.char.mod("%.9g", as_double[redo])
    out: list[str] = short.tolist()
    needs_dot = (
        finite
        & (np.char.find(np.asarray(out, dtype=str), ".") < 0)
        & (np.char.find(np.asarray(out, dtype=str), "e") < 0)
    )
    for i in np.flatnonzero(needs_dot | ~finite):
        v = flat[i]
        if np.isnan(v):
            out[i] = "NaN"
        elif np.isinf(v):
            out[i] = "-Infinity" if v < 0 else "Infinity"
        else:
            out[i] = out[i] + ".0"
    return out


def _tensor_values(writer: PrettyWriter, texts: list[str], shape: tuple[int, ...], dim: int, offset: int) -> int:
    """`AddTensorValues`: nested arrays from `dim` on; returns the new offset into `texts`."""
    if dim > len(shape) - 1:
        writer.raw(texts[offset])
        return offset + 1
    writer.start_array()
    if dim == len(shape) - 1:
        writer.raw_values(texts[offset : offset + shape[dim]])
        offset += shape[dim]
    else:
        for _ in range(shape[dim]):
            offset = _tensor_values(writer, texts, shape, dim + 1, offset)
    writer.end_array()
    return offset


def predict_response(outputs: Mapping[str, np.ndarray], row_format: bool) -> str:
    """`MakeJsonFromTensors`: `{"predictions": ...}` (row format) or `{"outputs": ...}` (columnar).

    Raises ValueError with TF Serving's message when row format has no batch dimension.
    """
    names = sorted(outputs)
    texts = {name: format_floats(outputs[name]) for name in names}
    shapes = {name: tuple(outputs[name].shape) for name in names}
    writer = PrettyWriter()
    writer.start_object()
    many = len(names) > 1
    if row_format:
        batch = -1
        for name in names:
            if not shapes[name]:
                raise ValueError(f"Tensor name: {name} has no shape information ")
            if batch >= 0 and batch != shapes[name][0]:
                raise ValueError(
                    f"Tensor name: {name} has inconsistent batch size: {shapes[name][0]} expecting: {batch}"
                )
            batch = shapes[name][0]
        offsets = dict.fromkeys(names, 0)
        writer.key("predictions")
        writer.start_array()
        for _ in range(batch):
            if many:
                writer.start_object()
            writer.single_line = True
            for name in names:
                if many:
                    writer.key(name)
                offsets[name] = _tensor_values(writer, texts[name], shapes[name], 1, offsets[name])
            writer.single_line = False
            if many:
                writer.end_object()
        writer.end_array()
    else:
        writer.key("outputs")
        if many:
            writer.start_object()
        for name in names:
            if many:
                writer.key(name)
            _tensor_values(writer, texts[name], shapes[name], 0, 0)
        if many:
            writer.end_object()
    writer.end_object()
    return writer.text()


def classify_response(scores: np.ndarray) -> str:
    """`MakeJsonFromClassificationResult` for one class per example with an empty label."""
    texts = format_floats(scores)
    writer = PrettyWriter()
    writer.start_object()
    writer.key("results")
    writer.start_array()
    for text in texts:
        writer.single_line = True
        writer.start_array()
        writer.start_array()
        writer.string("")
        writer.raw(text)
        writer.end_array()
        writer.end_array()
        writer.single_line = False
    writer.end_array()
    writer.end_object()
    return writer.text()


def regress_response(values: np.ndarray) -> str:
    """`MakeJsonFromRegressionResult`."""
    writer = PrettyWriter()
    writer.start_object()
    writer.key("results")
    writer.single_line = True
    writer.start_array()
    writer.raw_values(format_floats(values))
    writer.end_array()
    writer.end_object()
    return writer.text()


def error_body(message: str) -> str:
    """`MakeJsonFromStatus`: `{"error": message}` pretty-printed."""
    writer = PrettyWriter()
    writer.start_object()
    writer.key("error")
    writer.string(message)
    writer.end_object()
    return writer.text()


def proto_json(message: Any, preserve_names: bool = False) -> str:
    """protobuf's JSON printer with `add_whitespace` and `always_print_fields_with_no_presence`."""
    from google.protobuf import json_format

    data = json_format.MessageToDict(
        message, always_print_fields_with_no_presence=True, preserving_proto_field_name=preserve_names
    )
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def metadata_response(model_spec: Any, signature_def_map: Any) -> str:
    """`ToJsonString(GetModelMetadataResponse)`: TF Serving's hand-assembled metadata document."""
    return (
        "{\n"
        + '"model_spec":'
        + proto_json(model_spec, preserve_names=True)
        + ",\n"
        + '"metadata": {'
        + '"signature_def": '
        + proto_json(signature_def_map, preserve_names=True)
        + "}\n"
        + "}\n"
    )
