"""Kubernetes: the values file and the manifests rendered from it (Deployment, Service, PodMonitor, rules).

Public: `values` (the values file's schema and loader) and `manifests` (rendering, scrape jobs).
Imports the shared leaves and `queries` (mixin, dashboards) for the rules and dashboards it wraps.
"""
