#include "train/schedule.h"

#include <algorithm>
#include <cmath>

namespace segnet {

double scheduled_lr(LrSchedule schedule, double base_lr, int64_t step, int64_t total_steps) {
  if (schedule == LrSchedule::Constant) return base_lr;
  return base_lr * std::pow(1.0 - double(std::min(step, total_steps)) / double(total_steps), 0.9);
}

double rampup(double progress_epochs, int64_t rampup_epochs) {
  if (rampup_epochs <= 0 || progress_epochs >= rampup_epochs) return 1.0;
  const double t = progress_epochs / rampup_epochs;
  return std::exp(-5.0 * (1.0 - t) * (1.0 - t));
}

double model_ema_decay_at(double decay, int64_t step) {
  return std::min(decay, (1.0 + double(step)) / (10.0 + double(step)));
}

uint64_t epoch_seed(uint64_t seed, int64_t epoch) { return seed * 1000003 + static_cast<uint64_t>(epoch); }

}  // namespace segnet
