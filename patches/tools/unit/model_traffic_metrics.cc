/* Copyright 2025 The TensorFlow Serving Authors. All Rights Reserved.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
==============================================================================*/

#include "tensorflow_serving/servables/tensorflow/model_traffic_metrics.h"

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "tensorflow/core/lib/monitoring/collection_registry.h"
#include "tensorflow/core/lib/monitoring/counter.h"
#include "tensorflow/core/lib/monitoring/gauge.h"
#include "tensorflow/core/platform/mutex.h"

namespace tensorflow {
namespace serving {
namespace {

auto* model_call_count = monitoring::Counter<2>::New(
    "/tensorflow/serving/model_call_count",
    "The number of Predict, Classify, Regress and MultiInference requests "
    "resolved to each model version, counted before the request is validated "
    "and run (so requests that then fail count too).",
    "model_name", "model_version");

auto* model_version_available = monitoring::Gauge<int64_t, 2>::New(
    "/tensorflow/serving/model_version_available",
    "Whether a model version is available (1) or not (0: unloading, unloaded, "
    "failed to load, or its server is gone).",
    "model_name", "model_version");

}  // namespace

namespace internal {

monitoring::Counter<2>* GetModelCallCount() { return model_call_count; }

monitoring::Gauge<int64_t, 2>* GetModelVersionAvailable() {
  return model_version_available;
}

std::vector<std::pair<std::string, std::string>> ExportedModelVersions(
    const std::string& metric_name) {
  std::vector<std::pair<std::string, std::string>> labels;
  const std::unique_ptr<monitoring::CollectedMetrics> collected =
      monitoring::CollectionRegistry::Default()->CollectMetrics({});
  const auto it = collected->point_set_map.find(metric_name);
  if (it == collected->point_set_map.end()) return labels;
  for (const auto& point : it->second->points) {
    labels.emplace_back(point->labels.at(0).value, point->labels.at(1).value);
  }
  return labels;
}

}  // namespace internal

void RecordModelCall(absl::string_view model_name, int64_t model_version) {
  model_call_count
      ->GetCell(std::string(model_name), absl::StrCat(model_version))
      ->IncrementBy(1);
}

ModelVersionAvailabilityRecorder::~ModelVersionAvailabilityRecorder() {
  mutex_lock l(mu_);
  for (monitoring::GaugeCell<int64_t>* cell : available_) {
    cell->Set(0);
  }
}

void ModelVersionAvailabilityRecorder::RecordAvailable(
    absl::string_view model_name, int64_t model_version) {
  const std::string name(model_name);
  const std::string version = absl::StrCat(model_version);
  // Creating the cell exports the version's call count from 0 on.
  model_call_count->GetCell(name, version);
  monitoring::GaugeCell<int64_t>* const cell =
      model_version_available->GetCell(name, version);
  mutex_lock l(mu_);
  cell->Set(1);
  available_.insert(cell);
}

void ModelVersionAvailabilityRecorder::RecordUnavailable(
    absl::string_view model_name, int64_t model_version) {
  monitoring::GaugeCell<int64_t>* const cell = model_version_available->GetCell(
      std::string(model_name), absl::StrCat(model_version));
  mutex_lock l(mu_);
  cell->Set(0);
  available_.erase(cell);
}

}  // namespace serving
}  // namespace tensorflow
