#!/bin/sh
# Starts TF Serving the way the official image does: the model named by MODEL_NAME under
# MODEL_BASE_PATH, gRPC on 8500, REST on 8501, and every argument of `docker run IMAGE ...` appended.
# Added by tfs-traffic: Prometheus metrics at /monitoring/prometheus/metrics on the REST port, from
# the monitoring config in MONITORING_CONFIG_FILE. Set MONITORING_CONFIG_FILE to another file to
# change it, to an empty value to turn monitoring off, or pass --monitoring_config_file yourself
# (then the baked one is not passed).
set -e
for arg in "$@"; do
  case "$arg" in
    --monitoring_config_file | --monitoring_config_file=* | -monitoring_config_file | -monitoring_config_file=*)
      MONITORING_CONFIG_FILE=""
      ;;
  esac
done
exec /usr/bin/tensorflow_model_server --port=8500 --rest_api_port=8501 \
  --model_name="${MODEL_NAME}" --model_base_path="${MODEL_BASE_PATH}/${MODEL_NAME}" \
  ${MONITORING_CONFIG_FILE:+"--monitoring_config_file=${MONITORING_CONFIG_FILE}"} "$@"
