#pragma once
// The pseudo-label teacher: an exponential moving average of the student that labels a stream of
// unlabelled images, and the loss the student learns those labels with.
#include <segnet/model.h>
#include <segnet/train.h>

#include "data/loader.h"
#include "train/losses.h"

#include <optional>

namespace segnet {

// The unlabelled half of a semi-supervised micro-batch.
struct PseudoLabelStep {
  SegNet teacher;   // eval mode; updated as an EMA of the student after the step
  Batch unlabeled;  // weak view: resized, randomly flipped
  double weight = 1.0;           // lambda at this step: options.weight, ramped up
  PseudoLabelOptions options;    // threshold, class share, the strong view, batch-norm statistics
  double confident_fraction = 0;  // set by the step
};

// The teacher labels the weak view; the student learns the confident labels from a strong view
// (strong_view, rescaled and mixed as the step says; ClassMix takes from `labeled`, the step's labelled
// micro-batch, already on `device`), in a forward pass of its own whose batch statistics stay out of batch norm's running
// averages unless options.adapt_statistics. Not class-weighted: the teacher learnt with the class weights, so its labels already favour
// rare classes (where they are least precise); weighting them again amplifies their noise.
torch::Tensor pseudo_label_loss(SegNet& student, PseudoLabelStep& step, const Batch& labeled, const Objective& objective,
                                Precision precision, torch::Device device);

// average = decay * average + (1 - decay) * model, per weight. Batch-norm running statistics are
// averaged the same way when `average_statistics` (the weight average of TrainOptions::model_ema_decay),
// else copied from `model` (the teacher); the batch counts are copied.
void ema_update(SegNet& average, SegNet& model, double decay, bool average_statistics);

// The stream of unlabelled batches and lambda's ramp, for train(). The unlabelled loader has the
// labelled one's slots, so that every micro-batch has an unlabelled micro-batch of its own.
class PseudoLabelTeacher {
 public:
  PseudoLabelTeacher(const PseudoLabelOptions& options, BatchLoader unlabeled, SegNet teacher, torch::Device device,
                     Precision precision);
  // Unlabelled steps cycle through their own shuffles, seeded by the epoch's seed and the cycle.
  void begin_epoch(uint64_t epoch_seed);
  // The unlabelled halves of this process's micro-batches of the next step, with lambda at
  // `progress_epochs` (fractional epochs done).
  std::vector<PseudoLabelStep>& begin_step(double progress_epochs);
  // After the optimizer step: the teacher moves towards the student (ema_update).
  void follow(SegNet& student) { ema_update(teacher_, student, options_.ema_decay, /*average_statistics=*/false); }
  SegNet& model() { return teacher_; }

 private:
  PseudoLabelOptions options_;
  BatchLoader loader_;
  SegNet teacher_;
  std::vector<PseudoLabelStep> micro_batches_;
  LoaderStep unlabeled_;
  uint64_t epoch_seed_ = 0;
  int64_t cycle_ = 0;
  std::optional<BatchLoader::Epoch> steps_;
};

}  // namespace segnet
