#!/usr/bin/env bash
# Prepare the sidecar image's build context in DIR: the Dockerfile, the example config and
# site-packages/ with the sidecar's run-time dependencies for the image's CPython (3.11, x86_64 by
# default), downloaded as binary wheels by the host's pip, so the Dockerfile needs no RUN step.
#   sidecar/build-context.sh DIR [PLATFORM]      e.g. PLATFORM=manylinux2014_aarch64
set -euo pipefail
out=${1:?usage: build-context.sh DIR [PLATFORM]}
platform=${2:-manylinux2014_x86_64}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
pip=${PIP:-python3 -m pip}
mkdir -p "$out"
rm -rf "$out/site-packages"
cp "$here/Dockerfile" "$here/example.config" "$out/"
# grpcio, protobuf, prometheus-client and aiohttp (with its small pure/binary helpers): nothing else.
$pip install --quiet --target "$out/site-packages" --only-binary=:all: --implementation cp \
  --python-version 3.11 --platform "$platform" --platform "${platform/manylinux2014/manylinux_2_28}" \
  "grpcio>=1.60" "protobuf>=6.31.1" "prometheus-client>=0.20" "aiohttp>=3.9"
# The config protos need protobuf only; their package metadata would pull TensorFlow: --no-deps.
$pip install --quiet --target "$out/site-packages" --no-deps "tensorflow-serving-api==${TFS_API_VERSION:-2.21.0}"
# Build tfs-traffic from a scratch copy: setuptools would leave build/ in the repository.
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
git -C "$repo" ls-files -z | (cd "$repo" && xargs -0 cp --parents -t "$src") 2>/dev/null || cp -r "$repo/." "$src"
$pip install --quiet --target "$out/site-packages" --no-deps "$src"
find "$out/site-packages" -name __pycache__ -prune -exec rm -rf {} +
rm -rf "$out/site-packages/bin"
du -sh "$out/site-packages"
