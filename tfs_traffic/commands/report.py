"""`tfs-traffic report`: which loaded model versions can be unloaded safely, and why."""

import argparse
import sys
from dataclasses import dataclass
from typing import Any

from tfs_traffic.commands import Subcommands, add_command, one_line_errors
from tfs_traffic.errors import UsageError

DESCRIPTION = """\
For every model version that is AVAILABLE now, say keep, retire or unknown — and why — from the
per-version call counters in Prometheus (patched TF Serving and/or the tfs-traffic sidecar).

The first matching check decides:
  keep     traffic                    calls in the window (default: any call; see --min-calls, --max-qps)
  keep     only-version               the model's only AVAILABLE version
  keep     latest                     its highest AVAILABLE version (unversioned requests go there)
  keep     label:NAME | label:keep    a version_labels entry in --models-config, or --keep M:V
  unknown  not-observed-long-enough   fleet-wide, no target reported it AVAILABLE for too long
                                      (loaded inside the window, or unloaded everywhere a while)
  unknown  scrape-gaps                a pod serving it was down (up == 0) for too long
  unknown  no-call-data               no call counter in Prometheus at all (never a retire)
  retire   idle                       none of the above: safe to unload

Pods come and go (rollouts, autoscaling): a version counts as observed at a moment when any pod
reported it AVAILABLE, and calls are summed over every pod of the window, deleted ones included.
Each version also gets its last call (looking back --lookback), and a retire called within it a note.

Results go to stdout (or --output), notes to stderr. Exit status: 0 when the report ran (whatever
it found), 2 for usage errors, 1 when Prometheus could not be queried.
"""

EPILOG = """\
examples:
  tfs-traffic report --prometheus http://prometheus:9090
  tfs-traffic report --prometheus http://prometheus:9090 --window 14d --format json
  tfs-traffic report --prometheus https://mimir.example/prometheus --header X-Scope-OrgID=ml \\
      --bearer-token-file /var/run/secrets/token --format html --output report.html
  tfs-traffic report --prometheus URL --models-config models.config --emit-config models.new.config
  tfs-traffic report --prometheus URL --keep resnet:3 --min-calls 100 --at 2025-06-30T00:00:00Z
  tfs-traffic report --prometheus URL --window 14d --forecast --forecast-horizon 30d
  tfs-traffic report --prometheus http://victoria-metrics:8428 --selector 'cluster="eu-1",namespace="ml"'
"""


def register(subparsers: Subcommands) -> None:
    from tfs_traffic.report.render import FORMATS

    parser = add_command(
        subparsers,
        "report",
        run=run,
        help="which model versions are idle and safe to unload",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    what = add_judging_arguments(parser)
    what.add_argument(
        "--forecast",
        action="store_true",
        help="project when each falling version's daily calls reach zero (Theil-Sen trend; one more query)",
    )
    what.add_argument(
        "--forecast-horizon",
        default="30d",
        metavar="DURATION",
        help="with --forecast, list versions projected idle within this long (default: %(default)s)",
    )
    out = parser.add_argument_group("output")
    out.add_argument("--format", choices=FORMATS, default="table")
    out.add_argument("--output", metavar="FILE", help="write the report to FILE (atomically) instead of stdout")
    out.add_argument(
        "--emit-config",
        metavar="FILE",
        help="write a models config serving only the versions not to retire (needs --models-config); "
        "prints a unified diff",
    )


def add_judging_arguments(parser: argparse.ArgumentParser, models_config_required: bool = False) -> Any:
    """The report's flags that decide the verdicts (and Prometheus access): `report` and `retire plan`
    share them. Returns the "what to judge" group for more flags."""
    from tfs_traffic.prometheus.api import add_access_arguments

    one_line_errors(parser)
    add_access_arguments(parser)
    what = parser.add_argument_group("what to judge")
    what.add_argument("--window", default="7d", metavar="DURATION", help="look-back window (default: %(default)s)")
    what.add_argument(
        "--selector",
        default="",
        metavar="MATCHERS",
        help='PromQL label matchers for every series the report reads, e.g. \'cluster="eu-1",namespace="ml"\'',
    )
    what.add_argument(
        "--lookback",
        default="30d",
        metavar="DURATION",
        help="how far back to look for each version's last call (default: %(default)s; at least --window)",
    )
    what.add_argument(
        "--at", default="now", metavar="TIME", help="end of the window: RFC 3339 or Unix seconds (default: now)"
    )
    what.add_argument(
        "--models-config",
        metavar="FILE",
        required=models_config_required,
        help="TF Serving models config (text ModelServerConfig): its version_labels keep versions",
    )
    what.add_argument(
        "--keep", action="append", default=[], metavar="MODEL:VERSION", help="always keep this version (repeatable)"
    )
    threshold = what.add_mutually_exclusive_group()
    threshold.add_argument(
        "--min-calls", type=float, metavar="N", help="keep for traffic only with at least N calls in the window"
    )
    threshold.add_argument(
        "--max-qps", type=float, metavar="X", help="keep for traffic only if the busiest hour exceeded X calls/s"
    )
    what.add_argument(
        "--max-gap-ratio",
        type=float,
        default=0.05,
        metavar="R",
        help="tolerated share of the window a pod serving a version may be down, or the version go "
        "unobserved fleet-wide (default: %(default)s)",
    )
    return what


@dataclass
class ModelsConfig:
    """A models config as the report reads it: its text, message, labels and model names."""

    text: str
    message: Any
    labels: dict[tuple[str, str], list[str]]
    configured: list[str]

    @classmethod
    def of(cls, text: str, source: str) -> "ModelsConfig":
        """`text` parsed (a UsageError naming `source` for a mistake)."""
        from tfs_traffic import modelconfig

        message = modelconfig.parse_text(text, source)
        labels: dict[tuple[str, str], list[str]] = {}
        configured: list[str] = []
        for entry in modelconfig.entries(message):
            configured.append(entry.name)
            for version, names in entry.labels_by_version().items():
                labels[(entry.name, str(version))] = names
        return cls(text, message, labels, configured)


def read_models_config(path: str) -> ModelsConfig:
    from tfs_traffic.files import read_user_text

    return ModelsConfig.of(read_user_text(path, "models config"), path)


def judging_options(
    args: argparse.Namespace,
    labels: dict[tuple[str, str], list[str]],
    *,
    hourly: bool = False,
    forecast: bool = False,
    forecast_horizon: str = "30d",
) -> Any:
    """The report's Options from the judging flags, every value checked (UsageError) before any query."""
    import math

    from tfs_traffic.durations import parse_duration, parse_time
    from tfs_traffic.prometheus import promql
    from tfs_traffic.report import verdicts as rep

    window = parse_duration(args.window)
    lookback = parse_duration(args.lookback)
    at = parse_time(args.at)
    selector = promql.check_matchers(args.selector)
    for flag, value in (("--min-calls", args.min_calls), ("--max-qps", args.max_qps)):
        if value is not None and (math.isnan(value) or value < 0):
            raise UsageError(f"{flag} must be a number >= 0, got {value}")
    if not 0 <= args.max_gap_ratio < 1:
        raise UsageError(f"--max-gap-ratio must be in [0, 1), got {args.max_gap_ratio}")
    keep: set[tuple[str, str]] = set()
    for item in args.keep:
        model, sep, version = item.rpartition(":")
        if not sep or not model or not version:
            raise UsageError(f"--keep expects MODEL:VERSION, got {item!r}")
        keep.add((model, version))
    return rep.Options(
        at=at,
        window=window,
        min_calls=args.min_calls,
        max_qps=args.max_qps,
        max_gap_ratio=args.max_gap_ratio,
        labels=labels,
        keep=frozenset(keep),
        hourly=hourly,
        forecast=forecast,
        forecast_horizon=parse_duration(forecast_horizon),
        selector=selector,
        lookback=lookback,
    )


def announce(access: Any, options: Any, window: str) -> None:
    """The line on stderr before the report's queries (`window` as the user wrote it)."""
    from tfs_traffic.report import verdicts as rep

    print(
        f"tfs-traffic: querying {rep.redact_url(access.url)} over {window} ending "
        f"{rep.rfc3339(options.at)}" + (f" for {{{options.selector}}}" if options.selector else ""),
        file=sys.stderr,
    )


def run(args: argparse.Namespace) -> int:
    import difflib
    import shutil

    from tfs_traffic import modelconfig
    from tfs_traffic.files import write_atomic
    from tfs_traffic.prometheus.api import PrometheusClient, access_from_args
    from tfs_traffic.report import progress, render
    from tfs_traffic.report import verdicts as rep

    # Every input is checked before the first query.
    if args.emit_config and not args.models_config:
        raise UsageError("--emit-config needs --models-config (the config to rewrite)")
    config = read_models_config(args.models_config) if args.models_config else None
    options = judging_options(
        args,
        config.labels if config else {},
        hourly=args.format == "html",
        forecast=args.forecast,
        forecast_horizon=args.forecast_horizon,
    )
    access = access_from_args(args)
    announce(access, options, args.window)
    result = rep.run(PrometheusClient(access), options, progress.for_stderr(sys.stderr.isatty()))
    color = args.format == "table" and not args.output and sys.stdout.isatty()
    width = shutil.get_terminal_size((160, 24)).columns if color else 160
    text = render.render(result, args.format, color=color, width=width)

    new_config_text = None
    if config is not None and args.emit_config:
        versions = rep.config_versions(result, config.configured)
        new_config_text = modelconfig.to_text(modelconfig.with_specific_versions(config.message, versions))
        for entry in modelconfig.entries(config.message):
            if entry.name in config.configured and entry.name not in versions:
                print(f"tfs-traffic: note: no version of {entry.name} is AVAILABLE now; left as it is", file=sys.stderr)
    if args.output:
        write_atomic(args.output, text)
        print(f"tfs-traffic: wrote {args.format} report to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    if args.output or args.format != "table":  # the table's caption says it already
        print(f"tfs-traffic: {render.summary(result)}", file=sys.stderr)
    if new_config_text is not None:
        write_atomic(args.emit_config, new_config_text)
        diff = "".join(
            difflib.unified_diff(
                config.text.splitlines(keepends=True),  # type: ignore[union-attr]
                new_config_text.splitlines(keepends=True),
                fromfile=args.models_config,
                tofile=args.emit_config,
            )
        )
        stream = sys.stdout if (args.output or args.format == "table") else sys.stderr
        print(f"tfs-traffic: wrote {args.emit_config}", file=sys.stderr)
        stream.write(diff or "(no change)\n")
        stream.flush()
    return 0
