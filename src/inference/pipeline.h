#pragma once
// The loop that predict and pseudo-label share: images decoded ahead, segmented in batches, and
// their results handed to writers running behind the network.
#include <segnet/predict.h>

#include <opencv2/core.hpp>
#include <torch/types.h>

#include <filesystem>
#include <functional>
#include <vector>

namespace segnet {

// Called on a background thread for each image, in any order relative to other images: must be
// thread-safe. `probabilities` is classes x H x W at the image's size.
using SegmentedImageSink =
    std::function<void(const std::filesystem::path& file, const cv::Mat& rgb, const torch::Tensor& probabilities)>;

InferenceReport segment_files(Segmenter& segmenter, const std::vector<std::filesystem::path>& files, int64_t batch,
                              const SegmentedImageSink& sink, const InferenceProgress& progress);

}  // namespace segnet
