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

from tfs_traffic.sim.rapidjson import write_string

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
    """A JSON string as rapidjson's Writer writes it (`rapidjson.write_string`)."""
    return write_string(text)


def format_float(value: float) -> str:
    """`WriteDecimal<float>` for one value: the reference `format_floats` must agree with."""
    f = np.float32(value)
    if np.isnan(f):
        return "NaN"
    if np.isinf(f):
        return "-Infinity" if f < 0 else "Infinity"
    d = float(f)
    text = f"{d:g}"
    if np.float32(float(text)) != f:
        text = f"{d:.9g}"
    return text if ("." in text or "e" in text) else text + ".0"


def _round_trips_6(flat: np.ndarray) -> np.ndarray:
    """Per element: does `%g` (six significant digits) read back as the same float32?

    Vectorised: round to six digits in float64 and compare; the few values whose seventh digit
    is within rounding error of a tie, or whose six-digit value lies within rounding error of a
    float32 tie (1.5e10: half-way between two floats), are checked exactly with `format_float`'s test.
    """
    d = flat.astype(np.float64)
    a = np.abs(d)
    out = np.ones(flat.shape, dtype=bool)  # zeros round-trip
    nz = a > 0
    an = a[nz]
    e = np.floor(np.log10(an))
    e += an >= 10.0 ** (e + 1)  # log10 can be off by one next to powers of ten
    e -= an < 10.0**e
    scale = 10.0 ** (5 - e)
    q = an * scale
    m = np.rint(q)
    six = m / scale
    single = six.astype(np.float32)
    ok = (np.sign(d[nz]) * six).astype(np.float32) == flat[nz]
    half_ulp = np.spacing(np.abs(single)).astype(np.float64) / 2
    near = (np.abs(np.abs(q - np.floor(q)) - 0.5) < 1e-6) | (
        np.abs(np.abs(six - single.astype(np.float64)) - half_ulp) <= np.abs(six) * 1e-14
    )
    for i in np.flatnonzero(near).tolist():
        v = float(flat[nz][i])
        ok[i] = np.float32(float(f"{v:g}")) == flat[nz][i]
    out[nz] = ok
    return out


def _formats(values: np.ndarray) -> tuple[np.ndarray, tuple[float, ...]]:
    """Per-element printf formats and the arguments for `WriteDecimal<float>` (see format_floats)."""
    flat = np.ascontiguousarray(values, dtype=np.float32).ravel()
    finite = np.isfinite(flat)
    safe = np.where(finite, flat, np.float32(0))
    six = _round_trips_6(safe)
    integral = np.floor(safe) == safe
    absolute = np.abs(safe)
    fmt = np.where(six, "%g", "%.9g").astype(object)
    dot = integral & np.where(six, absolute < 1e6, absolute < 1e9)
    fmt[dot] = np.where(six[dot], "%g.0", "%.9g.0")
    if not finite.all():
        fmt[np.isnan(flat)] = "NaN%.0s"
        fmt[np.isposinf(flat)] = "Infinity%.0s"
        fmt[np.isneginf(flat)] = "-Infinity%.0s"
    return fmt, tuple(safe.astype(np.float64).tolist())


def format_floats(values: np.ndarray) -> list[str]:
    """`WriteDecimal<float>` for every element, without a Python step per element where possible.

    One printf pass over all values with a per-element format: `%g` when six digits round-trip,
    else `%.9g`; `.0` appended to integral values printed without exponent (|v| < 1e6 for `%g`,
    < 1e9 for `%.9g`); `NaN`, `Infinity`, `-Infinity` for the rest.
    """
    if values.size == 0:
        return []
    fmt, args = _formats(values)
    return str("\x00".join(fmt.tolist()) % args).split("\x00")


def single_line_rows(values: np.ndarray) -> str:
    """The rows of a tensor (first dimension) as rapidjson writes them in single-line mode, joined by
    `, `: what `predictions` holds for one output. Shapes must have no zero inner dimension."""
    if values.size == 0:
        return ""
    fmt, args = _formats(values)
    index = np.arange(fmt.size)
    stride = 1
    for size in reversed(values.shape[1:]):
        stride *= size
        fmt[index % stride == 0] = "[" + fmt[index % stride == 0]
        fmt[index % stride == stride - 1] = fmt[index % stride == stride - 1] + "]"
    return str(", ".join(fmt.tolist()) % args)


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
    shapes = {name: tuple(outputs[name].shape) for name in names}
    bulk = row_format and len(names) == 1 and 0 not in shapes[names[0]][1:] and bool(shapes[names[0]])
    texts = {} if bulk else {name: format_floats(outputs[name]) for name in names}
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
        if bulk:  # one output: its rows are single-line values, formatted in one pass
            writer.single_line = True
            writer.raw_values([single_line_rows(outputs[names[0]])] if shapes[names[0]][0] else [])
            writer.single_line = False
            batch = 0
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
    writer.raw_values([single_line_rows(np.asarray(values).ravel())] if np.asarray(values).size else [])
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


def _printer_json(data: dict) -> str:
    """A document already laid out in protobuf's JSON printer's key order, printed as it prints it
    with `add_whitespace` (1-space indent, a newline at the end)."""
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def metadata_response(model_spec: dict, signature_def_map: dict) -> str:
    """`ToJsonString(GetModelMetadataResponse)` (`http_rest_api_util.cc`): TF Serving prints the
    model spec and the unpacked SignatureDefMap separately and concatenates them by hand."""
    return (
        "{\n"
        + '"model_spec":'
        + _printer_json(model_spec)
        + ",\n"
        + '"metadata": {'
        + '"signature_def": '
        + _printer_json(signature_def_map)
        + "}\n"
        + "}\n"
    )
