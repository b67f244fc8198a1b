"""`tfs-traffic report --forecast` on a real Prometheus: a fading version gets its idle date."""

import json
import subprocess
import sys
from datetime import datetime

from tfs_traffic import contract
from tfs_traffic.report.forecast import DAY

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
DAYS = 7
END = T0 + DAYS * 86400


def decline(zero_day: float, r0: float) -> list[tuple[float, float]]:
    """A counter whose rate falls linearly from r0 at T0 to 0 at T0 + zero_day days."""
    t_zero = zero_day * DAY
    return [
        (T0 + t, r0 * (min(t, t_zero) - min(t, t_zero) ** 2 / (2 * t_zero))) for t in range(0, DAYS * 86400 + 1, 300)
    ]


def steady(rate: float) -> list[tuple[float, float]]:
    return [(T0 + t, rate * t) for t in range(0, DAYS * 86400 + 1, 300)]


def history() -> list:
    out = []
    for version, samples in (("1", decline(10, 2.0)), ("2", steady(1.0)), ("3", steady(3.0))):
        labels = {"model_name": "m", "model_version": version, "instance": "a:8501", "job": "tfserving"}
        out.append((contract.PATCHED_CALLS, labels, samples))
        out.append((contract.PATCHED_AVAILABLE, labels, [(t, 1) for t, _ in samples]))
    return out


def test_forecast_dates_the_fading_version_only(prometheus_factory) -> None:
    prom = prometheus_factory(history())
    args = ["report", "--prometheus", prom.url, "--at", str(END), "--format", "json", "--forecast"]
    done = subprocess.run([sys.executable, "-m", "tfs_traffic.cli", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    by_version = {v["model_version"]: v for v in report["versions"]}
    idle_at = datetime.fromisoformat(by_version["1"]["forecast_idle_at"].replace("Z", "+00:00")).timestamp()
    assert abs(idle_at - (T0 + 10 * DAY)) < DAY
    assert by_version["1"]["verdict"] == "keep" and by_version["1"]["forecast_kendall_tau"] == -1.0
    assert by_version["2"]["forecast_idle_at"] is None and by_version["3"]["forecast_idle_at"] is None
    assert report["forecast"] == {"horizon_seconds": 30 * 86400, "idle_within_horizon": ["m:1"]}

    table = subprocess.run(
        [sys.executable, "-m", "tfs_traffic.cli", *args[:-3], "--forecast", "--forecast-horizon", "1d"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert table.returncode == 0, table.stderr
    assert "IDLE BY" in table.stdout and "2026-01-1" in table.stdout
    assert "no version is projected to go idle within 1d" in table.stdout
