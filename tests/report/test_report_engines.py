"""The report's older situations (every verdict, counter resets, both sources) on VictoriaMetrics
too: the same verdicts as on Prometheus, and the same calls except where `increase()` answers
(a counter reset inside the window after an earlier value), which Prometheus extrapolates and
MetricsQL does not."""

from typing import Any

import pytest
from fleet_helpers import by_version, fleet_engines, run_report
from test_report_sources import BOTH
from test_report_verdicts import JUDGED, SITUATIONS

from tfs_traffic.report.display import display_calls


@pytest.mark.parametrize("fleet", [SITUATIONS, BOTH], ids=["situations", "both-sources"])
def test_same_verdicts_on_both_engines(fleet: dict[str, Any], tmp_path: Any) -> None:
    with fleet_engines(fleet, tmp_path) as (_, _, urls):
        prom, vm = (by_version(run_report(urls[e])[0]) for e in ("prometheus", "victoriametrics"))
    assert prom.keys() == vm.keys() and len(prom) == (JUDGED if fleet is SITUATIONS else 5)
    assert {k: (v.verdict, v.reason) for k, v in prom.items()} == {k: (v.verdict, v.reason) for k, v in vm.items()}
    differ = {k: (display_calls(p.calls), display_calls(vm[k].calls)) for k, p in prom.items()}
    differ = {k: pair for k, pair in differ.items() if pair[0] != pair[1]}
    # 6/h for a week with a restart at end-3d: increase() over the window, extrapolated by
    # Prometheus (1,006.1), from the sample before the window in MetricsQL (1,007).
    assert differ == ({("reset", "1"): (1006, 1007)} if fleet is SITUATIONS else {})
