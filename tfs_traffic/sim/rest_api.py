"""The stand-in TF Serving's REST API (`http_rest_api_handler.cc`) and its Prometheus page, on aiohttp.

URL grammar, JSON request handling and error bodies follow TF Serving 2.20:

- `POST /v1/models/M[/versions/N|/labels/L]:(predict|classify|regress)`
- `GET /v1/models/M[/versions/N|/labels/L]` (status) and `.../metadata`
- anything else under `/v1/` is `400 {"error": "Malformed request: METHOD PATH"}`, other paths 404;
- errors are `{"error": message}` with `ToHTTPStatusCode`'s mapping (NOT_FOUND 404,
  INVALID_ARGUMENT and FAILED_PRECONDITION 400, ...);
- `request_count{model_name,status}` counts every `/v1/` request, status GETs included, as
  upstream does; `model_call_count` only inference after resolution (see `service`).

Matched where a client can tell (each with a test citing the upstream function):

- the query string is part of what is matched (`evhttp_request.cc:EvHTTPRequest::uri_path`): the
  `/v1/` dispatcher and `ParseModelInfo`'s regexes see it, the Prometheus handler is found by the
  path alone and then refuses a query (`http_server.cc:ProcessPrometheusRequest`); model names and
  labels are `DecodeArg`-unescaped after matching;
- targets libevent's strict URI parser refuses, and paths nobody takes, get libevent's own pages
  and headers and a closed connection (`evhttp.py`); no `Server` header; a CORS preflight has no
  body and libevent's default content type;
- a version beyond int64 is a 400 with an empty body (`ParseModelInfo` fails before
  `MakeJsonFromStatus`);
- `--rest_api_timeout_in_ms` is the session's run timeout (`HttpRestApiHandler`'s `RunOptions`):
  a Predict, Classify or Regress whose model time is longer fails then, DEADLINE_EXCEEDED (504)
  `Timed out waiting for notification`; `--rest_api_enable_cors_support` adds `AddCORSHeaders`'
  three headers to every `/v1/` answer, a preflight's included;
- JSON is parsed and request values are quoted as rapidjson 1.1.0 does (`rapidjson.py`), b64 is
  `absl::Base64Unescape` (`absl.py`), messages are escaped by rapidjson's Writer, floats are
  `WriteDecimal<float>` (`tfjson.py`); the metrics page carries TF Serving's stock families
  (`stock_metrics.py`).

Judged harmless, with the reason:

- request lines aiohttp's own parser refuses (raw non-ASCII bytes in the target) get aiohttp's 400
  text instead of libevent's 400 page: both are 400s that reach no handler and count nothing, and
  clients percent-encode;
- targets that are not origin-form (`*`, absolute URIs) are matched as plain paths: clients of TF
  Serving send origin-form;
- model status JSON is Python's protobuf printer with TF Serving's options: the same document, key
  order aside, and no test or client depends on byte order there (the metadata document follows
  the C++ printer's key order, `half_plus_two.signature_def_map_json`);
- with several labels refused at once, which one the message names follows the map's iteration
  order, which protobuf leaves unspecified in C++ as well.
"""

import re
import sys
import time
import traceback
import urllib.parse
from typing import Any

import numpy as np
from aiohttp import web

from tfs_traffic import exposition
from tfs_traffic.sim import absl, evhttp, half_plus_two, rapidjson, tfjson
from tfs_traffic.sim.errors import Code, SimError
from tfs_traffic.sim.half_plus_two import DT_FLOAT, DT_STRING, Tensor
from tfs_traffic.sim.service import SimService, Spec, Transport

# RE2 patterns of http_server.cc (kHTTPRestApiHandlerPathRegex) and http_rest_api_util.cc, matched
# against the path *with* its query string; RE2's `.` stops at a newline and `\d` is ASCII.
_V1 = re.compile(r"/v1/.*", re.IGNORECASE | re.ASCII)
_PREDICTION = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE | re.ASCII,
)
_STATUS = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:\/(metadata))?",
    re.IGNORECASE | re.ASCII,
)
_JSON_TYPES = {type(None): "Null", list: "Array", str: "String"}


def _json_type(value: Any) -> str:
    """`JsonTypeString`."""
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, dict):
        return "Object"
    return _JSON_TYPES.get(type(value), "Number")


_debug = rapidjson.debug_string


def _format_error(value: Any, *parts: str) -> SimError:
    return SimError(Code.INVALID_ARGUMENT, f"JSON Value: {_debug(value)} " + "".join(parts))


def parse_json(body: bytes) -> dict:
    """`ParseJson`: an object, or INVALID_ARGUMENT with rapidjson's parse error."""
    if not body:
        raise SimError(Code.INVALID_ARGUMENT, "JSON Parse error: The document is empty")
    try:
        doc = rapidjson.parse(body)
    except rapidjson.ParseError as e:
        raise SimError(Code.INVALID_ARGUMENT, f"JSON Parse error: {e}") from None
    if not isinstance(doc, dict):
        raise _format_error(doc, "Is not object")
    return doc


def _signature_name(doc: dict) -> str:
    value = doc.get("signature_name", "")
    if not isinstance(value, str):
        raise SimError(
            Code.INVALID_ARGUMENT,
            f"JSON Value: {_debug(doc)} not formatted correctly. 'signature_name' key must be a string value.",
        )
    return value


def _dense_shape(value: Any) -> list[int]:
    """`GetDenseTensorShape`: sizes along the first element of each nesting level."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _is_b64(value: Any) -> bool:
    """`IsValBase64Object`: exactly one member (duplicates count), `b64`, holding a string."""
    return isinstance(value, dict) and len(rapidjson.members(value)) == 1 and isinstance(value.get("b64"), str)


def _leaf(value: Any, dtype: int) -> Any:
    if dtype == DT_FLOAT:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SimError(
                Code.INVALID_ARGUMENT,
                f"JSON Value: {_debug(value)} Type: {_json_type(value)} is not of expected type: float",
            )
        return value
    if dtype == DT_STRING:
        if _is_b64(value):
            decoded = absl.base64_unescape(value["b64"])
            if decoded is None:
                raise SimError(Code.INVALID_ARGUMENT, "Unable to base64 decode")
            return decoded
        if isinstance(value, dict):
            raise SimError(
                Code.INVALID_ARGUMENT, f"JSON Value: {_debug(value)} not formatted correctly for base64 data"
            )
        if not isinstance(value, str):
            raise SimError(
                Code.INVALID_ARGUMENT,
                f"JSON Value: {_debug(value)} Type: {_json_type(value)} is not of expected type: string",
            )
        return rapidjson.utf8(value)
    raise SimError(Code.UNIMPLEMENTED, f"Conversion of JSON Value: {_debug(value)} to type: {dtype}")


def _fill(value: Any, level: int, shape: list[int], dtype: int, out: list[Any]) -> None:
    """`FillTensorProto`: a dense nested list of exactly `shape`, leaves checked against dtype."""
    if not isinstance(value, list):
        if level != len(shape):
            raise SimError(
                Code.INVALID_ARGUMENT,
                f"JSON Value: {_debug(value)} found at incorrect level: {level + 1} in the JSON DOM. "
                f"Expected at level: {len(shape)}",
            )
        out.append(_leaf(value, dtype))
        return
    if level >= len(shape):
        raise SimError(Code.INVALID_ARGUMENT, f"Encountered list at unexpected level: {level} expected < {len(shape)}")
    if len(value) != shape[level]:
        raise SimError(
            Code.INVALID_ARGUMENT,
            f"Encountered list at unexpected size: {len(value)} at level: {level} expected size: {shape[level]}",
        )
    for item in value:
        _fill(item, level + 1, shape, dtype, out)


def json_tensor(value: Any, dtype: int, check_bool: bool = True) -> tuple[list[int], Any]:
    """A JSON value as (shape, values): float32 ndarray for DT_FLOAT, list of bytes for DT_STRING."""
    shape = _dense_shape(value)
    if dtype == DT_FLOAT and shape:
        arr = _numeric_array(value, check_bool)
        if arr is not None and list(arr.shape) == shape:
            return shape, arr
    out: list[Any] = []
    _fill(value, 0, shape, dtype, out)
    if dtype == DT_FLOAT:
        return shape, np.asarray(out, dtype=np.float32).reshape(shape)
    return shape, out


def _numeric_array(value: Any, check_bool: bool = True) -> np.ndarray | None:
    """Fast path: a rectangular nest of JSON numbers as float32, or None to take the checked path.

    numpy would take `true` as 1.0; `check_bool=False` says the body has no `true`/`false` at all."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError):
        return None
    if arr.dtype.kind not in "iuf" or (check_bool and _has_bool(value)):
        return None
    return arr.astype(np.float32)


def _has_bool(value: Any) -> bool:
    if isinstance(value, list):
        if value and not isinstance(value[0], list):
            return any(isinstance(v, bool) for v in value)
        return any(_has_bool(v) for v in value)
    return isinstance(value, bool)


def tensors_from_instances(
    instances: list, infos: dict[str, half_plus_two.TensorSpec], check_bool: bool = True
) -> dict[str, Tensor]:
    """`FillTensorMapFromInstancesList`: row format, batched along a new first dimension."""
    names = sorted(infos)
    first = instances[0]
    if not isinstance(first, dict) and len(infos) > 1:
        raise SimError(
            Code.INVALID_ARGUMENT,
            "instances is a plain list, but expecting list of objects as multiple input tensors required as per "
            "tensorinfo_map",
        )

    def is_object(v: Any) -> bool:
        return isinstance(v, dict) and not _is_b64(v)

    objects = is_object(first)
    shapes: dict[str, list[int]] = {}
    sizes: dict[str, int] = {}
    parts: dict[str, list[Any]] = {}

    def add(item: Any, name: str) -> None:
        if name not in infos:
            raise SimError(Code.INVALID_ARGUMENT, f"JSON object: does not have named input: {name}")
        shape, values = json_tensor(item, infos[name].dtype, check_bool)
        size = int(np.prod(shape)) if shape else 1
        if name not in sizes:
            sizes[name], shapes[name] = size, shape
        elif sizes[name] != size:
            raise SimError(Code.INVALID_ARGUMENT, f"Expecting tensor size: {sizes[name]} but got: {size}")
        elif shapes[name] != shape:
            raise SimError(
                Code.INVALID_ARGUMENT,
                f"Expecting shape [{','.join(map(str, shapes[name]))}] but got: [{','.join(map(str, shape))}]",
            )
        parts.setdefault(name, []).append(values)

    if not objects and len(instances) > 1 and infos[names[0]].dtype == DT_FLOAT:
        # fast path for the common case: a plain list of same-shaped numbers or lists
        arr = _numeric_array(instances, check_bool)
        if arr is not None and list(arr.shape) == _dense_shape(instances):
            return {names[0]: Tensor(DT_FLOAT, tuple(arr.shape), arr)}
    for count, elem in enumerate(instances):
        if objects:
            if not is_object(elem):
                raise SimError(Code.INVALID_ARGUMENT, f"Expecting object but got list at item {count} of input list")
            for name, item in rapidjson.members(elem):
                try:
                    add(item, name)
                except SimError as e:
                    raise SimError(
                        Code.INVALID_ARGUMENT,
                        f"Failed to process element: {count} key: {name} of 'instances' list. "
                        f"Error: {e.code.name}: {e.message}",
                    ) from None
            if set(elem) != set(names):
                raise SimError(
                    Code.INVALID_ARGUMENT,
                    f"Failed to process element: {count} of 'instances' list. JSON object: {_debug(elem)} "
                    f"keys must be equal to: {','.join(names)}",
                )
        else:
            if is_object(elem):
                raise SimError(
                    Code.INVALID_ARGUMENT, f"Expecting value/list but got object at item {count} of input list"
                )
            try:
                add(elem, names[0])
            except SimError as e:
                raise SimError(
                    Code.INVALID_ARGUMENT,
                    f"Failed to process element: {count} of 'instances' list. Error: {e.code.name}: {e.message}",
                ) from None
    out: dict[str, Tensor] = {}
    for name, values in parts.items():
        shape = (len(instances), *shapes[name])
        if len(values) != len(instances):  # a repeated key added its values twice: shape and count disagree
            out[name] = Tensor(infos[name].dtype, shape, None, malformed=True)
        elif infos[name].dtype == DT_FLOAT:
            out[name] = Tensor(DT_FLOAT, shape, np.stack(values).reshape(shape))
        else:
            out[name] = Tensor(DT_STRING, shape, [b for v in values for b in v])
    return out


def tensors_from_inputs(
    value: Any, infos: dict[str, half_plus_two.TensorSpec], check_bool: bool = True
) -> dict[str, Tensor]:
    """`FillTensorMapFromInputsMap`: columnar format."""
    names = sorted(infos)
    if not isinstance(value, dict) or _is_b64(value):
        if len(infos) > 1:
            raise SimError(
                Code.INVALID_ARGUMENT,
                "inputs is a plain value/list, but expecting an object as multiple input tensors required as per "
                "tensorinfo_map",
            )
        shape, values = json_tensor(value, infos[names[0]].dtype, check_bool)
        return {names[0]: Tensor(infos[names[0]].dtype, tuple(shape), values)}
    out = {}
    for name in names:
        if name not in value:
            raise SimError(Code.INVALID_ARGUMENT, f"Missing named input: {name} in 'inputs' object.")
        shape, values = json_tensor(value[name], infos[name].dtype, check_bool)
        out[name] = Tensor(infos[name].dtype, tuple(shape), values)
    return out


def _feature_value(protos: Any, feature: Any, name: str, value: Any) -> None:
    """`AddValueToFeature`."""
    kind = feature.WhichOneof("kind")

    def need(k: str) -> None:
        if kind not in (None, k):
            expecting = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}[kind]
            raise SimError(
                Code.INVALID_ARGUMENT, f"Unexpected element type in feature: {name} expecting type: {expecting}"
            )

    if value is None or isinstance(value, list) or (isinstance(value, dict) and not _is_b64(value)):
        raise SimError(
            Code.INVALID_ARGUMENT, f"Feature: {name} has element with unexpected JSON type: {_json_type(value)}"
        )
    if isinstance(value, bool):
        need("int64_list")
        feature.int64_list.value.append(1 if value else 0)
    elif isinstance(value, dict):
        need("bytes_list")
        feature.bytes_list.value.append(_leaf(value, DT_STRING))
    elif isinstance(value, str):
        need("bytes_list")
        feature.bytes_list.value.append(rapidjson.utf8(value))
    elif isinstance(value, float):
        need("float_list")
        feature.float_list.value.append(value)
    else:
        need("int64_list")
        if value >= 2**63:
            raise SimError(Code.INVALID_ARGUMENT, f"Feature: {name} has uint64_t element. Only int64_t is supported.")
        feature.int64_list.value.append(value)


def _example(protos: Any, value: Any, target: Any) -> None:
    """`MakeExampleFromJsonObject`."""
    if not isinstance(value, dict):
        raise SimError(Code.INVALID_ARGUMENT, f"Example must be JSON object but got JSON {_json_type(value)}")
    for name, content in rapidjson.members(value):  # every member, a repeated key's last wins
        feature = protos.feature.Feature()
        for item in content if isinstance(content, list) else [content]:
            _feature_value(protos, feature, name, item)
        target.features.feature[name].CopyFrom(feature)


def input_from_json(protos: Any, doc: dict) -> Any:
    """`FillClassifyRegressRequestFromJson`: the `Input` of a classify/regress body."""
    request_input = protos.input.Input()
    has_context = "context" in doc
    if has_context:
        _example(protos, doc["context"], request_input.example_list_with_context.context)
    examples = doc.get("examples")
    if "examples" not in doc:
        raise _format_error(doc, "When method is classify, key 'examples' is expected and was not found")
    if not isinstance(examples, list):
        raise _format_error(doc, "Expecting 'examples' value to be an list/array")
    if not examples:
        raise _format_error(doc, "'examples' value is an empty array")
    for value in examples:
        target = (
            request_input.example_list_with_context.examples.add()
            if has_context
            else request_input.example_list.examples.add()
        )
        _example(protos, value, target)
    return request_input


def _decode_arg(text: str) -> str:
    """`DecodeArg` (`curl_easy_unescape`): %XX escapes only, `+` stays; bytes kept as they decode."""
    return urllib.parse.unquote_to_bytes(text).decode("utf-8", "surrogateescape")


CORS_HEADERS = {  # http_rest_api_util.cc:AddCORSHeaders
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, GET",
    "Access-Control-Allow-Headers": "Content-Type",
}


class RestApi(Transport):
    """aiohttp handlers over a SimService."""

    def __init__(
        self,
        service: SimService,
        latency_s: float,
        prometheus_path: str | None,
        timeout_s: float | None = None,
        cors: bool = False,
    ) -> None:
        super().__init__(service, latency_s)
        self.prometheus_path = prometheus_path
        self.timeout_s = timeout_s
        self.cors = cors

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """`EvHTTPServer::DispatchEvRequest`: the exact Prometheus handler, else the `/v1/` dispatcher."""
        target = request.raw_path  # uri_path(): the path with its query string, as sent
        if not evhttp.uri_ok(target):
            return evhttp.error_page(400)
        if self.prometheus_path is not None and evhttp.path_of(target) == self.prometheus_path:
            return self._prometheus(target)
        if not _V1.fullmatch(target):
            return evhttp.error_page(404)
        start = time.perf_counter()
        if request.method == "OPTIONS":  # the handler is not called: no headers, no body
            origin = request.headers.get("Origin", "")
            status = Code.OK if re.search(r"https?://", origin) else Code.FAILED_PRECONDITION
            model_name, api, output = "", "", b""
            headers = {"Content-Type": evhttp.DEFAULT_CONTENT_TYPE}
        else:
            body = await request.read()
            with self.service.core.request():  # the servable handles this request holds
                model_name, api, status, text = await self.process(request.method, target, body)
            output = rapidjson.utf8(text)
            headers = {"Content-Type": "application/json"}
        if self.cors:
            headers.update(CORS_HEADERS)
        if status == Code.OK:
            self.service.core.stock.request_latency(model_name, api, "REST", (time.perf_counter() - start) * 1e6)
        self.service.core.count_request(model_name, status)
        http = 200 if status == Code.OK else SimError(status, "").http_status
        return web.Response(status=http, body=output, headers=headers)

    def _prometheus(self, target: str) -> web.Response:
        """`http_server.cc:ProcessPrometheusRequest`: the page, or 400 when a query string came along."""
        headers = {"Content-Type": "text/plain"}
        if target != self.prometheus_path:
            text = f"Unexpected path: {target}. Should be {self.prometheus_path}"
            return web.Response(status=400, body=text.encode(), headers=headers)
        page = exposition.render(self.service.core.families())
        return web.Response(body=page.encode(), headers=headers)

    async def process(self, method: str, path: str, body: bytes) -> tuple[str, str, Code, str]:
        """`HttpRestApiHandler::ProcessRequest`: (model name, method for the latency metric, status, body).

        `path` is the uri_path with its query string. A version too big for int64 fails in
        `ParseModelInfo`, which returns before `MakeJsonFromStatus`: that 400 has an empty body.
        """
        model_name = ""
        verb = ""
        try:
            match = None
            if method == "POST":
                match = _PREDICTION.fullmatch(path)
            elif method == "GET":
                match = _STATUS.fullmatch(path)
            name, version_str, label, verb = match.groups("") if match else ("", "", "", "")
            model_name = _decode_arg(name)
            version = None
            if version_str:
                version = int(version_str)
                if version >= 2**63:
                    return model_name, "", Code.INVALID_ARGUMENT, ""
            label_value = _decode_arg(label) if label else None
            spec = Spec(model_name, version, label_value)
            if match and method == "POST" and verb in ("predict", "classify", "regress"):
                output = await getattr(self, f"_{verb}")(spec, body)
            elif match and method == "GET":
                output = self._metadata(spec) if verb == "metadata" else self._status(spec)
            else:
                raise SimError(Code.INVALID_ARGUMENT, f"Malformed request: {method} {path}")
            return model_name, verb if method == "POST" else "", Code.OK, output
        except SimError as e:
            return model_name, "", e.code, tfjson.error_body(e.message)
        except Exception as e:  # a bug in the sim: answer like TF Serving's INTERNAL, say what broke
            traceback.print_exc(file=sys.stderr)
            return model_name, "", Code.INTERNAL, tfjson.error_body(f"sim internal error: {type(e).__name__}: {e}")

    async def _predict(self, spec: Spec, body: bytes) -> str:
        doc = parse_json(body)
        signature_name = _signature_name(doc)
        spec = Spec(spec.name, spec.version, spec.label, signature_name)
        resolved = self.service.resolve(spec)  # GetInfoMap resolves the model before reading the tensors
        key = signature_name or half_plus_two.DEFAULT_SIGNATURE
        sig = self.service.model(resolved).signatures.get(key)
        if sig is None:
            raise SimError(Code.INVALID_ARGUMENT, f'Serving signature name: "{key}" not found in signature def')
        infos = dict(sig.inputs)
        check_bool = b"true" in body or b"false" in body
        if "instances" in doc:
            if "inputs" in doc:
                raise _format_error(
                    doc, "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist "
                )
            instances = doc["instances"]
            if not isinstance(instances, list):
                raise _format_error(doc, "Expecting 'instances' to be an list/array")
            if not instances:
                raise _format_error(doc, "No values in 'instances' array")
            tensors, row = tensors_from_instances(instances, infos, check_bool), True
        elif "inputs" in doc:
            tensors, row = tensors_from_inputs(doc["inputs"], infos, check_bool), False
        else:
            raise SimError(Code.INVALID_ARGUMENT, "Missing 'inputs' or 'instances' key")
        result = self.service.predict(spec, tensors)
        await self._model_time(spec.name, "Predict", self.timeout_s)
        try:
            return tfjson.predict_response(result.values, row_format=row)
        except ValueError as e:
            raise SimError(Code.INVALID_ARGUMENT, str(e)) from None

    async def _classify(self, spec: Spec, body: bytes) -> str:
        doc = parse_json(body)
        spec = Spec(spec.name, spec.version, spec.label, _signature_name(doc))
        result = self.service.classify(spec, input_from_json(self.protos, doc))
        await self._model_time(spec.name, "Classify", self.timeout_s)
        return tfjson.classify_response(result.values)

    async def _regress(self, spec: Spec, body: bytes) -> str:
        doc = parse_json(body)
        spec = Spec(spec.name, spec.version, spec.label, _signature_name(doc))
        result = self.service.regress(spec, input_from_json(self.protos, doc))
        await self._model_time(spec.name, "Regress", self.timeout_s)
        return tfjson.regress_response(result.values)

    def _status(self, spec: Spec) -> str:
        if not spec.name:
            raise SimError(Code.INVALID_ARGUMENT, "Missing model name in request.")
        from tfs_traffic.sim.grpc_api import model_status_response

        return tfjson.proto_json(model_status_response(self.protos, self.service, spec))

    def _metadata(self, spec: Spec) -> str:
        if not spec.name:
            raise SimError(Code.INVALID_ARGUMENT, "Missing model name in request.")
        resolved, _ = self.service.metadata(spec, ["signature_def"])
        model_spec = {"name": resolved.name, "signature_name": "", "version": str(resolved.version)}
        return tfjson.metadata_response(model_spec, half_plus_two.signature_def_map_json(self.service.model(resolved)))


def make_app(
    service: SimService,
    latency_s: float,
    prometheus_path: str | None,
    timeout_s: float | None = None,
    cors: bool = False,
) -> web.Application:
    """The aiohttp application: every path goes to one dispatcher, as TF Serving's does."""
    api = RestApi(service, latency_s, prometheus_path, timeout_s, cors)
    app = web.Application(client_max_size=512 * 1024 * 1024)
    app.on_response_prepare.append(evhttp.drop_server_header)
    app.router.add_route("*", "/{tail:.*}", api.handle)
    return app
