#pragma once
// Process-wide settings shared by every front end.
#include <torch/types.h>

#include <string>

namespace segnet {

// Uses all cores when n <= 0 (LibTorch picks 1 on some machines otherwise).
void set_threads(int n);

// "cpu", "cuda" or "cuda:K"; an unavailable device is an Error.
torch::Device parse_device(const std::string& name);

}  // namespace segnet
