"""The report as a terminal table, JSON, CSV, Markdown or one self-contained HTML page."""

import csv
import html
import io
import json
from collections.abc import Sequence

from tfs_traffic.durations import format_duration, rfc3339
from tfs_traffic.report.display import ago, display_calls, display_coverage, redact_url
from tfs_traffic.report.model import Report, VersionReport

FORMATS = ("table", "json", "csv", "markdown", "html")
COLUMNS = (
    "model_name",
    "model_version",
    "verdict",
    "reason",
    "calls",
    "max_hourly_qps",
    "coverage",
    "labels",
    "last_call_at",
    "estimated_ram_bytes",
    "note",
)
GIB = 2**30


def _qps(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    return f"{value:.3g}" if value < 100 else f"{value:,.0f}"


def _calls(value: float | None) -> str:
    shown = display_calls(value)
    return "-" if shown is None else f"{shown:,}"


def _coverage(value: float) -> str:
    return f"{display_coverage(value) * 100:.1f}%"


def _last_call(report: Report, v: VersionReport) -> str:
    """ "9d ago", or "none in 30d" when no call was seen within the lookback."""
    if v.last_call_at is None:
        return f"none in {format_duration(report.options.last_call_span)}"
    return ago(report.evaluated_at, v.last_call_at)


def _ram(value: int | None) -> str:
    """TF Serving's estimate in binary units, 3 significant digits; "-" when unknown."""
    if value is None:
        return "-"
    for unit, size in (("GiB", GIB), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value} B"


def memory_line(report: Report) -> str:
    """What retiring frees by TF Serving's estimate (README "What retiring frees"); "" with nothing to retire."""
    retire = report.counts()["retire"]
    if not retire:
        return ""
    frees, unknown = report.retire_frees()
    if unknown == retire:
        return f"retiring frees: unknown (no estimate of TF Serving's for the {retire} retire versions)"
    without = f"; {unknown} retire versions without an estimate" if unknown else ""
    return f"retiring frees ≈ {frees / GIB:.2f} GiB per server (TF Serving's estimate{without})"


def notes(report: Report) -> list[str]:
    """One line per version with a note (a retire called within the lookback)."""
    return [f"note: {v.model_name}:{v.model_version} {v.verdict}: {v.note}" for v in report.versions if v.note]


def _idle_by(v: VersionReport) -> str:
    return "-" if v.forecast is None else rfc3339(v.forecast.idle_at)[:10]


def forecast_line(report: Report) -> str:
    """The "idle within N days" candidates, or "" without --forecast."""
    if not report.options.forecast:
        return ""
    soon = report.idle_soon()
    horizon = format_duration(report.options.forecast_horizon)
    if not soon:
        return f"forecast: no version is projected to go idle within {horizon}"
    names = ", ".join(f"{v.model_name}:{v.model_version} ({_idle_by(v)})" for v in soon)
    return f"forecast: idle within {horizon}: {names}"


def summary(report: Report) -> str:
    counts = report.counts()
    window = format_duration(report.window_seconds)
    return (
        f"{len(report.versions)} versions: {counts['retire']} retire, {counts['keep']} keep, "
        f"{counts['unknown']} unknown (window {window} ending {rfc3339(report.evaluated_at)})"
    )


def render_table(report: Report, width: int | None = None, color: bool | None = None) -> str:
    """A rich table as text (ANSI colours only when `color`)."""
    from rich.console import Console
    from rich.table import Table

    caption = "\n".join(filter(None, (summary(report), memory_line(report), forecast_line(report), *notes(report))))
    table = Table(title=None, caption=caption, show_lines=False, header_style="bold")
    forecast = report.options.forecast
    columns = [("MODEL", "left"), ("VERSION", "right"), ("VERDICT", "left"), ("REASON", "left")]
    columns += [("CALLS", "right"), ("MAX QPS", "right"), ("COVERAGE", "right"), ("LAST CALL", "right")]
    columns += [("EST. RAM", "right")]
    for name, justify in columns + ([("IDLE BY", "right")] if forecast else []):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    styles = {"keep": "green", "retire": "bold red", "unknown": "yellow"}
    for v in report.versions:
        table.add_row(
            v.model_name,
            v.model_version,
            f"[{styles[v.verdict]}]{v.verdict}[/]",
            v.reason,
            _calls(v.calls),
            _qps(v.max_hourly_qps),
            _coverage(v.coverage),
            _last_call(report, v),
            _ram(v.estimated_ram_bytes),
            *([_idle_by(v)] if forecast else []),
        )
    buffer = io.StringIO()
    console = Console(file=buffer, width=width or 160, force_terminal=bool(color), no_color=not color, highlight=False)
    console.print(table)
    return buffer.getvalue()


def render_json(report: Report) -> str:
    return json.dumps(report.as_json(), indent=2) + "\n"


def _row(v: VersionReport) -> list[str]:
    qps = "" if v.max_hourly_qps is None else f"{v.max_hourly_qps:.6g}"
    calls = display_calls(v.calls)
    return [
        v.model_name,
        v.model_version,
        v.verdict,
        v.reason,
        "" if calls is None else str(calls),
        qps,
        f"{display_coverage(v.coverage):.4f}",
        " ".join(v.labels),
        "" if v.last_call_at is None else rfc3339(v.last_call_at),
        "" if v.estimated_ram_bytes is None else str(v.estimated_ram_bytes),
        v.note or "",
    ]


def render_csv(report: Report) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    forecast = report.options.forecast
    writer.writerow(COLUMNS + (("forecast_idle_at",) if forecast else ()))
    for v in report.versions:
        idle_at = "" if v.forecast is None else rfc3339(v.forecast.idle_at)
        writer.writerow(_row(v) + ([idle_at] if forecast else []))
    return buffer.getvalue()


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(report: Report) -> str:
    lines = [
        f"**tfs-traffic report** — {summary(report)}, Prometheus {redact_url(report.prometheus)}",
        "",
        "| model | version | verdict | reason | calls | max hourly QPS | coverage | last call | est. RAM |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for v in report.versions:
        lines.append(
            f"| {_md(v.model_name)} | {_md(v.model_version)} | **{v.verdict}** | {_md(v.reason)} | "
            f"{_calls(v.calls)} | {_qps(v.max_hourly_qps)} | {_coverage(v.coverage)} | {_last_call(report, v)} | "
            f"{_ram(v.estimated_ram_bytes)} |"
        )
    if memory_line(report):
        lines += ["", memory_line(report)]
    if report.options.forecast:
        lines += ["", forecast_line(report)]
    if notes(report):
        lines += ["", *(f"- {_md(line)}" for line in notes(report))]
    return "\n".join(lines) + "\n"


def sparkline(values: Sequence[float], width: int = 160, height: int = 28) -> str:
    """An inline SVG polyline of `values` (hourly calls), scaled to its own maximum."""
    if not values:
        values = [0.0]
    top = max(values) or 1.0
    n = len(values)
    step = width / max(1, n - 1)
    points = " ".join(f"{i * step:.1f},{height - 2 - (x / top) * (height - 4):.1f}" for i, x in enumerate(values))
    total = display_calls(sum(values)) or 0
    title = f"hourly calls over the window: peak {display_calls(max(values)) or 0:,}/h, total {total:,}"
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{html.escape(title)}">'
        f"<title>{html.escape(title)}</title>"
        f'<polygon fill="currentColor" fill-opacity="0.15" stroke="none" '
        f'points="0,{height - 2} {points} {(n - 1) * step:.1f},{height - 2}"/>'
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{points}"/></svg>'
    )


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1d2433;background:#fff}
h1{font-size:1.4rem;margin:0 0 .3rem} p.meta{color:#5b6475;margin:.2rem 0 1.2rem}
table{border-collapse:collapse;font-size:.92rem}
th,td{padding:.35rem .7rem;border-bottom:1px solid #e3e6ec;text-align:left}
th{background:#f5f6f8;font-weight:600} td.num{text-align:right;font-variant-numeric:tabular-nums}
.keep{color:#1a7f37}.retire{color:#cf222e;font-weight:700}.unknown{color:#9a6700}
.spark{color:#3b6fd8;vertical-align:middle} tr.row-retire td{background:#fff6f6} tr.row-retire .spark{color:#cf222e}
ul.legend{color:#5b6475;font-size:.88rem} ul.notes{color:#9a6700}
"""


def render_html(report: Report) -> str:
    """One page, no external resources: the verdict table with a sparkline per version."""
    counts = report.counts()
    rows = []
    for v in report.versions:
        spark = sparkline(v.hourly_calls or [])
        rows.append(
            f'<tr class="row-{v.verdict}"><td>{html.escape(v.model_name)}</td>'
            f'<td class="num">{html.escape(v.model_version)}</td>'
            f'<td class="{v.verdict}">{v.verdict}</td><td>{html.escape(v.reason)}</td>'
            f'<td class="num">{_calls(v.calls)}</td><td class="num">{_qps(v.max_hourly_qps)}</td>'
            f'<td class="num">{_coverage(v.coverage)}</td>'
            f'<td class="num" title="{html.escape(rfc3339(v.last_call_at) if v.last_call_at else "")}">'
            f"{html.escape(_last_call(report, v))}</td>"
            f'<td class="num" title="{"" if v.estimated_ram_bytes is None else v.estimated_ram_bytes} bytes">'
            f"{html.escape(_ram(v.estimated_ram_bytes))}</td><td>{spark}</td></tr>"
        )
    note_items = "".join(f"<li>{html.escape(line)}</li>" for line in notes(report))
    title = f"tfs-traffic retirement report — {rfc3339(report.evaluated_at)}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="meta">{len(report.versions)} versions: <span class="retire">{counts["retire"]} retire</span>,
<span class="keep">{counts["keep"]} keep</span>, <span class="unknown">{counts["unknown"]} unknown</span>
· window {format_duration(report.window_seconds)} ending {rfc3339(report.evaluated_at)}
· Prometheus {html.escape(redact_url(report.prometheus))}</p>
<table>
<thead><tr><th>model</th><th>version</th><th>verdict</th><th>reason</th><th>calls</th><th>max hourly QPS</th>
<th>coverage</th><th>last call</th><th>est. RAM</th><th>hourly calls</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
{f'<p class="memory">{html.escape(memory_line(report))}</p>' if memory_line(report) else ""}
{f"<p>{html.escape(forecast_line(report))}</p>" if report.options.forecast else ""}
{f'<ul class="notes">{note_items}</ul>' if note_items else ""}
<ul class="legend">
<li><b>retire</b> idle: no calls in the window, observed all along, not pinned, not the latest — safe to unload.</li>
<li><b>keep</b>: traffic, the only or latest version, or pinned by a version label / --keep.</li>
<li><b>unknown</b>: not observed (on any pod) for the whole window, or a pod serving it was down too long — wait,
do not unload yet.</li>
<li><b>last call</b>: the last hour with a call, looking back beyond the window; a retire called within it
has a note.</li>
<li><b>est. RAM</b>: TF Serving's own estimate of the memory a loaded version holds (its files' size times 1.2), per
server; unloading returns it to TF Serving's allocator, and to the OS only as the README says.</li>
</ul>
</body></html>
"""


def render(report: Report, fmt: str, color: bool = False, width: int | None = None) -> str:
    if fmt == "json":
        return render_json(report)
    if fmt == "csv":
        return render_csv(report)
    if fmt == "markdown":
        return render_markdown(report)
    if fmt == "html":
        return render_html(report)
    return render_table(report, width=width, color=color)
