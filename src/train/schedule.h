#pragma once
// What changes with the step and the epoch: the learning rate, the pseudo-label ramp, the weight
// average's decay, the seeds.
#include <segnet/choices.h>

#include <cstdint>

namespace segnet {

// The learning rate after `step` of `total_steps` optimizer steps.
double scheduled_lr(LrSchedule schedule, double base_lr, int64_t step, int64_t total_steps);

// Gaussian ramp-up (Laine & Aila): exp(-5 (1 - t)^2) as t goes 0 -> 1 over `rampup_epochs`; 1 after.
double rampup(double progress_epochs, int64_t rampup_epochs);

// The weight average's decay after `step` optimizer steps: min(decay, (1 + step) / (10 + step)), so
// that early on the average follows the trained weights rather than keep their random start
// (0.999 alone would still hold 37% of it after 1000 steps).
double model_ema_decay_at(double decay, int64_t step);

// The seed of everything random in an epoch (order, flips, augmentations): a function of the run's
// seed and the epoch alone, so that a resumed run repeats exactly what an uninterrupted one does.
uint64_t epoch_seed(uint64_t seed, int64_t epoch);

}  // namespace segnet
