"""The retirement report and the history as data: verdicts, rendering, forecast, export, tf.data helpers.

Public: `verdicts` (the report's entry point: `run`, `Options`, `Report`), `render` (table, JSON, CSV,
Markdown, HTML), `forecast`, `export` (CSV, Parquet, JSON Lines) and `dataset` (tf.data windows).
Inside the report, one job each: `model` (its data and the JSON of docs/json.md), `display` (how numbers
are shown), `queries` (its PromQL), `measure` (asking it, answers per version), `judge` (the rules of
docs/verdicts.md).
Imports the shared leaves, `prometheus` (api, promql) and `queries.mixin` (the recorded series' names).
"""
