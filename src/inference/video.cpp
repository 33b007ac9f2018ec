#include <segnet/error.h>
#include <segnet/files.h>
#include <segnet/image.h>
#include <segnet/predict.h>

#include "common/clock.h"
#include "common/prefetch.h"

#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <torch/torch.h>

#include <chrono>
#include <cstdio>

namespace segnet {

namespace {

struct Frame {
  cv::Mat rgb;
  torch::Tensor input;
};

cv::VideoCapture open_input(const VideoInput& input) {
  cv::VideoCapture capture;
  if (input.camera) {
    if (!capture.open(*input.camera))
      throw Error("camera " + std::to_string(*input.camera) + ": cannot be opened (no such camera, or it is busy)");
    return capture;
  }
  const bool pattern = input.path.find('%') != std::string::npos;  // an image sequence
  if (!pattern && !std::filesystem::is_regular_file(input.path)) throw Error(input.path, "no such video file");
  if (!capture.open(input.path)) throw Error(input.path, "cannot open as a video (unreadable, or a format OpenCV cannot decode)");
  return capture;
}

int fourcc_for(const std::filesystem::path& video) {
  const std::string ext = video.extension().string();
  if (ext == ".avi") return cv::VideoWriter::fourcc('M', 'J', 'P', 'G');
  if (ext == ".mp4") return cv::VideoWriter::fourcc('m', 'p', '4', 'v');
  throw Error(video, "output video must end in .avi or .mp4");
}

}  // namespace

InferenceReport predict_video(Segmenter& segmenter, const VideoInput& input, const VideoOutputs& outputs,
                              int64_t batch, const InferenceProgress& progress) {
  if (batch < 1) throw OptionError("batch", "must be at least 1");
  if (input.max_frames < 0) throw OptionError("max_frames", "must be 0 (all) or more");
  const int fourcc = fourcc_for(outputs.video);
  if (!outputs.masks_folder.empty()) ensure_output_folder(outputs.masks_folder);
  cv::VideoCapture capture = open_input(input);
  const std::string source = input.camera ? "camera " + std::to_string(*input.camera) : input.path;
  double fps = capture.get(cv::CAP_PROP_FPS);
  if (!(fps > 0 && fps < 1000)) fps = 30;
  const int64_t reported = input.camera ? 0 : static_cast<int64_t>(capture.get(cv::CAP_PROP_FRAME_COUNT));
  const int64_t total = input.max_frames > 0 ? (reported > 0 ? std::min(reported, input.max_frames) : input.max_frames)
                                              : std::max<int64_t>(reported, 0);

  const auto start = std::chrono::steady_clock::now();
  int64_t read = 0;
  Prefetcher<Frame> frames(
      [&]() -> std::optional<Frame> {
        cv::Mat bgr, rgb;
        if ((input.max_frames > 0 && read >= input.max_frames) || !capture.read(bgr) || bgr.empty()) return std::nullopt;
        ++read;
        if (bgr.channels() == 1) cv::cvtColor(bgr, rgb, cv::COLOR_GRAY2RGB);
        else cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
        return Frame{rgb, segmenter.input(rgb)};
      },
      static_cast<size_t>(2 * batch));

  InferenceReport report;
  write_atomically(outputs.video, [&](const std::filesystem::path& tmp) {
    cv::VideoWriter writer;
    cv::Size frame_size;
    for (bool more = true, go_on = true; more && go_on;) {
      std::vector<Frame> group;
      for (Frame f; static_cast<int64_t>(group.size()) < batch && (more = frames.next(f));) group.push_back(std::move(f));
      if (group.empty()) break;
      if (!writer.isOpened()) {
        frame_size = group[0].rgb.size();
        if (!writer.open(tmp.string(), fourcc, fps, frame_size))
          throw Error(outputs.video, "cannot open a video writer for it");
      }
      std::vector<torch::Tensor> inputs;
      for (const auto& f : group) {
        if (f.rgb.size() != frame_size) throw Error(source, "frame size changed mid-stream");
        inputs.push_back(f.input);
      }
      const auto probabilities = segmenter.probabilities(inputs, std::vector<cv::Size>(group.size(), frame_size));
      for (size_t i = 0; i < group.size() && go_on; ++i) {
        const cv::Mat ids = segmenter.labels_from(probabilities[i]);
        cv::Mat bgr;
        cv::cvtColor(overlay(group[i].rgb, colorize(ids, segmenter.info().classes)), bgr, cv::COLOR_RGB2BGR);
        writer.write(bgr);
        ++report.items;
        if (!outputs.masks_folder.empty()) {
          char name[32];
          std::snprintf(name, sizeof name, "frame_%06lld.png", static_cast<long long>(report.items));
          write_png(outputs.masks_folder / name, segmenter.info().binary() ? cv::Mat(ids * 255) : ids);
        }
        if (progress && !progress(report.items, total)) go_on = false;
      }
    }
    if (report.items == 0) throw Error(source, "holds no frames");
    writer.release();
  });
  report.seconds = seconds_since(start);
  return report;
}

}  // namespace segnet
