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

#ifndef TENSORFLOW_SERVING_SERVABLES_TENSORFLOW_MODEL_TRAFFIC_METRICS_TEST_UTIL_H_
#define TENSORFLOW_SERVING_SERVABLES_TENSORFLOW_MODEL_TRAFFIC_METRICS_TEST_UTIL_H_

#include <cstdint>
#include <functional>
#include <string>

#include "tensorflow_serving/apis/model.pb.h"

namespace tensorflow {
namespace serving {
namespace test_util {

// Tests that each request 'send' makes is counted once, under the version it
// resolved to: 'send' is called three times, with 'model_spec' (the spec of its
// request) naming 'model_version' by number, by 'version_label' and not at
// all, and each call must add 1 to that version's model_call_count. The label
// must point to the version, and the version must be the model's latest.
void TestModelCallRecordedUnderResolvedVersion(
    int64_t model_version, const std::string& version_label,
    ModelSpec* model_spec, const std::function<void()>& send);

}  // namespace test_util
}  // namespace serving
}  // namespace tensorflow

#endif  // TENSORFLOW_SERVING_SERVABLES_TENSORFLOW_MODEL_TRAFFIC_METRICS_TEST_UTIL_H_
