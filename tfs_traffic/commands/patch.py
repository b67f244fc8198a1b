"""`tfs-traffic patch apply|check`: put the per-version call counter into a TF Serving source tree."""

import argparse
from pathlib import Path

from tfs_traffic.commands import Subcommands, add_command

DESCRIPTION = """\
Patch a TF Serving source tree so that the server itself counts calls per model version.

The patch adds /tensorflow/serving/model_call_count{model_name,model_version} (+1 per Predict,
Classify, Regress or MultiInference request resolved to a version, under that version's number,
also when the request then fails) and
/tensorflow/serving/model_version_available{model_name,model_version} to TF Serving's
Prometheus page. The release is read from tensorflow_serving/tools/pip_package/setup.py
(or --version) and mapped to the one series in patches/ whose "Applies to" line lists it
(2.4.0 to 2.20.0); each series also refuses, by its context lines, the releases it is not for.

`check` is a dry run. `apply` refuses a tree with uncommitted changes, a tree that is already
patched and a release with no series; a git checkout is patched with `git apply` (the changes
are left uncommitted), any other directory with `patch -p1`.
"""

EPILOG = """\
examples:
  git clone --branch 2.20.0 https://github.com/tensorflow/serving tf-serving
  tfs-traffic patch check --source tf-serving
  tfs-traffic patch apply --source tf-serving
  tfs-traffic patch apply --source my-fork --version 2.4.4   # a fork of the 2.4.4 release

Then build TF Serving as usual (see the README section "Building a patched image").
"""


def register(subparsers: Subcommands) -> None:
    parser = add_command(
        subparsers,
        "patch",
        run=run,
        help="apply the per-version call counter patch to a TF Serving source tree",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    parser.add_argument("action", choices=("apply", "check"), help="apply the series, or only check that it applies")
    parser.add_argument("--source", required=True, type=Path, metavar="DIR", help="TF Serving source tree")
    parser.add_argument(
        "--version", metavar="V", help="the TF Serving release the tree is (default: _VERSION from its setup.py)"
    )


def run(args: argparse.Namespace) -> int:
    from tfs_traffic.patches import series as patch_series

    if args.action == "check":
        outcome = patch_series.check(args.source, args.version)
        print(
            f"TF Serving {outcome.version} at {args.source}: chose series patches/{outcome.series.name}, because "
            f"{outcome.reason}; its {len(outcome.series.patches)} patches ({len(outcome.files)} files) apply "
            f"cleanly ({outcome.method})"
        )
    else:
        outcome = patch_series.apply(args.source, args.version)
        print(
            f"patched TF Serving {outcome.version} at {args.source} with series patches/{outcome.series.name} "
            f"({len(outcome.series.patches)} patches, {len(outcome.files)} files, {outcome.method}), because "
            f"{outcome.reason}"
        )
    return 0
