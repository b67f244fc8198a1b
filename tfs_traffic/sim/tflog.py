"""The stand-in's log lines, in absl's layout as TF Serving writes them to stderr.

`E0101 12:00:00.000000   1234 where] message`: severity letter, date, time, thread id, then where
in the source the line comes from — here the stand-in's own name, not a TF Serving file and line.
"""

import sys
import threading
import time
from collections.abc import Callable

Log = Callable[[str, str], None]  # (severity letter I/W/E/F, message)


def line(severity: str, message: str) -> str:
    now = time.time()
    t = time.localtime(now)
    stamp = f"{t.tm_mon:02d}{t.tm_mday:02d} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{int(now % 1 * 1e6):06d}"
    return f"{severity}{stamp} {threading.get_native_id():>7} tfs-traffic-sim] {message}"


def to_stderr(severity: str, message: str) -> None:
    """Log one line to stderr (bytes of a config file that are not UTF-8 written as they came)."""
    sys.stderr.buffer.write((line(severity, message) + "\n").encode("utf-8", "surrogateescape"))
    sys.stderr.buffer.flush()
