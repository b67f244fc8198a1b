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

#include "tensorflow_serving/servables/tensorflow/model_traffic_metrics_test_util.h"

#include <cstdint>
#include <functional>
#include <string>

#include <gtest/gtest.h>
#include "absl/strings/str_cat.h"
#include "tensorflow/core/lib/monitoring/counter.h"
#include "tensorflow_serving/apis/model.pb.h"
#include "tensorflow_serving/servables/tensorflow/model_traffic_metrics.h"

namespace tensorflow {
namespace serving {
namespace test_util {

void TestModelCallRecordedUnderResolvedVersion(
    int64_t model_version, const std::string& version_label,
    ModelSpec* model_spec, const std::function<void()>& send) {
  monitoring::CounterCell* const model_call_count =
      internal::GetModelCallCount()->GetCell(model_spec->name(),
                                             absl::StrCat(model_version));
  const int64_t initial_count = model_call_count->value();

  model_spec->mutable_version()->set_value(model_version);
  ASSERT_NO_FATAL_FAILURE(send());
  EXPECT_EQ(initial_count + 1, model_call_count->value());

  model_spec->set_version_label(version_label);
  ASSERT_NO_FATAL_FAILURE(send());
  EXPECT_EQ(initial_count + 2, model_call_count->value());

  model_spec->clear_version_choice();
  ASSERT_NO_FATAL_FAILURE(send());
  EXPECT_EQ(initial_count + 3, model_call_count->value());
}

}  // namespace test_util
}  // namespace serving
}  // namespace tensorflow
