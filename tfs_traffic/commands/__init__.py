"""One module per `tfs-traffic` subcommand, and the parser helpers they share.

Standard library only: `python -m tfs_traffic.sidecar` imports `commands.sidecar` (and so this
package) in an image that holds the sidecar's dependencies alone.
"""

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn, TypeAlias

# What `add_subparsers` returns (generic in typeshed only, hence the string).
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Run: TypeAlias = Callable[[argparse.Namespace], int]


def add_command(
    subparsers: Subcommands, name: str, *, run: Run | None, help: str, description: str, epilog: str
) -> argparse.ArgumentParser:
    """The parser of a command (or of an action under one), set to call `run` with the parsed arguments.

    `help` is its line in the parent's list; the description and the examples in `epilog` are
    printed as written, line breaks and indentation kept. `run` is None for a command whose
    actions each set their own.
    """
    parser = subparsers.add_parser(
        name, help=help, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    if run is not None:
        parser.set_defaults(run=run)
    return parser


def add_actions(parser: argparse.ArgumentParser, *, required: bool = False) -> Subcommands:
    """The ACTION subcommands of a command with several (`image build`, `k8s render`, ...)."""
    return parser.add_subparsers(title="actions", metavar="ACTION", required=required)


def one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Usage errors as one line (`PROG: error: MESSAGE (see --help)`, exit status 2), not argparse's
    two (the usage, then the error)."""

    def error(message: str) -> NoReturn:
        print(f"{parser.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)

    parser.error = error  # type: ignore[method-assign]


def print_help(parser: argparse.ArgumentParser) -> int:
    """For a command line that names no command or action: the parser's help on stderr, exit status 2."""
    parser.print_help(sys.stderr)
    return 2
