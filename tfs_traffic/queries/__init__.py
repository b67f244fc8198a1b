"""The monitoring mixin: recording rules, alerts and Grafana dashboards, from one source.

Public: `mixin` (every expression and rule group), `dashboards` (Grafana models built on the mixin's
recorded series; needs the `render` extra), `render` (writes queries/), `history` (backfills the
recording rules over a TSDB with promtool). Imports the shared leaves and `prometheus` (promql, local).
"""
