"""Kubernetes: the Helm chart (k8s/chart, packaged through the `chart` symlink) and its tooling.

Public: `helm` (`helm template` through Helm's own engine, values files, lint), `chart_files` (the
mixin's rules and dashboards written into the chart) and `scrape` (plain-Prometheus scrape jobs).
Imports the shared leaves and `queries` (mixin, dashboards) for the files it writes into the chart.
"""
