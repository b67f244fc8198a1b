"""Everything that speaks Prometheus: the HTTP API client, the PromQL builders, a local Prometheus, backfill.

Public: `api` (PrometheusClient, access flags), `promql` (query builders over the metric contract),
`local` (a Prometheus and promtool on this machine), `scenario` and `backfill` (simulated fleet history
as OpenMetrics and TSDB blocks).
Imports only the shared leaves.
"""
