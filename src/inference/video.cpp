#include <segnet/error.h>
#include <segnet/files.h>
#include <segnet/image.h>
#include <segnet/predict.h>

#include "common/clock.h"
#include "common/prefetch.h"
#include "video_frames.h"

#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>

namespace segnet {

namespace {

struct Frame {
  cv::Mat rgb;
  torch::Tensor input;
};

int fourcc_for(const std::filesystem::path& video) {
  const std::string ext = video.extension().string();
  if (ext == ".avi") return cv::VideoWriter::fourcc('M', 'J', 'P', 'G');
  if (ext == ".mp4") return cv::VideoWriter::fourcc('m', 'p', '4', 'v');
  throw Error(video, "output video must end in .avi or .mp4");
}

}  // namespace

bool is_video(const std::filesystem::path& file) {
  if (file.string().find('%') != std::string::npos) return true;
  std::string ext = file.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (const char* video : {".mp4", ".avi", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv"})
    if (ext == video) return true;
  return false;
}

VideoFrames::VideoFrames(const VideoInput& input, const std::optional<InputRange>& range)
    : input_(input), source_(input.camera ? "camera " + std::to_string(*input.camera) : input.path) {
  if (range)
    throw Error(source_ + ": video frames are 8-bit, but the model reads 16-bit images (input range " +
                to_string(*range) + "); give the frames as image files");
  if (input.max_frames < 0) throw OptionError("max_frames", "must be 0 (all) or more");
  int64_t reported = 0;
  if (input.camera) {
    if (!capture_.open(*input.camera)) throw Error(source_ + ": cannot be opened (no such camera, or it is busy)");
  } else {
    const bool pattern = input.path.find('%') != std::string::npos;  // an image sequence
    if (!pattern && !std::filesystem::is_regular_file(input.path)) throw Error(input.path, "no such video file");
    if (!capture_.open(input.path))
      throw Error(input.path, "cannot open as a video (unreadable, or a format OpenCV cannot decode)");
    reported = static_cast<int64_t>(capture_.get(cv::CAP_PROP_FRAME_COUNT));
  }
  expected_ = input.max_frames > 0 ? (reported > 0 ? std::min(reported, input.max_frames) : input.max_frames)
                                   : std::max<int64_t>(reported, 0);
  const double fps = capture_.get(cv::CAP_PROP_FPS);
  if (fps > 0 && fps < 1000) fps_ = fps;
}

bool VideoFrames::next(cv::Mat& rgb) {
  cv::Mat bgr;
  if ((input_.max_frames > 0 && read_ >= input_.max_frames) || !capture_.read(bgr) || bgr.empty()) {
    if (read_ == 0) throw Error(source_, "holds no frames");
    return false;
  }
  ++read_;
  cv::cvtColor(bgr, rgb, bgr.channels() == 1 ? cv::COLOR_GRAY2RGB : cv::COLOR_BGR2RGB);
  return true;
}

InferenceReport predict_video(Segmenter& segmenter, const VideoInput& input, const VideoOutputs& outputs,
                              int64_t batch, const InferenceProgress& progress) {
  if (batch < 1) throw OptionError("batch", "must be at least 1");
  const int fourcc = fourcc_for(outputs.video);
  if (!outputs.masks_folder.empty()) ensure_output_folder(outputs.masks_folder);
  VideoFrames video(input, segmenter.info().input_range);
  const auto start = std::chrono::steady_clock::now();
  Prefetcher<Frame> frames(
      [&]() -> std::optional<Frame> {
        cv::Mat rgb;
        if (!video.next(rgb)) return std::nullopt;
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
        if (!writer.open(tmp.string(), fourcc, video.fps(), frame_size))
          throw Error(outputs.video, "cannot open a video writer for it");
      }
      std::vector<torch::Tensor> inputs;
      for (const auto& f : group) {
        if (f.rgb.size() != frame_size) throw Error(video.source(), "frame size changed mid-stream");
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
        if (progress && !progress(report.items, video.expected_frames())) go_on = false;
      }
    }
    writer.release();
  });
  report.announced = video.expected_frames();
  report.seconds = seconds_since(start);
  return report;
}

}  // namespace segnet
