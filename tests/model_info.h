#pragma once
// A model description for tests that need one without a dataset.
#include <segnet/checkpoint.h>

namespace segnet::test {

inline ModelInfo test_model_info(Model model, int64_t classes, Size2 size) {
  ModelInfo info;
  info.model = model;
  info.classes = default_classes(classes);
  info.void_labels = {classes, 255};
  info.size = size;
  info.norm = {{0.4f, 0.5f, 0.6f}, {0.2f, 0.25f, 0.3f}};
  info.class_weights = std::vector<float>(classes, 1.5f);
  return info;
}

}  // namespace segnet::test
