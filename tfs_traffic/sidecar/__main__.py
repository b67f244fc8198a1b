"""`python -m tfs_traffic.sidecar`: the sidecar alone, as its container runs it.

Same flags as `tfs-traffic sidecar`, without loading the other commands (or their dependencies).
"""

import argparse
import sys

from tfs_traffic.commands import sidecar
from tfs_traffic.errors import ToolError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tfs-traffic-sidecar",
        description=sidecar.DESCRIPTION,
        epilog=sidecar.EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sidecar.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return sidecar.run(args)
    except ToolError as e:
        print(f"tfs-traffic sidecar: error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
