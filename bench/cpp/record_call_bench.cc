// Nanoseconds per recorded call, three ways, in one process:
//   lookup  RecordModelCall(name, version) as the patch ships it: formats the
//           version, looks the cell up (mutex + map) and increments it.
//   cached  a CounterCell* looked up once (as a per-servable cache would hold
//           it), then only IncrementBy(1).
//   plain   GetCell(name, label)->IncrementBy(1) on a Counter<2> with two
//           ready-made strings, as upstream's RecordModelRequestCount does.
// Usage: record_call_bench [ITERATIONS] [REPEATS] [MODEL_NAME]
// Prints "VARIANT NS_PER_CALL" lines (best of REPEATS).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>

#include "tensorflow/core/lib/monitoring/counter.h"
#include "tensorflow_serving/servables/tensorflow/model_traffic_metrics.h"

namespace {

auto* plain_counter = tensorflow::monitoring::Counter<2>::New(
    "/tfs_traffic/bench/request_count", "Bench: upstream-style counter.",
    "model_name", "status");

template <typename F>
double BestNanosPerCall(int64_t iterations, int repeats, F&& record) {
  double best = 1e18;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < iterations; ++i) record();
    const std::chrono::duration<double, std::nano> elapsed =
        std::chrono::steady_clock::now() - start;
    best = std::min(best, elapsed.count() / iterations);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t iterations = argc > 1 ? std::atoll(argv[1]) : 1000000;
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 5;
  const std::string model = argc > 3 ? argv[3] : "half_plus_two";
  const int64_t version = 123;
  const std::string status = "OK";

  tensorflow::monitoring::CounterCell* const cell =
      tensorflow::serving::internal::GetModelCallCount()->GetCell(
          model, std::to_string(version));

  const double lookup = BestNanosPerCall(iterations, repeats, [&] {
    tensorflow::serving::RecordModelCall(model, version);
  });
  const double cached =
      BestNanosPerCall(iterations, repeats, [&] { cell->IncrementBy(1); });
  const double plain = BestNanosPerCall(iterations, repeats, [&] {
    plain_counter->GetCell(model, status)->IncrementBy(1);
  });

  // Every call above must have been counted.
  const int64_t expected = 2 * iterations * repeats;
  if (cell->value() != expected) {
    std::cerr << "counted " << cell->value() << ", expected " << expected
              << std::endl;
    return 1;
  }
  std::cout << "lookup " << lookup << "\ncached " << cached << "\nplain "
            << plain << std::endl;
  return 0;
}
