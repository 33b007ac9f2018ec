#pragma once
// int8 inference by post-training static quantization. The convolutions (batch norm folded in) run on
// oneDNN, with symmetric int8 weights scaled per output channel (127 levels on processors with AVX-512
// VNNI, 63 elsewhere, so that their 16-bit partial sums cannot saturate) and uint8 activations scaled
// per tensor from ranges calibrated on images. Max pooling and index unpooling run on the uint8 values
// themselves (they only move values, so they keep the scale). The classifier is an int8 convolution too,
// but gives its logits in fp32, unrounded, since they decide every pixel; a transposed-convolution
// decoder's upsampling runs in fp32.
//
// The image needs no calibration: its 8-bit pixels are exact in uint8, so the first convolution takes
// them unnormalised (the normalisation folded into its weights). The other quantized activations, in the
// order calibration records their ranges: each convolution's output (after its ReLU) and, for
// transposed-convolution decoders only, each decoder stage's upsampled input, as the network computes them.
#include <segnet/checkpoint.h>
#include <segnet/model.h>

#include <torch/types.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace segnet {

struct CalibrationOptions {
  // 100: each activation's range runs from the least to the greatest value seen on any image. Below
  // 100: from each image's (100 - p)th to its p-th percentile, averaged over the images, so that rare
  // outliers do not widen the quantization step of everything else (and more images do not widen it
  // further). 99.99 kept more predictions equal to fp32 than 100 did in the tests (98.6-98.9% against 97.9%).
  double percentile = 99.99;
};

// The activation ranges of `model` (batch norm not yet folded) on normalised inputs (each N x 3 x H x W),
// run one after another in fp32. Deterministic for given inputs. OptionErrors: "percentile" unless
// 50 < p <= 100, "images" for no inputs.
std::vector<ActivationRange> calibrate(const SegNet& model, const std::vector<torch::Tensor>& inputs,
                                       const CalibrationOptions& options = {});

// Scales each convolution block's output channels by positive factors, and divides the input weights of
// the convolution that reads them (the next block's, or the classifier's) by the same factors, so that
// on `inputs` (as for calibrate) every channel of an activation peaks at the same value. The network
// computes the same function (positive scaling passes through ReLU, max pooling, unpooling and bilinear
// upsampling), but one uint8 scale per activation then fits all its channels, not only its widest. Batch
// norm's affine parameters carry the scaling. Activations a transposed convolution reads are left alone.
void equalize_channels(SegNet& model, const std::vector<torch::Tensor>& inputs);

// How many activation ranges int8 inference needs for a network.
int64_t activation_count(const SegNetOptions& options);

// uint8 quantization of a range: widened to hold 0 (exact zero padding, ReLU and unpooling zeros), 255 steps.
struct QuantParams {
  double scale;
  int64_t zero_point;
};
QuantParams quant_params(const ActivationRange& range);

// Per-output-channel symmetric int8 weights: each channel's largest magnitude maps to `levels`
// (1..127; an OptionError names "levels" otherwise).
torch::Tensor quantize_weight(const torch::Tensor& weight, int64_t levels = 127);

// A network's int8 forward pass, on the CPU. Holds its own copy of the model.
class QuantizedSegNet {
 public:
  // An Error when `ranges` does not hold one range per quantized activation of `model`. `norm`: how the
  // inputs were normalised.
  QuantizedSegNet(const SegNet& model, const std::vector<ActivationRange>& ranges, const Normalization& norm);
  ~QuantizedSegNet();
  QuantizedSegNet(QuantizedSegNet&&) noexcept;
  // N x 3 x H x W fp32 images normalised with `norm` -> fp32 logits. The pixels are rounded to the
  // nearest of the 256 8-bit values (which images resized from 8-bit ones already are) and clipped to them.
  torch::Tensor forward(const torch::Tensor& input);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Calibrating a checkpoint on images of its dataset, for int8 inference.
struct CheckpointCalibration {
  std::filesystem::path checkpoint;  // required
  std::filesystem::path data;        // dataset directory, required
  std::string list = "train.txt";    // list file in `data`; without it, the images/ masks/ pairing
  // Images to calibrate on, spread evenly over the list (all of them when it has fewer), each resized
  // to the model's training size and normalised as inference does.
  int64_t images = 32;
  // The calibrated copy; empty: beside the checkpoint, named STEM_int8.pt. Must not be the checkpoint.
  std::filesystem::path out;
  // equalize_channels() on the images first, into the copy's weights: more int8 predictions equal fp32's.
  bool equalize = true;
  CalibrationOptions calibration;
};

struct CalibrationReport {
  std::filesystem::path out;
  int64_t images = 0;  // calibrated on
  int64_t ranges = 0;
};

// Writes (atomically) a copy of the checkpoint with the model's activation ranges: weights and model
// description, without optimizer state or pseudo-label teacher (the copy is for inference).
// OptionErrors name the option; unreadable checkpoints and images are Errors naming the file.
CalibrationReport calibrate_checkpoint(const CheckpointCalibration& options);

}  // namespace segnet
