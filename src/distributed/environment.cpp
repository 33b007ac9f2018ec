#include <segnet/error.h>
#include <segnet/train.h>

#include <cstdlib>
#include <string>

namespace segnet {

namespace {

// The variable's whole value as a number in [low, high]; nullopt when it is unset.
std::optional<int64_t> integer_variable(const char* name, int64_t low, int64_t high) {
  const char* text = std::getenv(name);
  if (!text) return std::nullopt;
  const std::string value = text;
  size_t used = 0;
  int64_t number = 0;
  try {
    number = std::stoll(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (value.empty() || used != value.size() || number < low || number > high)
    throw Error("environment variable " + std::string(name) + ": '" + value + "' is not a number in " +
                std::to_string(low) + ".." + std::to_string(high));
  return number;
}

}  // namespace

DistributedOptions distributed_from_environment() {
  DistributedOptions d;
  const auto world_size = integer_variable("WORLD_SIZE", 1, 1 << 20);
  if (!world_size) return d;
  d.world_size = *world_size;
  const auto rank = integer_variable("RANK", 0, d.world_size - 1);
  if (!rank && d.world_size > 1) throw Error("environment variable WORLD_SIZE is set but RANK is not");
  d.rank = rank.value_or(0);
  if (const char* addr = std::getenv("MASTER_ADDR")) d.master_addr = addr;
  d.master_port = integer_variable("MASTER_PORT", 1, 65535).value_or(d.master_port);
  const char* agent = std::getenv("TORCHELASTIC_USE_AGENT_STORE");
  d.agent_store = agent && std::string(agent) == "True";
  d.restart_count = integer_variable("TORCHELASTIC_RESTART_COUNT", 0, 1 << 20).value_or(0);
  return d;
}

}  // namespace segnet
