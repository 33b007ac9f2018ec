// segnet info: what a checkpoint holds, read and verified but not run: the network, its classes, the
// input it expects, how far it was trained, and what it can do next (resume, int8).
#include "cli.h"

#include <segnet/checkpoint.h>
#include <segnet/files.h>
#include <segnet/model.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <sstream>

namespace segnet::cli {

namespace {

struct InfoArgs {
  std::string checkpoint, json;
};

// Values separated by `separator`, floats with four decimals.
template <class T>
std::string joined(const T& values, const char* separator) {
  std::ostringstream out;
  out.setf(std::ios::fixed);
  out.precision(4);
  const char* between = "";
  for (const auto& v : values) {
    out << between << +v;  // + prints uint8_t colour components as numbers
    between = separator;
  }
  return out.str();
}

// "1,425,580": parameter counts are read at a glance.
std::string grouped(int64_t n) {
  std::string digits = std::to_string(n);
  for (int at = static_cast<int>(digits.size()) - 3; at > 0; at -= 3) digits.insert(static_cast<size_t>(at), ",");
  return digits;
}

void line(const char* label, const std::string& text) { std::printf("%-16s %s\n", label, text.c_str()); }

std::string labels_text(const ModelInfo& info) {
  std::string text = info.label_format == LabelFormat::Color ? "colours of the classes" : "class ids";
  if (!info.label_map.empty()) text += ", through a map of " + std::to_string(info.label_map.size()) + " stored values";
  if (!info.void_labels.empty()) text += "; void " + joined(info.void_labels, " ");
  if (!info.void_colors.empty()) {
    text += "; void colours";
    for (const auto& c : info.void_colors) text += " " + joined(c, ",");
  }
  return text;
}

std::string training_text(const TrainState& state) {
  std::string text = std::to_string(state.epoch) + (state.epoch == 1 ? " epoch" : " epochs");
  if (std::isnan(state.best_miou)) return text + ", no validation";
  if (state.best_miou < 0) return text;
  return text + "; best val mIoU " + four_decimals(state.best_miou) + ", after epoch " + std::to_string(state.best_epoch);
}

void run_info(const InfoArgs& a) {
  if (!a.json.empty()) refuse_overwriting_input("json", a.json, {a.checkpoint});
  CheckpointReader reader(a.checkpoint);
  SegNet model = reader.model();  // also checks that every weight fits the described network
  const ModelInfo& info = reader.info();
  const TrainState& state = reader.state();
  const int64_t parameters = parameter_count(*model);
  const auto bytes = static_cast<int64_t>(std::filesystem::file_size(a.checkpoint));

  char size[64];
  std::snprintf(size, sizeof size, "%.1f MB", static_cast<double>(bytes) / 1e6);
  line("checkpoint", a.checkpoint + " (" + size + ", checksum verified)");
  std::string network = to_string(info.model) + ", decoder " + to_string(info.upsampling);
  if (!info.dilation.empty()) network += ", dilation " + joined(info.dilation, ",");
  line("model", network + ", " + grouped(parameters) + " parameters");
  line("task", info.binary() ? "binary (one sigmoid output)" : "multiclass, " + std::to_string(info.classes.size()) + " classes");
  line("input", "RGB at " + to_string(info.size) + "; mean " + joined(info.norm.mean, " ") + ", std " +
                    joined(info.norm.std, " ") + " (of 0..1 values)");
  if (info.input_range) line("input range", to_string(*info.input_range) + ": stored values read as black and white");
  line("labels", labels_text(info));
  line("trained", training_text(state));
  line("optimizer", state.optimizer ? to_string(*state.optimizer) + " state: training can resume from it"
                                    : "none: weights only (fine-tune with --init)");
  if (reader.has_teacher()) line("teacher", "the pseudo-label teacher's weights too");
  if (reader.has_trained()) line("weights", "a moving average of the trained weights, which it keeps too");
  line("int8", info.activation_ranges.empty()
                   ? "not calibrated (segnet calibrate)"
                   : "calibrated: " + std::to_string(info.activation_ranges.size()) + " activation ranges");
  std::printf("%4s %-20s %-12s %s\n", "id", "class", "colour", "loss weight");
  for (size_t i = 0; i < info.classes.size(); ++i) {
    const std::string weight = i < info.class_weights.size() ? four_decimals(info.class_weights[i]) : "-";
    std::printf("%4zu %-20s %-12s %s\n", i, info.classes[i].name.c_str(), joined(info.classes[i].rgb, ",").c_str(),
                weight.c_str());
  }
  if (a.json.empty()) return;
  nlohmann::json j = to_json(info, state);
  j["file"] = a.checkpoint;
  j["bytes"] = bytes;
  j["parameters"] = parameters;
  j["teacher"] = reader.has_teacher();
  j["weight_average"] = reader.has_trained();
  write_text(a.json, j.dump(2) + "\n");
  std::printf("wrote %s\n", a.json.c_str());
}

}  // namespace

Command add_info(CLI::App& app) {
  auto a = std::make_shared<InfoArgs>();
  auto* cmd = app.add_subcommand("info", "show what a checkpoint holds: model, classes, input size and "
                                         "normalisation, epochs trained, optimizer state, int8 ranges");
  add_checkpoint(cmd, "CHECKPOINT", a->checkpoint);
  cmd->add_option("--json", a->json, "also write it as JSON: the checkpoint's own metadata, and its file, size and parameters");
  return {cmd, [a] { run_info(*a); }};
}

}  // namespace segnet::cli
