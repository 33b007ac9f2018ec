#pragma once
// The processes of a data-parallel run, through PyTorch's distributed engine (c10d): a TCP store for
// the rendezvous, then collectives over Gloo (which also carries CUDA tensors, through host memory, in
// LibTorch's CUDA builds). Every wait is bounded by DistributedOptions::timeout_seconds, and a failure
// becomes an Error saying what was lost.
#include <segnet/train.h>

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <exception>
#include <memory>
#include <string>
#include <vector>

namespace segnet {

class ProcessGroup {
 public:
  // Connects to the other processes (rank 0 serves the store unless torchrun's agent does); an Error
  // naming the master and the problem (unreachable, port in use, timed out) otherwise.
  explicit ProcessGroup(const DistributedOptions& options);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int64_t rank() const { return options_.rank; }
  int64_t size() const { return options_.world_size; }

  // Starts summing `tensor` over the processes, in place; finish() completes it. Every process must
  // start the same sums in the same order.
  c10::intrusive_ptr<c10d::Work> start_sum(torch::Tensor& tensor);
  void finish(const c10::intrusive_ptr<c10d::Work>& work);
  void sum(torch::Tensor& tensor) { finish(start_sum(tensor)); }
  // Rank 0's `tensor` everywhere, in place.
  void broadcast_from_first(torch::Tensor& tensor);

  // Every process's `value`, in rank order, exchanged through the store under `key`.
  std::vector<std::string> exchange(const std::string& key, const std::string& value);
  // Whether every process got through `stage`: `failure` is null, or what this process threw. When one
  // failed, every process throws (this one its own exception, the others an Error naming the rank and
  // its message), so that one process's bad input stops them all at once instead of at a timeout.
  void agree(const std::string& stage, const std::exception_ptr& failure);

 private:
  DistributedOptions options_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroup> group_;
};

}  // namespace segnet
