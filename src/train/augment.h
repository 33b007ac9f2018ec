#pragma once
// The strong view of FixMatch-style pseudo-labelling.
#include <torch/types.h>

namespace segnet {

// On normalised N x 3 x H x W images with N x H x W labels: per-image contrast, brightness and colour
// shifts, a blur on half the images, then CutMix (French et al. 2020): a box of half the image's area
// comes, with its labels, from the previous image of the batch. Nothing is warped, so the labels
// still line up pixel for pixel.
struct AugmentedBatch {
  torch::Tensor images, labels;
};
AugmentedBatch strong_view(const torch::Tensor& images, const torch::Tensor& labels);

}  // namespace segnet
