#pragma once
// Adapting a trained model, without labels, to the images of where it will run: batch norm's running
// statistics re-estimated on them (AdaBN, Li et al. 2016), every learnt weight left as it is. A scene
// whose light or colours differ from the training images shifts each layer's activations; statistics
// of that scene normalise them back to what the following layers learnt from.
#include <segnet/model.h>
#include <segnet/predict.h>

#include <torch/types.h>

#include <filesystem>
#include <functional>
#include <vector>

namespace segnet {

// What adapt_batch_norm did.
struct AdaptedStatistics {
  int64_t images = 0;  // seen
  int64_t layers = 0;  // batch-norm layers re-estimated
};

// Replaces every batch-norm layer's running mean and variance with their averages over the batches
// `next_batch` returns (normalised N x 3 x H x W inputs, until it returns an undefined tensor), each
// batch weighted by its images, mixed with the trained ones: trained_weight x trained + (1 -
// trained_weight) x the images'. The batches run in order with no gradients, batch norm in training
// mode (normalising by the batch's own statistics, as in training: each layer's statistics of the
// images are those it sees after the earlier layers normalised by the images' alone) and dropout off.
// OptionErrors name "images" when there were none, and "trained_weight" outside [0, 1]. The model is
// left in eval mode, and as it was when anything throws.
AdaptedStatistics adapt_batch_norm(SegNet& model, const std::function<torch::Tensor()>& next_batch,
                                   double trained_weight = 0);

// Adapting a checkpoint to images of a scene.
struct CheckpointAdaptation {
  std::filesystem::path checkpoint;  // required
  // The scene: image files, and videos (files, image sequences, or a camera with max_frames), at least
  // one image or frame in all. Each is resized to the training size.
  std::vector<std::filesystem::path> images;
  std::vector<VideoInput> videos;
  // Of each video, every frame_step-th frame (the first, then frame_step later, ...): neighbouring frames
  // are nearly the same image, so a step spends less time for about the same statistics.
  int64_t frame_step = 1;
  // Images per forward pass: the statistics average batches of this many, as training's running
  // averages averaged its batches. More than there are images: one batch of them all.
  int64_t batch = 8;
  // In [0, 1]: the share of the trained statistics in the adapted ones (adapt_batch_norm's
  // trained_weight). 0 replaces them with the scene's (AdaBN); 1 changes nothing. The scene's
  // statistics also carry what it shows (other proportions of the classes), not only its light, and
  // half of each held up best on CamVid's held-out sequences (README).
  double trained_weight = 0.5;
  // The adapted copy; empty: beside the checkpoint, named STEM_adapted.pt. Must not be an input.
  std::filesystem::path out;
  torch::Device device = torch::kCPU;
};

struct AdaptationReport {
  std::filesystem::path out;
  AdaptedStatistics statistics;
  // The images, plus the frames the videos announce (their length, capped by max_frames, every
  // frame_step-th); 0 for a video that announces none (a camera without max_frames). More than
  // statistics.images when a video ended early (damaged or cut short), as InferenceReport::announced.
  int64_t announced = 0;
};

// Called with (images done, images in all as far as the videos report their length): with 0 once the
// inputs are open, then after each batch.
using AdaptationProgress = std::function<void(int64_t done, int64_t total)>;

// Writes (atomically) a copy of the checkpoint whose batch-norm statistics are adapted to the scene:
// weights and model description, without optimizer state, pseudo-label teacher or int8 activation ranges
// (calibrated on the old statistics; calibrate the copy again). OptionErrors name the option;
// unreadable checkpoints, images and videos are Errors naming the file.
AdaptationReport adapt_checkpoint(const CheckpointAdaptation& options, const AdaptationProgress& progress = {});

}  // namespace segnet
