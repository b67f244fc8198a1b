"""`tfs-traffic export`: the per-version traffic history as a dataset."""

import argparse
import sys

from tfs_traffic.commands import Subcommands, add_command
from tfs_traffic.prometheus.api import add_access_arguments

DESCRIPTION = """\
Export per-version traffic history from Prometheus as a dataset: one row per
(timestamp, model_name, model_version) with columns

  timestamp      RFC 3339 (csv, jsonl) or UTC timestamp (parquet), on the --step grid
  namespace      the series' namespace label ("" when absent)
  model_name, model_version
  qps            calls per second, summed across replicas; patched-server and sidecar
                 counters combined with max (as the report does); empty when no series
  available      1 while any replica reports the version AVAILABLE, 0 after unload

Long ranges are fetched in chunks under Prometheus' 11,000-points-per-series limit.
"""

EPILOG = """\
examples:
  tfs-traffic export --prometheus http://prometheus:9090 --window 30d --format parquet --output traffic.parquet
  tfs-traffic export --prometheus URL --model resnet --step 1h --format csv > resnet.csv

In a notebook:
  from tfs_traffic.report.export import export_dataframe
  frame = export_dataframe("http://prometheus:9090", window="30d", step="5m")
"""


def register(subparsers: Subcommands) -> None:
    parser = add_command(
        subparsers,
        "export",
        run=run,
        help="per-version traffic history as csv, parquet or jsonl",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    add_access_arguments(parser)
    parser.add_argument("--window", default="30d", help="how far back (default: %(default)s)")
    parser.add_argument("--step", default="5m", help="row spacing (default: %(default)s)")
    parser.add_argument("--at", default="now", help="end of the window: RFC 3339, Unix seconds or now")
    parser.add_argument("--model", action="append", default=[], metavar="NAME", help="only this model (repeatable)")
    parser.add_argument("--rate-window", metavar="DURATION", help="rate() range (default: max(step, 5m))")
    parser.add_argument("--format", choices=("csv", "parquet", "jsonl"), default="csv")
    parser.add_argument("--output", "-o", metavar="FILE", help="write here (atomically) instead of stdout")
    parser.add_argument("--max-points", type=int, default=11_000, help="points per series per range query")
    parser.add_argument("--concurrency", type=int, default=4, help="range queries in flight (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from tfs_traffic.durations import parse_duration, parse_time
    from tfs_traffic.errors import UsageError
    from tfs_traffic.prometheus.api import PrometheusClient, access_from_args
    from tfs_traffic.report.export import fetch_rows, write_rows

    window, step = parse_duration(args.window), parse_duration(args.step)
    if step > window:
        raise UsageError(f"--step {args.step} is longer than --window {args.window}")
    if args.format == "parquet" and not args.output:
        raise UsageError("--format parquet needs --output FILE")
    rate_window = parse_duration(args.rate_window) if args.rate_window else None
    client = PrometheusClient(access_from_args(args))
    rows = fetch_rows(
        client,
        parse_time(args.at),
        window,
        step,
        models=args.model,
        rate_window=rate_window,
        max_points=args.max_points,
        concurrency=args.concurrency,
        show_progress=sys.stderr.isatty(),
    )
    write_rows(rows, args.format, args.output)
    if args.output:
        print(f"wrote {len(rows)} rows to {args.output}", file=sys.stderr)
    return 0
