"""`tensorflow_model_server` 2.20's command-line flags, parsed the way its flag parser parses them.

`model_servers/main.cc` declares its flags as a `tensorflow::Flag` list and hands them to
`tensorflow::Flags::Parse` (`xla/tsl/util/command_line_flags.cc`), whose rules a client can see:

- a flag is `--name=value` only (`--port 8500` is two unknown arguments, not a port); a bool may
  also be `--name` alone, and takes `true`/`false` (any case), `1` or `0`;
- numbers go through `sscanf("%d%c")` (`%ld` for int64, `%f` for float): leading blanks and a sign
  are fine, anything after the number is not; glibc's scanf neither checks the range of `%d`
  (a too large value wraps) nor reports a `long` overflow (it saturates);
- a value that does not parse logs `Couldn't interpret value V for flag F.`, prints the usage on
  stdout and the server exits with -1 (status 255); so does `--help`;
- an argument that is no flag is kept; `main` then prints `unknown argument: ARG` and the usage on
  stdout **and starts anyway** (`main.cc` has no `return` there). Everything after `--` is kept.

The table below holds each flag's name, type and default as `main.cc` and `server.h` declare them,
and what the stand-in does with it (`SIM_EFFECTS`); the usage text is ours, in `Flags::Usage`'s
layout. `tfs-traffic sim --help` lists the same table.
"""

import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

FlagType = Literal["int32", "int64", "bool", "string", "float"]

_CPUS = os.cpu_count() or 1


@dataclass(frozen=True)
class Flag:
    name: str
    type: FlagType
    default: int | bool | str | float
    used: bool  # False: accepted, no effect a client can tell in the stand-in
    what: str  # what the stand-in does with it (or why it does nothing)


# In main.cc's order (the usage lists them in that order and the parser tries them in that order).
FLAGS: tuple[Flag, ...] = (
    Flag("port", "int32", 8500, True, "gRPC port on 0.0.0.0; 0: no TCP gRPC (then --grpc_socket_path is needed)"),
    Flag("grpc_socket_path", "string", "", True, "also serve gRPC on this UNIX socket"),
    Flag("rest_api_port", "int32", 0, True, "REST port on 0.0.0.0; 0: no REST; equal to --port: no REST"),
    Flag("rest_api_num_threads", "int32", 4 * _CPUS, False, "ignored: one event loop serves REST"),
    Flag("rest_api_timeout_in_ms", "int32", 30000, True, "REST inference longer than this: 504, DEADLINE_EXCEEDED"),
    Flag("rest_api_enable_cors_support", "bool", False, True, "add TF Serving's three CORS headers to /v1/ answers"),
    Flag("enable_batching", "bool", False, False, "ignored: no batching; --batching_parameters_file needs it"),
    Flag(
        "allow_version_labels_for_unavailable_models",
        "bool",
        False,
        True,
        "a new label (or one keeping its version) may name a version that is not AVAILABLE",
    ),
    Flag("batching_parameters_file", "string", "", False, "ignored: not read; refused without --enable_batching"),
    Flag("enable_per_model_batching_parameters", "bool", False, False, "ignored: no batching"),
    Flag(
        "model_config_file",
        "string",
        "",
        True,
        "the ModelServerConfig to serve (--model_name/--model_base_path: ignored)",
    ),
    Flag(
        "model_config_file_poll_wait_seconds",
        "int32",
        0,
        True,
        "re-read and re-apply the config file this often; 0: read once at start",
    ),
    Flag("model_name", "string", "default", True, "single-model config: the model's name"),
    Flag("model_base_path", "string", "", True, "single-model config: the model's base path"),
    Flag("num_load_threads", "int32", 0, False, "ignored: a load takes no time"),
    Flag(
        "num_unload_threads",
        "int32",
        0,
        False,
        "ignored: an unload takes no time (its wait for requests holds the manager)",
    ),
    Flag("max_num_load_retries", "int32", 5, False, "ignored: loads do not fail"),
    Flag("load_retry_interval_micros", "int64", 60 * 1000 * 1000, False, "ignored: loads do not fail"),
    Flag(
        "file_system_poll_wait_seconds",
        "int32",
        1,
        True,
        "look for version directories this often; 0: once at start; negative: never",
    ),
    Flag("flush_filesystem_caches", "bool", True, False, "ignored: nothing is cached"),
    Flag(
        "tensorflow_session_parallelism",
        "int64",
        0,
        False,
        "ignored: no TensorFlow session (all three parallelism flags > 0: refused)",
    ),
    Flag("tensorflow_session_config_file", "string", "", False, "ignored: no TensorFlow session"),
    Flag("tensorflow_intra_op_parallelism", "int64", 0, False, "ignored: no TensorFlow session"),
    Flag("tensorflow_inter_op_parallelism", "int64", 0, False, "ignored: no TensorFlow session"),
    Flag(
        "use_alts_credentials",
        "bool",
        False,
        False,
        "ignored: ALTS only works on Google Cloud (with --ssl_config_file: refused)",
    ),
    Flag("ssl_config_file", "string", "", True, "SSLConfig: serve gRPC over TLS with this key and certificate"),
    Flag("platform_config_file", "string", "", False, "ignored: every model is the stand-in's"),
    Flag("per_process_gpu_memory_fraction", "float", 0.0, False, "ignored: no GPU"),
    Flag("saved_model_tags", "string", "serve", False, "ignored: no SavedModel is read"),
    Flag(
        "grpc_channel_arguments", "string", "", True, "KEY=VALUE,... passed to the gRPC server (integers as integers)"
    ),
    Flag("grpc_max_threads", "int32", 4 * _CPUS, False, "ignored: one event loop serves gRPC"),
    Flag("enable_model_warmup", "bool", True, False, "ignored: no warm-up records are replayed"),
    Flag("num_request_iterations_for_warmup", "int32", 0, False, "ignored: no warm-up"),
    Flag("version", "bool", False, True, "print the versions and exit"),
    Flag("monitoring_config_file", "string", "", True, "MonitoringConfig: whether and where the Prometheus page is"),
    Flag("remove_unused_fields_from_bundle_metagraph", "bool", True, False, "ignored: no MetaGraphDef"),
    Flag("prefer_tflite_model", "bool", False, False, "ignored: TFLite model content is out of scope"),
    Flag("num_tflite_pools", "int32", _CPUS, False, "ignored: no TFLite"),
    Flag("num_tflite_interpreters_per_pool", "int32", 1, False, "ignored: no TFLite"),
    Flag(
        "enable_signature_method_name_check",
        "bool",
        False,
        False,
        "ignored: NOT followed - Classify/Regress skip the method-name check (half_plus_two.py)",
    ),
    Flag("xla_cpu_compilation_enabled", "bool", False, False, "ignored: no XLA"),
    Flag("xla_gpu_compilation_enabled", "bool", False, False, "ignored: no XLA"),
    Flag("enable_profiler", "bool", True, False, "ignored: the TF profiler service is out of scope"),
    Flag("thread_pool_factory_config_file", "string", "", False, "ignored: no inter/intra-op thread pools"),
    Flag("mixed_precision", "string", "", False, "ignored: no TensorFlow graph"),
    Flag("skip_initialize_tpu", "bool", False, False, "ignored: no TPU"),
    Flag("enable_grpc_healthcheck_service", "bool", False, True, "serve grpc.health.v1.Health/Check"),
    Flag(
        "enable_serialization_as_tensor_content",
        "bool",
        False,
        True,
        "Predict answers carry tensor_content instead of float_val",
    ),
)

BY_NAME = {flag.name: flag for flag in FLAGS}

_INT32 = 2**31
_INT64 = 2**63
# sscanf's %d / %ld: optional blanks and sign, then digits (glibc reads "0x" as 0 and stops at "x").
_DECIMAL = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")
_FLOAT = re.compile(  # %f: decimal, hex (glibc's strtod), inf, infinity, nan, nan(...)
    r"[ \t\n\v\f\r]*([+-]?)(0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?"
    r"|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf(?:inity)?|nan(?:\([0-9A-Za-z_]*\))?)",
    re.IGNORECASE,
)


@dataclass
class Parsed:
    """What `Flags::Parse` left: the values set, the arguments it did not know, and its verdict."""

    values: dict[str, int | bool | str | float]
    unknown: list[str]
    bad_values: list[tuple[str, str]]  # (value, flag) that did not parse

    @property
    def ok(self) -> bool:
        """`Flags::Parse`'s result: every value parsed and the first unknown argument is not `--help`."""
        return not self.bad_values and (not self.unknown or self.unknown[0] != "--help")

    def get(self, name: str) -> int | bool | str | float:
        return self.values.get(name, BY_NAME[name].default)

    def given(self, name: str) -> bool:
        return name in self.values


def _scan_int(text: str, bits: int) -> int | None:
    """`sscanf(text, "%d%c")` (or `%ld`) == 1: the value glibc stores, or None."""
    m = _DECIMAL.match(text)
    if not m or m.end() != len(text):
        return None
    value = max(-_INT64, min(_INT64 - 1, int(m.group(1))))  # strtol saturates
    if bits == 32:  # stored through an int*: the low 32 bits
        value = (value + _INT32) % (2 * _INT32) - _INT32
    return value


def _scan_float(text: str) -> float | None:
    """`sscanf(text, "%f%c")` == 1: the value, or None."""
    m = _FLOAT.match(text)
    if not m or m.end() != len(text):
        return None
    sign = -1.0 if m.group(1) == "-" else 1.0
    number = m.group(2).lower()
    if number.startswith("nan"):
        return math.nan
    if number.startswith("0x"):
        return sign * float.fromhex(number if "p" in number else number + "p0")
    return sign * float(number)


def _parse_one(flag: Flag, arg: str) -> tuple[bool, bool, int | bool | str | float | None]:
    """`Flag::Parse`: (found, value parsed, value) for one argument."""
    prefix = "--" + flag.name
    if not arg.startswith(prefix):
        return False, True, None
    rest = arg[len(prefix) :]
    if flag.type == "bool":
        if rest == "":
            return True, True, True
        if not rest.startswith("="):
            return False, True, None  # probably another flag that starts with this one's name
        value = rest[1:]
        if value.lower() == "true" or value == "1":
            return True, True, True
        if value.lower() == "false" or value == "0":
            return True, True, False
        return True, False, None
    if not rest.startswith("="):
        return False, True, None
    value = rest[1:]
    if flag.type == "string":
        return True, True, value
    parsed = _scan_float(value) if flag.type == "float" else _scan_int(value, 32 if flag.type == "int32" else 64)
    return True, parsed is not None, parsed


def parse(args: Sequence[str]) -> Parsed:
    """`Flags::Parse` over the arguments after the program name."""
    values: dict[str, int | bool | str | float] = {}
    unknown: list[str] = []
    bad: list[tuple[str, str]] = []
    for index, arg in enumerate(args):
        if arg == "--":
            unknown.extend(args[index:])
            break
        for flag in FLAGS:
            found, ok, value = _parse_one(flag, arg)
            if not found:
                continue
            if ok and value is not None:
                values[flag.name] = value
            elif not ok:
                bad.append((arg[len(flag.name) + 3 :], flag.name))
            break
        else:
            unknown.append(arg)
    return Parsed(values, unknown, bad)


def _display(flag: Flag) -> str:
    """The `--name=default` column of `Flags::Usage`."""
    if flag.type == "bool":
        return f"--{flag.name}={'true' if flag.default else 'false'}"
    if flag.type == "string":
        return f'--{flag.name}="{flag.default}"'
    if flag.type == "float":
        return f"--{flag.name}={float(flag.default):f}"
    return f"--{flag.name}={flag.default}"


def usage(program: str | None = None) -> str:
    """`Flags::Usage(argv[0], flag_list)`'s layout, with the stand-in's description of each flag."""
    lines = [f"usage: {program if program is not None else sys.argv[0]}", "Flags:"]
    lines += [f"\t{_display(flag):<33}\t{flag.type}\t{flag.what}" for flag in FLAGS]
    return "\n".join(lines) + "\n"


def help_table() -> str:
    """The flags for `tfs-traffic sim --help`: those the stand-in follows, then those it ignores."""
    used = [f for f in FLAGS if f.used]
    ignored = [f for f in FLAGS if not f.used]
    width = max(len(_display(f)) for f in FLAGS)
    out = ["followed:"]
    out += [f"  {_display(f):<{width}}  {f.what}" for f in used]
    out += ["accepted, no effect in the stand-in:"]
    out += [f"  {_display(f):<{width}}  {f.what.removeprefix('ignored: ')}" for f in ignored]
    return "\n".join(out)
