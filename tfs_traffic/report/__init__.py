"""The retirement report and the history as data: verdicts, rendering, forecast, export, tf.data helpers.

Public: `verdicts` (the report: queries and design.md section 5's verdicts), `render` (table, JSON, CSV,
Markdown, HTML), `forecast`, `export` (CSV, Parquet, JSON Lines) and `dataset` (tf.data windows).
Imports the shared leaves, `prometheus` (api, promql) and `queries.mixin` (the recorded series' names).
"""
