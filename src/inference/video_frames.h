#pragma once
// Reading a video input frame by frame, for the jobs that take videos (predict, adapt).
#include <segnet/predict.h>

#include <opencv2/core.hpp>
#include <opencv2/videoio.hpp>

#include <optional>
#include <string>

namespace segnet {

class VideoFrames {
 public:
  // Opens the input; a missing or undecodable file, or a camera that cannot be opened, is an Error naming it.
  // Frames are 8-bit: for a model that reads 16-bit images (`range` set) that is an Error too.
  VideoFrames(const VideoInput& input, const std::optional<InputRange>& range);
  // The next frame as 8-bit RGB (grey frames made RGB); false after the last, or after max_frames.
  // An input that ends before its first frame is an Error naming it.
  bool next(cv::Mat& rgb);
  // "camera K", or the path: what errors about the input name.
  const std::string& source() const { return source_; }
  double fps() const { return fps_; }  // as the input reports it; 30 where it reports none
  // The frames next() will give, as far as the input reports its length (capped by max_frames); 0: unknown.
  int64_t expected_frames() const { return expected_; }

 private:
  VideoInput input_;
  std::string source_;
  cv::VideoCapture capture_;
  int64_t read_ = 0, expected_ = 0;
  double fps_ = 30;  // read once: the capture is not to be queried while another thread reads frames
};

}  // namespace segnet
