#pragma once
// The strong view of FixMatch-style pseudo-labelling.
#include <torch/types.h>

namespace segnet {

struct AugmentedBatch {
  torch::Tensor images, labels;
};

// On normalised N x 3 x H x W images with N x H x W labels: each image and its labels rescaled by a
// factor drawn in [min_scale, max_scale] and cropped or padded back to H x W at a random place, as
// augment_sample does for labelled samples (bilinear image, nearest labels; padding is 0, the mean
// colour once normalised, labelled void). 1, 1: unchanged.
AugmentedBatch rescaled_view(const torch::Tensor& images, const torch::Tensor& labels, double min_scale,
                             double max_scale);

// rescaled_view, then per-image contrast, brightness and colour shifts, a blur on half the images, then
// CutMix (French et al. 2020): a box of half the image's area comes, with its labels, from the previous
// image of the batch. Labels still line up with their pixels.
AugmentedBatch strong_view(const torch::Tensor& images, const torch::Tensor& labels, double min_scale = 1,
                           double max_scale = 1);

}  // namespace segnet
