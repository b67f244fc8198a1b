"""`tfs-traffic sidecar`: per-version traffic and availability for a stock TF Serving."""

import argparse

from tfs_traffic.commands import Subcommands, add_command
from tfs_traffic.contract import SIDECAR_PORT

DESCRIPTION = """\
Per-version metrics for a stock TF Serving, without rebuilding it.

The status poller reads model names and version labels from TF Serving's models config file
(re-read when it changes), asks the upstream's ModelService.GetModelStatus over gRPC for every
model, and exports tfserving_model_version_available and tfserving_sidecar_upstream_up. A model
the file drops is still followed while the server serves a version of it (TF Serving itself may
not re-read the file).

With --listen-grpc and/or --listen-rest it is also an observe-only relay: clients call the
sidecar, which forwards every byte to TF Serving and back unchanged (it never terminates gRPC),
reads HTTP/2 and HTTP/1.1 beside the copy, and counts each Predict, Classify, Regress and
MultiInference call under the version that served it: tfserving_model_calls_total and
tfserving_model_call_duration_seconds (bytes it cannot parse are still relayed and counted in
tfserving_sidecar_parse_errors_total).

TF Serving takes ModelService/HandleReloadConfigRequest, which replaces its models config, on the
port of Predict and from anyone. The gRPC relay refuses it from its clients (PERMISSION_DENIED,
never forwarded, counted in tfserving_sidecar_refused_calls_total) and closes connections it cannot
read (TLS), unless --allow-config-reload.
It needs grpcio, protobuf, prometheus-client, hpack and uvloop only: no TensorFlow.
"""

EPILOG = f"""\
examples:
  # status only, beside TF Serving in the same pod
  tfs-traffic sidecar --models-config /models/models.config --upstream-grpc 127.0.0.1:8500

  # relay: clients use :9500 (gRPC) and :9501 (REST) instead of :8500/:8501
  tfs-traffic sidecar --models-config /models/models.config \\
      --upstream-grpc 127.0.0.1:8500 --upstream-rest 127.0.0.1:8501 \\
      --listen-grpc 0.0.0.0:9500 --listen-rest 0.0.0.0:9501 --workers 2

Metrics are served on --metrics-addr (default :{SIDECAR_PORT}) at /metrics, summed over all workers.
Addresses are HOST:PORT, [IPV6]:PORT or :PORT (all interfaces).
"""


def register(subparsers: Subcommands) -> None:
    parser = add_command(
        subparsers,
        "sidecar",
        run=run,
        help="per-version call counts and availability for a stock TF Serving (status poller and proxy)",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    add_arguments(parser)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models-config", required=True, metavar="FILE", help="TF Serving's models config file")
    parser.add_argument("--upstream-grpc", required=True, metavar="HOST:PORT", help="TF Serving's gRPC address")
    parser.add_argument(
        "--upstream-rest", metavar="HOST:PORT", help="TF Serving's REST address (needed by --listen-rest)"
    )
    parser.add_argument("--listen-grpc", metavar="ADDR", help="proxy gRPC on this address")
    parser.add_argument("--listen-rest", metavar="ADDR", help="proxy REST on this address")
    parser.add_argument(
        "--metrics-addr", default=f":{SIDECAR_PORT}", metavar="ADDR", help="serve /metrics here (default: %(default)s)"
    )
    parser.add_argument(
        "--poll-interval", default="15s", metavar="DURATION", help="GetModelStatus interval (default: %(default)s)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, metavar="N", help="proxy processes sharing the listen ports (default: 1)"
    )
    parser.add_argument(
        "--count-delay",
        default="1s",
        metavar="DURATION",
        help="relayed bytes are parsed and counted in batches, at most this long after they passed: longer costs "
        "less CPU per call; a scrape always includes every call already answered (default: %(default)s)",
    )
    parser.add_argument(
        "--estimate-max-files",
        type=int,
        default=100_000,
        metavar="N",
        help="give up estimating a version's memory past this many files in its directory (default: %(default)s)",
    )
    parser.add_argument(
        "--estimate-timeout",
        default="30s",
        metavar="DURATION",
        help="give up estimating a version's memory after this long walking its directory (default: %(default)s)",
    )
    parser.add_argument(
        "--allow-config-reload",
        action="store_true",
        help="relay ModelService/HandleReloadConfigRequest from gRPC clients, and connections the relay cannot "
        "read (TLS), instead of refusing them",
    )
    parser.add_argument("--quiet", action="store_true", help="log warnings only")


def run(args: argparse.Namespace) -> int:
    import logging

    from tfs_traffic.durations import parse_duration
    from tfs_traffic.sidecar import main

    options = main.SidecarOptions(
        models_config=args.models_config,
        upstream_grpc=args.upstream_grpc,
        upstream_rest=args.upstream_rest,
        listen_grpc=args.listen_grpc,
        listen_rest=args.listen_rest,
        metrics_addr=args.metrics_addr,
        poll_interval=parse_duration(args.poll_interval),
        workers=args.workers,
        count_delay=parse_duration(args.count_delay),
        estimate_max_files=args.estimate_max_files,
        estimate_timeout=parse_duration(args.estimate_timeout),
        allow_config_reload=args.allow_config_reload,
        log_level=logging.WARNING if args.quiet else logging.INFO,
    )
    return main.run(options)
