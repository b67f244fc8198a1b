// Drives the patch's metrics unit (model_traffic_metrics.{h,cc}, extracted from
// the patch series by the test) and prints what TensorFlow's CollectionRegistry
// collects, so the test can check names, kinds, labels and values and render
// them the way TF Serving's PrometheusExporter does.
//
// Commands on stdin, one per line (one ModelVersionAvailabilityRecorder, as a
// ServerCore owns one):
//   available MODEL VERSION     recorder.RecordAvailable
//   unavailable MODEL VERSION   recorder.RecordUnavailable
//   call MODEL VERSION [N]      RecordModelCall, N times (default 1)
//   shutdown                    destroy the recorder, as ~ServerCore does
//   collect                     print every /tensorflow/serving/ metric
// Output of "collect", tab-separated, then a line "end":
//   metric NAME KIND VALUE_TYPE LABEL_NAMES(comma-separated) DESCRIPTION
//   point NAME LABEL_VALUE... INT64_VALUE
#include <cstdint>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>

#include "tensorflow/core/lib/monitoring/collection_registry.h"
#include "tensorflow_serving/servables/tensorflow/model_traffic_metrics.h"

namespace {

using tensorflow::monitoring::CollectedMetrics;
using tensorflow::monitoring::CollectionRegistry;
using tensorflow::monitoring::MetricKind;
using tensorflow::monitoring::ValueType;

constexpr char kPrefix[] = "/tensorflow/serving/";

const char* KindName(MetricKind kind) {
  switch (kind) {
    case MetricKind::kGauge:
      return "gauge";
    case MetricKind::kCumulative:
      return "cumulative";
  }
  return "unknown";
}

const char* ValueTypeName(ValueType type) {
  switch (type) {
    case ValueType::kInt64:
      return "int64";
    case ValueType::kHistogram:
      return "histogram";
    case ValueType::kString:
      return "string";
    case ValueType::kBool:
      return "bool";
    case ValueType::kPercentiles:
      return "percentiles";
    case ValueType::kDouble:
      return "double";
  }
  return "unknown";
}

void Collect() {
  CollectionRegistry::CollectMetricsOptions options;
  options.collect_metric_descriptors = true;
  const std::unique_ptr<CollectedMetrics> collected =
      CollectionRegistry::Default()->CollectMetrics(options);
  for (const auto& [name, descriptor] : collected->metric_descriptor_map) {
    if (name.rfind(kPrefix, 0) != 0) continue;
    std::cout << "metric\t" << name << "\t" << KindName(descriptor->metric_kind)
              << "\t" << ValueTypeName(descriptor->value_type) << "\t";
    for (size_t i = 0; i < descriptor->label_names.size(); ++i) {
      std::cout << (i > 0 ? "," : "") << descriptor->label_names[i];
    }
    std::cout << "\t" << descriptor->description << "\n";
    const auto point_set = collected->point_set_map.find(name);
    if (point_set == collected->point_set_map.end()) continue;
    for (const auto& point : point_set->second->points) {
      std::cout << "point\t" << name;
      for (const auto& label : point->labels) std::cout << "\t" << label.value;
      std::cout << "\t" << point->int64_value << "\n";
    }
  }
  std::cout << "end" << std::endl;
}

}  // namespace

int main() {
  auto recorder =
      std::make_unique<tensorflow::serving::ModelVersionAvailabilityRecorder>();
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream words(line);
    std::string command, model;
    int64_t version = 0, times = 1;
    words >> command;
    if (command.empty()) continue;
    if (command == "collect") {
      Collect();
      continue;
    }
    if (command == "shutdown") {
      recorder.reset();
      continue;
    }
    if (!(words >> model >> version)) {
      std::cerr << "bad command: " << line << std::endl;
      return 2;
    }
    if ((command == "available" || command == "unavailable") && !recorder) {
      std::cerr << "recorder is shut down: " << line << std::endl;
      return 2;
    }
    if (command == "available") {
      recorder->RecordAvailable(model, version);
    } else if (command == "unavailable") {
      recorder->RecordUnavailable(model, version);
    } else if (command == "call") {
      words >> times;
      for (int64_t i = 0; i < times; ++i) {
        tensorflow::serving::RecordModelCall(model, version);
      }
    } else {
      std::cerr << "unknown command: " << command << std::endl;
      return 2;
    }
  }
  return 0;
}
