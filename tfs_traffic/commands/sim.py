"""`tfs-traffic sim`: run the stand-in TF Serving (gRPC, REST, Prometheus page) in the foreground."""

import argparse
import re
from typing import Any

from tfs_traffic.commands import Subcommands, add_command
from tfs_traffic.sim import flags

DESCRIPTION = """\
Serve a stand-in TF Serving 2.20 for tests, benchmarks and demos where a real
tensorflow_model_server cannot run.

Every version of every model is TF Serving's half_plus_two test model (its five signatures), or
half_plus_three when the base path's last directory is half_plus_three or
saved_model_half_plus_three, as in TF Serving's testdata. Versions are the numeric
directories under each model's base_path, chosen by its version policy and looked for every
--poll-interval. It speaks TF Serving's gRPC API (PredictionService, ModelService) and REST API
with the same URLs, JSON, error codes and messages, and serves /monitoring/prometheus/metrics on
the REST address carrying the patched per-version metrics (:tensorflow:serving:model_call_count,
..._version_available).

It goes through a config change as TF Serving does: HandleReloadConfigRequest (and the config-file
poll) stores the new config, checks its labels (each must name an AVAILABLE version unless
--allow_version_labels_for_unavailable_models), waits only for model names that are new, and
returns before versions of other models change; those change at the next file-system poll, one
load or unload at a time. An unload lets the requests already running finish; new requests for the
version are NOT_FOUND; GetModelStatus keeps listing it as END.

It takes every flag of tensorflow_model_server 2.20 (model_servers/main.cc), parsed as TF Serving
parses them: --flag=value (a bool also --flag); a value that does not parse prints the usage and
exits 255; an argument it does not know prints `unknown argument: ARG` and the usage on stdout and
the server starts anyway. `--model_name=m --model_base_path=/models/m` serves one model, as the
official Docker image starts TF Serving. Startup errors are TF Serving's: `Failed to start server.
Error: ...` on stdout, exit status 255 (a config file protobuf's text-format parser refuses logs
`Error parsing text-format tensorflow.serving.ModelServerConfig: LINE:COL: ...` first). A model
whose base path is missing is waited for, as TF Serving waits, logging each poll.

Once it serves it prints one line, `grpc=HOST:PORT rest=HOST:PORT` (useful with port 0; also
`unix=PATH` with --grpc_socket_path), and it stops cleanly on SIGTERM or SIGINT.
"""

EPILOG_HEAD = """\
examples:
  tfs-traffic sim --models-config models.config
  tfs-traffic sim --models-config models.config --grpc-addr 127.0.0.1:0 --rest-addr 127.0.0.1:0
  tfs-traffic sim --port=8500 --rest_api_port=8501 --model_name=m --model_base_path=/models/m
  tfs-traffic sim --model_config_file=/config/models.config --model_config_file_poll_wait_seconds=60

  curl -d '{"instances": [1.0, 2.0, 5.0]}' http://127.0.0.1:8501/v1/models/half_plus_two:predict
  curl http://127.0.0.1:8501/monitoring/prometheus/metrics

tensorflow_model_server's flags (--flag=value; the sim's own flags above win where both set a thing;
with --port or --rest_api_port, or without --models-config, addresses are TF Serving's: gRPC on
0.0.0.0:--port, REST only with --rest_api_port):
"""

VERSION_LINES = "TensorFlow ModelServer: 2.20.0\nTensorFlow Library: 2.20.0"  # without build metadata


def register(subparsers: Subcommands) -> None:
    parser = add_command(
        subparsers,
        "sim",
        run=run,
        help="run a stand-in TF Serving (gRPC + REST + patched metrics) for tests and demos",
        description=DESCRIPTION,
        epilog=EPILOG_HEAD + flags.help_table(),
    )
    parser.allow_abbrev = False  # a TF Serving flag must never be taken for the start of one of these
    parser.set_defaults(takes_extra_args=True)
    parser.add_argument("--models-config", metavar="FILE", help="TF Serving model config (text); --model_config_file")
    parser.add_argument("--grpc-addr", metavar="HOST:PORT", help="gRPC address (port 0: any; default 127.0.0.1:8500)")
    parser.add_argument("--rest-addr", metavar="HOST:PORT", help="REST address (port 0: any; default 127.0.0.1:8501)")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, metavar="N", help="model time per inference request (default 0)"
    )
    parser.add_argument(
        "--poll-interval",
        default=None,
        metavar="DURATION",
        help="how often to look for version directories; --file_system_poll_wait_seconds (default 1s)",
    )
    parser.add_argument(
        "--config-poll-interval",
        default=None,
        metavar="DURATION",
        help="also re-read and re-apply the model config file this often; --model_config_file_poll_wait_seconds",
    )


def run(args: argparse.Namespace) -> int:
    import os
    import sys

    from tfs_traffic.durations import parse_duration
    from tfs_traffic.errors import UsageError
    from tfs_traffic.sim import tflog
    from tfs_traffic.sim.core import SimFatal
    from tfs_traffic.sim.server import StartupError, run_forever

    if args.latency_ms < 0:
        raise UsageError("--latency-ms must not be negative")
    parsed = flags.parse(getattr(args, "extra_args", []))
    for value, name in parsed.bad_values:
        tflog.to_stderr("E", f"Couldn't interpret value {value} for flag {name}.")
    if not parsed.ok:  # main.cc: the usage on stdout, return -1
        print(flags.usage(), end="", flush=True)
        return 255
    if parsed.get("version"):
        print(VERSION_LINES, flush=True)
        return 0
    if parsed.unknown:  # main.cc prints this and starts anyway
        print(f"unknown argument: {parsed.unknown[0]}\n{flags.usage()}", end="", flush=True)
    poll_seconds = (
        parse_duration(args.poll_interval)
        if args.poll_interval is not None
        else float(parsed.get("file_system_poll_wait_seconds"))
    )
    config_poll_seconds = (
        parse_duration(args.config_poll_interval)
        if args.config_poll_interval is not None
        else float(parsed.get("model_config_file_poll_wait_seconds"))
    )
    try:
        sim = _build(args, parsed, poll_seconds, config_poll_seconds)
        return run_forever(sim, lambda line: print(line, flush=True))
    except StartupError as e:
        print(e, flush=True)
        return 255
    except SimFatal as e:  # LOG(FATAL): the message, then abort()
        tflog.to_stderr("F", str(e))
        sys.stderr.flush()
        os.abort()


def _build(args: argparse.Namespace, parsed: flags.Parsed, poll_seconds: float, config_poll_seconds: float) -> Any:
    """`Server::BuildAndStart`'s checks, in its order, then the Sim."""
    from tfs_traffic.sim import protofile, tflog
    from tfs_traffic.sim.core import SimFatal
    from tfs_traffic.sim.errors import Code, SimError
    from tfs_traffic.sim.server import (
        DEFAULT_GRPC,
        DEFAULT_REST,
        PROMETHEUS_PATH,
        Sim,
        StartupError,
        model_server_config_class,
        monitoring_path,
    )

    get = parsed.get

    def refuse(message: str) -> StartupError:
        return StartupError(SimError(Code.INVALID_ARGUMENT, message))

    tf_style = args.models_config is None or parsed.given("port") or parsed.given("rest_api_port")
    port = int(get("port"))
    if args.grpc_addr:
        grpc_addr: str | None = args.grpc_addr
    elif tf_style:
        grpc_addr = f"0.0.0.0:{port}" if port != 0 else None
    else:
        grpc_addr = DEFAULT_GRPC
    socket_path = str(get("grpc_socket_path")) or None
    if grpc_addr is None and socket_path is None:
        raise refuse("At least one of server_options.grpc_port or server_options.grpc_socket_path must be set.")
    if get("use_alts_credentials") and get("ssl_config_file"):
        raise refuse("Either use_alts_credentials must be false or ssl_config_file must be empty.")
    models_config = args.models_config or str(get("model_config_file")) or None
    if models_config is None and not get("model_base_path"):
        raise refuse("Both server_options.model_base_path and server_options.model_config_file are empty!")
    config = None
    if models_config is not None:
        try:
            config = protofile.parse_proto_text_file(models_config, model_server_config_class(), tflog.to_stderr)
        except SimError as e:
            raise StartupError(e) from None
    if not get("platform_config_file"):
        if not get("enable_batching") and get("batching_parameters_file"):
            raise refuse(
                "server_options.batching_parameters_file is set without setting server_options.enable_batching to true."
            )
        parallelism = ("tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism")
        if all(int(get(p)) > 0 for p in (*parallelism, "tensorflow_session_parallelism")):
            raise refuse(
                "Either configure server_options.tensorflow_session_parallelism or "
                "(server_options.tensorflow_intra_op_parallelism, server_options.tensorflow_inter_op_parallelism) "
                "separately. You cannot configure all."
            )
    rest_port = int(get("rest_api_port"))
    if args.rest_addr:
        rest_addr: str | None = args.rest_addr
    elif not tf_style:
        rest_addr = DEFAULT_REST
    elif rest_port == 0:
        rest_addr = None
    elif rest_port == port:
        tflog.to_stderr(
            "E",
            "server_options.http_port cannot be same as grpc_port. Please use a different port for HTTP/REST API. "
            "Skipped exporting HTTP/REST API.",
        )
        rest_addr = None
    else:
        rest_addr = f"0.0.0.0:{rest_port}"
    ssl_config = None
    if get("ssl_config_file"):
        try:
            ssl_config = protofile.parse_proto_text_file(
                str(get("ssl_config_file")), protofile.message_class("SSLConfig"), tflog.to_stderr
            )
        except SimError as e:  # CHECK_OK: a crash
            raise SimFatal(f"Check failed: ParseProtoTextFile<SSLConfig>: {e.code.name}: {e.message}") from None
    sim = Sim(
        models_config,
        config=config,
        grpc_addr=grpc_addr,
        rest_addr=rest_addr,
        latency_ms=args.latency_ms,
        poll_seconds=poll_seconds,
        config_poll_seconds=config_poll_seconds,
        light_protos=True,
        allow_labels_for_unavailable=bool(get("allow_version_labels_for_unavailable_models")),
        prometheus_path=PROMETHEUS_PATH,
        grpc_health=bool(get("enable_grpc_healthcheck_service")),
        model_name=str(get("model_name")),
        model_base_path=str(get("model_base_path")) or None,
        grpc_socket_path=socket_path,
        rest_timeout_ms=int(get("rest_api_timeout_in_ms")),
        cors=bool(get("rest_api_enable_cors_support")),
        tensor_content=bool(get("enable_serialization_as_tensor_content")),
        grpc_channel_args=_channel_args(str(get("grpc_channel_arguments"))),
        ssl_config=ssl_config,
    )
    if rest_addr is not None and get("monitoring_config_file"):  # read only when REST is on, as TF Serving does
        sim.prometheus_path = monitoring_path(str(get("monitoring_config_file")))
    return sim


def _channel_args(text: str) -> list[tuple[str, int | str]]:
    """`parseGrpcChannelArgs`: `KEY=VALUE` pairs split on `,`; a value `absl::SimpleAtoi` reads as an
    int32 is passed as one."""
    out: list[tuple[str, int | str]] = []
    for item in text.split(","):
        parts = item.split("=")
        if len(parts) < 2:  # TF Serving reads past its vector here; nothing sensible to pass on
            continue
        key, value = parts[0], parts[1]
        m = re.fullmatch(r"\s*([+-]?[0-9]+)\s*", value)
        number = int(m.group(1)) if m else None
        out.append((key, number) if number is not None and -(2**31) <= number < 2**31 else (key, value))
    return out
