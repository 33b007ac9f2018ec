#pragma once
// Segmenting many inputs and writing what a person or a program downstream wants to open:
// image files, videos and cameras, and pseudo-label masks for self-training.
#include <segnet/segmenter.h>

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace segnet {

// For each input image STEM, in `folder`: STEM.png (class ids; binary models: a 0/255 mask),
// STEM_color.png (multi-class models), STEM_overlay.png (the colours over the image), and
// STEM_uncertainty.png (predictive entropy) when the segmenter averages several dropout samples, and
// on request STEM_probabilities.npy (float32, classes x H x W at the image's size; binary models:
// background and foreground) for programs that fuse, calibrate or compare scores.
struct ImageOutputs {
  std::filesystem::path folder;
  bool ids = true;
  bool color = true;
  bool overlay = true;
  bool uncertainty = true;
  bool probabilities = false;
};

struct InferenceReport {
  int64_t items = 0;  // images, or video frames
  // Videos: the frames the input announces (its length, capped by max_frames); 0 where it announces none
  // (a camera). More than `items` when the video ended early (damaged or cut short) or progress stopped it.
  int64_t announced = 0;
  double seconds = 0;
  double per_second() const { return seconds > 0 ? items / seconds : 0; }
};

// Called after each image or frame with (done, total); total is 0 when unknown (a camera, a stream).
// Returning false stops the run early; what was written so far stays valid.
using InferenceProgress = std::function<bool(int64_t done, int64_t total)>;

// Segments `images` `batch` at a time, writing STEM.png, STEM_color.png, ... into `outputs.folder`. An
// image inside that folder, or two images whose results would share a file name (the same stem, or x
// and x_color), is an Error before anything is written. Decoding runs ahead and PNG writing behind the
// network, on threads of their own.
InferenceReport predict_images(Segmenter& segmenter, const std::vector<std::filesystem::path>& images,
                               const ImageOutputs& outputs, int64_t batch, const InferenceProgress& progress = {});

// A video file (anything OpenCV's VideoCapture opens, image sequences such as frames/%04d.png
// included) or a camera.
struct VideoInput {
  std::string path;           // used when `camera` is not set
  std::optional<int> camera;  // a camera index
  int64_t max_frames = 0;     // stop after this many frames; 0 = until the input ends
};
// Whether a path names a video: a video file by its extension (.mp4, .avi, .mkv, .mov, ...), or an
// image sequence such as frames/%04d.png.
bool is_video(const std::filesystem::path& path);

// An overlay video of the input's frame size and rate (30 frames/s where the input reports none);
// the container and codec follow the extension: .avi (Motion JPEG) or .mp4 (MPEG-4 part 2).
// With `masks_folder`, also each frame's class ids as frame_NNNNNN.png (binary: 0/255).
struct VideoOutputs {
  std::filesystem::path video;
  std::filesystem::path masks_folder;  // empty: no masks
};

// Frames are decoded and prepared ahead of the network, `batch` frames per forward pass.
InferenceReport predict_video(Segmenter& segmenter, const VideoInput& input, const VideoOutputs& outputs,
                              int64_t batch, const InferenceProgress& progress = {});

// Pseudo-label masks: for each image STEM, `folder`/STEM.png holds the likeliest class where
// confident_labels keeps it (per image) and the model's void label elsewhere, so the masks train as they are.
struct PseudoLabelReport {
  int64_t images = 0;
  double confident_fraction = 0;  // share of all pixels that got a class
  int64_t void_label = 0;         // the value written for unconfident pixels
};
PseudoLabelReport write_pseudo_labels(Segmenter& segmenter, const std::vector<std::filesystem::path>& images,
                                      const std::filesystem::path& folder, double threshold,
                                      double class_share = 0, const InferenceProgress& progress = {});

// Class ids, with void (kIgnoreLabel) where a pixel is not confident enough. A pixel keeps its likeliest
// class where that class's probability reaches `threshold`, or, with `class_share` in (0, 1], where
// it is among the most confident `class_share` of the pixels (of the whole tensor) whose likeliest class
// is the same: class-balanced self-training (Zou et al., ECCV 2018). On a scene the model has not seen,
// whole classes may never reach the threshold; their best pixels still get labels. 0: threshold alone.
// `probabilities`: N x classes x H x W (or classes x H x W) -> N x H x W (or H x W), int64.
torch::Tensor confident_labels(const torch::Tensor& probabilities, double threshold, double class_share = 0);

}  // namespace segnet
