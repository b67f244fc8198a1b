"""`tfs-traffic sim`: run the stand-in TF Serving (gRPC, REST, Prometheus page) in the foreground."""

import argparse

from tfs_traffic.commands import Subcommands, add_command

DESCRIPTION = """\
Serve a stand-in TF Serving from a TF Serving model config file, for tests, benchmarks and demos
where a real tensorflow_model_server cannot run.

Every version of every model is TF Serving's half_plus_two test model (y = 0.5x + 2; signatures
serving_default, regress_x_to_y, classify_x_to_y). Versions are the numeric directories under each
model's base_path, chosen by its version policy and re-read every --poll-interval. It speaks TF
Serving's gRPC API (PredictionService, ModelService) and REST API with the same URLs, JSON, error
codes and messages, and serves /monitoring/prometheus/metrics on the REST address carrying the
patched per-version metrics (:tensorflow:serving:model_call_count, ..._version_available).

Version labels follow TF Serving's rules (ServerCore::UpdateModelVersionLabelMap): every label must
point at a loaded (AVAILABLE) version, so a startup config with labels is refused, with TF Serving's
message and exit status 255, unless --allow_version_labels_for_unavailable_models is given; a reload
that moves a label to a version that is not loaded is refused and the previous labels stay.

It takes tensorflow_model_server's own flags as a Kubernetes Deployment passes them (--port,
--rest_api_port, --model_config_file, --monitoring_config_file, ...), so rendered args can be run
as they are.

Once both ports are bound it prints one line, `grpc=HOST:PORT rest=HOST:PORT` (useful with port 0),
and it stops cleanly on SIGTERM or SIGINT.
"""

EPILOG = """\
examples:
  tfs-traffic sim --models-config models.config
  tfs-traffic sim --models-config models.config --grpc-addr 127.0.0.1:0 --rest-addr 127.0.0.1:0
  tfs-traffic sim --models-config models.config --latency-ms 2 --poll-interval 5s

  curl -d '{"instances": [1.0, 2.0, 5.0]}' http://127.0.0.1:8501/v1/models/half_plus_two:predict
  curl http://127.0.0.1:8501/monitoring/prometheus/metrics
"""


def register(subparsers: Subcommands) -> None:
    parser = add_command(
        subparsers,
        "sim",
        run=run,
        help="run a stand-in TF Serving (gRPC + REST + patched metrics) for tests and demos",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    parser.add_argument("--models-config", metavar="FILE", help="TF Serving model config (text)")
    parser.add_argument("--grpc-addr", metavar="HOST:PORT", help="gRPC address (port 0: any; default 127.0.0.1:8500)")
    parser.add_argument("--rest-addr", metavar="HOST:PORT", help="REST address (port 0: any; default 127.0.0.1:8501)")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, metavar="N", help="model time per inference request (default 0)"
    )
    parser.add_argument(
        "--poll-interval",
        default=None,
        metavar="DURATION",
        help="how often to re-read version directories, like --file_system_poll_wait_seconds (default 1s)",
    )
    parser.add_argument(
        "--config-poll-interval",
        default=None,
        metavar="DURATION",
        help="also re-read the model config file this often, like --model_config_file_poll_wait_seconds",
    )
    tf = parser.add_argument_group(
        "tensorflow_model_server's flags",
        "as a Deployment passes them (main.cc); --port and --rest_api_port listen on every interface "
        "as TF Serving does, and REST stays off without --rest_api_port. The flags above win.",
    )
    tf.add_argument("--model_config_file", metavar="FILE", help="same as --models-config")
    tf.add_argument("--port", type=int, metavar="N", help="gRPC port (0.0.0.0:N)")
    tf.add_argument("--rest_api_port", type=int, metavar="N", help="REST port (0.0.0.0:N; 0: no REST)")
    tf.add_argument("--model_config_file_poll_wait_seconds", type=int, metavar="N", help="config re-read period")
    tf.add_argument("--file_system_poll_wait_seconds", type=int, metavar="N", help="version directory re-read period")
    tf.add_argument("--monitoring_config_file", metavar="FILE", help="MonitoringConfig: where the metrics page is")
    for flag, what in (
        ("allow_version_labels_for_unavailable_models", "labels may point at versions not loaded yet"),
        ("enable_grpc_healthcheck_service", "serve grpc.health.v1.Health/Check"),
    ):
        tf.add_argument(f"--{flag}", type=_tf_bool, nargs="?", const=True, default=False, metavar="BOOL", help=what)


def _tf_bool(text: str) -> bool:
    """A tensorflow::Flags bool: `--flag`, `--flag=true|false|1|0`."""
    value = {"true": True, "1": True, "false": False, "0": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from tfs_traffic.durations import parse_duration
    from tfs_traffic.errors import UsageError
    from tfs_traffic.sim.server import DEFAULT_GRPC, DEFAULT_REST, PROMETHEUS_PATH, Sim, monitoring_path, run_forever

    if args.latency_ms < 0:
        raise UsageError("--latency-ms must not be negative")
    models_config = args.models_config or args.model_config_file
    if not models_config:
        raise UsageError("give --models-config FILE (or TF Serving's --model_config_file=FILE)")
    tf_style = args.port is not None or args.rest_api_port is not None
    grpc_addr = args.grpc_addr or (f"0.0.0.0:{args.port}" if args.port is not None else DEFAULT_GRPC)
    rest_addr = args.rest_addr or (
        (f"0.0.0.0:{args.rest_api_port}" if args.rest_api_port else None) if tf_style else DEFAULT_REST
    )
    if args.poll_interval is not None:
        poll_seconds = parse_duration(args.poll_interval)
    else:
        poll_seconds = float(
            args.file_system_poll_wait_seconds if args.file_system_poll_wait_seconds is not None else 1
        )
    if args.config_poll_interval is not None:
        config_poll_seconds = parse_duration(args.config_poll_interval)
    else:
        config_poll_seconds = float(args.model_config_file_poll_wait_seconds or 0)
    prometheus_path = monitoring_path(args.monitoring_config_file) if args.monitoring_config_file else PROMETHEUS_PATH
    sim = Sim(
        models_config,
        grpc_addr=grpc_addr,
        rest_addr=rest_addr,
        latency_ms=args.latency_ms,
        poll_seconds=poll_seconds,
        config_poll_seconds=config_poll_seconds,
        light_protos=True,
        allow_labels_for_unavailable=args.allow_version_labels_for_unavailable_models,
        prometheus_path=prometheus_path,
        grpc_health=args.enable_grpc_healthcheck_service,
    )
    return run_forever(sim, lambda line: print(line, flush=True))
