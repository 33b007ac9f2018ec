#pragma once
// What the subcommands share: how options are declared and read, and how errors are printed.
#include <segnet/choices.h>
#include <segnet/data.h>
#include <segnet/segmenter.h>

#include <CLI/CLI.hpp>
#include <torch/types.h>

#include <functional>
#include <map>
#include <optional>
#include <string>

namespace segnet::cli {

// A subcommand: its parser, and what it does once parsed.
struct Command {
  CLI::App* app;
  std::function<void()> run;
};

Command add_train(CLI::App& app);
Command add_eval(CLI::App& app);
Command add_predict(CLI::App& app);
Command add_pseudo_label(CLI::App& app);
Command add_bench(CLI::App& app);
Command add_synth(CLI::App& app);
Command add_export(CLI::App& app);
Command add_convert(CLI::App& app);
Command add_report(CLI::App& app);
Command add_tune(CLI::App& app);
Command add_calibrate(CLI::App& app);
Command add_adapt(CLI::App& app);
Command add_info(CLI::App& app);

// An option whose value is one of a choice's names (--help lists them); sets `target` once parsed.
template <class E>
CLI::Option* add_choice(CLI::App* cmd, const std::string& flag, E& target, const std::string& help) {
  std::vector<std::string> names;
  for (const auto& [value, name] : ChoiceNames<E>::all()) names.push_back(name);
  return cmd
      ->add_option_function<std::string>(flag, [&target](const std::string& name) { target = *choice_from_name<E>(name); },
                                         help)
      ->check(CLI::IsMember(names))
      ->default_str(to_string(target));
}
template <class E>
CLI::Option* add_choice(CLI::App* cmd, const std::string& flag, std::optional<E>& target, const std::string& help) {
  std::vector<std::string> names;
  for (const auto& [value, name] : ChoiceNames<E>::all()) names.push_back(name);
  return cmd
      ->add_option_function<std::string>(flag, [&target](const std::string& name) { target = choice_from_name<E>(name); },
                                         help)
      ->check(CLI::IsMember(names));
}

// The checkpoint a command reads, required: "--checkpoint", or a positional name such as "CHECKPOINT".
template <class Path>
CLI::Option* add_checkpoint(CLI::App* cmd, const std::string& name, Path& target) {
  return cmd->add_option(name, target, "a checkpoint (.pt) written by train, calibrate or adapt")->required();
}

// Refuses a minus sign, which CLI11 would wrap around into a huge unsigned value (--seed -1).
inline const CLI::Validator kUnsigned(
    [](const std::string& text) { return text.find('-') == std::string::npos ? "" : "'" + text + "' is not a whole number >= 0"; },
    "");

// Options every compute command takes.
struct Compute {
  int threads = 0;
  std::string device = "cpu";
  Precision precision = Precision::Float32;
  // Whether a command offers --precision, or computes in fp32 only.
  enum class Precisions { Offered, Float32Only };
  // --threads and --device, and --precision where offered.
  void add_to(CLI::App* cmd, Precisions precisions = Precisions::Offered);
  // Sets the thread count and returns the device.
  torch::Device setup() const;
};

// --mc-samples, --threshold, --tta, --tta-scales, --sliding-window and --window-overlap, for the commands that
// segment.
void add_inference_options(CLI::App* cmd, SegmenterOptions& options);

// Whether `flag` was given on the command line (not merely left at its default).
inline bool given(const CLI::App* cmd, const std::string& flag) { return cmd->get_option(flag)->count() > 0; }

// An Error naming the first option given an empty value: "" (an unset shell variable, say) would
// otherwise read as the option not given (--json ""), or as the current folder.
void refuse_empty_values(const CLI::App& cmd);

// A metric or weight as the commands print them: four decimals, rounded (0.54538 -> "0.5454").
std::string four_decimals(double value);

// "HxW" (e.g. "360x480") for `flag`; anything else is an Error naming the flag.
Size2 parse_size(const std::string& flag, const std::string& text);

// The program's arguments, as main() received them (recorded in a run's config.json).
const std::vector<std::string>& command_line();
void set_command_line(int argc, char** argv);

// The flag that sets a library option (OptionError::option), e.g. "pseudo.threshold" -> "--pseudo-threshold".
std::string flag_for(const std::string& option);

}  // namespace segnet::cli
