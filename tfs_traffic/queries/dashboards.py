"""Grafana dashboards, built with Grafana's own dashboard-as-code library (grafana-foundation-sdk).

The library is needed only to render (`pip install 'tfs-traffic[render]'`); its output is committed
under `queries/dashboards/`. Every expression comes from `tfs_traffic.queries.mixin`, over the recorded
series wherever one exists, so that a dashboard over 30 days of 2,000 versions stays fast.
"""

import json
from typing import Any

from tfs_traffic import contract
from tfs_traffic.errors import ToolError
from tfs_traffic.queries import mixin

MODEL_DASHBOARD = "tfs-traffic-model.json"
# Grafana substitutes these; tests substitute them the same way before querying Prometheus.
DATASOURCE_VAR = "datasource"
NAMESPACE_VAR = "namespace"
MODEL_VAR = "model"
MEMORY_TITLE = "Memory held by idle versions (TF Serving's estimate)"


def filters(config: mixin.MixinConfig) -> str:
    """The label matchers every model panel applies (namespace may be 'All', then `.*`)."""
    parts = []
    if "namespace" in config.group_labels:
        parts.append(f'namespace=~"${NAMESPACE_VAR}"')
    parts.append(f'{contract.MODEL}="${MODEL_VAR}"')
    return ", ".join(parts)


def panel_queries(config: mixin.MixinConfig = mixin.DEFAULT) -> dict[str, list[tuple[str, str]]]:
    """Panel title -> [(PromQL, legend)], in dashboard order. The one place panels get their PromQL."""
    f = filters(config)
    v = contract.VERSION
    on = f"on ({config.by()})"
    rate5m = f"{mixin.CALLS_RATE5M}{{{f}}}"
    idle = (
        f"sum_over_time({mixin.OBSERVED_1H}{{{f}}}[$__range])\n"
        f"and {on} ({mixin.AVAILABLE}{{{f}}} == 1)\n"
        f"unless {on} (sum_over_time({mixin.CALLS_1H}{{{f}}}[$__range]) > 0)\n"
        f"unless {on} ({mixin.CALLS_RATE1H}{{{f}}} > 0)"
    )
    bucket = f"{contract.SIDECAR_DURATION}_bucket{config.matchers(f)}"
    return {
        "Calls per second by version": [(f"sum by ({v}) ({rate5m})", f"{{{{{v}}}}}")],
        "Share of traffic by version": [
            (f"sum by ({v}) ({rate5m})\n/ on () group_left ()\nsum({rate5m})", f"{{{{{v}}}}}")
        ],
        "Idle loaded versions (hours observed in range)": [(idle, "")],
        "Loaded versions": [(f"max by ({v}) ({mixin.AVAILABLE}{{{f}}})", f"{{{{{v}}}}}")],
        MEMORY_TITLE: [(f"sum by (namespace) ({mixin.IDLE_RAM}{{{f}}})", "{{namespace}}")],
        "Calls by status code (sidecar)": [
            (f"sum by (code) ({mixin.CALLS_BY_CODE_RATE5M}{{{f}}})", "{{code}}"),
        ],
        "Latency by version (sidecar round trip)": [
            (
                f"histogram_quantile({q}, sum by ({v}, le) (rate({bucket}[$__rate_interval])))",
                f"{{{{{v}}}}} p{round(q * 100)}",
            )
            for q in (0.5, 0.99)
        ],
        "Scrape coverage by version (observed share of each hour, fleet-wide)": [
            (f"max by ({v}) (last_over_time({mixin.OBSERVED_1H}{{{f}}}[1h]))", f"{{{{{v}}}}}"),
        ],
    }


def variable_selectors(config: mixin.MixinConfig = mixin.DEFAULT) -> dict[str, tuple[str, str]]:
    """Variable name -> (series selector, label) of its `label_values` query."""
    out: dict[str, tuple[str, str]] = {}
    if "namespace" in config.group_labels:
        out[NAMESPACE_VAR] = (mixin.AVAILABLE, "namespace")
    scope = f'{{namespace=~"${NAMESPACE_VAR}"}}' if NAMESPACE_VAR in out else ""
    out[MODEL_VAR] = (mixin.AVAILABLE + scope, contract.MODEL)
    return out


def build_dashboards(config: mixin.MixinConfig = mixin.DEFAULT) -> dict[str, dict[str, Any]]:
    """File name -> dashboard JSON model."""
    try:
        from grafana_foundation_sdk.builders import common as common_b
        from grafana_foundation_sdk.builders import dashboard as dash_b
        from grafana_foundation_sdk.builders import prometheus as prom_b
        from grafana_foundation_sdk.builders import table as table_b
        from grafana_foundation_sdk.builders import timeseries as ts_b
        from grafana_foundation_sdk.cog.encoder import JSONEncoder
        from grafana_foundation_sdk.models import common as common_m
        from grafana_foundation_sdk.models import dashboard as dash_m
        from grafana_foundation_sdk.models import prometheus as prom_m
    except ImportError:
        raise ToolError(
            "rendering dashboards needs grafana-foundation-sdk: pip install 'tfs-traffic[render]'"
        ) from None

    ds = dash_m.DataSourceRef(type_val="prometheus", uid=f"${{{DATASOURCE_VAR}}}")
    queries = panel_queries(config)

    def targets(title: str, instant: bool = False) -> list[Any]:
        out = []
        for i, (expr, legend) in enumerate(queries[title]):
            q = prom_b.Dataquery().expr(expr).ref_id(chr(ord("A") + i)).datasource(ds)
            if legend:
                q = q.legend_format(legend)
            if instant:
                q = q.instant().format(prom_m.PromQueryFormat.TABLE)
            out.append(q)
        return out

    def timeseries(title: str, unit: str, description: str, stack: common_m.StackingMode | None = None) -> Any:
        panel = (
            ts_b.Panel()
            .title(title)
            .description(description)
            .datasource(ds)
            .targets(targets(title))
            .unit(unit)
            .height(8)
            .span(12)
            .fill_opacity(25 if stack else 0)
            .legend(
                common_b.VizLegendOptions()
                .display_mode(common_m.LegendDisplayMode.TABLE)
                .placement(common_m.LegendPlacement.RIGHT)
                .show_legend(True)
                .calcs(["mean", "max"])
            )
        )
        if stack:
            panel = panel.stacking(common_b.StackingConfig().mode(stack))
        return panel

    idle_title = "Idle loaded versions (hours observed in range)"
    idle_table = (
        table_b.Panel()
        .title(idle_title)
        .description(
            "Versions AVAILABLE now that got no call at all in the dashboard's time range, with the hours "
            "some replica reported them AVAILABLE in that range. `tfs-traffic report` and ModelVersionIdle "
            "turn this into a verdict (they keep the latest, the only and labelled versions, and distrust "
            "scrape gaps)."
        )
        .datasource(ds)
        .targets(targets(idle_title, instant=True))
        .height(8)
        .span(12)
        .decimals(1)
        .with_transformation(
            dash_m.DataTransformerConfig(
                id_val="organize",
                options={"excludeByName": {"Time": True}, "renameByName": {"Value": "hours observed"}},
            )
        )
    )

    builder = (
        dash_b.Dashboard("TF Serving: traffic by model version")
        .uid(f"{config.dashboard_uid_prefix}-model")
        .description(
            "Per-version traffic of one TF Serving model (tfs-traffic): which versions are called, which "
            "are loaded and idle, errors and latency seen by the sidecar, and how well the data is scraped."
        )
        .tags(list(config.dashboard_tags))
        .editable()
        .time("now-7d", "now")
        .refresh("5m")
        .tooltip(dash_m.DashboardCursorSync.CROSSHAIR)
        .with_variable(dash_b.DatasourceVariable(DATASOURCE_VAR).label("Data source").type("prometheus"))
    )
    for name, (selector, label) in variable_selectors(config).items():
        var = (
            dash_b.QueryVariable(name)
            .label(name.capitalize())
            .datasource(ds)
            .query({"query": f"label_values({selector}, {label})", "refId": f"{name}-values"})
            .refresh(dash_m.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dash_m.VariableSort.ALPHABETICAL_ASC)
        )
        if name == NAMESPACE_VAR:
            var = var.include_all(True).all_value(".*")
        builder = builder.with_variable(var)

    builder = (
        builder.with_row(dash_b.Row("Traffic"))
        .with_panel(
            timeseries(
                "Calls per second by version",
                "reqps",
                "Calls per second per version over 5m, summed over replicas; patched TF Serving and sidecar "
                "counters merged with max (they count the same calls when both run).",
                common_m.StackingMode.NORMAL,
            )
        )
        .with_panel(
            timeseries(
                "Share of traffic by version",
                "percentunit",
                "Each version's part of the model's calls (5m rates), stacked to 100%.",
                common_m.StackingMode.NORMAL,
            )
        )
        .with_row(dash_b.Row("Retirement"))
        .with_panel(idle_table)
        .with_panel(
            timeseries(
                "Loaded versions",
                "none",
                "1 while a version is AVAILABLE on at least one replica (either source).",
            )
        )
        .with_panel(
            timeseries(
                MEMORY_TITLE,
                "bytes",
                "What each server of the model holds for the versions ModelVersionIdle fires for: TF Serving's "
                "own RAM estimate of each (its files' size x 1.2, exported by the sidecar's status poller), "
                "summed per namespace. Unloading returns it to TF Serving's allocator; the process gives it "
                "back to the OS only on restart (glibc malloc, no jemalloc: see the README).",
            )
        )
        .with_panel(
            timeseries(
                "Scrape coverage by version (observed share of each hour, fleet-wide)",
                "percentunit",
                "Share of each hour's minutes at which some replica reported the version AVAILABLE (either "
                f"source). Below {1 - config.max_gap_ratio:.0%} over the idle window, or a pod serving it down "
                "for more than the rest, idleness is not trusted.",
            )
        )
        .with_row(dash_b.Row("Errors and latency (sidecar)"))
        .with_panel(
            timeseries(
                "Calls by status code (sidecar)",
                "reqps",
                "Calls per second by gRPC status code, as the sidecar proxy saw them (the patched counter "
                "counts only calls that reached a loaded version). NOT_FOUND: a version that is not loaded.",
                common_m.StackingMode.NORMAL,
            )
        )
        .with_panel(
            timeseries(
                "Latency by version (sidecar round trip)",
                "s",
                "Median and 99th percentile of the sidecar's upstream round trip per version.",
            )
        )
    )
    model = json.loads(json.dumps(builder.build(), cls=JSONEncoder, sort_keys=True))
    return {MODEL_DASHBOARD: model}


def dashboard_exprs(model: dict[str, Any]) -> list[str]:
    """Every PromQL expression of a dashboard JSON model's panels (rows included)."""
    exprs: list[str] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            exprs.extend(t["expr"] for t in panel.get("targets") or [] if t.get("expr"))
            walk(panel.get("panels") or [])

    walk(model.get("panels") or [])
    return exprs
