"""The retirement report and the history as data: verdicts, rendering, forecast, export, tf.data helpers.

Public: `verdicts` (the report: queries and the verdicts of docs/verdicts.md), `render` (table, JSON, CSV,
Markdown, HTML), `forecast`, `export` (CSV, Parquet, JSON Lines) and `dataset` (tf.data windows).
Imports the shared leaves, `prometheus` (api, promql) and `queries.mixin` (the recorded series' names).
"""
