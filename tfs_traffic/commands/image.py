"""`tfs-traffic image`: build runtime images (the patched server, the sidecar) through the Docker API."""

import argparse
import os
import shlex
from pathlib import Path

from tfs_traffic.commands import Subcommands, add_actions, add_command, print_help

DESCRIPTION = """\
Build container images through the Docker Engine API: Docker, or Podman's Docker-compatible
service (set DOCKER_HOST=unix:///path/to/podman.sock). Progress goes to stderr; the image id is
printed last on stdout, then repository@digest after --push.

  build          pack a tensorflow_model_server binary into a runtime image with the official
                 image's contract (MODEL_NAME, MODEL_BASE_PATH=/models, ports 8500/8501, extra
                 arguments forwarded), a non-root user (uid 10001) and Prometheus metrics on by
                 default at /monitoring/prometheus/metrics on the REST port; or, with --sidecar,
                 build the sidecar image from sidecar/Dockerfile: the build host's pip unpacks
                 the sidecar's packages for CPython 3.11 (no TensorFlow) into the build context,
                 the Dockerfile only COPYs them (no RUN step; the default base has no pip).
  sidecar-context
                 write that build context to a directory, for `docker build DIR` or buildx.
  build-server   the whole pipeline behind `make build-image`: fetch tensorflow/serving at a
                 release tag, apply patches/<version>, build the server with bazel (in the
                 tensorflow/serving:<version>-devel image via tools/run_in_docker.sh, or with a
                 local bazel), and pack it as `build` does.
"""

EPILOG = """\
examples:
  tfs-traffic image build --binary bazel-bin/tensorflow_serving/model_servers/tensorflow_model_server \\
      --tag registry.example.com/ml/tfserving:2.20.0-calls --tf-serving-version 2.20.0 --patch-series patches/2.20.0
  DOCKER_HOST=unix:///run/podman/podman.sock tfs-traffic image build --binary ./tensorflow_model_server --tag tfs:dev
  tfs-traffic image build --sidecar --tag registry.example.com/ml/tfs-traffic-sidecar:0.1.0 --push
  tfs-traffic image build --sidecar --tag tfs-sidecar:dev --base python:3.11-slim-bookworm --wheels ./wheelhouse
  tfs-traffic image sidecar-context out/sidecar --arch aarch64 && docker build --platform linux/arm64 out/sidecar
  tfs-traffic image build-server --version 2.20.0 --tag registry.example.com/ml/tfserving:2.20.0-calls \\
      --bazel-options='--jobs=8 --copt=-march=native' --push

The runtime image's entrypoint passes --monitoring_config_file=$MONITORING_CONFIG_FILE (baked:
/etc/tfs-traffic/monitoring.config). Set MONITORING_CONFIG_FILE= (empty) to turn it off, point it at
another file, or pass --monitoring_config_file yourself. CA certificates: --ca-certificates bundle
(default) copies a PEM bundle (certifi's, or --ca-bundle FILE) to /etc/ssl/certs/ca-certificates.crt
and needs no RUN step; --ca-certificates apt installs Debian's ca-certificates package as the
official image does (needs a builder that runs RUN steps, and apt in the base).
"""


def register(subparsers: Subcommands) -> None:
    parser = add_command(
        subparsers,
        "image",
        run=lambda args: print_help(parser),
        help="build the patched TF Serving image or the sidecar image",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    actions = add_actions(parser)

    build = add_command(
        actions,
        "build",
        run=run_build,
        help="pack a tensorflow_model_server binary (or, with --sidecar, the sidecar) into an image",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    what = build.add_mutually_exclusive_group(required=True)
    what.add_argument("--binary", type=Path, metavar="PATH", help="the tensorflow_model_server binary to pack")
    what.add_argument(
        "--sidecar", action="store_true", help="build the sidecar image from sidecar/Dockerfile of the checkout"
    )
    build.add_argument("--tag", required=True, metavar="T", help="image name:tag, e.g. registry/ml/tfserving:2.20.0")
    build.add_argument("--push", action="store_true", help="push the image after the build and print its digest")
    _add_pack_arguments(build)
    build.add_argument("--tf-serving-version", metavar="V", help="TF Serving version of the binary (image label)")
    build.add_argument(
        "--patch-series", type=Path, metavar="DIR", help="the applied series, e.g. patches/2.20.0 (its sha256 → label)"
    )
    _add_sidecar_arguments(build)

    context = add_command(
        actions,
        "sidecar-context",
        run=run_sidecar_context,
        help="write the sidecar image's build context (Dockerfile, rootfs/ with site-packages) to a directory",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    context.add_argument("out", type=Path, metavar="DIR", help="directory to fill (its rootfs/ is replaced)")
    context.add_argument(
        "--arch", choices=("x86_64", "aarch64"), default="x86_64", help="CPU of the image's wheels (default x86_64)"
    )
    _add_sidecar_arguments(context)

    server = add_command(
        actions,
        "build-server",
        run=run_build_server,
        help="fetch, patch and build TF Serving at a release tag, then pack it (make build-image)",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    server.add_argument("--version", required=True, metavar="V", help="TF Serving release tag, e.g. 2.20.0")
    server.add_argument("--tag", required=True, metavar="T", help="image name:tag to build")
    server.add_argument("--push", action="store_true", help="push the image after the build and print its digest")
    server.add_argument(
        "--bazel-options",
        default="",
        metavar="'OPTS'",
        help="extra bazel build options, one shell-quoted string: --bazel-options='--jobs=8 ...'",
    )
    server.add_argument(
        "--build-with", choices=("docker", "bazel"), default="docker", help="bazel in the devel image, or a local one"
    )
    server.add_argument("--devel-image", metavar="IMAGE", help="default: tensorflow/serving:<version>-devel")
    server.add_argument(
        "--source-url",
        default=os.environ.get("TF_SERVING_SOURCE", "https://github.com/tensorflow/serving.git"),
        metavar="URL",
        help="git repository to clone the tag from (a local path or mirror works; env TF_SERVING_SOURCE)",
    )
    server.add_argument(
        "--cache-dir", type=Path, default=Path("build/cache"), metavar="DIR", help="source cache (default build/cache)"
    )
    server.add_argument(
        "--patches",
        type=Path,
        metavar="DIR",
        help="directory of patch series (<version>/series); default: the series shipped with tfs-traffic",
    )
    server.add_argument(
        "--patch-with",
        choices=("auto", "tfs-traffic", "git"),
        default="auto",
        help="tfs-traffic's patch code (as `tfs-traffic patch apply`) or plain `git apply` of the series; "
        "auto: the former when installed",
    )
    _add_pack_arguments(server)


def _add_sidecar_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        type=Path,
        default=Path("."),
        metavar="DIR",
        help="sidecar: the tfs-traffic checkout with sidecar/ and the tfs_traffic package (default: .)",
    )
    parser.add_argument(
        "--wheels",
        type=Path,
        metavar="DIR",
        help="sidecar: install wheels from DIR only (pip --no-index --find-links DIR), for offline builds",
    )


def _add_pack_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base",
        metavar="IMAGE",
        help="base image (default ubuntu:22.04; with --sidecar, the Dockerfile's ARG BASE: distroless Python 3.11)",
    )
    parser.add_argument(
        "--ca-certificates",
        choices=("bundle", "apt"),
        default="bundle",
        help="copy a CA bundle in (no RUN step; default) or apt-get install ca-certificates",
    )
    parser.add_argument("--ca-bundle", type=Path, metavar="FILE", help="PEM bundle for --ca-certificates bundle")


def run_build(args: argparse.Namespace) -> int:
    from tfs_traffic.errors import UsageError
    from tfs_traffic.image import pack

    if args.sidecar:
        if args.binary or args.tf_serving_version or args.patch_series or args.ca_bundle:
            raise UsageError("--sidecar takes no --binary, --tf-serving-version, --patch-series or --ca-bundle")
        result = pack.build_sidecar_image(
            args.tag, args.source, base=args.base, wheels=args.wheels, push_image=args.push
        )
    else:
        if args.wheels or args.source != Path("."):
            raise UsageError("--source and --wheels go with --sidecar")
        spec = pack.ServerImageSpec(
            base=args.base or pack.DEFAULT_BASE,
            tf_serving_version=args.tf_serving_version,
            patches_sha256=pack.patch_series_sha256(args.patch_series) if args.patch_series else None,
            ca_certificates=args.ca_certificates,
            ca_bundle=args.ca_bundle,
        )
        result = pack.build_server_image(args.binary, args.tag, spec, push_image=args.push)
    pack.print_result(result)
    return 0


def run_sidecar_context(args: argparse.Namespace) -> int:
    from tfs_traffic.image import pack, sidecar_context

    prepared = sidecar_context.prepare_context(
        args.source, args.out, arch=args.arch, wheels=args.wheels, progress=pack.progress_line
    )
    print(prepared.directory)
    return 0


def run_build_server(args: argparse.Namespace) -> int:
    from tfs_traffic.errors import UsageError
    from tfs_traffic.image import build, pack

    try:
        bazel_options = shlex.split(args.bazel_options)
    except ValueError as e:
        raise UsageError(f"--bazel-options: {e}") from None
    request = build.BuildRequest(
        version=args.version,
        tag=args.tag,
        cache_dir=args.cache_dir,
        patches_dir=args.patches,
        source_url=args.source_url,
        bazel_options=bazel_options,
        build_with=args.build_with,
        devel_image=args.devel_image,
        push=args.push,
        base=args.base or pack.DEFAULT_BASE,
        ca_certificates=args.ca_certificates,
        ca_bundle=args.ca_bundle,
        patch_tool=args.patch_with,
    )
    pack.print_result(build.build_server(request))
    return 0
