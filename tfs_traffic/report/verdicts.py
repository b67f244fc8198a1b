"""The retirement report: for every AVAILABLE model version, keep, retire or unknown, and why.

`run` asks Prometheus a fixed number of queries (`tfs_traffic.report.measure`), judges each version
by the rules of docs/verdicts.md (`tfs_traffic.report.judge`) and returns a `Report`
(`tfs_traffic.report.model`, whose JSON is docs/json.md).
"""

from collections.abc import Iterable, Sequence

from tfs_traffic.durations import format_duration, rfc3339
from tfs_traffic.prometheus.api import PrometheusClient
from tfs_traffic.report.display import ago, redact_url, version_key
from tfs_traffic.report.forecast import forecast_idle
from tfs_traffic.report.judge import judge
from tfs_traffic.report.measure import Ident, Measurements, Recorder, measure
from tfs_traffic.report.model import RETIRE, Options, Report, VersionReport
from tfs_traffic.report.progress import SILENT, Progress

__all__ = ["Options", "Report", "VersionReport", "config_versions", "redact_url", "run"]


def run(client: PrometheusClient, options: Options, progress: Progress = SILENT) -> Report:
    """Query Prometheus (a fixed number of queries) and judge every AVAILABLE version; `progress`
    is told which query runs (a line on a terminal, `tfs_traffic.report.progress`)."""
    recorder = Recorder(client)
    try:
        found = measure(recorder, options, progress)
    finally:
        progress.close()
    serving = sorted(found.inventory.serving, key=lambda k: (k[0], version_key(k[1])))
    available = _available_by_model(found.inventory.serving)
    latest = found.inventory.latest
    versions = [_version_report(ident, found, options, len(available[ident[0]]) == 1, latest) for ident in serving]
    return Report(options.at, options.window, client.access.url, options, versions, queries=len(recorder.sent))


def _available_by_model(serving: Iterable[Ident]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for model, version in serving:
        out.setdefault(model, []).append(version)
    return out


def _version_report(
    ident: Ident, found: Measurements, options: Options, only: bool, latest: set[Ident]
) -> VersionReport:
    model, version = ident
    sources = found.calls.get(ident, {})
    calls = max(sources.values()) if sources else (0.0 if found.any_counter else None)
    max_qps = found.qps.get(ident, 0.0 if calls is not None else None)
    # --models-config's version_labels, and those the servers resolve to it (the status poller's).
    labels = sorted({*options.labels.get(ident, ()), *found.inventory.labels.get(ident, ())})
    verdict, reason = judge(
        calls=calls,
        max_qps=max_qps,
        options=options,
        only=only,
        latest=ident in latest,
        labels=labels,
        keep=ident in options.keep,
        observed=found.coverage.share(ident),
        worst_gap=found.coverage.worst_gap.get(ident, 0.0),
    )
    last_call = found.last_call.get(ident)
    return VersionReport(
        model_name=model,
        model_version=version,
        verdict=verdict,
        reason=reason,
        calls=calls,
        max_hourly_qps=max_qps,
        coverage=found.coverage.share(ident),
        labels=labels,
        instances=sorted(found.inventory.instances.get(ident, set()) or found.inventory.serving[ident]),
        calls_by_source=dict(sources),
        available_at_window_start=ident in found.inventory.started,
        hourly_calls=found.hourly.get(ident, [0.0] * options.hours) if options.hourly else None,
        forecast=forecast_idle(found.trends.get(ident, [])) if options.forecast else None,
        last_call_at=last_call,
        estimated_ram_bytes=None if ident not in found.inventory.ram else int(found.inventory.ram[ident]),
        note=_note(last_call, options) if verdict == RETIRE else None,
    )


def _note(last_call_at: float | None, options: Options) -> str | None:
    """Why a retire may still be wrong: a call within --lookback (a weekly or monthly client)."""
    if last_call_at is None:
        return None
    return (
        f"last called {ago(options.at, last_call_at)} ({rfc3339(last_call_at)}), within --lookback "
        f"{format_duration(options.last_call_span)}: a weekly or monthly client may still use it"
    )


def config_versions(report: Report, configured: Sequence[str]) -> dict[str, list[int]]:
    """For each configured model with judged versions: every judged version that is not `retire`
    (the `specific` list of the emitted config). Non-numeric versions cannot be listed there."""
    out: dict[str, list[int]] = {}
    for v in report.versions:
        if v.model_name in configured and v.verdict != RETIRE and v.model_version.isdigit():
            out.setdefault(v.model_name, []).append(int(v.model_version))
    return {m: sorted(vs) for m, vs in out.items()}
