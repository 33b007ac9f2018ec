#pragma once
// Timing the training step and inference on synthetic input, and where the time goes.
#include <segnet/choices.h>
#include <segnet/data.h>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace segnet {

struct BenchOptions {
  Model model = Model::SegNet;
  Size2 size{360, 480};
  int64_t batch = 1;
  bool train = false;  // a full optimizer step (SGD) instead of inference
  Precision precision = Precision::Float32;
  int64_t warmup = 2;
  int64_t iters = 5;
  int64_t num_classes = 11;
  torch::Device device = torch::kCPU;
  bool profile = false;  // time one more iteration per stage and per operator
  // Inference only: time this checkpoint's network (its model, decoder, classes and normalisation; for
  // int8, its calibrated ranges) instead of random weights of `model`.
  std::filesystem::path checkpoint;
  // Inference only: this image, resized to `size` and normalised, as every input instead of random values.
  std::filesystem::path image;
};

struct ProfileRow {
  std::string name;
  double ms = 0;    // per iteration; stages inclusive, operators self time
  int64_t calls = 0;
};

struct BenchResult {
  Model model = Model::SegNet;  // the network timed: the options' or the checkpoint's
  double images_per_s = 0;
  double ms_per_image = 0;
  double gflops = 0;  // 2 FLOP per multiply-add; a training step counts 3 forward passes
  double peak_rss_mb = 0;
  int64_t macs_per_image = 0;
  std::vector<ProfileRow> stages, operators;  // with `profile`, slowest first
};

BenchResult run_benchmark(const BenchOptions& options);
nlohmann::json to_json(const BenchOptions& options, const BenchResult& result);

}  // namespace segnet
