#include "train/step.h"

#include <segnet/runtime.h>

#include <torch/torch.h>

namespace segnet {

double train_step(SegNet& model, torch::optim::Optimizer& optimizer, const Batch& batch, const Objective& objective,
                  Precision precision, torch::Device device, PseudoLabelStep* pseudo) {
  // Gradients are dropped rather than zeroed, so that no gradient memory is held through the
  // forward pass (LibTorch 1.13's zero_grad() keeps and zeroes them).
  for (auto& p : model->parameters()) p.mutable_grad().reset();
  torch::Tensor logits;
  {
    AutocastGuard autocast(precision, device);
    logits = model->forward(batch.images.to(device).contiguous(at::MemoryFormat::ChannelsLast));
  }
  auto loss = segmentation_loss(logits.to(torch::kFloat), batch.labels.to(device), objective);
  if (pseudo) loss = loss + pseudo_label_loss(model, *pseudo, objective, precision, device);
  loss.backward();
  optimizer.step();
  if (pseudo) ema_update(pseudo->teacher, model, pseudo->ema_decay);
  return loss.item<double>();
}

}  // namespace segnet
