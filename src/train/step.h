#pragma once
// One optimizer step.
#include <segnet/choices.h>
#include <segnet/data.h>
#include <segnet/model.h>

#include "train/losses.h"
#include "train/teacher.h"

#include <torch/optim/optimizer.h>

namespace segnet {

// The loss is computed in fp32 whatever the precision of the forward pass. With `pseudo`, the student
// also learns the teacher's confident labels on a strongly augmented view of the unlabelled batch
// (pseudo_label_loss), and the teacher follows the student afterwards. Returns the loss.
double train_step(SegNet& model, torch::optim::Optimizer& optimizer, const Batch& batch, const Objective& objective,
                  Precision precision, torch::Device device, PseudoLabelStep* pseudo = nullptr);

}  // namespace segnet
