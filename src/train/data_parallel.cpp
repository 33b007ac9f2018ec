#include "train/data_parallel.h"

#include "common/clock.h"

#include <torch/csrc/autograd/function_hook.h>
#include <torch/torch.h>

#include <chrono>
#include <functional>

namespace segnet {

namespace {

// Called by autograd once a parameter's gradient is accumulated (PyTorch's DDP waits on the same event).
class GradientReady : public torch::autograd::FunctionPostHook {
 public:
  explicit GradientReady(std::function<void()> ready) : ready_(std::move(ready)) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list& /*inputs*/) override {
    ready_();
    return outputs;
  }

 private:
  std::function<void()> ready_;
};

// Rank 0's values of `tensors` (all of one dtype) on every process, in one message.
void broadcast(ProcessGroup& group, const std::vector<torch::Tensor>& tensors) {
  if (tensors.empty()) return;
  std::vector<torch::Tensor> flat;
  for (const auto& t : tensors) flat.push_back(t.reshape(-1));
  auto all = torch::cat(flat);
  group.broadcast_from_first(all);
  int64_t offset = 0;
  for (const auto& t : tensors) {
    t.copy_(all.narrow(0, offset, t.numel()).view(t.sizes()));
    offset += t.numel();
  }
}

}  // namespace

DataParallel::DataParallel(SegNet model, ProcessGroup* group, int64_t accumulate, const DistributedOptions& options)
    : model_(std::move(model)), group_(group), accumulate_(accumulate), overlap_(options.overlap) {
  torch::NoGradGuard no_grad;
  for (auto& b : model_->buffers()) {
    buffers_.push_back(b);
    if (b.is_floating_point()) statistics_.push_back(b);
  }
  if (!group_) return;
  const auto parameters = model_->parameters();
  std::vector<torch::Tensor> floats = parameters, integers;
  for (const auto& b : buffers_) (b.is_floating_point() ? floats : integers).push_back(b);
  broadcast(*group_, floats);
  broadcast(*group_, integers);

  // Buckets in reverse order of the parameters, the order in which backward produces their gradients.
  const int64_t bucket_elements = std::max<int64_t>(1, static_cast<int64_t>(options.bucket_megabytes * (1 << 20) / 4));
  std::vector<std::vector<torch::Tensor>> members(1);
  int64_t elements = 0;
  for (auto p = parameters.rbegin(); p != parameters.rend(); ++p) {
    if (elements >= bucket_elements) members.emplace_back(), elements = 0;
    members.back().push_back(*p);
    elements += p->numel();
  }
  for (size_t b = 0; b < members.size(); ++b) {
    int64_t size = 0;
    for (const auto& p : members[b]) size += p.numel();
    Bucket bucket;
    bucket.flat = torch::zeros({size}, members[b].front().options());
    bucket.params = static_cast<int64_t>(members[b].size());
    int64_t offset = 0;
    for (auto& p : members[b]) {
      // The gradient is a view of the bucket with the parameter's own layout (channels-last convolution
      // weights), into which autograd accumulates in place.
      p.mutable_grad() = bucket.flat.as_strided(p.sizes(), p.strides(), bucket.flat.storage_offset() + offset);
      offset += p.numel();
      auto accumulator = torch::autograd::impl::grad_accumulator(p);
      const uintptr_t hook = accumulator->add_post_hook(std::make_unique<GradientReady>([this, b] { gradient_ready(b); }));
      hooks_.emplace_back(std::move(accumulator), hook);
    }
    buckets_.push_back(std::move(bucket));
  }
}

DataParallel::~DataParallel() {
  for (auto& [accumulator, hook] : hooks_) accumulator->del_post_hook(hook);
}

int64_t DataParallel::slots() const { return accumulate_ * (group_ ? group_->size() : 1); }

int64_t DataParallel::slot(int64_t k) const { return (group_ ? group_->rank() : 0) * accumulate_ + k; }

void DataParallel::begin_step() {
  torch::NoGradGuard no_grad;
  if (group_) {
    for (auto& b : buckets_) b.flat.zero_(), b.pending = b.params, b.work.reset();
    launched_ = 0;
    armed_ = false;
  } else {
    // Dropped rather than zeroed, so that no gradient memory is held through the forward pass
    // (LibTorch 1.13's zero_grad() keeps and zeroes them).
    for (auto& p : model_->parameters()) p.mutable_grad().reset();
  }
  if (accumulate_ > 1) {
    snapshot_.clear();
    for (const auto& b : buffers_) snapshot_.push_back(b.clone());
  }
  if (slots() > 1) {
    int64_t size = 2;
    for (const auto& s : statistics_) size += s.numel();
    sums_ = torch::zeros({size}, torch::TensorOptions(torch::kDouble).device(statistics_.empty() ? torch::kCPU : statistics_[0].device()));
  }
}

void DataParallel::begin_micro_batch(int64_t k) {
  torch::NoGradGuard no_grad;
  // Every micro-batch updates the running statistics from where the step began, as a process of its own would.
  if (k > 0)
    for (size_t i = 0; i < buffers_.size(); ++i) buffers_[i].copy_(snapshot_[i]);
  armed_ = group_ && overlap_ && k == accumulate_ - 1;
}

void DataParallel::end_forward(int64_t k, double weighted_loss, double confident_fraction) {
  if (slots() == 1) {
    sums_ = torch::tensor({weighted_loss, confident_fraction}, torch::kDouble);
    return;
  }
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> flat;
  for (const auto& s : statistics_) flat.push_back(s.reshape(-1).to(torch::kDouble));
  flat.push_back(torch::tensor({weighted_loss, confident_fraction}, sums_.options()));
  sums_.add_(torch::cat(flat));
  if (group_ && k == accumulate_ - 1) sums_work_ = group_->start_sum(sums_);
}

void DataParallel::gradient_ready(size_t bucket) {
  if (!armed_) return;
  if (--buckets_[bucket].pending == 0) launch_ready_buckets();
}

// In bucket order, so that every process starts the same all-reduces in the same order.
void DataParallel::launch_ready_buckets() {
  while (launched_ < buckets_.size() && (buckets_[launched_].pending == 0 || !armed_)) {
    buckets_[launched_].work = group_->start_sum(buckets_[launched_].flat);
    ++launched_;
  }
}

DataParallel::StepTotals DataParallel::finish_step() {
  torch::NoGradGuard no_grad;
  if (group_) {
    armed_ = false;
    launch_ready_buckets();  // all that the backward pass did not launch
    const auto start = std::chrono::steady_clock::now();
    group_->finish(sums_work_);
    for (auto& b : buckets_) group_->finish(b.work);
    wait_seconds_ += seconds_since(start);
  }
  const int64_t n = slots();
  if (n > 1) {
    int64_t offset = 0;
    for (auto& s : statistics_) {
      s.copy_(sums_.narrow(0, offset, s.numel()).view(s.sizes()) / n);
      offset += s.numel();
    }
  }
  const auto totals = sums_.narrow(0, sums_.numel() - 2, 2).cpu();
  return {totals[0].item<double>(), totals[1].item<double>() / n};
}

}  // namespace segnet
