#pragma once
// Starting a model from weights trained elsewhere: torchvision's ImageNet VGG16-BN for SegNet's
// encoder, or a segnet checkpoint for fine-tuning on another dataset.
#include <segnet/data.h>
#include <segnet/model.h>

#include <filesystem>

namespace segnet {

// The input normalisation torchvision's ImageNet weights were trained with.
Normalization imagenet_normalization();

// Whether the model's encoder is VGG16's 13 convolutions (segnet, bayesian-segnet).
bool has_vgg16_encoder(Model model);

// Sets the 13 convolutions and batch norms of `model`'s encoder, in order, from torchvision's vgg16_bn
// state dict (as downloaded, or as torch.save wrote model.state_dict()): features.* keys only, the
// classifier is not read. A file of another network, a truncated one, or a model without a VGG16
// encoder is an Error naming the file and what does not fit; `model` is then left as it was.
void load_vgg16_bn_encoder(SegNet& model, const std::filesystem::path& file);

// Fine-tuning: `model` takes the weights and batch-norm statistics of `trained` (read from `file`),
// which must be the same network (model and decoder; dilation changes no weight), else an
// OptionError("init"). The classifier is taken only when the class count is the same: otherwise it
// keeps `model`'s own initialisation.
void init_from(SegNet& model, const SegNet& trained, const std::filesystem::path& file);

}  // namespace segnet
