"""Give recording rules their history: `promtool tsdb create-blocks-from rules`, one group at a time.

New recording rules only record from the moment Prometheus loads them, so the report would wait a
week before it can use them for a 7d window. promtool evaluates rules against a running Prometheus
over a past range and writes TSDB blocks; moved into the data directory, they read as if the rules
had always run. promtool runs every group in a file over the whole range, so each group gets its
own file and range: the hourly group over weeks is 24 evaluations a day, the per-minute group
over the same weeks would be 1,440 a day.

Where in its interval a group is evaluated comes from a hash of the group's name and of the rule
file's path as given to promtool (Prometheus' `Group.EvalTimestamp`): from a temporary directory,
the hourly group would land on another minute of the hour in every run, and so would every number
it records. promtool is therefore run in the rule file's directory and given the file's bare name:
the same groups give the same evaluation times in every run.
"""

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfs_traffic.errors import ToolError
from tfs_traffic.prometheus.local import LocalPrometheus, promtool
from tfs_traffic.queries.render import rule_file_text


@dataclass(frozen=True)
class RuleRange:
    """Evaluate `groups` (rule-file `groups` entries) every group interval over [start, end]."""

    groups: Sequence[dict[str, Any]]
    start: float
    end: float


def create_blocks_from_rules(url: str, rule_file: Path, start: float, end: float, out_dir: Path) -> None:
    """Run promtool against the Prometheus at `url`, writing blocks under `out_dir`.

    The rule file is named without its directory (promtool runs in it), so the groups' evaluation
    times depend only on their names and the file's name (see the module's docstring).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [
            promtool(),
            "tsdb",
            "create-blocks-from",
            "rules",
            "--quiet",
            f"--url={url}",
            f"--start={int(start)}",
            f"--end={int(end)}",
            f"--output-dir={out_dir.resolve()}",
            rule_file.name,
        ],
        cwd=rule_file.parent,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["no output"])[-1]
        raise ToolError(f"promtool could not backfill rules from {rule_file}: {last}")


def backfill_rules(prom: LocalPrometheus, ranges: Sequence[RuleRange]) -> int:
    """Evaluate each range's groups against the running `prom`, then restart it over the new blocks.

    Returns the number of blocks added. `prom` is running again (on a new port) when this returns.
    """
    added = 0
    with tempfile.TemporaryDirectory(prefix="tfs-traffic-rules-") as tmp:
        blocks = Path(tmp) / "blocks"
        for i, item in enumerate(ranges):
            rule_file = Path(tmp) / f"rules-{i}.yml"
            rule_file.write_text(rule_file_text(list(item.groups)))
            create_blocks_from_rules(prom.url, rule_file, item.start, item.end, blocks / str(i))
        prom.stop()
        for block in sorted(blocks.glob("*/*")):
            if block.is_dir():
                shutil.move(str(block), str(prom.tsdb_dir / block.name))
                added += 1
    prom.start()
    return added
