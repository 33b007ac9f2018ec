#pragma once
// An optimizer step whose images are spread over micro-batches: `accumulate` on this process, on each
// of the processes of a distributed run. Their gradients are combined into the one update a single
// process with all the images would make (each micro-batch weighted by its share of the step's images,
// summed over micro-batches and processes), and batch-norm running statistics are averaged the way the
// processes' own would be if averaged at the end (an exponential average is linear, so averaging every
// step gives the same result and keeps every process's model identical at all times).
#include <segnet/model.h>
#include <segnet/train.h>

#include "distributed/process_group.h"

#include <torch/csrc/autograd/function.h>

#include <memory>
#include <vector>

namespace segnet {

class DataParallel {
 public:
  // `group` null: this process alone. With a group, rank 0's parameters and buffers are copied to every
  // process, and gradients live in buckets that are all-reduced as the backward pass fills them.
  DataParallel(SegNet model, ProcessGroup* group, int64_t accumulate, const DistributedOptions& options);
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  int64_t slots() const;           // micro-batches per optimizer step, over all processes
  int64_t slot(int64_t k) const;   // the step-wide index of this process's k-th micro-batch
  int64_t local_slots() const { return accumulate_; }

  void begin_step();
  // Before micro-batch k's forward pass.
  void begin_micro_batch(int64_t k);
  // After micro-batch k's forward pass and before its backward pass: its loss, already weighted by its
  // share of the step's images, and its share of confident pseudo-labels (0 without).
  void end_forward(int64_t k, double weighted_loss, double confident_fraction);
  struct StepTotals {
    double loss = 0;                 // of the whole step: the weighted losses summed
    double confident_fraction = 0;   // mean over micro-batches
  };
  // After the last backward pass: every gradient and running statistic of the step, on every process.
  StepTotals finish_step();
  // Seconds finish_step spent waiting for the other processes, since construction.
  double wait_seconds() const { return wait_seconds_; }

 private:
  struct Bucket {
    torch::Tensor flat;  // the gradients of `params`, which are views of it
    int64_t params = 0, pending = 0;
    c10::intrusive_ptr<c10d::Work> work;
  };
  void gradient_ready(size_t bucket);
  void launch_ready_buckets();

  SegNet model_;
  ProcessGroup* group_;
  int64_t accumulate_;
  bool overlap_;
  std::vector<torch::Tensor> buffers_, snapshot_;  // all buffers, and their values at the step's start
  std::vector<torch::Tensor> statistics_;          // the floating-point buffers (running mean and variance)
  torch::Tensor sums_;                             // statistics, weighted loss and confident share, summed
  c10::intrusive_ptr<c10d::Work> sums_work_;
  std::vector<Bucket> buckets_;
  size_t launched_ = 0;
  bool armed_ = false;  // buckets are launched by the backward pass of the step's last micro-batch
  std::vector<std::pair<std::shared_ptr<torch::autograd::Node>, uintptr_t>> hooks_;
  double wait_seconds_ = 0;
};

}  // namespace segnet
