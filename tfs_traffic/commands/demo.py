"""`tfs-traffic demo`: the retirement report over a simulated week, on a local Prometheus."""

import argparse
import sys
from pathlib import Path

from tfs_traffic.commands import Subcommands, add_command

DESCRIPTION = """\
Backfill the built-in demo fleet (5 models, 20 versions of which 19 end AVAILABLE, 3 long-lived
replicas and a Deployment of autoscaled pods rolled twice, a restart, a version loaded mid-week, a
label-pinned idle version, a scrape gap; patched server and sidecar series) into OUT/history/tsdb,
start Prometheus on 127.0.0.1 over it, run `tfs-traffic report` at the end of the simulated week,
print the table and the emitted models config's diff, write the HTML and JSON reports, run a dry
`tfs-traffic retire plan` (its table shown, the plan written, nothing applied), and stop Prometheus.
The TSDB is reused while the scenario is unchanged.
"""


def register(subparsers: Subcommands) -> None:
    parser = add_command(
        subparsers,
        "demo",
        run=run,
        help="the report on a simulated week of fleet history (local Prometheus)",
        description=DESCRIPTION,
        epilog="examples:\n  tfs-traffic demo\n  tfs-traffic demo --out /tmp/demo\n",
    )
    parser.add_argument("--out", default="out/demo", metavar="DIR", help="working directory (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    import time

    from tfs_traffic import cli
    from tfs_traffic.durations import rfc3339
    from tfs_traffic.prometheus import backfill, scenario
    from tfs_traffic.prometheus.local import LocalPrometheus

    started = time.perf_counter()
    out = Path(args.out)
    sc = scenario.load("demo")
    result = backfill.ensure(sc, out / "history")
    if result.reused:
        print(f"tfs-traffic: reusing the demo history in {result.tsdb}", file=sys.stderr)
    else:
        print(
            f"tfs-traffic: backfilled {result.samples:,} samples of the demo fleet into {result.tsdb} "
            f"({result.generate_seconds + result.blocks_seconds:.1f}s)",
            file=sys.stderr,
        )
    html = out / "report.html"
    json_report = out / "report.json"
    new_config = out / "models.retired.config"
    plan = out / "retire-plan.json"
    with LocalPrometheus(result.tsdb) as prom:
        print(f"tfs-traffic: Prometheus on {prom.url}; report at {rfc3339(sc.end)}", file=sys.stderr)
        common = ["--prometheus", prom.url, "--at", rfc3339(sc.end), "--window", "7d"]
        config = ["--models-config", str(result.models_config)]
        status = cli.main(["report", *common, *config, "--emit-config", str(new_config)])
        if status == 0:
            status = cli.main(["report", *common, *config, "--format", "html", "--output", str(html)])
        if status == 0:
            status = cli.main(["report", *common, *config, "--format", "json", "--output", str(json_report)])
        if status == 0:
            # Dry: the plan `retire apply` would carry out, written and shown, nothing applied.
            print("\nRetirement plan (dry: nothing is applied):")
            status = cli.main(["retire", "plan", *common, *config, "--output", str(plan)])
    if status != 0:
        return status
    print(f"\nHTML report: {html.resolve()}")
    print(f"JSON report: {json_report.resolve()}")
    print(f"New models config: {new_config.resolve()}")
    print(f"Retirement plan: {plan.resolve()} (apply it with tfs-traffic retire apply)")
    print(f"tfs-traffic: demo done in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return 0
