"""Step 2 of `retire apply`: nobody called a planned version since the plan — checked fresh.

Each version to retire must have had zero calls over the last `--recheck` up to now: in
Prometheus (every target it scrapes, up to its last scrape), and on each target's metrics page
read directly, compared with Prometheus' last scrape of that page (the calls since, which no
scrape holds yet). A call drops the version from the change. Prometheus is asked first and the
pages read after, so a page is never older than the scrape it is compared with.

The page readings are also the soak's baseline (`tfs_traffic.retire.soak`): anything they count
later is a client that wants a retired version.
"""

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from tfs_traffic.durations import format_duration
from tfs_traffic.prometheus.api import Querier
from tfs_traffic.retire import signals
from tfs_traffic.retire.soak import baseline


@dataclass
class Recheck:
    """Versions dropped ({(model, version): why}), the pages' readings, and when Prometheus was asked."""

    dropped: dict[tuple[str, str], list[str]]
    readings: dict[str, signals.Reading]
    at: float
    notes: list[str]


def recheck(
    client: Querier,
    watched: Mapping[str, Iterable[int | str]],
    seconds: float,
    pages: Sequence[str],
    selector: str = "",
    clock: Callable[[], float] = time.time,
) -> Recheck:
    """Calls to the `watched` versions ({model: versions}) over the last `seconds`, fresh."""
    watched = {m: [str(v) for v in vs] for m, vs in watched.items() if vs}
    at = clock()
    found = signals.prometheus_signals(client, watched, seconds, at, selector, signals.CALL_COUNTERS)
    scraped = signals.last_scraped(client, pages, watched, at, selector)
    readings = baseline(pages)
    dropped: dict[tuple[str, str], list[str]] = {}
    for s in found:
        dropped.setdefault((s.model, s.version or ""), []).append(
            f"{s.what} +{signals.format_count(s.count)} in the last {format_duration(seconds)} ({s.where})"
        )
    notes = []
    for url in pages:
        mine = [k for k in readings[url] if dict(k[1]).get("model_name") in watched]
        if mine and not scraped.get(url):
            notes.append(
                f"Prometheus holds no series of instance {signals.page_instance(url)} ({url}): "
                "its counters are compared with 0"
            )
        rose = signals.since_last_scrape(readings[url], scraped.get(url, []))
        for (metric, labels), count in sorted(rose.items()):
            if metric not in signals.CALL_COUNTERS:
                continue
            page = signals.signal_of(metric, dict(labels), count, url, watched)
            if page is not None:
                dropped.setdefault((page.model, page.version or ""), []).append(
                    f"{page.what} +{signals.format_count(count)} since Prometheus' last scrape of {url}"
                )
    return Recheck(dropped, readings, at, notes)
