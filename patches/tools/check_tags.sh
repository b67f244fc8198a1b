#!/usr/bin/env bash
# Which series in patches/ applies to which TF Serving release tag (maintainers' tool, not in CI).
# Usage: patches/tools/check_tags.sh SERVING_GIT_DIR [TAG...]   (default: every non-rc tag from 2.4.0)
# Per tag and series: git apply --check of the whole series, patch -p1 -F0 patch by patch, the unit's
# int64 spelling against the tag's core/servable_id.h, TFRT hunks where the tag has tfrt_servable.cc;
# then, for the series named in patches/*/series for that tag, the functions RecordModelCall is in.
set -euo pipefail
git_dir=$1; shift
here=$(cd "$(dirname "$0")/.." && pwd)
tags=("$@")
[ ${#tags[@]} -gt 0 ] || mapfile -t tags < <(git --git-dir="$git_dir" tag | grep -v rc | grep -E '^2\.([4-9]|1[0-9]|[2-9][0-9])\.' | sort -V)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
export_tag() {  # test data blobs may be absent from a partial mirror; they are never patched
  rm -rf "$2"; mkdir -p "$2"
  git --git-dir="$git_dir" archive "$1" -- . ':(exclude)tensorflow_serving/servables/tensorflow/testdata' \
    ':(exclude)tensorflow_serving/example/testdata' 2>/dev/null | tar -x -C "$2"
}
applies() {  # applies SERIES_DIR TREE -> exit 0 when the series fits the tree
  local s=$1 t=$2 it_tag it_ser
  (cd "$t" && git apply --check "$s"/*.patch 2>/dev/null) || return 1
  rm -rf "$work/p"; cp -r "$t" "$work/p"
  for p in "$s"/*.patch; do patch -p1 -F0 -s -d "$work/p" < "$p" >/dev/null 2>&1 || return 1; done
  it_tag=$(grep -qE '^\s+int64_t version;' "$t/tensorflow_serving/core/servable_id.h" && echo int64_t || echo int64)
  it_ser=$(grep -q 'Gauge<int64_t, 2>' "$work/p/tensorflow_serving/servables/tensorflow/model_traffic_metrics.h" && echo int64_t || echo int64)
  [ "$it_tag" = "$it_ser" ] || return 1
  if [ -f "$t/tensorflow_serving/servables/tensorflow/tfrt_servable.cc" ]; then
    grep -q RecordModelCall "$work/p/tensorflow_serving/servables/tensorflow/tfrt_servable.cc" || return 1
  fi
}
sites() {  # functions of non-test .cc files that call RecordModelCall, in the patched copy $work/p
  (cd "$work/p" && grep -rln 'RecordModelCall(' --include='*.cc' tensorflow_serving | grep -v '_test.cc$' | grep -v model_traffic_metrics.cc |
    while read -r f; do awk -v f="$f" '/^[A-Za-z].*\(/ {fn=$0} /RecordModelCall\(/ {sub(/\(.*/, "", fn); n=split(fn, a, " "); print f ": " a[n]}' "$f"; done)
}
for tag in "${tags[@]}"; do
  export_tag "$tag" "$work/tree"
  fits=(); listed=""
  for s in "$here"/*/; do
    s=${s%/}; [ -f "$s/series" ] || continue
    applies "$s" "$work/tree" && fits+=("$(basename "$s")")
    grep -qE "^# Applies to:.*( |^)$tag( |$)" "$s/series" && listed=$(basename "$s")
  done
  echo "$tag: applies: ${fits[*]:-none}; listed: ${listed:-none}"
  if [ -n "$listed" ]; then
    applies "$here/$listed" "$work/tree" && sites | sed 's/^/    /'
    if grep -rqE 'RecordModelCall\(' "$work/p/tensorflow_serving" --include='*warmup*'; then echo "    WARM-UP FILE RECORDS A CALL"; fi
  fi
done
