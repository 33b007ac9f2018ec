// segnet bench: training steps or inference on random input, timed; optionally a profile.
#include "cli.h"

#include <segnet/bench.h>
#include <segnet/files.h>

#include <torch/torch.h>

#include <cstdio>
#include <memory>

namespace segnet::cli {

namespace {

struct BenchArgs {
  BenchOptions options;
  Compute compute;
  std::string size = to_string(BenchOptions{}.size), mode = "infer", json;
};

void print_table(const char* title, const std::vector<ProfileRow>& rows, size_t limit) {
  std::printf("\n%-32s %10s %7s\n", title, "ms/iter", "calls");
  for (size_t i = 0; i < rows.size() && i < limit; ++i)
    std::printf("%-32s %10.2f %7lld\n", rows[i].name.c_str(), rows[i].ms, static_cast<long long>(rows[i].calls));
}

void run_bench(BenchArgs& a) {
  BenchOptions& b = a.options;
  b.device = a.compute.setup();
  b.precision = a.compute.precision;
  b.size = parse_size("--size", a.size);
  b.train = a.mode == "train";
  if (!a.json.empty()) refuse_overwriting_input("json", a.json, {b.checkpoint, b.image});
  const BenchResult r = run_benchmark(b);
  std::printf("%s %s %s batch %lld at %s, %d threads: %.3f images/s, %.1f ms/image, %.1f GFLOP/s, peak RSS %.0f MB\n",
              to_string(r.model).c_str(), a.mode.c_str(), to_string(b.precision).c_str(), static_cast<long long>(b.batch),
              a.size.c_str(), torch::get_num_threads(), r.images_per_s, r.ms_per_image, r.gflops, r.peak_rss_mb);
  if (b.profile) {
    print_table("stage (inclusive)", r.stages, 64);
    print_table("operator (self)", r.operators, 15);
  }
  if (!a.json.empty()) write_text(a.json, to_json(b, r).dump(2) + "\n");
}

}  // namespace

Command add_bench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  BenchOptions& b = a->options;
  auto* cmd = app.add_subcommand("bench", "time training or inference on random input");
  auto* model = add_choice(cmd, "--model", b.model, "network");
  cmd->add_option("--size", a->size, "input size HxW")->capture_default_str();
  cmd->add_option("--batch", b.batch, "images per step or forward pass")->capture_default_str();
  cmd->add_option("--mode", a->mode, "train | infer")->capture_default_str()->check(CLI::IsMember({"train", "infer"}));
  cmd->add_option("--iters", b.iters, "timed iterations")->capture_default_str();
  cmd->add_option("--warmup", b.warmup, "untimed iterations first")->capture_default_str();
  auto* classes = cmd->add_option("--num-classes", b.num_classes, "output classes of the random network")->capture_default_str();
  cmd->add_option("--json", a->json, "write the results here");
  cmd->add_flag("--profile", b.profile, "time each stage and operator");
  cmd->add_option("--checkpoint", b.checkpoint, "infer: time this trained network (and its int8 ranges), not random weights")
      ->excludes(model)
      ->excludes(classes);  // the checkpoint says which network, and its classes
  cmd->add_option("--image", b.image, "infer: use this image (resized to --size) as the input, not random values");
  a->compute.add_to(cmd);
  return {cmd, [a] { run_bench(*a); }};
}

}  // namespace segnet::cli
