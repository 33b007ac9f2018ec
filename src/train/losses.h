#pragma once
// What a training step minimises.
#include <segnet/choices.h>

#include <torch/types.h>

#include <string>

namespace segnet {

// Multi-class: class-weighted pixel-wise cross-entropy, soft Dice, focal loss, Lovasz-softmax, or
// cross-entropy plus one of the other three (an unweighted sum). Binary: weighted binary
// cross-entropy, soft Dice, or their sum. The class weights weight (binary) cross-entropy and focal;
// Dice and Lovasz are unweighted. Void pixels (kIgnoreLabel) are left out of every loss.
struct Objective {
  Task task = Task::Multiclass;
  Loss loss = Loss::CrossEntropy;
  torch::Tensor class_weights;  // one per class (binary: background, foreground)
};
// `logits` N x C x H x W (N x 1 x H x W for binary) in fp32, `labels` N x H x W class ids.
torch::Tensor segmentation_loss(const torch::Tensor& logits, const torch::Tensor& labels, const Objective& objective);

// The multi-class terms, with the arguments of segmentation_loss. Each is 0 on an all-void batch.
// Cross-entropy: the mean of -w(y) log p(y) over non-void pixels, normalised by the sum of their w(y)
// (PyTorch's weighted mean), 0 rather than NaN when every pixel is void.
torch::Tensor cross_entropy_loss(const torch::Tensor& logits, const torch::Tensor& labels, const torch::Tensor& weights);
// Focal loss (Lin et al. 2017): -w(y) (1 - p(y))^gamma log p(y), normalised like cross_entropy_loss,
// so gamma = 0 gives cross-entropy and unit weights give the mean over non-void pixels.
torch::Tensor focal_loss(const torch::Tensor& logits, const torch::Tensor& labels, const torch::Tensor& weights,
                         double gamma = 2);
// Soft Dice over softmax probabilities p: 1 - mean over the classes present in the batch's labels of
// 2 sum(p_c t_c) / (sum p_c + sum t_c), sums over the batch's non-void pixels (t_c: one-hot labels).
// Absent classes are left out: their score is 0 whatever p is, so they would add a constant, no gradient.
torch::Tensor dice_loss(const torch::Tensor& logits, const torch::Tensor& labels);
// Lovasz-softmax (Berman et al. 2018): the mean over the classes present in the batch's labels of the
// Lovasz extension of the Jaccard loss applied to the errors |t_c - p_c| of the batch's non-void pixels.
torch::Tensor lovasz_softmax_loss(const torch::Tensor& logits, const torch::Tensor& labels);

// The loss a task trains with unless one is chosen.
Loss default_loss(Task task);
// Whether `loss` can train `task`.
bool loss_fits(Loss loss, Task task);
// "a, b or c": the names of the losses that fit `task`, for messages.
std::string losses_for(Task task);

}  // namespace segnet
