#pragma once
// Adapting a trained model, without labels, to the images of where it will run: batch norm's running
// statistics re-estimated on them (AdaBN, Li et al. 2016), every learnt weight left as it is. A scene
// whose light or colours differ from the training images shifts each layer's activations; statistics
// of that scene normalise them back to what the following layers learnt from.
#include <segnet/model.h>

#include <torch/types.h>

#include <filesystem>
#include <functional>
#include <vector>

namespace segnet {

// Replaces every batch-norm layer's running mean and variance with their averages over the batches
// `next_batch` returns (normalised N x 3 x H x W inputs, until it returns an undefined tensor), each
// batch weighted by its images. The batches run in order with no gradients, batch norm in training
// mode (normalising by the batch's own statistics, as in training) and dropout off. Returns the images
// seen; an OptionError names "images" when there were none. The model is left in eval mode, and as it
// was when anything throws.
int64_t adapt_batch_norm(SegNet& model, const std::function<torch::Tensor()>& next_batch);

// Adapting a checkpoint to images of a scene.
struct CheckpointAdaptation {
  std::filesystem::path checkpoint;             // required
  std::vector<std::filesystem::path> images;    // of the scene, at least one; resized to the training size
  // Images per forward pass: the statistics average batches of this many, as training's running
  // averages averaged its batches. More than there are images: one batch of them all.
  int64_t batch = 8;
  // The adapted copy; empty: beside the checkpoint, named STEM_adapted.pt. Must not be an input.
  std::filesystem::path out;
  torch::Device device = torch::kCPU;
};

struct AdaptationReport {
  std::filesystem::path out;
  int64_t images = 0;
  int64_t layers = 0;  // batch-norm layers re-estimated
};

// Called after each batch with (images done, images in all).
using AdaptationProgress = std::function<void(int64_t done, int64_t total)>;

// Writes (atomically) a copy of the checkpoint whose batch-norm statistics are those of `images`:
// weights and model description, without optimizer state, pseudo-label teacher or int8 activation ranges
// (calibrated on the old statistics; calibrate the copy again). OptionErrors name the option;
// unreadable checkpoints and images are Errors naming the file.
AdaptationReport adapt_checkpoint(const CheckpointAdaptation& options, const AdaptationProgress& progress = {});

}  // namespace segnet
