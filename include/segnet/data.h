#pragma once
// Labelled image datasets: discovery, validated decoding, statistics and batching.
#include <segnet/choices.h>

#include <opencv2/core.hpp>
#include <torch/types.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace segnet {

namespace fs = std::filesystem;

// Label value of pixels that neither loss nor metrics count, after decoding.
constexpr int64_t kIgnoreLabel = 255;

struct Size2 {
  int64_t height = 0;
  int64_t width = 0;
};
std::string to_string(Size2 size);
// Each side 1..kMaxImageSide: what training sizes, checkpoints and --size may hold.
constexpr int64_t kMaxImageSide = 16384;
inline bool is_image_size(Size2 s) {
  return s.height >= 1 && s.width >= 1 && s.height <= kMaxImageSide && s.width <= kMaxImageSide;
}

struct ClassInfo {
  std::string name;
  std::array<uint8_t, 3> rgb;
};
// `id,name,r,g,b` with ids 0..N-1 in order (a header line is allowed).
std::vector<ClassInfo> read_classes_csv(const fs::path& file);
// The same format, written atomically.
void write_classes_csv(const fs::path& file, const std::vector<ClassInfo>& classes);
// Names "class0".. and a fixed distinct palette, for datasets without classes.csv.
std::vector<ClassInfo> default_classes(int64_t count);

using Rgb = std::array<uint8_t, 3>;

// How label images map to classes.
// Ids (LabelFormat::Ids): each pixel's stored value: 8- or 16-bit grey, or a palette PNG's index (read
// as stored, not as its colour). Through `value_map` when it is given (Cityscapes labelIds -> train ids,
// datasets where 0 is void); otherwise 0..num_classes-1 are classes and `void_labels` are ignored.
// Binary masks: 0 is background, 1 and 255 foreground.
// Color (LabelFormat::Color): the pixel's RGB is a class's colour (`class_colors`) or a void colour.
// Anything else is an error naming the file and the value (or the colour and the pixel).
struct LabelSpec {
  int64_t num_classes = 0;
  std::vector<int64_t> void_labels;
  bool binary = false;
  LabelFormat format = LabelFormat::Ids;
  std::map<int64_t, int64_t> value_map;  // stored value -> class id or kIgnoreLabel; empty: as stored
  std::vector<Rgb> class_colors;         // Color: the colour of each class id
  std::vector<Rgb> void_colors;          // Color: colours that are ignored

  // A stored value (Ids) that reads back as void, for writing void pixels; nullopt if there is none.
  std::optional<int64_t> stored_void() const;
};
// Void is `void_label` when given, else num_classes and 255 (CamVid: 11). A void label of 0 means the
// dataset stores class k as k + 1 and 0 as void (ADE20K and others; MMSegmentation's reduce_zero_label).
LabelSpec make_label_spec(int64_t num_classes, std::optional<int64_t> void_label);
// Two classes from 0 / 1-or-255 masks; void only when `void_label` is given (2..254).
LabelSpec make_binary_label_spec(std::optional<int64_t> void_label);
// A label map file: `STORED CLASS` lines, CLASS a class id (0..num_classes-1) or `void`; blank lines
// and '#' comments skipped. Stored values not listed are errors when a label holds them.
std::map<int64_t, int64_t> read_label_map(const fs::path& file, int64_t num_classes);

struct SamplePaths {
  fs::path image;
  fs::path label;  // empty for an unlabelled image: every pixel is void
};
// A list file's lines split into whitespace-separated fields, with their line numbers; blank lines and
// '#' comments skipped. An empty list is an Error.
struct ListLine {
  int number;
  std::vector<std::string> fields;
};
std::vector<ListLine> read_list_lines(const fs::path& list_file);
// A list file of `IMAGE LABEL` lines relative to `dir` (blank lines and '#' comments skipped).
std::vector<SamplePaths> read_list(const fs::path& dir, const fs::path& list_file);
// `dir/images` and `dir/masks`, paired by file stem.
std::vector<SamplePaths> pair_folders(const fs::path& dir);
// The list when `dir/list` exists, else the images/ masks/ pairing; an empty result is an Error.
std::vector<SamplePaths> find_samples(const fs::path& dir, const std::string& list);
// Image files named directly and those inside named folders (in name order).
std::vector<fs::path> list_images(const std::vector<fs::path>& inputs);
// Unlabelled images: a folder of images, or a list file of `IMAGE [LABEL]` lines relative to `dir`
// (labels, if any, are not read).
std::vector<SamplePaths> find_unlabeled(const fs::path& dir, const fs::path& folder_or_list);

// The stored values that become black (0) and white (255) when a 16-bit image (PNG or TIFF) is read:
// linear in between, clipped outside. Medical and scientific images often fill 10 or 12 of the 16
// bits, which reading them as 8-bit (their top 8 bits) would crush to a few grey levels. A model
// trained through one keeps it, so that inference reads images as training did.
struct InputRange {
  double low = 0;
  double high = 65535;
};
std::string to_string(const InputRange& range);  // "0..4095"
// An OptionError (input_range) unless low < high, both finite.
void validate(const InputRange& range);
// An image of any depth (and channels) mapped to 8 bits through `range`, as read_image does.
cv::Mat to_8bit(const cv::Mat& image, const InputRange& range);

// Decodes an image as 8-bit RGB (grey as three equal channels). 8-bit images are read as stored and
// take no `range`; 16-bit ones need one and are mapped through it (to_8bit). Unreadable or corrupt
// files, other depths, and a depth that does not fit `range`, are Errors naming the file.
cv::Mat read_image(const fs::path& file, const std::optional<InputRange>& range);
// Decodes a label image as `spec` says and maps it to class ids, void -> kIgnoreLabel.
cv::Mat read_label(const fs::path& file, const LabelSpec& spec);

struct Sample {
  cv::Mat image;  // RGB, CV_8UC3
  cv::Mat label;  // class ids, CV_8UC1, kIgnoreLabel for void
};
// Reads both files and checks that their sizes agree; without a label, all pixels are void.
Sample read_sample(const SamplePaths& paths, const LabelSpec& spec, const std::optional<InputRange>& range);
// Area interpolation when shrinking, bilinear otherwise.
cv::Mat resize_image(const cv::Mat& rgb, Size2 size);
// The image as resize_image does it, the label by nearest neighbour.
Sample resize_sample(const Sample& sample, Size2 size);

// Random changes to a training sample, label-safe by construction: geometric ones move the label
// with the image (nearest neighbour, void where the image was padded), colour ones touch the image only.
// The defaults are AugmentPreset::Color.
struct AugmentOptions {
  // The sample is rescaled to the training size times a factor drawn uniformly in [min_scale,
  // max_scale], then cropped (where larger) or padded (where smaller: the image with the dataset's mean
  // colour, the label with void) back to the training size at a random position. 1, 1: no rescaling.
  double min_scale = 1;
  double max_scale = 1;
  bool flip = true;  // horizontal flip of half of the samples
  // Colour jitter as torchvision's ColorJitter: brightness, contrast and saturation factors drawn in
  // [1 - x, 1 + x] (x in [0, 1]), the hue turned by up to `hue` of a full turn (in [0, 0.5]). 0: unchanged.
  double brightness = 0.25;
  double contrast = 0.25;
  double saturation = 0.25;
  double hue = 0.05;
};
AugmentOptions augment_preset(AugmentPreset preset);
// OptionErrors named augment.min_scale, augment.brightness, ... for impossible ranges.
void validate(const AugmentOptions& options);

// `sample` (at any size) augmented as `options` say and brought to `size`; the same `seed` gives the
// same result. `pad_rgb`: the image's colour where it is padded.
Sample augment_sample(const Sample& sample, Size2 size, const AugmentOptions& options, uint64_t seed,
                      const cv::Scalar& pad_rgb);

struct Normalization {
  std::array<float, 3> mean{0.f, 0.f, 0.f};  // per RGB channel, on 0..1 values
  std::array<float, 3> std{1.f, 1.f, 1.f};
};
// HxW RGB uint8 -> 3xHxW float, normalised.
torch::Tensor image_to_tensor(const cv::Mat& rgb, const Normalization& norm);
// The network's input for an image at `size`: resized as resize_image does, then normalised (3 x h x w).
torch::Tensor network_input(const cv::Mat& rgb, Size2 size, const Normalization& norm);
// Per-channel values (a Normalization's mean or std) as a 3x1x1 tensor, which broadcasts over the
// channels of 3xHxW and Nx3xHxW images.
torch::Tensor channel_tensor(const std::array<float, 3>& values);
// Class ids between images and tensors: a CV_8UC1 image as an HxW uint8 tensor that shares its pixels,
// and an HxW integer tensor (values 0..255) as a new CV_8UC1 image.
torch::Tensor label_tensor(const cv::Mat& ids);
cv::Mat label_image(const torch::Tensor& ids);

struct DatasetStatistics {
  Normalization norm;
  std::vector<int64_t> class_pixels;    // pixels of each class
  std::vector<int64_t> present_pixels;  // pixels of the images in which each class appears
};
// One parallel pass over the samples at `size`; also validates every file.
DatasetStatistics compute_statistics(const std::vector<SamplePaths>& samples, const LabelSpec& spec,
                                     const std::optional<InputRange>& range, Size2 size);

struct Batch {
  torch::Tensor images;  // N x 3 x H x W float
  torch::Tensor labels;  // N x H x W int64, kIgnoreLabel for void
};

// A labelled dataset generated from shapes with class-specific colours and textures plus noise,
// written in the list layout (train/ trainannot/ val/ valannot/ train.txt val.txt classes.csv).
struct SynthOptions {
  fs::path out;
  int64_t count = 120;  // images in all; a fifth go to val
  Size2 size{96, 128};
  uint64_t seed = 1;
  bool binary = false;  // 0/255 masks: the shapes are foreground, no void
};
void synthesize_dataset(const SynthOptions& options);

}  // namespace segnet
