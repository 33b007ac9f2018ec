// Segments one image with a trained model and writes three PNGs:
//   OUT_PREFIX_ids.png      the class id of each pixel (grey values 0, 1, 2, ...)
//   OUT_PREFIX_color.png    each class in its colour
//   OUT_PREFIX_overlay.png  the colours over the image
// Usage: segment_image CHECKPOINT IMAGE OUT_PREFIX
#include <segnet/segnet.h>
#include <torch/cuda.h>

#include <cstdio>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: segment_image CHECKPOINT IMAGE OUT_PREFIX\n";
    return 2;
  }
  const std::string checkpoint = argv[1], image = argv[2], prefix = argv[3];
  try {
    // Use all cores. Call this first, before anything else runs LibTorch.
    segnet::set_threads(0);

    // The model and everything it needs (classes, input size, normalisation) come from the checkpoint.
    // It runs on the GPU when LibTorch has one. SegmenterOptions{} is fp32; set .precision =
    // segnet::Precision::BFloat16 for bf16 where segnet::has_fast_bf16(device) says the device runs it fast.
    const torch::Device device = torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
    segnet::Segmenter segmenter = segnet::Segmenter::from_checkpoint(checkpoint, device, segnet::SegmenterOptions{});

    // An image of any size, as 8-bit RGB. segment() returns one class id per pixel (CV_8UC1), at the image's size.
    cv::Mat rgb = segnet::read_image(image, segmenter.info().input_range);
    cv::Mat ids = segmenter.segment(rgb);

    // Pictures: the classes' colours, and those colours half over the image.
    const std::vector<segnet::ClassInfo>& classes = segmenter.info().classes;
    cv::Mat color = segnet::colorize(ids, classes);
    cv::Mat overlay = segnet::overlay(rgb, color, 0.5);

    segnet::write_png(prefix + "_ids.png", ids);
    segnet::write_png(prefix + "_color.png", color);
    segnet::write_png(prefix + "_overlay.png", overlay);

    // How much of the image each class covers.
    for (size_t id = 0; id < classes.size(); ++id) {
      const int pixels = cv::countNonZero(ids == static_cast<int>(id));
      if (pixels > 0) std::printf("%-12s %5.1f%%\n", classes[id].name.c_str(), 100.0 * pixels / ids.total());
    }
  } catch (const std::exception& e) {  // segnet::Error: one line that names the bad file or option
    std::cerr << "segment_image: " << e.what() << '\n';
    return 1;
  }
}
