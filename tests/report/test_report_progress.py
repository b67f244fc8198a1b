"""On a terminal the report shows which query runs and a bar of its pieces; elsewhere nothing.

The queries that can be long (observation and scrape gaps, the last call) are cut into pieces of
the window in very large fleets, one request each; here the piece budget is made small so that a
small fleet is cut too, and the answers must not change.
"""

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator
from typing import Any

import pytest
from fleet_helpers import END, END_TS, WEEK, fleet_prometheus

from tfs_traffic.prometheus.api import PrometheusAccess, PrometheusClient
from tfs_traffic.report import queries
from tfs_traffic.report import verdicts as rep
from tfs_traffic.report.progress import Progress

FLEET: dict[str, Any] = {
    "replicas": ["a", {"name": "b", "ip": "10.0.0.2", "scrape_offset": 30}],
    "models": [{"name": "m", "versions": [1, 2, 3]}],
    "traffic": [{"model": "m", "version": 2, "calls": 5, "at": "end-3d"}],
    "events": [{"gap": "b", "from": "end-5d", "to": "end-4d12h"}],
}
QUERIES = [
    "whether the recording rules cover the window",
    "versions AVAILABLE now",
    "observation and scrape gaps",
    "calls",
    "busiest hour",
    "last call",
]


class Recording(Progress):
    def __init__(self) -> None:
        self.events: list[tuple[str, int, int]] = []  # (query, pieces, pieces answered)
        self.totals: list[int] = []

    def total(self, queries: int) -> None:
        self.totals.append(queries)

    def query(self, name: str, pieces: int = 1) -> None:
        self.events.append((name, pieces, 0))

    def advance(self) -> None:
        name, pieces, done = self.events[-1]
        self.events[-1] = (name, pieces, done + 1)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fleet_prometheus(FLEET, tmp_path_factory.mktemp("progress")) as (_, _, prom):
        yield prom.url


def summary(report: rep.Report) -> list[tuple[Any, ...]]:
    return [(v.model_version, v.verdict, v.reason, v.calls, v.coverage, v.last_call_at) for v in report.versions]


def test_pieces_are_counted_and_change_nothing(fleet: str, monkeypatch: pytest.MonkeyPatch) -> None:
    client = PrometheusClient(PrometheusAccess(url=fleet, retries=0))
    options = rep.Options(at=END_TS, window=WEEK)
    whole = Recording()
    expected = rep.run(client, options, whole)
    assert whole.totals == [6] and whole.events == [(name, 1, 1) for name in QUERIES]
    # Six gauge series AVAILABLE now, twice that for pods replaced since: 12. A budget of 12,000
    # points is 1,000 coverage steps a piece (the only pod down is narrowed to: one copy), of the
    # week's 1,009, and 250 hours of last call (four series per counter), of --lookback's 720.
    for budget, cut in ((12_000, (2, 3)), (1_200, (11, 29))):
        monkeypatch.setattr(queries, "PIECE_BUDGET", budget)
        events = Recording()
        assert summary(rep.run(client, options, events)) == summary(expected)
        assert events.events == [
            (name, cut[0], cut[0]) if name == "observation and scrape gaps" else
            (name, cut[1], cut[1]) if name == "last call" else (name, 1, 1)
            for name in QUERIES
        ]  # fmt: skip


def run_cli(url: str, terminal: bool) -> tuple[int, str, str]:
    """`tfs-traffic report` with stderr on a pseudo-terminal (120 columns) or a pipe; stdout a pipe."""
    args = [sys.executable, "-m", "tfs_traffic.cli", "report", "--prometheus", url, "--at", END]
    if not terminal:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
        return proc.returncode, proc.stdout, proc.stderr
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=follower, stdin=subprocess.DEVNULL)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    out = proc.stdout.read().decode() if proc.stdout else ""
    os.close(leader)
    return proc.wait(timeout=120), out, seen.decode(errors="replace")


def test_terminal_shows_each_query_and_pipes_get_nothing_extra(fleet: str) -> None:
    code, table, stderr = run_cli(fleet, terminal=False)
    assert code == 0 and "retire" in table
    assert stderr.splitlines() == [f"tfs-traffic: querying {fleet} over 7d ending {END}"]
    code, same_table, screen = run_cli(fleet, terminal=True)
    assert code == 0 and same_table == table
    plain = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", screen)  # without the terminal's control sequences
    for i, name in enumerate(QUERIES, 1):
        assert f"query {i} of 6: {name}" in plain
    assert "1/1 pieces" in plain
    # The line is gone at the end: the cursor is shown again, moved back up and the line erased.
    assert screen.endswith("\x1b[?25h\r\x1b[1A\x1b[2K")
