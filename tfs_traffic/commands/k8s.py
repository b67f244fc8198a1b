"""`tfs-traffic k8s`: the Helm chart rendered through Helm's engine, its generated files, scrape jobs."""

import argparse
import sys

from tfs_traffic.commands import Subcommands, add_actions, add_command

DESCRIPTION = """\
The tfs-traffic Helm chart (k8s/chart): TF Serving (patched image, or stock image with the sidecar in
proxy or status-only mode), its ConfigMaps, ServiceAccount, Service, PodDisruptionBudget, a PodMonitor,
a PrometheusRule with the rules and alerts of queries/, Grafana dashboard ConfigMaps and, if
enabled, a KEDA ScaledObject. Install it with helm; these actions need no helm binary.

render prints what `helm template RELEASE k8s/chart -n NAMESPACE -f FILE...` prints, through Helm's
own engine (helm-python-sdk: the values schema, the templates, the install order). A values mistake
is reported as one line (Helm's own message) and nothing is written.

chart-files writes the mixin's rules and dashboards into the chart's files/ (`make render`).

scrape-config prints the scrape jobs for a Prometheus without the Prometheus Operator.
"""

EPILOG = """\
examples:
  helm install recommender k8s/chart -n serving -f values.yaml          # with helm
  tfs-traffic k8s render recommender -n serving -f values.yaml | kubectl apply --server-side -f -
  tfs-traffic k8s render recommender -n serving -f values.yaml --out manifests.yaml
  tfs-traffic k8s scrape-config -f values.yaml >> prometheus-scrape-jobs.yml
"""


def register(subparsers: Subcommands) -> None:
    parser = add_command(
        subparsers,
        "k8s",
        run=None,
        help="render the Helm chart (no helm binary needed) and Prometheus scrape jobs",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    actions = add_actions(parser, required=True)

    render = add_command(
        actions,
        "render",
        run=run_render,
        help="print `helm template` of the chart for values files",
        description="Render the chart as `helm template` does, through Helm's engine (all or nothing).",
        epilog="example:\n  tfs-traffic k8s render recommender -n serving -f k8s/values.example.yaml\n",
    )
    render.add_argument(
        "release", nargs="?", default="release-name", metavar="RELEASE", help="release name (default: release-name)"
    )
    _values_arguments(render)
    render.add_argument(
        "-n", "--namespace", default="default", metavar="NS", help="the release's namespace (default: default)"
    )
    render.add_argument(
        "--out", default="-", metavar="FILE|-", help="write the stream to FILE (atomically); '-' prints it (default)"
    )

    files = add_command(
        actions,
        "chart-files",
        run=run_chart_files,
        help="write the mixin's rules and dashboards into the chart's files/",
        description="Write files/prometheus-rules.yaml and files/dashboards/*.json of the chart from the mixin.",
        epilog="example:\n  tfs-traffic k8s chart-files --chart k8s/chart\n",
    )
    files.add_argument("--chart", required=True, metavar="DIR", help="the chart directory (k8s/chart)")

    scrape = add_command(
        actions,
        "scrape-config",
        run=run_scrape_config,
        help="print the plain-Prometheus scrape jobs (no Operator)",
        description=(
            "Print scrape_configs for Prometheus without the Operator: the annotated TF Serving endpoint\n"
            "(the prometheus-community chart's kubernetes-pods job) and the sidecar's metrics port."
        ),
        epilog="example:\n  tfs-traffic k8s scrape-config -f values.yaml\n",
    )
    _values_arguments(scrape)


def _values_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-f",
        "--values",
        action="append",
        default=[],
        metavar="FILE",
        help="a values file (repeatable; later files win, as with helm -f)",
    )
    parser.add_argument("--chart", metavar="DIR", help="render this chart instead of the packaged one (k8s/chart)")


def _source(paths: list[str]) -> str:
    from pathlib import Path

    return ", ".join(Path(p).name for p in paths) or "values"


def run_render(args: argparse.Namespace) -> int:
    from tfs_traffic.files import write_atomic
    from tfs_traffic.k8s import helm

    values = helm.load_values_files(args.values)
    text, manifests = helm.template(
        values, chart_dir=args.chart, release=args.release, namespace=args.namespace, source=_source(args.values)
    )
    if args.out == "-":
        sys.stdout.write(text)
    else:
        write_atomic(args.out, text)
        print(f"wrote {len(manifests)} objects to {args.out}", file=sys.stderr)
    return 0


def run_chart_files(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tfs_traffic.k8s import chart_files

    for path in chart_files.write(Path(args.chart)):
        print(path)
    return 0


def run_scrape_config(args: argparse.Namespace) -> int:
    from tfs_traffic.k8s import helm, scrape

    values = helm.effective_values(
        helm.load_values_files(args.values), chart_dir=args.chart, source=_source(args.values)
    )
    sys.stdout.write(scrape.scrape_config(values, source=_source(args.values) if args.values else ""))
    return 0
