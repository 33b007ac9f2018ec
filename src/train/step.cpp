#include "train/step.h"

#include <segnet/runtime.h>

#include <torch/torch.h>

namespace segnet {

DataParallel::StepTotals train_step(SegNet& model, torch::optim::Optimizer& optimizer, const LoaderStep& step,
                                    const Objective& objective, Precision precision, torch::Device device,
                                    DataParallel& parallel, uint64_t step_seed, std::vector<PseudoLabelStep>* pseudo) {
  parallel.begin_step();
  for (int64_t k = 0; k < static_cast<int64_t>(step.micro_batches.size()); ++k) {
    const Batch& cpu_batch = step.micro_batches[static_cast<size_t>(k)];
    const Batch batch{cpu_batch.images.to(device), cpu_batch.labels.to(device)};
    parallel.begin_micro_batch(k);
    torch::manual_seed(step_seed * 1000003 + static_cast<uint64_t>(parallel.slot(k)));
    torch::Tensor logits;
    {
      AutocastGuard autocast(precision, device);
      logits = model->forward(batch.images.contiguous(fastest_memory_format(device, precision)));
    }
    auto loss = segmentation_loss(logits.to(torch::kFloat), batch.labels, objective);
    double confident = 0;
    if (pseudo) {
      PseudoLabelStep& unlabeled = pseudo->at(static_cast<size_t>(k));
      loss = loss + pseudo_label_loss(model, unlabeled, batch, objective, precision, device);
      confident = unlabeled.confident_fraction;
    }
    // Each micro-batch counts by its share of the step's images, on whichever process it runs.
    const double share = static_cast<double>(batch.images.size(0)) / static_cast<double>(step.images);
    if (share != 1) loss = loss * share;
    parallel.end_forward(k, loss.item<double>(), confident);
    loss.backward();
  }
  const DataParallel::StepTotals totals = parallel.finish_step();
  optimizer.step();
  return totals;
}

}  // namespace segnet
