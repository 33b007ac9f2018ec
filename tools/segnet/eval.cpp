// segnet eval: a checkpoint's metrics on a labelled list, printed and optionally written as JSON.
#include "cli.h"

#include <segnet/error.h>
#include <segnet/evaluate.h>
#include <segnet/files.h>
#include <segnet/report.h>

#include <cstdio>
#include <memory>
#include <utility>
#include <unistd.h>

namespace segnet::cli {

namespace {

struct EvalArgs {
  std::string checkpoint, list = "val.txt", json, per_image;
  std::filesystem::path data;
  Compute compute;
  SegmenterOptions inference;
};

// Four decimals, rounded as train's epoch line rounds them; undefined values (null) as n/a.
std::string format(const nlohmann::json& v) { return v.is_null() ? "   n/a" : four_decimals(v.get<double>()); }

void print_metrics(const nlohmann::json& j) {
  const std::pair<const char*, const char*> summary[] = {
      {"global accuracy", "global_acc"}, {"class avg acc", "class_avg_acc"}, {"mIoU", "miou"},
      {"mDice", "mdice"},                {"mean F-score", "mfscore"},        {"FW IoU", "fwiou"},
      {"boundary F1", "bf"}};
  for (const auto& [label, key] : summary) std::printf("%-16s %s\n", label, format(j[key]).c_str());
  std::printf("%-20s %8s %8s %8s %9s %8s %8s\n", "class", "IoU", "acc", "Dice", "precision", "F-score", "BF");
  for (const auto& c : j["per_class"])
    std::printf("%-20s %8s %8s %8s %9s %8s %8s\n", c["name"].get<std::string>().c_str(), format(c["iou"]).c_str(),
                format(c["acc"]).c_str(), format(c["dice"]).c_str(), format(c["precision"]).c_str(),
                format(c["fscore"]).c_str(), format(c["bf"]).c_str());
}

void print_binary_metrics(const nlohmann::json& j) {
  for (const char* key : {"iou", "dice", "precision", "recall", "bf", "pixel_acc", "miou", "mdice", "fwiou"})
    std::printf("%-16s %s\n", key, format(j[key]).c_str());
}

void run_eval(EvalArgs& a, const CLI::App* cmd) {
  a.inference.precision = a.compute.precision;
  const std::filesystem::path list = a.data / a.list;
  const bool listed = std::filesystem::exists(list);
  if (!listed && given(cmd, "--list")) throw OptionError("list", list.string() + " does not exist");
  if (!a.json.empty()) {
    refuse_overwriting_input("json", a.json, {a.checkpoint, list, a.data / "classes.csv"});
    require_chart_driver(eval_chart_paths(a.json).confusion);
  }
  if (!a.per_image.empty()) {
    refuse_overwriting_input("per-image", a.per_image, {a.checkpoint, list, a.data / "classes.csv"});
    if (!a.json.empty() && std::filesystem::weakly_canonical(a.per_image) == std::filesystem::weakly_canonical(a.json))
      throw OptionError("per-image", a.per_image + " is also the --json file");
  }
  Segmenter segmenter = Segmenter::from_checkpoint(a.checkpoint, a.compute.setup(), a.inference);
  check_dataset_classes(segmenter.info(), a.data);
  const auto samples = find_samples(a.data, a.list);
  // Without a list, every image/mask pair is scored: training images too, if they are in the folders.
  if (listed) std::printf("scoring %zu images of %s\n", samples.size(), list.c_str());
  else std::printf("scoring all %zu image/mask pairs in %s (no %s: training images included, if any are there)\n",
                   samples.size(), a.data.c_str(), a.list.c_str());
  const bool terminal = ::isatty(2);
  const Evaluation scores = evaluate(segmenter, samples, segmenter.info().label_spec(), [&](size_t done, size_t total) {
    if (terminal) std::fprintf(stderr, "\r\033[Kevaluating %zu/%zu", done, total);
  });
  if (terminal) std::fprintf(stderr, "\r\033[K");
  const ConfusionMatrix& matrix = scores.confusion;
  const bool binary = segmenter.info().binary();
  auto j = binary ? binary_metrics_json(scores) : metrics_json(scores, segmenter.info().classes);
  const SegmenterOptions& o = segmenter.options();
  j["inference"] = {{"precision", to_string(o.precision)}, {"mc_samples", o.mc_samples}, {"tta", to_string(o.tta)},
                    {"tta_scales", o.tta_scales},          {"sliding_window", o.sliding_window}};
  if (o.sliding_window) j["inference"]["window_overlap"] = o.window_overlap;
  if (binary) j["inference"]["threshold"] = o.threshold;
  binary ? print_binary_metrics(j) : print_metrics(j);
  if (!a.per_image.empty()) {
    write_text(a.per_image, image_scores_csv(scores.images));
    std::printf("wrote %s\n", a.per_image.c_str());
  }
  if (a.json.empty()) return;
  // The charts beside the JSON, named after it (segnet report draws them again from the JSON); first,
  // so that a chart that cannot be written leaves an existing JSON as it was.
  std::vector<std::string> names;
  for (const auto& c : segmenter.info().classes) names.push_back(c.name);
  if (static_cast<int64_t>(names.size()) != matrix.num_classes()) {
    names.clear();
    for (int64_t i = 0; i < matrix.num_classes(); ++i)
      names.push_back(binary ? (i == 0 ? "background" : "foreground") : "class" + std::to_string(i));
  }
  const auto charts = draw_eval_charts(matrix, names, a.json);
  write_text(a.json, j.dump(2) + "\n");
  std::printf("wrote %s, %s and %s\n", a.json.c_str(), charts.confusion.c_str(), charts.class_iou.c_str());
}

}  // namespace

Command add_eval(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  auto* cmd = app.add_subcommand("eval", "score a checkpoint on a labelled list");
  add_checkpoint(cmd, "--checkpoint", a->checkpoint);
  cmd->add_option("--data", a->data, "dataset directory")->required();
  cmd->add_option("--list", a->list, "list file in --data")->capture_default_str();
  cmd->add_option("--json", a->json, "write metrics and confusion matrix here, and beside it STEM_confusion.png and STEM_class_iou.png");
  cmd->add_option("--per-image", a->per_image, "write each image's global accuracy, mIoU and boundary F1 here (CSV)");
  a->compute.add_to(cmd);
  add_inference_options(cmd, a->inference);
  return {cmd, [a, cmd] { run_eval(*a, cmd); }};
}

}  // namespace segnet::cli
