#pragma once
// What a training step minimises.
#include <segnet/choices.h>

#include <torch/types.h>

namespace segnet {

// Class-weighted pixel-wise cross-entropy (void ignored) or, for binary models, weighted binary
// cross-entropy, soft Dice, or their sum.
struct Objective {
  Task task = Task::Multiclass;
  Loss loss = Loss::CrossEntropy;
  torch::Tensor class_weights;  // one per class (binary: background, foreground)
};
torch::Tensor segmentation_loss(const torch::Tensor& logits, const torch::Tensor& labels, const Objective& objective);

// The loss a task trains with unless one is chosen.
Loss default_loss(Task task);
// Whether `loss` can train `task`.
bool loss_fits(Loss loss, Task task);

}  // namespace segnet
