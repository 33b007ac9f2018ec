// Segments every frame of a video and writes the segmentation over the frames as a video of the
// same size and frame rate, printing the time each frame took.
// Usage: segment_video CHECKPOINT INPUT OUT_VIDEO [--bf16]
//   INPUT      a video file, an image sequence such as frames/%03d.png, or a camera index such as 0
//   OUT_VIDEO  .avi (Motion JPEG) or .mp4 (MPEG-4 part 2)
//   --bf16     bf16 inference: faster on GPUs and on CPUs with AVX512-BF16 or AMX, slightly different
//              results; on CPUs without AVX-512 many times slower (it says so)
// It runs on the GPU when LibTorch has one, else on the CPU.
// Ctrl-C stops early; the video written so far is kept.
#include <segnet/segnet.h>

#include <opencv2/core/utils/logger.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <torch/cuda.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <string>

namespace {

volatile std::sig_atomic_t stop = 0;

// The codec for the output file's extension.
int fourcc_for(const std::filesystem::path& file) {
  if (file.extension() == ".avi") return cv::VideoWriter::fourcc('M', 'J', 'P', 'G');
  if (file.extension() == ".mp4") return cv::VideoWriter::fourcc('m', 'p', '4', 'v');
  throw segnet::Error(file, "unknown video type (use .avi or .mp4)");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4 || argc > 5 || (argc == 5 && std::string(argv[4]) != "--bf16")) {
    std::cerr << "usage: segment_video CHECKPOINT INPUT OUT_VIDEO [--bf16]\n";
    return 2;
  }
  const std::string checkpoint = argv[1], input = argv[2], output = argv[3];
  try {
    segnet::set_threads(0);  // all cores; first, before anything else runs LibTorch
    const torch::Device device = torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
    segnet::SegmenterOptions options;
    if (argc == 5) options.precision = segnet::Precision::BFloat16;
    if (argc == 5 && !segnet::has_fast_bf16(device))
      std::cerr << "warning: this CPU has no AVX-512: bf16 runs on a generic kernel, many times slower than fp32\n";
    segnet::Segmenter segmenter = segnet::Segmenter::from_checkpoint(checkpoint, device, options);

    // OpenCV opens files, image sequences and cameras alike; an all-digit INPUT is a camera index.
    // It logs each of its backends that fails to open INPUT: quiet, this program says it in one line.
    cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT);
    cv::VideoCapture capture;
    const bool camera = !input.empty() && std::all_of(input.begin(), input.end(), [](unsigned char c) { return std::isdigit(c); });
    if (camera) capture.open(std::stoi(input));
    else capture.open(input);
    cv::Mat frame;  // BGR, as OpenCV decodes
    if (!capture.isOpened() || !capture.read(frame))
      throw segnet::Error(input, "cannot read frames (not a video, an image sequence or a camera)");

    // The writer needs the frame size and rate up front: the first frame's size, the input's rate.
    double fps = capture.get(cv::CAP_PROP_FPS);
    if (!(fps > 0)) {
      fps = 30;
      std::printf("%s reports no frame rate: writing 30 frames a second\n", input.c_str());
    }
    cv::VideoWriter writer(output, fourcc_for(output), fps, frame.size());
    if (!writer.isOpened()) throw segnet::Error(output, "cannot write (no such folder, or no encoder)");

    std::signal(SIGINT, [](int) { stop = 1; });
    int frames = 0;
    double total_ms = 0;
    cv::Mat rgb, shown;
    do {
      const auto start = std::chrono::steady_clock::now();
      cv::cvtColor(frame, rgb, cv::COLOR_BGR2RGB);  // segnet works in RGB
      cv::Mat ids = segmenter.segment(rgb);
      cv::cvtColor(segnet::overlay(rgb, segnet::colorize(ids, segmenter.info().classes)), shown, cv::COLOR_RGB2BGR);
      writer.write(shown);
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      total_ms += ms;
      std::printf("frame %d: %.1f ms\n", ++frames, ms);
    } while (!stop && capture.read(frame));

    std::printf("%d frames, %.1f frames a second\n", frames, 1000.0 * frames / total_ms);
  } catch (const std::exception& e) {  // segnet::Error: one line that names the bad file or option
    std::cerr << "segment_video: " << e.what() << '\n';
    return 1;
  }
}
