#include "distributed/process_group.h"

#include <segnet/error.h>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <csignal>
#include <cstdlib>

namespace segnet {

namespace {

// The first line of what c10d or Gloo threw, without LibTorch's backtrace.
std::string message_of(const std::exception& e) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  const std::string text = c10_error ? c10_error->what_without_backtrace() : e.what();
  return text.substr(0, text.find('\n'));
}

std::string master_of(const DistributedOptions& o) { return o.master_addr + ":" + std::to_string(o.master_port); }

std::shared_ptr<::gloo::transport::Device> gloo_device(const DistributedOptions& o) {
  if (const char* interface = std::getenv("GLOO_SOCKET_IFNAME")) return c10d::ProcessGroupGloo::createDeviceForInterface(interface);
  // A master on the loopback address means every process runs here; the machine's own name may
  // resolve to an address the others do not listen on.
  if (o.master_addr == "127.0.0.1" || o.master_addr == "localhost")
    return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

// Gloo writes to its sockets with writev, which raises SIGPIPE when the peer has gone; at its default
// that signal ends this process silently. Ignored, the write fails with EPIPE and Gloo throws, which
// becomes the Error saying the others were lost. A handler the program installed itself is kept.
void ignore_broken_pipes() {
  struct sigaction current {};
  if (::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) std::signal(SIGPIPE, SIG_IGN);
}

}  // namespace

ProcessGroup::ProcessGroup(const DistributedOptions& o) : options_(o) {
  ignore_broken_pipes();
  const std::string me = "process " + std::to_string(o.rank) + " of " + std::to_string(o.world_size);
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(o.timeout_seconds * 1000));
  try {
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<uint16_t>(o.master_port);
    store_options.isServer = !o.agent_store && o.rank == 0;
    if (!o.agent_store) store_options.numWorkers = static_cast<size_t>(o.world_size);
    store_options.waitWorkers = !o.agent_store;
    store_options.timeout = timeout;
    const auto store = c10::make_intrusive<c10d::TCPStore>(o.master_addr, store_options);
    // torchrun's store outlives a failed attempt: each attempt of a restarted group keeps its own keys.
    const std::string prefix = o.agent_store ? "/worker/attempt_" + std::to_string(o.restart_count) : "segnet";
    store_ = c10::make_intrusive<c10d::PrefixStore>(prefix, store);
  } catch (const std::exception& e) {
    throw Error(me + " cannot meet the others at " + master_of(o) + ": " + message_of(e));
  }
  try {
    auto group_options = c10d::ProcessGroupGloo::Options::create(timeout);
    group_options->devices.push_back(gloo_device(o));
    group_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store_, static_cast<int>(o.rank), static_cast<int>(o.world_size),
                                                         group_options);
  } catch (const std::exception& e) {
    throw Error(me + " cannot connect to the others (master " + master_of(o) + "): " + message_of(e));
  }
}

ProcessGroup::~ProcessGroup() = default;

c10::intrusive_ptr<c10d::Work> ProcessGroup::start_sum(torch::Tensor& tensor) {
  std::vector<torch::Tensor> tensors{tensor};
  try {
    return group_->allreduce(tensors);
  } catch (const std::exception& e) {
    throw Error("lost the other processes of the run: " + message_of(e));
  }
}

void ProcessGroup::finish(const c10::intrusive_ptr<c10d::Work>& work) {
  try {
    work->wait();
  } catch (const std::exception& e) {
    throw Error("lost the other processes of the run: " + message_of(e));
  }
}

void ProcessGroup::broadcast_from_first(torch::Tensor& tensor) {
  std::vector<torch::Tensor> tensors{tensor};
  try {
    group_->broadcast(tensors, c10d::BroadcastOptions{})->wait();
  } catch (const std::exception& e) {
    throw Error("lost the other processes of the run: " + message_of(e));
  }
}

std::vector<std::string> ProcessGroup::exchange(const std::string& key, const std::string& value) {
  std::vector<std::string> values;
  try {
    store_->set(key + "/" + std::to_string(options_.rank), std::vector<uint8_t>(value.begin(), value.end()));
    for (int64_t r = 0; r < options_.world_size; ++r) {
      const auto bytes = store_->get(key + "/" + std::to_string(r));
      values.emplace_back(bytes.begin(), bytes.end());
    }
  } catch (const std::exception& e) {
    throw Error("the other processes of the run did not answer (" + key + "): " + message_of(e));
  }
  return values;
}

void ProcessGroup::agree(const std::string& stage, const std::exception_ptr& failure) {
  std::string mine;
  if (failure) try {
      std::rethrow_exception(failure);
    } catch (const std::exception& e) {
      mine = e.what();
    }
  std::vector<std::string> all;
  try {
    all = exchange("agree/" + stage, failure ? "failed: " + mine : "ok");
  } catch (const Error&) {
    if (!failure) throw;
  }
  if (failure) std::rethrow_exception(failure);
  for (size_t r = 0; r < all.size(); ++r)
    if (all[r] != "ok") throw Error("process " + std::to_string(r) + " of the run " + all[r]);
}

}  // namespace segnet
