#include "cli.h"

#include <segnet/error.h>
#include <segnet/runtime.h>

#include <c10/util/Exception.h>

#include <cstdio>

namespace segnet::cli {

void Compute::add_to(CLI::App* cmd, Precisions precisions) {
  cmd->add_option("--threads", threads, "CPU threads, at most the cores (default: $OMP_NUM_THREADS if set, as torchrun sets it, else all cores)");
  cmd->add_option("--device", device, "cpu or cuda[:K]")->capture_default_str();
  if (precisions == Precisions::Offered) add_choice(cmd, "--precision", precision, "numeric precision of the network");
}

torch::Device Compute::setup() const {
  set_threads(threads);
  torch::Device d(torch::kCPU);
  try {
    d = torch::Device(device);
  } catch (const c10::Error&) {
    throw Error("--device: '" + device + "' is not a device (expected cpu or cuda[:K])");
  }
  if (precision == Precision::BFloat16 && !has_fast_bf16(d))
    std::fprintf(stderr,
                 "segnet: warning: --precision bf16 on a processor without AVX-512 runs on a generic kernel, many "
                 "times slower than fp32; fp32, or int8 to segment, is faster here\n");
  return d;
}

void add_inference_options(CLI::App* cmd, SegmenterOptions& o) {
  cmd->add_option("--mc-samples", o.mc_samples, "Bayesian models: average this many dropout samples")->capture_default_str();
  cmd->add_option("--threshold", o.threshold, "binary models: foreground probability threshold")->capture_default_str();
  add_choice(cmd, "--tta", o.tta, "test-time augmentation: flip also runs each image mirrored and averages the two");
  cmd->add_option("--tta-scales", o.tta_scales,
                  "multi-scale inference: factors of the training scale to run at, averaged (e.g. 0.75,1,1.25)")
      ->delimiter(',')
      ->capture_default_str();
  auto* window = cmd->add_flag("--sliding-window", o.sliding_window,
                               "keep the aspect ratio: scale the image to cover a training-size tile and average "
                               "overlapping tiles (for images shaped unlike the training size)");
  cmd->add_option("--window-overlap", o.window_overlap, "sliding window: share of a tile that neighbours overlap, in [0, 1)")
      ->capture_default_str()
      ->needs(window);
}

std::string four_decimals(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.4f", value);
  return text;
}

Size2 parse_size(const std::string& flag, const std::string& text) {
  const auto x = text.find('x');
  auto number = [](const std::string& s, int64_t& value) {
    if (s.empty() || s.size() > 6 || s.find_first_not_of("0123456789") != std::string::npos) return false;
    value = std::stoll(s);
    return true;
  };
  Size2 size;
  if (x == std::string::npos || !number(text.substr(0, x), size.height) || !number(text.substr(x + 1), size.width))
    throw Error(flag + ": '" + text + "' is not HxW (e.g. 360x480)");
  if (!is_image_size(size))
    throw Error(flag + ": " + text + " is impossible (each side must be 1.." + std::to_string(kMaxImageSide) + ")");
  return size;
}

namespace {
std::vector<std::string> arguments;
}  // namespace

const std::vector<std::string>& command_line() { return arguments; }
void set_command_line(int argc, char** argv) { arguments.assign(argv, argv + argc); }

void refuse_empty_values(const CLI::App& cmd) {
  for (const CLI::Option* option : cmd.get_options())
    for (const std::string& value : option->results())
      if (value.empty())
        throw Error(option->get_positional() ? "an input is an empty path" : option->get_name() + ": is empty");
}

std::string flag_for(const std::string& option) {
  static const std::map<std::string, std::string> renamed = {
      {"pseudo.unlabeled", "--unlabeled"},       {"pseudo.weight", "--pseudo-weight"},
      {"pseudo.threshold", "--pseudo-threshold"}, {"pseudo.rampup_epochs", "--pseudo-rampup"},
      {"pseudo.class_share", "--pseudo-class-share"},
      {"pseudo.min_scale", "--pseudo-scale-range"}, {"pseudo.max_scale", "--pseudo-scale-range"},
      {"pseudo.ema_decay", "--ema-decay"},       {"pseudo.mix", "--pseudo-mix"},
      {"pseudo.adapt_statistics", "--pseudo-adapt-statistics"},
      {"upsampling", "--decoder"},
      {"max_frames", "--frames"},                {"warmup", "--warmup"},
      {"void_colors", "--void-color"},           {"distributed.world_size", "--world-size"},
      {"distributed.rank", "--rank"},            {"distributed.master_port", "--master"},
      {"distributed.timeout_seconds", "--dist-timeout"}, {"distributed.bucket_megabytes", "--bucket-mb"},
      {"augment.min_scale", "--scale-range"},    {"augment.max_scale", "--scale-range"},
      {"augment.flip", "--no-flip"},             {"augment.brightness", "--color-jitter"},
      {"augment.contrast", "--color-jitter"},    {"augment.saturation", "--color-jitter"},
      {"augment.hue", "--color-jitter"}};
  const auto found = renamed.find(option);
  if (found != renamed.end()) return found->second;
  std::string flag = "--" + option;
  std::replace(flag.begin(), flag.end(), '_', '-');
  return flag;
}

}  // namespace segnet::cli
