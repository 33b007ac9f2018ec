#include <segnet/error.h>
#include <segnet/files.h>
#include <segnet/image.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <fstream>
#include <unistd.h>

namespace segnet {

std::filesystem::path temporary_path_for(const std::filesystem::path& file) {
  // The extension stays last, for writers that choose the format by it (video containers).
  return file.parent_path() / ("." + file.stem().string() + ".tmp" + std::to_string(::getpid()) + file.extension().string());
}

void write_atomically(const std::filesystem::path& file, const std::function<void(const std::filesystem::path&)>& write) {
  std::error_code ec;
  if (file.has_parent_path()) std::filesystem::create_directories(file.parent_path(), ec);
  if (ec) throw Error(file.parent_path(), "cannot create folder: " + ec.message());
  if (std::filesystem::is_directory(file)) throw Error(file, "is a folder, not a file");
  const std::filesystem::path tmp = temporary_path_for(file);
  try {
    write(tmp);
    std::filesystem::rename(tmp, file, ec);
    if (ec) throw Error(file, "cannot write: " + ec.message());
  } catch (...) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    throw;
  }
}

void write_text(const std::filesystem::path& file, const std::string& text) {
  write_atomically(file, [&](const std::filesystem::path& tmp) {
    std::ofstream out(tmp);
    if (!(out << text) || !out.flush()) throw Error(file, "cannot write");
  });
}

void write_png(const std::filesystem::path& file, const cv::Mat& image) {
  cv::Mat bgr;  // a new buffer: converting into a copy of `image`'s header would overwrite the caller's pixels
  if (image.channels() == 3) cv::cvtColor(image, bgr, cv::COLOR_RGB2BGR);
  else bgr = image;
  std::vector<uint8_t> bytes;
  if (!cv::imencode(".png", bgr, bytes)) throw Error(file, "cannot encode PNG");
  write_atomically(file, [&](const std::filesystem::path& tmp) {
    std::ofstream out(tmp, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!out.flush()) throw Error(file, "cannot write");
  });
}

void write_npy(const std::filesystem::path& file, const torch::Tensor& values) {
  const torch::Tensor data = values.to(torch::kCPU, torch::kFloat).contiguous();
  std::string shape;
  for (const int64_t size : data.sizes()) shape += std::to_string(size) + ", ";
  if (!shape.empty()) shape.resize(shape.size() - (data.dim() == 1 ? 1 : 2));  // as numpy writes: (3, 4), (3,)
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + shape + "), }";
  // Magic (6) + version (2) + length (2) + header + newline, padded to a multiple of 64 bytes.
  header.append(63 - (10 + header.size()) % 64, ' ');
  header += '\n';
  const uint16_t length = static_cast<uint16_t>(header.size());
  write_atomically(file, [&](const std::filesystem::path& tmp) {
    std::ofstream out(tmp, std::ios::binary);
    out.write("\x93NUMPY\x01\x00", 8);
    const char length_bytes[2] = {static_cast<char>(length & 0xff), static_cast<char>(length >> 8)};
    out.write(length_bytes, 2);
    out << header;
    out.write(static_cast<const char*>(data.data_ptr()), static_cast<std::streamsize>(data.numel() * sizeof(float)));
    if (!out.flush()) throw Error(file, "cannot write");
  });
}

std::ifstream open_to_read(const std::filesystem::path& file, const std::string& what) {
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec)) throw Error(file, "is a folder, not a " + what);
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(file, "cannot open " + what + (std::filesystem::exists(file, ec) ? "" : ": no such file"));
  return in;
}

void refuse_overwriting_input(const std::string& option, const std::filesystem::path& out,
                              const std::vector<std::filesystem::path>& inputs) {
  std::error_code ec;
  for (const auto& input : inputs)
    if (std::filesystem::equivalent(out, input, ec))  // false, with ec set, when either does not exist
      throw OptionError(option, out.lexically_normal() == input.lexically_normal()
                                    ? out.string() + " is an input of this job"
                                    : out.string() + " is the same file as " + input.string() + ", an input of this job");
}

void ensure_output_folder(const std::filesystem::path& folder) {
  std::error_code ec;
  if (std::filesystem::exists(folder) && !std::filesystem::is_directory(folder))
    throw Error(folder, "exists and is not a folder");
  std::filesystem::create_directories(folder, ec);
  if (ec) throw Error(folder, "cannot create folder: " + ec.message());
}

}  // namespace segnet
