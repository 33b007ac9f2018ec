#pragma once
// Writing files so that readers see the old content or the new, never a half-written mix.
#include <opencv2/core.hpp>
#include <torch/types.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

namespace segnet {

// Calls `write(temporary_path)`, then renames the temporary over `file` (creating its folder).
// On failure the temporary is removed, `file` is untouched, and the error propagates.
void write_atomically(const std::filesystem::path& file, const std::function<void(const std::filesystem::path&)>& write);
// The temporary beside `file` that write_atomically uses (hidden, same extension).
std::filesystem::path temporary_path_for(const std::filesystem::path& file);
void write_text(const std::filesystem::path& file, const std::string& text);
// PNG through a temporary file and a rename; 3-channel images are taken as RGB. `image` is not changed.
void write_png(const std::filesystem::path& file, const cv::Mat& image);
// A NumPy .npy file (format 1.0, little-endian, C order) of a float32 tensor, through a temporary and
// a rename: numpy.load, and most array tools, open it as it is.
void write_npy(const std::filesystem::path& file, const torch::Tensor& values);
// `file` opened for reading, or an Error naming it: "is a folder, not a WHAT", "cannot open WHAT: no
// such file", "cannot open WHAT" (`what`: "list file", "checkpoint", ...).
std::ifstream open_to_read(const std::filesystem::path& file, const std::string& what);
// An OptionError (`option`) when `out` is one of `inputs` (the same file, through links too): writing
// it would destroy what the job reads.
void refuse_overwriting_input(const std::string& option, const std::filesystem::path& out,
                              const std::vector<std::filesystem::path>& inputs);
// Creates `folder` (and its parents); an existing file of that name is an Error.
void ensure_output_folder(const std::filesystem::path& folder);

}  // namespace segnet
