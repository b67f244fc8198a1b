"""`tfs-traffic backfill`: a fleet's simulated history as OpenMetrics, models.config and TSDB blocks."""

import argparse
import sys
from pathlib import Path

from tfs_traffic.commands import Subcommands, add_command

DESCRIPTION = """\
Write the history a TF Serving fleet would have produced under the metric contract (patched server
and/or sidecar series, and `up`), from the built-in `demo` scenario or a YAML scenario file:

  DIR/history.om       OpenMetrics samples (timestamps in seconds), the input of promtool
  DIR/models.config    the TF Serving models config that served the fleet at the end
  DIR/tsdb/            TSDB blocks made by `promtool tsdb create-blocks-from openmetrics`

Start a Prometheus over it with
  prometheus --storage.tsdb.path=DIR/tsdb --storage.tsdb.retention.time=100y
(a retention longer than the history's age, or Prometheus deletes the old blocks at start).
The scenario file format is described in the README ("Simulated history and the demo").
"""

EPILOG = """\
examples:
  tfs-traffic backfill --scenario demo --out out/demo
  tfs-traffic backfill --scenario my-fleet.yaml --days 14 --end 2025-06-30T00:00:00Z --out /tmp/fleet
"""


def register(subparsers: Subcommands) -> None:
    parser = add_command(
        subparsers,
        "backfill",
        run=run,
        help="simulated fleet history as OpenMetrics + models.config + TSDB blocks",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    parser.add_argument("--scenario", required=True, metavar="NAME|FILE", help="built-in scenario (demo) or YAML file")
    parser.add_argument("--days", type=float, metavar="N", help="days of history (default: the scenario's)")
    parser.add_argument(
        "--end", metavar="TIME", help="end of the history, RFC 3339 or Unix seconds (default: the scenario's, else now)"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory")


def run(args: argparse.Namespace) -> int:
    from tfs_traffic.durations import parse_time, rfc3339
    from tfs_traffic.errors import UsageError
    from tfs_traffic.prometheus import backfill, scenario

    if args.days is not None and not args.days > 0:
        raise UsageError(f"--days must be positive, got {args.days:g}")
    end = parse_time(args.end) if args.end else None
    sc = scenario.load(args.scenario, days=args.days, end=end)
    print(
        f"tfs-traffic: simulating {sc.name}: {len(sc.models)} models, "
        f"{sum(len(m.versions) for m in sc.models)} versions, "
        f"{len(sc.replicas)} replicas, {rfc3339(sc.start)} .. {rfc3339(sc.end)}",
        file=sys.stderr,
    )
    result = backfill.backfill(sc, Path(args.out))
    print(
        f"tfs-traffic: {result.samples:,} samples in {result.series:,} series "
        f"(generated in {result.generate_seconds:.1f}s, blocks in {result.blocks_seconds:.1f}s)",
        file=sys.stderr,
    )
    for path in (*result.openmetrics, result.models_config, result.tsdb):
        print(path)
    return 0
