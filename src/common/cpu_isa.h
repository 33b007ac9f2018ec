#pragma once
// What oneDNN, which LibTorch's convolutions run on, says this processor can do.
#include <oneapi/dnnl/dnnl.hpp>

namespace segnet {

// Whether the processor has `feature`: each ISA's value holds the bits of those it extends.
inline bool cpu_has(dnnl::cpu_isa feature) {
  const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  const auto bits = static_cast<unsigned>(feature);
  return (isa & bits) == bits;
}

}  // namespace segnet
