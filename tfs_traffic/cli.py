"""The `tfs-traffic` command: one subcommand per job, each defined in its own module.

A command module exposes `register(subparsers)`, which adds its parser (`commands.add_command`) and
sets `run`, a function taking the parsed arguments and returning the exit status. Modules import
what their work needs inside `run`, so building the parser loads only what the flags themselves need.
"""

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from tfs_traffic import __version__
from tfs_traffic.commands import print_help
from tfs_traffic.errors import ToolError

# Order is the order of `tfs-traffic --help`.
COMMAND_MODULES: tuple[str, ...] = (
    "tfs_traffic.commands.report",
    "tfs_traffic.commands.backfill",
    "tfs_traffic.commands.demo",
    "tfs_traffic.commands.export",
    "tfs_traffic.commands.patch",
    "tfs_traffic.commands.image",
    "tfs_traffic.commands.queries",
    "tfs_traffic.commands.k8s",
    "tfs_traffic.commands.sim",
    "tfs_traffic.commands.sidecar",
)

DESCRIPTION = """\
Per-version traffic for TensorFlow Serving, and safe decisions about which versions to unload.

Every loaded model version holds memory, but TF Serving counts requests per model only.
tfs-traffic counts them per version (a C++ patch or a sidecar), and `tfs-traffic report`
reads that history from Prometheus to tell which versions are idle and safe to unload.
"""

EPILOG = """\
examples:
  tfs-traffic report --prometheus http://prometheus:9090 --window 7d
  tfs-traffic report --prometheus URL --models-config models.config --emit-config new.config
  tfs-traffic demo

Run `tfs-traffic COMMAND --help` for the flags of each command.
"""


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every command module's subcommand."""
    parser = argparse.ArgumentParser(
        prog="tfs-traffic",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tfs-traffic {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, run, and turn every expected failure into one line on stderr."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not getattr(args, "takes_extra_args", False):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.extra_args = extra  # a command that parses the rest itself (`sim`: tensorflow_model_server's flags)
    if not hasattr(args, "run"):
        return print_help(parser)
    try:
        return int(args.run(args) or 0)
    except ToolError as e:
        print(f"tfs-traffic: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("tfs-traffic: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except Exception as e:  # a bug: still one line, the traceback on request
        if os.environ.get("TFS_TRAFFIC_DEBUG"):
            raise
        print(
            f"tfs-traffic: internal error: {type(e).__name__}: {e} (set TFS_TRAFFIC_DEBUG=1 for details)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
