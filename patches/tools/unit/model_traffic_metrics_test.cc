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

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "tensorflow/core/lib/monitoring/collection_registry.h"

namespace tensorflow {
namespace serving {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::Not;
using ::testing::Pair;

constexpr char kModelCallCount[] = "/tensorflow/serving/model_call_count";
constexpr char kModelVersionAvailable[] =
    "/tensorflow/serving/model_version_available";

// The metrics are process-wide, so the tests compare values before and after
// (and pass when repeated in one process). A test that checks which series
// exist uses a version no test has used before in this process.
int64_t UnusedVersion() {
  static std::atomic<int64_t> next_version(1000);
  return next_version++;
}

int64_t CallCount(const std::string& model_name, int64_t model_version) {
  return internal::GetModelCallCount()
      ->GetCell(model_name, absl::StrCat(model_version))
      ->value();
}

int64_t Available(const std::string& model_name, int64_t model_version) {
  return internal::GetModelVersionAvailable()
      ->GetCell(model_name, absl::StrCat(model_version))
      ->value();
}

TEST(ModelTrafficMetricsTest, RecordModelCallCountsPerVersion) {
  const int64_t before_1 = CallCount("call_model", 1);
  const int64_t before_2 = CallCount("call_model", 2);

  RecordModelCall("call_model", 1);
  RecordModelCall("call_model", 1);
  // The name is a view, as TFRT servables pass it: only the viewed part counts.
  RecordModelCall(absl::string_view("call_model_2").substr(0, 10), 2);

  EXPECT_EQ(2, CallCount("call_model", 1) - before_1);
  EXPECT_EQ(1, CallCount("call_model", 2) - before_2);
}

TEST(ModelTrafficMetricsTest, MetricsAreLabelledByModelNameAndVersion) {
  RecordModelCall("labelled_model", 42);
  const std::unique_ptr<monitoring::CollectedMetrics> collected =
      monitoring::CollectionRegistry::Default()->CollectMetrics({});
  EXPECT_THAT(collected->metric_descriptor_map.at(kModelCallCount)->label_names,
              ElementsAre("model_name", "model_version"));
  EXPECT_THAT(
      collected->metric_descriptor_map.at(kModelVersionAvailable)->label_names,
      ElementsAre("model_name", "model_version"));
  EXPECT_THAT(internal::ExportedModelVersions(kModelCallCount),
              Contains(Pair("labelled_model", "42")));
}

TEST(ModelTrafficMetricsTest, AvailableVersionHasCallCountFromZero) {
  const int64_t version = UnusedVersion();
  EXPECT_THAT(internal::ExportedModelVersions(kModelCallCount),
              Not(Contains(Pair("idle_model", absl::StrCat(version)))));

  ModelVersionAvailabilityRecorder recorder;
  recorder.RecordAvailable("idle_model", version);

  EXPECT_EQ(1, Available("idle_model", version));
  EXPECT_THAT(internal::ExportedModelVersions(kModelCallCount),
              Contains(Pair("idle_model", absl::StrCat(version))));
  EXPECT_EQ(0, CallCount("idle_model", version));
}

TEST(ModelTrafficMetricsTest, RecordUnavailableKeepsTheCallCount) {
  ModelVersionAvailabilityRecorder recorder;
  recorder.RecordAvailable("unloaded_model", 3);
  const int64_t before = CallCount("unloaded_model", 3);
  RecordModelCall("unloaded_model", 3);

  recorder.RecordUnavailable("unloaded_model", 3);

  EXPECT_EQ(0, Available("unloaded_model", 3));
  // The count stays, so the calls made before the unload are not lost.
  EXPECT_EQ(1, CallCount("unloaded_model", 3) - before);
}

TEST(ModelTrafficMetricsTest, FailedLoadExportsZeroAndNoCallCount) {
  const int64_t version = UnusedVersion();
  {
    ModelVersionAvailabilityRecorder recorder;
    // A version whose load fails reaches the end state without ever being
    // available.
    recorder.RecordUnavailable("failed_model", version);
  }

  EXPECT_THAT(internal::ExportedModelVersions(kModelVersionAvailable),
              Contains(Pair("failed_model", absl::StrCat(version))));
  EXPECT_EQ(0, Available("failed_model", version));
  EXPECT_THAT(internal::ExportedModelVersions(kModelCallCount),
              Not(Contains(Pair("failed_model", absl::StrCat(version)))));
}

TEST(ModelTrafficMetricsTest, DestroyedRecorderSetsItsVersionsToZero) {
  auto recorder = std::make_unique<ModelVersionAvailabilityRecorder>();
  ModelVersionAvailabilityRecorder other_recorder;
  recorder->RecordAvailable("shut_down_model", 1);
  recorder->RecordAvailable("shut_down_model", 2);
  recorder->RecordUnavailable("shut_down_model", 2);
  other_recorder.RecordAvailable("shut_down_model", 2);
  other_recorder.RecordAvailable("other_model", 1);

  recorder.reset();

  EXPECT_EQ(0, Available("shut_down_model", 1));
  // A version the recorder made unavailable again is no longer its own, and
  // another recorder's versions are left alone.
  EXPECT_EQ(1, Available("shut_down_model", 2));
  EXPECT_EQ(1, Available("other_model", 1));
}

}  // namespace
}  // namespace serving
}  // namespace tensorflow
