// Runs the patch's ServerCore wiring (UpdateModelVersionAvailability and the
// subscription expression, both extracted from a patched server_core.cc by
// wiring_check.sh) on a real EventBus<ServableState>, without ServerCore itself
// (which cannot be built from TensorFlow's pip package). Maintainers' tool.
#include <iostream>
#include <memory>
#include "tensorflow/core/lib/monitoring/collection_registry.h"
#include "tensorflow_serving/core/servable_state.h"
#include "tensorflow_serving/util/event_bus.h"
#include "tensorflow_serving/servables/tensorflow/model_traffic_metrics.h"

namespace tensorflow {
namespace serving {
namespace {
#include "update_fn.inc"

bool Exported(const std::string& metric, const std::string& model, const std::string& version) {
  auto collected = monitoring::CollectionRegistry::Default()->CollectMetrics({});
  auto it = collected->point_set_map.find(metric);
  if (it == collected->point_set_map.end()) return false;
  for (const auto& p : it->second->points)
    if (p->labels.at(0).value == model && p->labels.at(1).value == version) return true;
  return false;
}
int failures = 0;
void Expect(bool ok, const char* what) { std::cout << (ok ? "ok   " : "FAIL ") << what << "\n"; failures += !ok; }
long Gauge(const char* m, const char* v) { return internal::GetModelVersionAvailable()->GetCell(m, v)->value(); }
void Publish(EventBus<ServableState>* bus, const char* m, int v, ServableState::ManagerState s) {
  bus->Publish({ServableId{m, v}, s, absl::OkStatus()});
}
}  // namespace

int Main() {
  using S = ServableState::ManagerState;
  std::shared_ptr<EventBus<ServableState>> servable_event_bus_ = EventBus<ServableState>::CreateEventBus();
  auto owned = std::make_unique<ModelVersionAvailabilityRecorder>();
  ModelVersionAvailabilityRecorder& model_version_availability_ = *owned;
  std::unique_ptr<EventBus<ServableState>::Subscription> subscription =
#include "subscribe_expr.inc"
      ;
  EventBus<ServableState>* bus = servable_event_bus_.get();
  Publish(bus, "m", 1, S::kStart); Publish(bus, "m", 1, S::kLoading);
  Expect(!Exported("/tensorflow/serving/model_version_available", "m", "1"), "kLoading exports nothing");
  Publish(bus, "m", 1, S::kAvailable);
  Expect(Gauge("m", "1") == 1, "kAvailable -> 1");
  Expect(Exported("/tensorflow/serving/model_call_count", "m", "1"), "kAvailable creates the call count series");
  Publish(bus, "m", 2, S::kAvailable); Publish(bus, "m", 2, S::kUnloading);
  Expect(Gauge("m", "2") == 0, "kUnloading -> 0");
  Publish(bus, "m", 2, S::kEnd);
  Expect(Gauge("m", "2") == 0, "kEnd -> 0");
  Publish(bus, "failed", 5, S::kStart); Publish(bus, "failed", 5, S::kLoading); Publish(bus, "failed", 5, S::kEnd);
  Expect(Exported("/tensorflow/serving/model_version_available", "failed", "5") && Gauge("failed", "5") == 0,
         "failed load: gauge series at 0");
  Expect(!Exported("/tensorflow/serving/model_call_count", "failed", "5"), "failed load: no call count series");
  // ServerCore's destruction order: subscription, then recorder.
  subscription.reset();
  Publish(bus, "late", 9, S::kAvailable);
  Expect(!Exported("/tensorflow/serving/model_version_available", "late", "9"), "no update after unsubscribe");
  Expect(Gauge("m", "1") == 1, "still 1 until the recorder goes");
  owned.reset();
  Expect(Gauge("m", "1") == 0, "recorder destroyed -> 0");
  return failures;
}
}  // namespace serving
}  // namespace tensorflow
int main() { return tensorflow::serving::Main(); }
