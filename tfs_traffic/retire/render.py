"""What `retire` prints on stdout: a plan or an outcome as a table (the default) or JSON."""

import io
import json

from tfs_traffic.durations import format_duration, rfc3339
from tfs_traffic.report.display import ago
from tfs_traffic.report.render import frees_line, ram
from tfs_traffic.retire.outcome import Outcome
from tfs_traffic.retire.plan import MEMORY_NOTE, REFUSED_ACTION, RETIRE_ACTION, Plan

FORMATS = ("table", "json")


def _table(headers: list[str], rows: list[list[str]], notes: list[str], width: int) -> str:
    """A table, then `notes` as lines of their own (not a caption: rich wraps those to the table's width)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(header_style="bold")
    for name in headers:
        numbers = name in ("VERSION", "CALLS", "COVERAGE", "EST. RAM")
        table.add_column(name, justify="right" if numbers else "left", overflow="fold")
    for row in rows:
        table.add_row(*row)
    buffer = io.StringIO()
    Console(file=buffer, width=width, force_terminal=False, no_color=True, highlight=False).print(table)
    return buffer.getvalue() + "".join(f"{line}\n" for line in notes)


def plan_summary(plan: Plan) -> str:
    counts = plan.counts()
    changed = plan.changed()
    return (
        f"plan: retire {counts[RETIRE_ACTION]}, keep {counts['keep']}, refused {counts[REFUSED_ACTION]} "
        f"version(s); {len(changed)} model(s) change (window {format_duration(plan.window_seconds)} ending "
        f"{rfc3339(plan.evaluated_at)})"
    )


def plan_table(plan: Plan, width: int = 160) -> str:
    rows = []
    for model in plan.models:
        policy = model.policy + (" -> specific (--convert-policy)" if model.converted else "")
        for v in model.versions:
            last = "none" if v.last_call_at is None else ago(plan.evaluated_at, v.last_call_at)
            rows.append(
                [
                    model.model_name,
                    v.model_version,
                    v.action,
                    v.reason + (f": {v.detail}" if v.action == REFUSED_ACTION and v.detail else ""),
                    "-" if v.calls is None else f"{v.calls:,}",
                    f"{v.coverage * 100:.1f}%",
                    last,
                    ram(v.estimated_ram_bytes),
                    policy,
                ]
            )
        if not model.versions and model.refused:
            rows.append([model.model_name, "-", REFUSED_ACTION, model.refused, "-", "-", "-", "-", policy])
    notes = [plan_summary(plan), *filter(None, [frees_line(*plan.frees())]), f"memory: {MEMORY_NOTE}"]
    headers = ["MODEL", "VERSION", "ACTION", "REASON", "CALLS", "COVERAGE", "LAST CALL", "EST. RAM", "POLICY"]
    text = _table(headers, rows, notes, width)
    return text + (plan.diff or "(no change to the models config)\n")


def render_plan(plan: Plan, fmt: str, width: int = 160) -> str:
    return plan.to_text() if fmt == "json" else plan_table(plan, width)


def outcome_table(outcome: Outcome, width: int = 160) -> str:
    rows = []
    for m in outcome.models:
        seconds = "" if m.verified_seconds is None else f"verified in {m.verified_seconds:.1f}s"
        for retired in m.retired:
            rows.append([m.model_name, str(retired), "retired", seconds])
        for dropped, reasons in sorted(m.dropped.items()):
            rows.append([m.model_name, dropped, "dropped", reasons[0]])
        for back in m.restored:
            rows.append([m.model_name, str(back), "restored", "AVAILABLE again (the previous config)"])
        if not m.retired and not m.dropped and not m.restored:
            rows.append([m.model_name, "-", "unchanged", ""])
    notes = [f"{outcome.status}: {outcome.message}"] + ([f"journal: {outcome.journal}"] if outcome.journal else [])
    return _table(["MODEL", "VERSION", "RESULT", "DETAIL"], rows, notes, width)


def render_outcome(outcome: Outcome, fmt: str, width: int = 160) -> str:
    if fmt == "json":
        return json.dumps(outcome.as_json(), indent=2) + "\n"
    return outcome_table(outcome, width)
