"""Step 5 of `retire apply`: watch for any client that still wants a retired version.

From the first write on, and for `--soak` once the change is verified, every metrics page of the
targets is read each second and compared with its reading before the change, and Prometheus is
asked what rose since then (README, "Retiring versions"). Any rise is a client that still wants a
retired version (`tfs_traffic.retire.signals`): the caller rolls back at once.
"""

import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from tfs_traffic.errors import ToolError
from tfs_traffic.prometheus.api import Querier
from tfs_traffic.retire import signals
from tfs_traffic.retire.verify import Reachability

TICK = 1.0


class ClientWants(Exception):
    """A client still wants a retired version: the signals that say so."""

    def __init__(self, found: Sequence[signals.Signal]) -> None:
        super().__init__(found[0].line())
        self.signals = list(found)


class Watch:
    """Compares the targets' pages and Prometheus with what they said at `since`."""

    def __init__(
        self,
        watched: Mapping[str, Iterable[int | str]],
        baseline: Mapping[str, signals.Reading],
        since: float,
        client: Querier | None = None,
        selector: str = "",
        owners: Mapping[str, str] | None = None,
        reach: Reachability | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`owners`: the target (its gRPC address) each page belongs to, for `reach`."""
        self.watched = {m: [str(v) for v in vs] for m, vs in watched.items()}
        self.baseline = dict(baseline)
        self.since = since
        self.client = client
        self.selector = selector
        self.clock = clock
        self.owners = dict(owners or {})
        self.reach = reach or Reachability()
        self._last_check = 0.0

    def check(self, force: bool = False) -> None:
        """Read every page and Prometheus once (at most once per TICK unless `force`): ClientWants
        for any rise, VerifyFailed for a target whose page has been unreadable too long (`reach`),
        ToolError when Prometheus fails."""
        now = self.clock()
        if now - self._last_check < TICK and not force:
            return
        self._last_check = now
        found: list[signals.Signal] = []
        for url, before in self.baseline.items():
            target = self.owners.get(url, url)
            try:
                after = signals.read_page(url)
            except signals.PageUnreadable as e:
                self.reach.failed(target, str(e), url)
                continue
            self.reach.answered(target, url)
            found += signals.page_signals(url, before, after, self.watched)
        if self.client is not None:
            found += signals.prometheus_signals(
                self.client, self.watched, max(0.001, now - self.since), now, self.selector
            )
        if found:  # those naming a version first: the message names the first
            raise ClientWants(sorted(found, key=lambda s: s.version is None))

    def soak(self, seconds: float, sleep: Callable[[float], None] = time.sleep) -> None:
        """Watch for `seconds` (ClientWants, VerifyFailed or ToolError end it early)."""
        deadline = self.clock() + seconds
        while (left := deadline - self.clock()) > 0:
            self.check()
            sleep(min(TICK, left))
        self.check(force=True)


def baseline(pages: Sequence[str]) -> dict[str, signals.Reading]:
    """Every page read once: what later readings are compared with. ToolError for one that fails."""
    out = {}
    for url in pages:
        try:
            out[url] = signals.read_page(url)
        except signals.PageUnreadable as e:
            raise ToolError(f"cannot read metrics page {e}") from None
    return out
