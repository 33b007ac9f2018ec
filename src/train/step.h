#pragma once
// One optimizer step.
#include <segnet/choices.h>
#include <segnet/data.h>
#include <segnet/model.h>

#include "data/loader.h"
#include "train/data_parallel.h"
#include "train/losses.h"
#include "train/teacher.h"

#include <torch/optim/optimizer.h>

namespace segnet {

// One optimizer step over this process's micro-batches of `step`, combined with the other processes'
// by `parallel`. The loss is computed in fp32 whatever the precision of the forward pass. With
// `pseudo` (one per micro-batch), the student also learns the teacher's confident labels on a strongly
// augmented view of an unlabelled micro-batch (pseudo_label_loss). Random
// choices inside a micro-batch (dropout, the strong view) are seeded by `step_seed` and the
// micro-batch's slot, never by the process that computes it. Returns the step's loss over all processes.
DataParallel::StepTotals train_step(SegNet& model, torch::optim::Optimizer& optimizer, const LoaderStep& step,
                                    const Objective& objective, Precision precision, torch::Device device,
                                    DataParallel& parallel, uint64_t step_seed,
                                    std::vector<PseudoLabelStep>* pseudo = nullptr);

}  // namespace segnet
