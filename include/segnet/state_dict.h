#pragma once
// PyTorch state dicts (torch.save of a dict of tensors, such as torchvision's downloadable weights),
// read without Python: LibTorch's own pickle_load turns the OrderedDict a state dict is into None.
#include <torch/types.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace segnet {

// One state dict file, in torch.save's zip format (PyTorch >= 1.6) or the legacy format before it.
// Only what a dict of tensors needs is understood: anything else the pickle names (classes, functions)
// is an Error naming the file, never run. Tensors are read from the file when asked for, so that the
// keys a caller ignores cost nothing. Truncated or damaged files are Errors naming the file.
class StateDictReader {
 public:
  explicit StateDictReader(std::filesystem::path file);
  ~StateDictReader();
  const std::filesystem::path& file() const { return file_; }

  std::vector<std::string> keys() const;  // in the file's order
  bool contains(const std::string& key) const;
  std::vector<int64_t> shape(const std::string& key) const;
  torch::Tensor tensor(const std::string& key) const;  // contiguous, on the CPU, of the file's dtype

 private:
  struct Contents;
  std::filesystem::path file_;
  std::unique_ptr<Contents> contents_;
};

}  // namespace segnet
