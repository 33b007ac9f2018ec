#include "inference/pipeline.h"

#include <segnet/data.h>
#include <segnet/error.h>
#include <segnet/files.h>
#include <segnet/image.h>
#include <segnet/metrics.h>

#include "common/clock.h"
#include "common/prefetch.h"

#include <torch/torch.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <deque>
#include <map>
#include <future>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace segnet {

namespace {

struct Prepared {
  std::filesystem::path file;
  cv::Mat rgb;
  torch::Tensor input;
};

}  // namespace

torch::Tensor confident_labels(const torch::Tensor& probabilities, double threshold, double class_share) {
  const int64_t class_dim = probabilities.dim() == 4 ? 1 : 0;
  const auto [top, ids] = probabilities.max(class_dim);
  auto keep = top >= threshold;
  if (class_share > 0)
    for (int64_t c = 0; c < probabilities.size(class_dim); ++c) {
      const auto of_class = ids == c;
      const auto confidences = top.masked_select(of_class);
      const int64_t n = confidences.numel();
      if (n == 0) continue;
      const auto kept = static_cast<int64_t>(std::ceil(class_share * static_cast<double>(n)));
      const auto cut = std::get<0>(confidences.kthvalue(n - kept + 1));  // the kept-th largest confidence
      keep |= of_class & (top >= cut);
    }
  return ids.masked_fill(~keep, kIgnoreLabel);
}

InferenceReport segment_files(Segmenter& segmenter, const std::vector<std::filesystem::path>& files, int64_t batch,
                              const SegmentedImageSink& sink, const InferenceProgress& progress) {
  if (batch < 1) throw OptionError("batch", "must be at least 1");
  const auto start = std::chrono::steady_clock::now();
  Prefetcher<Prepared> prepared(
      [&, next = size_t(0)]() mutable -> std::optional<Prepared> {
        if (next == files.size()) return std::nullopt;
        const auto& file = files[next++];
        cv::Mat rgb = read_image(file, segmenter.info().input_range);
        return Prepared{file, rgb, segmenter.input(rgb)};
      },
      static_cast<size_t>(2 * batch));
  std::deque<std::future<void>> writing;  // bounded, so that results do not pile up in memory
  auto wait_for_writes = [&](size_t at_most) {
    while (writing.size() > at_most) {
      writing.front().get();  // rethrows a writer's error
      writing.pop_front();
    }
  };
  InferenceReport report;
  const int64_t total = static_cast<int64_t>(files.size());
  for (bool more = true; more;) {
    std::vector<Prepared> group;
    for (Prepared p; static_cast<int64_t>(group.size()) < batch && (more = prepared.next(p));) group.push_back(std::move(p));
    if (group.empty()) break;
    std::vector<torch::Tensor> inputs;
    std::vector<cv::Size> sizes;
    for (const auto& p : group) inputs.push_back(p.input), sizes.push_back(p.rgb.size());
    const auto probabilities = segmenter.probabilities(inputs, sizes);
    bool go_on = true;
    for (size_t i = 0; i < group.size(); ++i) {
      writing.push_back(std::async(std::launch::async, [&sink, item = group[i], probs = probabilities[i]] {
        // Writers yield to the network's threads: competing with them for the cores stalls the
        // whole forward pass at its barriers; left the gaps, they cost little.
        setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 19);
        sink(item.file, item.rgb, probs);
      }));
      wait_for_writes(static_cast<size_t>(2 * batch));
      ++report.items;
      if (progress && !progress(report.items, total)) go_on = false;
    }
    if (!go_on) break;
  }
  wait_for_writes(0);
  report.seconds = seconds_since(start);
  return report;
}

// Outputs are named STEM + suffix in one folder: refuse what would overwrite an input or another
// input's results (x.png's colour image is x_color.png, as is x_color.png's label image), before
// anything is written.
static void check_output_names(const std::vector<std::filesystem::path>& images, const std::filesystem::path& folder,
                               const std::vector<std::string>& suffixes) {
  const auto out = std::filesystem::weakly_canonical(folder);
  std::map<std::string, std::filesystem::path> by_name;
  for (const auto& image : images) {
    if (std::filesystem::weakly_canonical(image).parent_path() == out)
      throw Error(image, "is in the output folder " + folder.string() + ": its results would overwrite the images");
    for (const auto& suffix : suffixes) {
      const auto [other, fresh] = by_name.emplace(image.stem().string() + suffix, image);
      if (!fresh && other->second != image)
        throw Error(image.string() + " and " + other->second.string() + " would both write " + (folder / other->first).string());
    }
  }
}

InferenceReport predict_images(Segmenter& segmenter, const std::vector<std::filesystem::path>& images,
                               const ImageOutputs& outputs, int64_t batch, const InferenceProgress& progress) {
  const ModelInfo& info = segmenter.info();
  const bool uncertainty = outputs.uncertainty && segmenter.options().mc_samples > 1;
  std::vector<std::string> suffixes;  // as the sink below writes them
  if (outputs.ids) suffixes.push_back(".png");
  if (outputs.color && !info.binary()) suffixes.push_back("_color.png");
  if (outputs.overlay) suffixes.push_back("_overlay.png");
  if (uncertainty) suffixes.push_back("_uncertainty.png");
  if (outputs.probabilities) suffixes.push_back("_probabilities.npy");
  check_output_names(images, outputs.folder, suffixes);
  ensure_output_folder(outputs.folder);
  const auto sink = [&](const std::filesystem::path& file, const cv::Mat& rgb, const torch::Tensor& probs) {
    const std::string stem = file.stem().string();
    const cv::Mat ids = segmenter.labels_from(probs);
    const cv::Mat color = colorize(ids, info.classes);
    if (outputs.ids) write_png(outputs.folder / (stem + ".png"), info.binary() ? cv::Mat(ids * 255) : ids);
    if (outputs.color && !info.binary()) write_png(outputs.folder / (stem + "_color.png"), color);
    if (outputs.overlay) write_png(outputs.folder / (stem + "_overlay.png"), overlay(rgb, color));
    if (uncertainty)
      write_png(outputs.folder / (stem + "_uncertainty.png"),
                heatmap(predictive_entropy(probs), std::log(double(info.classes.size()))));
    if (outputs.probabilities) write_npy(outputs.folder / (stem + "_probabilities.npy"), probs);
  };
  return segment_files(segmenter, images, batch, sink, progress);
}

PseudoLabelReport write_pseudo_labels(Segmenter& segmenter, const std::vector<std::filesystem::path>& images,
                                      const std::filesystem::path& folder, double threshold, double class_share,
                                      const InferenceProgress& progress) {
  const ModelInfo& info = segmenter.info();
  const std::optional<int64_t> stored_void = info.label_spec().stored_void();
  if (info.binary() || !stored_void)
    throw Error("pseudo-labels need a multi-class model trained on class-id masks with a void label");
  if (!(threshold > 0 && threshold <= 1)) throw OptionError("threshold", "must be in (0, 1]");
  if (!(class_share >= 0 && class_share <= 1)) throw OptionError("class_share", "must be in [0, 1]");
  check_output_names(images, folder, {".png"});
  ensure_output_folder(folder);
  const int64_t void_label = *stored_void;
  std::atomic<int64_t> confident{0}, pixels{0};
  const auto sink = [&](const std::filesystem::path& file, const cv::Mat&, const torch::Tensor& probs) {
    const auto labels = confident_labels(probs, threshold, class_share);
    const auto unconfident = labels == kIgnoreLabel;
    confident += labels.numel() - unconfident.sum().item<int64_t>();
    pixels += labels.numel();
    write_png(folder / (file.stem().string() + ".png"), label_image(labels.masked_fill(unconfident, void_label)));
  };
  const InferenceReport run = segment_files(segmenter, images, 1, sink, progress);
  return {run.items, pixels ? double(confident) / double(pixels) : 0.0, void_label};
}

}  // namespace segnet
