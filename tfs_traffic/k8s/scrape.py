"""Scrape jobs for a Prometheus without the Operator (`tfs-traffic k8s scrape-config`).

Not a Kubernetes object, so not part of the chart: a piece of prometheus.yml, rendered from the
chart's effective values (its defaults plus the user's values files, checked by its schema) so the
interval, the sidecar's port name and TF Serving's metrics path agree with what the chart deploys.
"""

from collections.abc import Mapping
from typing import Any

import yaml

SIDECAR_JOB = "tfs-traffic-sidecar"


def scrape_config(values: Mapping[str, Any], source: str = "") -> str:
    """The two scrape jobs (annotated TF Serving endpoint, sidecar port) for effective chart values."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("tfs_traffic.k8s", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    text = env.get_template("scrape-config.yaml.j2").render(
        source=source,
        interval=values["monitoring"]["scrapeInterval"],
        port_name=values["sidecar"]["metricsPortName"],
        tfs_path=values["tfserving"]["monitoringPath"],
        sidecar_job=SIDECAR_JOB,
    )
    yaml.safe_load(text)  # a template bug fails here, not in the user's Prometheus
    return text
