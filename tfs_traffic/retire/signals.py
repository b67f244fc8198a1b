"""Signs that a client wants a version: calls counted under it, and NOT_FOUND answers for its model.

Three counters say it (docs/metrics.md): the patched server's `model_call_count{model_name,
model_version}` (a call served by the version), the sidecar's `tfserving_model_calls_total{...,
code}` (any call naming it, NOT_FOUND ones after the unload included) and upstream's own
`:tensorflow:serving:request_count{model_name, status="NOT_FOUND"}` (per model only: a request
for a version the server does not serve, README "Retiring versions").

They are read two ways: from Prometheus (every target it scrapes, up to its last scrape) and from
metrics pages directly (no scrape delay). A page's series is matched to Prometheus' by the
`instance` label Prometheus gives a target: the page's HOST:PORT.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from tfs_traffic import contract, exposition
from tfs_traffic.prometheus import promql
from tfs_traffic.prometheus.api import Querier
from tfs_traffic.report.measure import calls_inputs_by_series

CALL_COUNTERS = (contract.PATCHED_CALLS, contract.SIDECAR_CALLS)
WATCHED = (*CALL_COUNTERS, contract.REQUEST_COUNT)
NOT_FOUND = "NOT_FOUND"
METRIC_LABEL = "tfs_metric"
PAGE_TIMEOUT = 5.0

Labels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs
Key = tuple[str, Labels]  # (metric, labels)
Reading = dict[Key, float]


class PageUnreadable(Exception):
    """A metrics page could not be read or parsed."""


@dataclass(frozen=True)
class Signal:
    """A counter that rose: which version (None: the model's, request_count), what, where, how much."""

    model: str
    version: str | None
    what: str
    where: str
    count: float
    watched: tuple[str, ...] = ()  # for a per-model counter: the retired versions it may be about

    def line(self) -> str:
        """`alpha:1 (tfserving_model_calls_total{code="NOT_FOUND"} +3 at URL)`."""
        named = self.version if self.version is not None else ",".join(self.watched)
        return f"{self.model}:{named} ({self.what} +{format_count(self.count)} at {self.where})"

    def as_json(self) -> dict[str, object]:
        return {
            "model": self.model,
            "version": self.version,
            "watched": list(self.watched),
            "what": self.what,
            "where": self.where,
            "count": self.count,
        }


def format_count(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3g}"


def page_instance(url: str) -> str:
    """The `instance` Prometheus gives the target serving `url`: its HOST:PORT."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_page(text: str) -> Reading:
    """The watched counters of a metrics page (TF Serving's or the sidecar's)."""
    try:
        families = exposition.parse(text)
    except ValueError as e:
        raise PageUnreadable(f"not a Prometheus metrics page: {e}") from None
    out: Reading = {}
    for metric in WATCHED:
        for labels, value in families.get(metric, {}).items():
            out[(metric, labels)] = value
    return out


def read_page(url: str, session: object | None = None, timeout: float = PAGE_TIMEOUT) -> Reading:
    import requests

    getter = session if session is not None else requests
    try:
        response = getter.get(url, timeout=timeout)  # type: ignore[attr-defined]
    except requests.RequestException as e:
        raise PageUnreadable(f"{url}: {type(e).__name__}") from None
    if response.status_code != 200:
        raise PageUnreadable(f"{url}: HTTP {response.status_code}")
    try:
        return parse_page(response.text)
    except PageUnreadable as e:
        raise PageUnreadable(f"{url}: {e}") from None


def _what(metric: str, labels: Mapping[str, str]) -> str:
    if metric == contract.SIDECAR_CALLS:
        return f'{metric}{{code="{labels.get("code", "")}"}}'
    if metric == contract.REQUEST_COUNT:
        return f'{metric}{{status="{labels.get("status", "")}"}}'
    return metric


def signal_of(
    metric: str, labels: Mapping[str, str], count: float, where: str, watched: Mapping[str, Iterable[int | str]]
) -> Signal | None:
    """The signal a rise of `count` in this series is, for the versions `watched` ({model: versions})."""
    if count <= 0:
        return None
    model = labels.get(contract.MODEL, "")
    if model not in watched:
        return None
    if metric in CALL_COUNTERS:
        version = labels.get(contract.VERSION, "")
        if version in {str(v) for v in watched[model]}:
            return Signal(model, version, _what(metric, labels), where, count)
        return None
    if metric == contract.REQUEST_COUNT and labels.get("status") == NOT_FOUND:
        return Signal(model, None, _what(metric, labels), where, count, tuple(str(v) for v in watched[model]))
    return None


def rises(before: Reading, after: Reading) -> dict[Key, float]:
    """Per series, how much it rose between two readings of one page (after a reset: its value)."""
    out: dict[Key, float] = {}
    for key, value in after.items():
        old = before.get(key, 0.0)
        rise = value - old if value >= old else value
        if rise > 0:
            out[key] = rise
    return out


def page_signals(url: str, before: Reading, after: Reading, watched: Mapping[str, Iterable[int | str]]) -> list[Signal]:
    """What rose on the page at `url` between two readings, as signals for `watched`."""
    out = []
    for (metric, labels), rise in sorted(rises(before, after).items()):
        found = signal_of(metric, dict(labels), rise, url, watched)
        if found:
            out.append(found)
    return out


def _model_matcher(models: Iterable[str]) -> str:
    return f"{contract.MODEL}=~{promql.any_of(sorted(set(models)))}"


def increases_query(metrics: Sequence[str], models: Iterable[str], window: float, selector: str = "") -> str:
    """Per series of `metrics` for `models`, the report's exact-count inputs over `window`
    (`promql.calls_inputs`), each tagged with its metric's name."""
    matcher = _model_matcher(models)
    return promql.tagged(
        METRIC_LABEL,
        {m: promql.calls_inputs(promql.select(m, selector, matcher), window) for m in metrics},
        parenthesised=True,
    )


def prometheus_signals(
    client: Querier,
    watched: Mapping[str, Iterable[int | str]],
    window: float,
    at: float,
    selector: str = "",
    metrics: Sequence[str] = WATCHED,
) -> list[Signal]:
    """The watched series that rose in the `window` ending at `at`, in Prometheus (each scraped target)."""
    if not watched:
        return []
    answer = client.query(increases_query(metrics, watched, window, selector), at)
    out = []
    for series, inputs in sorted(calls_inputs_by_series(answer).items()):
        labels = dict(series)
        metric = labels.pop(METRIC_LABEL, "")
        count = promql.combine_calls(inputs)
        where = f"Prometheus, instance {labels.get('instance', '?')}"
        found = signal_of(metric, labels, count or 0.0, where, watched)
        if found:
            out.append(found)
    return out


def last_scraped(
    client: Querier, pages: Sequence[str], models: Iterable[str], at: float, selector: str = ""
) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """Per page URL, Prometheus' latest sample of each watched series of its instance: (metric, labels, value)."""
    instances = {page_instance(url): url for url in pages}
    if not instances:
        return {}
    names = f"__name__=~{promql.any_of(list(WATCHED))}"
    where = f"instance=~{promql.any_of(list(instances))}"
    answer = client.query(promql.select("", selector, names, where, _model_matcher(models)), at)
    out: dict[str, list[tuple[str, dict[str, str], float]]] = {url: [] for url in pages}
    for sample in answer:
        labels = dict(sample["metric"])
        metric = labels.pop("__name__", "")
        url = instances.get(labels.get("instance", ""))
        if url is not None:
            out[url].append((metric, labels, float(sample["value"][1])))
    return out


def since_last_scrape(reading: Reading, scraped: Sequence[tuple[str, dict[str, str], float]]) -> dict[Key, float]:
    """Per series of a page, what it counted since Prometheus' last scrape of it: the page's value
    minus Prometheus' (the page's value after a reset, or for a series Prometheus does not hold)."""
    out: dict[Key, float] = {}
    for key, value in reading.items():
        metric, labels = key
        stored = [v for m, lbls, v in scraped if m == metric and all(lbls.get(k) == x for k, x in labels)]
        last = stored[0] if stored else None
        rise = value if last is None or value < last else value - last
        if rise > 0:
            out[key] = rise
    return out
