#include <segnet/error.h>
#include <segnet/pretrained.h>
#include <segnet/state_dict.h>

#include <torch/torch.h>

#include <algorithm>

namespace segnet {

namespace {

std::string shape_text(const std::vector<int64_t>& sizes) {
  std::string s;
  for (int64_t n : sizes) s += (s.empty() ? "" : "x") + std::to_string(n);
  return s.empty() ? "a scalar" : s;
}

// torchvision's VGG keeps its layers in `features`, numbered: with batch norm, each convolution
// features.N is followed by its BatchNorm2d features.N+1 (then ReLU, and a max pool after each stage).
std::vector<int64_t> vgg_convolutions(const StateDictReader& weights) {
  std::vector<int64_t> convs;
  for (const auto& key : weights.keys()) {
    const std::string prefix = "features.", suffix = ".weight";
    if (key.rfind(prefix, 0) != 0 || key.size() <= prefix.size() + suffix.size() ||
        key.compare(key.size() - suffix.size(), suffix.size(), suffix) != 0 || weights.shape(key).size() != 4)
      continue;
    const std::string index = key.substr(prefix.size(), key.size() - prefix.size() - suffix.size());
    if (index.empty() || index.size() > 4 || index.find_first_not_of("0123456789") != std::string::npos) continue;
    convs.push_back(std::stoll(index));
  }
  std::sort(convs.begin(), convs.end());
  return convs;
}

}  // namespace

Normalization imagenet_normalization() { return {{0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}}; }

bool has_vgg16_encoder(Model model) { return layer_plan(model).encoder == layer_plan(Model::SegNet).encoder; }

void load_vgg16_bn_encoder(SegNet& model, const std::filesystem::path& file) {
  const Model kind = model->options().model();
  if (!has_vgg16_encoder(kind))
    throw Error(file, "holds VGG16 weights, but model '" + to_string(kind) + "' has no VGG16 encoder");
  const StateDictReader weights(file);
  const auto keys = weights.keys();
  if (std::none_of(keys.begin(), keys.end(), [](const std::string& k) { return k.rfind("features.", 0) == 0; }))
    throw Error(file, "holds no features.* weights: not torchvision's vgg16_bn (its first key is '" +
                          (keys.empty() ? std::string() : keys.front()) + "')");
  const std::vector<int64_t> convs = vgg_convolutions(weights);
  std::vector<std::string> blocks;  // ours, in the same order
  const LayerPlan plan = layer_plan(kind);
  for (size_t s = 0; s < plan.encoder.size(); ++s)
    for (size_t i = 0; i < plan.encoder[s].size(); ++i)
      blocks.push_back("encoder" + std::to_string(s + 1) + ".convs." + std::to_string(i) + ".");
  if (convs.size() != blocks.size())
    throw Error(file, "holds " + std::to_string(convs.size()) + " convolutions in features.*, vgg16_bn " +
                          std::to_string(blocks.size()) + ": weights of another network");

  // Every tensor is read and checked before the model changes.
  const auto params = model->named_parameters(), buffers = model->named_buffers();
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copies;  // (ours, theirs)
  for (size_t b = 0; b < blocks.size(); ++b) {
    const std::string conv = "features." + std::to_string(convs[b]) + ".", bn = "features." + std::to_string(convs[b] + 1) + ".";
    if (!weights.contains(bn + "running_mean"))
      throw Error(file, conv + "weight is not followed by batch norm: weights of vgg16 without it? SegNet's encoder "
                                "needs vgg16_bn's");
    const std::vector<std::pair<std::string, std::string>> names = {
        {"conv.weight", conv + "weight"}, {"conv.bias", conv + "bias"},
        {"bn.weight", bn + "weight"},     {"bn.bias", bn + "bias"},
        {"bn.running_mean", bn + "running_mean"}, {"bn.running_var", bn + "running_var"},
        {"bn.num_batches_tracked", bn + "num_batches_tracked"}};
    for (const auto& [mine, theirs] : names) {
      const torch::Tensor* ours = params.find(blocks[b] + mine);
      if (!ours) ours = buffers.find(blocks[b] + mine);
      if (!weights.contains(theirs)) throw Error(file, "lacks " + theirs + ": not torchvision's vgg16_bn");
      if (weights.shape(theirs) != ours->sizes().vec())
        throw Error(file, theirs + " is " + shape_text(weights.shape(theirs)) + " but SegNet's " + blocks[b] + mine +
                              " is " + shape_text(ours->sizes().vec()) + ": not vgg16_bn weights");
      copies.emplace_back(*ours, weights.tensor(theirs));
    }
  }
  torch::NoGradGuard no_grad;
  for (auto& [ours, theirs] : copies) ours.copy_(theirs);
}

void init_from(SegNet& model, const SegNet& trained, const std::filesystem::path& file) {
  const SegNetOptions &to = model->options(), &from = trained->options();
  if (to.model() != from.model() || to.upsampling() != from.upsampling())
    throw OptionError("init", file.string() + " holds a '" + to_string(from.model()) + "' model with the '" +
                                  to_string(from.upsampling()) + "' decoder, not the '" + to_string(to.model()) +
                                  "' with the '" + to_string(to.upsampling()) + "' decoder trained here");
  const bool same_classes = to.num_classes() == from.num_classes();
  const auto params = trained->named_parameters(), buffers = trained->named_buffers();
  torch::NoGradGuard no_grad;
  for (auto& p : model->named_parameters())
    if (same_classes || p.key().rfind("classifier.", 0) != 0) p.value().copy_(params[p.key()]);
  for (auto& b : model->named_buffers()) b.value().copy_(buffers[b.key()]);
}

}  // namespace segnet
