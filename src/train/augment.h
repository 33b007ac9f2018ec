#pragma once
// The strong view of FixMatch-style pseudo-labelling.
#include <segnet/choices.h>
#include <segnet/data.h>

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

// For each image of `labels`, the pixels of a random half (rounded up) of the classes it holds (void
// is not a class): DACS's ClassMix mask.
torch::Tensor class_mix_mask(const torch::Tensor& labels);

// Each image of `source` (N x 3 x H x W) shifted and scaled, per channel, to the mean and standard
// deviation of the same image of `target` (Reinhard et al. 2001's colour transfer, done on the
// normalised input).
torch::Tensor match_color_statistics(const torch::Tensor& source, const torch::Tensor& target);

// rescaled_view, then per-image contrast, brightness and colour shifts, a blur on half the images, then
// CutMix (French et al. 2020): a box of half the image's area comes, with its labels, from the previous
// image of the batch. The ClassMix mixes (choices.h) take `labeled` (labelled images of the same size
// and their labels) instead: before the colour shifts, each image takes class_mix_mask's pixels, with
// their labels, from labelled image k modulo their number (recoloured by match_color_statistics to
// image k's colours for RecoloredClassMix). Labels still line up with their pixels.
AugmentedBatch strong_view(const torch::Tensor& images, const torch::Tensor& labels, double min_scale = 1,
                           double max_scale = 1, PseudoMix mix = PseudoMix::CutMix, const Batch* labeled = nullptr);

}  // namespace segnet
