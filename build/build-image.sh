#!/usr/bin/env bash
# `make build-image`: turns the make variables into `tfs-traffic image build-server` flags.
#
#   make build-image TF_SERVING_VERSION=2.20.0 IMAGE=REPO/NAME:TAG [BAZEL_OPTIONS=...] [PUSH=1]
#                    [BUILD_WITH=docker|bazel] [TF_SERVING_SOURCE=URL-or-path]
#
# The pipeline itself (tool checks, fetch into build/cache/, patches/<version>, bazel through
# tools/run_in_docker.sh under a pseudo-terminal, the image through the Docker API) is Python:
# tfs_traffic/image/build.py, with one-line errors and tests. This wrapper only maps variables, so it
# uses nothing but bash builtins (it must be able to say "docker not found" on a bare host).
set -euo pipefail
cd "${BASH_SOURCE[0]%/*}/.."
usage="usage: make build-image TF_SERVING_VERSION=2.20.0 IMAGE=REPO/NAME:TAG [BAZEL_OPTIONS=...] [PUSH=1] [BUILD_WITH=docker|bazel]"
if [[ -z "${TF_SERVING_VERSION:-}" ]]; then echo "build-image: TF_SERVING_VERSION is not set; $usage" >&2; exit 2; fi
if [[ -z "${IMAGE:-}" ]]; then echo "build-image: IMAGE is not set; $usage" >&2; exit 2; fi
args=(image build-server --version "$TF_SERVING_VERSION" --tag "$IMAGE" --build-with "${BUILD_WITH:-docker}"
  "--bazel-options=${BAZEL_OPTIONS:-}" --cache-dir build/cache --patches patches)
[[ -n "${TF_SERVING_SOURCE:-}" ]] && args+=(--source-url "$TF_SERVING_SOURCE")
case "${PUSH:-}" in "" | 0 | no | false) ;; *) args+=(--push) ;; esac
exec "${TFS_TRAFFIC:-.venv/bin/tfs-traffic}" "${args[@]}"
