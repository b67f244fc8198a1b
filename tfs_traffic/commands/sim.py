"""`tfs-traffic sim`: run the stand-in TF Serving (gRPC, REST, Prometheus page) in the foreground."""

import argparse
from typing import Any

DESCRIPTION = """\
Serve a stand-in TF Serving from a TF Serving model config file, for tests, benchmarks and demos
where a real tensorflow_model_server cannot run.

Every version of every model is TF Serving's half_plus_two test model (y = 0.5x + 2; signatures
serving_default, regress_x_to_y, classify_x_to_y). Versions are the numeric directories under each
model's base_path, chosen by its version policy and re-read every --poll-interval. It speaks TF
Serving's gRPC API (PredictionService, ModelService) and REST API with the same URLs, JSON, error
codes and messages, and serves /monitoring/prometheus/metrics on the REST address carrying the
patched per-version metrics (:tensorflow:serving:model_call_count, ..._version_available).

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


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sim",
        help="run a stand-in TF Serving (gRPC + REST + patched metrics) for tests and demos",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--models-config", required=True, metavar="FILE", help="TF Serving model config (text)")
    parser.add_argument("--grpc-addr", default="127.0.0.1:8500", metavar="HOST:PORT", help="gRPC address (port 0: any)")
    parser.add_argument("--rest-addr", default="127.0.0.1:8501", metavar="HOST:PORT", help="REST address (port 0: any)")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, metavar="N", help="model time per inference request (default 0)"
    )
    parser.add_argument(
        "--poll-interval",
        default="1s",
        metavar="DURATION",
        help="how often to re-read version directories, like --file_system_poll_wait_seconds (default 1s)",
    )
    parser.add_argument(
        "--config-poll-interval",
        default=None,
        metavar="DURATION",
        help="also re-read the model config file this often, like --model_config_file_poll_wait_seconds",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tfs_traffic.durations import parse_duration
    from tfs_traffic.errors import UsageError
    from tfs_traffic.sim.server import Sim, run_forever

    if args.latency_ms < 0:
        raise UsageError("--latency-ms must not be negative")
    sim = Sim(
        args.models_config,
        grpc_addr=args.grpc_addr,
        rest_addr=args.rest_addr,
        latency_ms=args.latency_ms,
        poll_seconds=parse_duration(args.poll_interval),
        config_poll_seconds=parse_duration(args.config_poll_interval) if args.config_poll_interval else 0.0,
        light_protos=True,
    )
    return run_forever(sim, lambda line: print(line, flush=True))
