"""`tfs-traffic queries render`: write the recording rules, alerts and Grafana dashboards."""

import argparse
from pathlib import Path

from tfs_traffic.commands import Subcommands, add_actions, add_command

DESCRIPTION = """\
Render the monitoring mixin: Prometheus recording rules and alerts, and Grafana dashboards.

Every PromQL expression lives in one module (tfs_traffic/queries/mixin.py); this writes
  OUT/rules.yml              recording rules (per-version call rates, inventory, hourly series)
  OUT/alerts.yml             alerts (idle, called while unavailable, coverage, drop, fading)
  OUT/dashboards/*.json      Grafana dashboards (import them, or use the k8s ConfigMap)
Load the rule files with Prometheus' `rule_files:` (2.42 or newer), and give new recording rules
their history with `promtool tsdb create-blocks-from rules --start ... OUT/rules.yml`.
Rendering dashboards needs the `render` extra: pip install 'tfs-traffic[render]'.
"""

EPILOG = """\
examples:
  tfs-traffic queries render --out queries
  promtool check rules queries/rules.yml queries/alerts.yml
  promtool test rules queries/tests/*.yml
"""


def register(subparsers: Subcommands) -> None:
    parser = add_command(
        subparsers,
        "queries",
        run=None,
        help="render recording rules, alerts and Grafana dashboards",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    render = add_command(
        add_actions(parser),
        "render",
        run=run,
        help="write rules.yml, alerts.yml and dashboards/*.json",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    render.add_argument("--out", required=True, metavar="DIR", help="directory to write into (created if missing)")


def run(args: argparse.Namespace) -> int:
    from tfs_traffic.queries.render import render

    for path in render(Path(args.out)):
        print(path)
    return 0
