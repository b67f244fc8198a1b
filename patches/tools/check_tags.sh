#!/usr/bin/env bash
# Which series in patches/ applies to which TF Serving release tag (maintainers' tool, not in CI).
# Usage: patches/tools/check_tags.sh SERVING_GIT_DIR [TAG...]   (default: every non-rc tag from 2.4.0)
# Per tag, on a pristine export: every series' `git apply --check` (exactly one may pass, and it must be
# the one whose series file's "Applies to" line lists the tag); for that series also `patch -p1 -F0`
# patch by patch, the unit's int64 spelling against the tag's core/servable_id.h, TFRT hunks where the
# tag has tfrt_servable.cc, and the functions RecordModelCall ends up in. Exits 1 if any tag fails.
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
fits() {  # fits SERIES_DIR TREE -> what is wrong with the series on the tree (nothing when it fits); patched copy in $work/p
  local s=$1 t=$2 it_tag it_ser
  rm -rf "$work/p"; cp -r "$t" "$work/p"
  for p in "$s"/*.patch; do patch -p1 -F0 -s -d "$work/p" < "$p" >/dev/null 2>&1 || { echo "patch -F0 fails at $(basename "$p")"; return; }; done
  it_tag=$(grep -qE '^\s+int64_t version;' "$t/tensorflow_serving/core/servable_id.h" && echo int64_t || echo int64)
  it_ser=$(grep -q 'Gauge<int64_t, 2>' "$work/p/tensorflow_serving/servables/tensorflow/model_traffic_metrics.cc" && echo int64_t || echo int64)
  [ "$it_tag" = "$it_ser" ] || echo "unit spells $it_ser, tag $it_tag"
  if [ -f "$t/tensorflow_serving/servables/tensorflow/tfrt_servable.cc" ]; then
    grep -q RecordModelCall "$work/p/tensorflow_serving/servables/tensorflow/tfrt_servable.cc" || echo "no TFRT hunks"
  fi
}
sites() {  # functions of non-test .cc files that call RecordModelCall, in the patched copy $work/p
  (cd "$work/p" && grep -rln 'RecordModelCall(' --include='*.cc' tensorflow_serving | grep -v '_test.cc$' | grep -v model_traffic_metrics.cc |
    while read -r f; do awk -v f="$f" '/^[A-Za-z].*\(/ {fn=$0} /RecordModelCall\(/ {sub(/\(.*/, "", fn); n=split(fn, a, " "); print f ": " a[n]}' "$f"; done)
}
failed=0
for tag in "${tags[@]}"; do
  export_tag "$tag" "$work/tree"
  applies=(); listed=""
  for s in "$here"/*/; do
    s=${s%/}; [ -f "$s/series" ] || continue
    (cd "$work/tree" && git apply --check "$s"/*.patch 2>/dev/null) && applies+=("$(basename "$s")")
    grep -qE "^# Applies to:.*( |^)$tag( |$)" "$s/series" && listed=$(basename "$s")
  done
  problem=""
  if [ ${#applies[@]} -ne 1 ]; then problem="${#applies[@]} series apply"
  elif [ "${applies[0]}" != "$listed" ]; then problem="the series that applies is not the one listed"
  else problem=$(fits "$here/$listed" "$work/tree")
  fi
  echo "$tag: git apply --check: ${applies[*]:-none}; Applies to: ${listed:-none}; ${problem:-ok}"
  if [ -n "$problem" ]; then failed=1; continue; fi
  sites | sed 's/^/    /'
  if grep -rqE 'RecordModelCall\(' "$work/p/tensorflow_serving" --include='*warmup*'; then echo "    WARM-UP FILE RECORDS A CALL"; failed=1; fi
done
exit $failed
