"""The verdict rules of docs/verdicts.md, in order; the first matching check decides:

keep     traffic                   calls in the window above the threshold (default: any call)
keep     only-version              the model's only AVAILABLE version
keep     latest                    the highest AVAILABLE numeric version of one of its replicas
keep     label:<name> / label:keep a version label points at it / --keep M:V
unknown  scrape-gaps               a replica serving it was not scraped (up == 0, its last report
                                   said AVAILABLE) for more than --max-gap-ratio of the window
unknown  not-observed-long-enough  fleet-wide, no target reported it AVAILABLE for more than
                                   --max-gap-ratio of the window
unknown  no-call-data              Prometheus holds no call counter at all (outside the contract)
retire   idle                      none of the above
"""

from collections.abc import Sequence

from tfs_traffic.report.model import KEEP, RETIRE, UNKNOWN, Options


def judge(
    *,
    calls: float | None,
    max_qps: float | None,
    options: Options,
    only: bool,
    latest: bool,
    labels: Sequence[str],
    keep: bool,
    observed: float,
    worst_gap: float,
) -> tuple[str, str]:
    """The verdict and reason for one version (docs/verdicts.md, first match wins). `only`: the
    model's only AVAILABLE version; `latest`: some replica's highest AVAILABLE numeric version."""
    if _has_traffic(calls, max_qps, options):
        return KEEP, "traffic"
    if only:
        return KEEP, "only-version"
    if latest:
        return KEEP, "latest"
    if labels:
        return KEEP, f"label:{labels[0]}"
    if keep:
        return KEEP, "label:keep"
    if worst_gap > options.max_gap_ratio + 1e-9:
        return UNKNOWN, "scrape-gaps"
    if observed < 1 - options.max_gap_ratio - 1e-9:
        return UNKNOWN, "not-observed-long-enough"
    if calls is None:
        return UNKNOWN, "no-call-data"
    return RETIRE, "idle"


def _has_traffic(calls: float | None, max_qps: float | None, options: Options) -> bool:
    if calls is None:
        return False
    if options.max_qps is not None:
        # A busiest hour above the threshold; with 0 any call counts (hourly rates can miss a
        # lone call that straddles two hours, the window's count cannot).
        return (max_qps is not None and max_qps > options.max_qps) or (options.max_qps <= 0 and calls > 0)
    if options.min_calls is not None:
        return calls >= options.min_calls
    return calls > 0
