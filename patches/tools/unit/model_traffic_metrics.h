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

// Per-version traffic metrics: which loaded model versions clients still call.
//
//   /tensorflow/serving/model_call_count{model_name, model_version}
//     Predict, Classify, Regress and MultiInference requests resolved to the
//     version. A request is counted as soon as its servable handle is
//     resolved, before it is validated and run, so a request that resolves and
//     then fails is counted too; a request for a version that is not loaded is
//     not. 'model_version' is the numeric version the request resolved to,
//     also when it asked for a version label or for the latest version.
//
//   /tensorflow/serving/model_version_available{model_name, model_version}
//     1 while the version is available; 0 once it starts unloading, has been
//     unloaded or failed to load, and once the server that loaded it is gone.
//
// TensorFlow's monitoring cells cannot be deleted, so every version that was
// ever available keeps both series, and every version that failed to load its
// gauge series, until the process exits; they keep their last values (the
// count no longer grows, the gauge stays 0).
//
// The metrics are process-wide and keyed by model name and version only, so
// they assume one server per process, as tensorflow_model_server runs one
// ServerCore: two servers in one process that load the same version of the
// same model share its cells, and whichever changes the version's state last
// sets the gauge (destroying one sets it to 0 while the other still serves
// the version).

#ifndef TENSORFLOW_SERVING_SERVABLES_TENSORFLOW_MODEL_TRAFFIC_METRICS_H_
#define TENSORFLOW_SERVING_SERVABLES_TENSORFLOW_MODEL_TRAFFIC_METRICS_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "tensorflow/core/lib/monitoring/counter.h"
#include "tensorflow/core/lib/monitoring/gauge.h"
#include "tensorflow/core/platform/mutex.h"
#include "tensorflow/core/platform/thread_annotations.h"

namespace tensorflow {
namespace serving {

// Implementation details mainly used for testing; please don't depend on it.
namespace internal {

monitoring::Counter<2>* GetModelCallCount();

monitoring::Gauge<int64_t, 2>* GetModelVersionAvailable();

// Returns the {model_name, model_version} labels of every series that
// 'metric_name', one of the two metrics above, exports.
std::vector<std::pair<std::string, std::string>> ExportedModelVersions(
    const std::string& metric_name);

}  // namespace internal

// Counts one Predict, Classify, Regress or MultiInference request resolved to
// 'model_version' of 'model_name'. Call it once per request, right after the
// servable handle is resolved; warm-up requests must not be counted.
void RecordModelCall(absl::string_view model_name, int64_t model_version);

// Sets /tensorflow/serving/model_version_available for the versions one server
// loads, and on destruction sets the versions it made available back to 0.
// Thread-safe.
class ModelVersionAvailabilityRecorder {
 public:
  ModelVersionAvailabilityRecorder() = default;

  // Sets every version this recorder made available, and did not make
  // unavailable since, back to 0.
  ~ModelVersionAvailabilityRecorder();

  ModelVersionAvailabilityRecorder(const ModelVersionAvailabilityRecorder&) =
      delete;
  ModelVersionAvailabilityRecorder& operator=(
      const ModelVersionAvailabilityRecorder&) = delete;

  // Sets 'model_version' of 'model_name' as available (1), and creates its
  // call count at 0 so that a version nobody calls still has a series.
  void RecordAvailable(absl::string_view model_name, int64_t model_version)
      TF_LOCKS_EXCLUDED(mu_);

  // Sets 'model_version' of 'model_name' as not available (0): it is
  // unloading, has been unloaded or failed to load.
  void RecordUnavailable(absl::string_view model_name, int64_t model_version)
      TF_LOCKS_EXCLUDED(mu_);

 private:
  mutex mu_;
  // The gauge cells this recorder set to 1 and has not set to 0 since. Cells
  // live as long as the process, so the pointers stay valid.
  absl::flat_hash_set<monitoring::GaugeCell<int64_t>*> available_
      TF_GUARDED_BY(mu_);
};

}  // namespace serving
}  // namespace tensorflow

#endif  // TENSORFLOW_SERVING_SERVABLES_TENSORFLOW_MODEL_TRAFFIC_METRICS_H_
