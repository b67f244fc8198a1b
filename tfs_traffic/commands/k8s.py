"""`tfs-traffic k8s`: Kubernetes manifests and plain-Prometheus scrape jobs from one values file."""

import argparse
import sys
from typing import Any

DESCRIPTION = """\
Kubernetes manifests for one TF Serving deployment, rendered from a values file.

render writes one file per object: the Deployment (patched image, or stock image with the sidecar
in proxy or status-only mode), the models.config and monitoring.config ConfigMaps, a Service, a
PodMonitor for both metrics endpoints, a PrometheusRule with the recording rules and alerts of
queries/, Grafana dashboard ConfigMaps and, if enabled, a KEDA ScaledObject. The values file is
checked first; a mistake is reported as one line naming the field, and nothing is written.

scrape-config prints the scrape jobs for a Prometheus without the Prometheus Operator.
"""

EPILOG = """\
examples:
  tfs-traffic k8s render --values k8s/values.example.yaml --out k8s/rendered
  tfs-traffic k8s render --values values.yaml --out - | kubectl apply --server-side -f -
  tfs-traffic k8s scrape-config --values values.yaml >> prometheus-scrape-jobs.yml
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "k8s",
        help="render Kubernetes manifests and Prometheus scrape jobs from a values file",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True)

    render = actions.add_parser(
        "render",
        help="write the manifests for a values file",
        description="Render every manifest for a values file (all files or none).",
        epilog="example:\n  tfs-traffic k8s render --values k8s/values.example.yaml --out k8s/examples\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    render.add_argument("--values", required=True, metavar="FILE", help="the values file (YAML)")
    render.add_argument(
        "--out",
        default="-",
        metavar="DIR|-",
        help="directory to (re)write, one file per object; '-' prints one multi-document stream (default)",
    )
    render.set_defaults(run=run_render)

    scrape = actions.add_parser(
        "scrape-config",
        help="print the plain-Prometheus scrape jobs (no Operator)",
        description=(
            "Print scrape_configs for Prometheus without the Operator: the annotated TF Serving endpoint\n"
            "(the prometheus-community chart's kubernetes-pods job) and the sidecar's metrics port."
        ),
        epilog="example:\n  tfs-traffic k8s scrape-config --values values.yaml\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    scrape.add_argument("--values", metavar="FILE", help="take the scrape interval and port name from this values file")
    scrape.set_defaults(run=run_scrape_config)


def run_render(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tfs_traffic.k8s import manifests
    from tfs_traffic.k8s import values as k8s_values

    values = k8s_values.load_values(args.values)
    objects = manifests.render(values, source=Path(args.values).name)
    if args.out == "-":
        sys.stdout.write(manifests.as_stream(objects))
    else:
        manifests.write_dir(objects, args.out)
        print(f"wrote {len(objects)} objects to {args.out}", file=sys.stderr)
    return 0


def run_scrape_config(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tfs_traffic.k8s import manifests
    from tfs_traffic.k8s import values as k8s_values

    values = k8s_values.load_values(args.values) if args.values else None
    sys.stdout.write(manifests.scrape_config(values, source=Path(args.values).name if args.values else ""))
    return 0
