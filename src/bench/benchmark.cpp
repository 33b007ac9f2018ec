#include <segnet/bench.h>
#include <segnet/data.h>
#include <segnet/error.h>
#include <segnet/runtime.h>
#include <segnet/quantize.h>
#include <segnet/segmenter.h>
#include <segnet/train.h>

#include "train/step.h"

#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <sys/resource.h>

namespace segnet {

namespace {

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0;  // KiB on Linux
}

bool is_stage(const std::string& name) {
  return name.rfind("encoder", 0) == 0 || name.rfind("decoder", 0) == 0 || name == "classifier";
}

// Runs `step` once under LibTorch's profiler; stages (our record ranges) get inclusive time,
// operators their self time (their time less that of operators they called).
void profile_step(const std::function<void()>& step, BenchResult& result) {
  namespace prof = torch::autograd::profiler;
  prof::enableProfilerLegacy(torch::profiler::impl::ProfilerConfig(torch::profiler::impl::ProfilerState::CPU));
  step();
  const auto threads = prof::disableProfilerLegacy();
  std::map<std::string, ProfileRow> stages, operators;
  for (const auto& events : threads) {
    struct Open {
      const prof::LegacyEvent* event;
      double children_us;
    };
    std::vector<Open> stack;
    for (const auto& e : events) {
      if (e.kind() == prof::EventKind::PushRange) {
        stack.push_back({&e, 0.0});
      } else if (e.kind() == prof::EventKind::PopRange && !stack.empty()) {
        const Open open = stack.back();
        stack.pop_back();
        const double us = open.event->cpuElapsedUs(e);
        const std::string name = open.event->name();
        if (is_stage(name)) {
          auto& row = stages[name];
          row.name = name, row.ms += us / 1000.0, ++row.calls;
          continue;  // a stage is no operator: its children's time stays theirs
        }
        auto& row = operators[name];
        row.name = name, row.ms += (us - open.children_us) / 1000.0, ++row.calls;
        if (!stack.empty()) stack.back().children_us += us;
      }
    }
  }
  auto sorted = [](const std::map<std::string, ProfileRow>& rows) {
    std::vector<ProfileRow> v;
    for (const auto& [name, row] : rows) v.push_back(row);
    std::sort(v.begin(), v.end(), [](auto& a, auto& b) { return a.ms > b.ms; });
    return v;
  };
  result.stages = sorted(stages);
  result.operators = sorted(operators);
}

}  // namespace

BenchResult run_benchmark(const BenchOptions& o) {
  if (o.batch < 1) throw OptionError("batch", "must be at least 1");
  if (o.iters < 1) throw OptionError("iters", "must be at least 1");
  if (o.warmup < 0) throw OptionError("warmup", "must be at least 0");
  check_device(o.device);
  if (o.train && o.precision == Precision::Int8) throw OptionError("precision", "int8 is for inference only");
  if (o.train && !o.checkpoint.empty()) throw OptionError("checkpoint", "is for timing inference");
  if (o.train && !o.image.empty()) throw OptionError("image", "is for timing inference");
  if (o.train) check_training_size(o.model, o.size.height, o.size.width);
  torch::manual_seed(0);
  ModelInfo info;
  SegNet model{nullptr};
  std::unique_ptr<Segmenter> segmenter;
  if (o.checkpoint.empty()) {
    info.model = o.model;
    info.classes = default_classes(o.num_classes);
    model = SegNet(info.options());
  } else {
    segmenter = std::make_unique<Segmenter>(Segmenter::from_checkpoint(o.checkpoint, o.device, {o.precision}));
    info = segmenter->info();
  }
  info.size = o.size;
  const auto images =
      o.image.empty() ? torch::randn({o.batch, 3, o.size.height, o.size.width})
                      : network_input(read_image(o.image, info.input_range), o.size, info.norm).expand({o.batch, 3, -1, -1});
  std::function<void()> step;
  std::unique_ptr<torch::optim::SGD> optimizer;
  const LoaderStep batch{{{images, torch::randint(0, o.num_classes, {o.batch, o.size.height, o.size.width}, torch::kLong)}},
                         o.batch};
  std::unique_ptr<DataParallel> alone;
  const auto weights = torch::ones({o.num_classes}).to(o.device);
  if (o.train) {
    model->to(o.device);
    to_memory_format(*model, fastest_memory_format(o.device, o.precision));
    model->train();
    optimizer = std::make_unique<torch::optim::SGD>(model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
    alone = std::make_unique<DataParallel>(model, nullptr, 1, DistributedOptions{});
    const Objective objective{Task::Multiclass, Loss::CrossEntropy, weights};
    step = [&, objective] { train_step(model, *optimizer, batch, objective, o.precision, o.device, *alone, 0); };
  } else {
    if (!segmenter) {
      // int8 needs activation ranges; the input's serve for timing.
      if (o.precision == Precision::Int8) info.activation_ranges = calibrate(model, {images});
      segmenter = std::make_unique<Segmenter>(info, model, o.device, SegmenterOptions{o.precision});
    }
    step = [&] { segmenter->logits(images).sum().item<float>(); };  // item() waits for the device
  }
  for (int64_t i = 0; i < o.warmup; ++i) step();
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < o.iters; ++i) step();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  BenchResult r;
  r.model = info.model;
  r.macs_per_image = multiply_adds(info.options(), o.size.height, o.size.width);
  const double images_done = double(o.iters * o.batch);
  r.images_per_s = images_done / seconds;
  r.ms_per_image = 1000.0 * seconds / images_done;
  r.gflops = 2.0 * r.macs_per_image * (o.train ? 3 : 1) * r.images_per_s / 1e9;
  r.peak_rss_mb = peak_rss_mb();
  if (o.profile) profile_step(step, r);
  return r;
}

nlohmann::json to_json(const BenchOptions& o, const BenchResult& r) {
  nlohmann::json j = {{"implementation", "segnet"},
                      {"model", to_string(r.model)},
                      {"checkpoint", o.checkpoint.string()},
                      {"image", o.image.string()},
                      {"size", to_string(o.size)},
                      {"batch", o.batch},
                      {"mode", o.train ? "train" : "infer"},
                      {"precision", to_string(o.precision)},
                      {"channels_last", fastest_memory_format(o.device, o.precision) == at::MemoryFormat::ChannelsLast},
                      {"threads", torch::get_num_threads()},
                      {"iters", o.iters},
                      {"warmup", o.warmup},
                      {"device", o.device.str()},
                      {"macs_per_image", r.macs_per_image},
                      {"images_per_s", r.images_per_s},
                      {"ms_per_image", r.ms_per_image},
                      {"gflops", r.gflops},
                      {"peak_rss_mb", r.peak_rss_mb}};
  auto rows = [](const std::vector<ProfileRow>& v) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& row : v) a.push_back({{"name", row.name}, {"ms", row.ms}, {"calls", row.calls}});
    return a;
  };
  if (!r.stages.empty() || !r.operators.empty()) j["profile"] = {{"stages", rows(r.stages)}, {"operators", rows(r.operators)}};
  return j;
}

}  // namespace segnet
