#!/usr/bin/env bash
# The patch's ServerCore wiring, run for real on each tag (maintainers' tool, not in CI: it needs upstream headers).
# Usage: patches/tools/wiring_check.sh SERVING_GIT_DIR TAG...
# Per tag: export, apply the series whose "Applies to" line lists it, extract UpdateModelVersionAvailability and
# the Subscribe(...) expression from the patched server_core.cc, compile them with wiring_check.cc, the tag's
# event_bus.h / servable_state.h and the patch's metrics unit against TensorFlow's pip package (.venv), and run:
# publish servable states, check the gauge and the call count series, destroy subscription then recorder.
set -euo pipefail
git_dir=$1; shift
tools=$(cd "$(dirname "$0")" && pwd); here=$(dirname "$tools"); py="$here/../.venv/bin/python"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
flags=$(TF_CPP_MIN_LOG_LEVEL=3 "$py" -c "import tensorflow as tf; print(' '.join(tf.sysconfig.get_compile_flags()))")
lflags=$(TF_CPP_MIN_LOG_LEVEL=3 "$py" -c "import tensorflow as tf; print(' '.join(tf.sysconfig.get_link_flags()))")
libdir=$(echo "$lflags" | grep -o '\-L[^ ]*' | cut -c3-)
failed=0
for tag in "$@"; do
  series=$(grep -lE "^# Applies to:.*( |^)$tag( |$)" "$here"/*/series | xargs dirname)
  t="$work/$tag"; mkdir -p "$t"
  git --git-dir="$git_dir" archive "$tag" -- tensorflow_serving/core tensorflow_serving/util \
    tensorflow_serving/model_servers/server_core.cc tensorflow_serving/servables/tensorflow/BUILD 2>/dev/null | tar -x -C "$t"
  (cd "$t" && git apply --include='tensorflow_serving/model_servers/server_core.cc' \
     --include='tensorflow_serving/servables/tensorflow/model_traffic_metrics*' "$series"/*.patch)
  c="$t/tensorflow_serving/model_servers/server_core.cc"
  awk '/^\/\/ Records a servable.s state on the model_version_available gauge/,/^}$/' "$c" > "$t/update_fn.inc"
  awk '/model_version_availability_subscription_\(servable_event_bus_->Subscribe\(/{f=1} f{print} f&&/}\)\) \{/{exit}' "$c" |
    sed 's/^ *model_version_availability_subscription_(//; s/)) {$/)/' > "$t/subscribe_expr.inc"
  g++ -O0 -std=c++17 -w $flags -I"$t" "$tools/wiring_check.cc" "$t/tensorflow_serving/servables/tensorflow/model_traffic_metrics.cc" \
    -o "$t/wiring" $lflags -Wl,-rpath,"$libdir" -lpthread
  if out=$(TF_CPP_MIN_LOG_LEVEL=3 "$t/wiring"); then echo "$tag ($(basename "$series")): $(grep -c '^ok' <<<"$out") checks pass"
  else echo "$tag ($(basename "$series")):"; echo "$out"; failed=1; fi
done
exit $failed
