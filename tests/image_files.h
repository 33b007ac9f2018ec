#pragma once
// Image files for tests: any image through OpenCV, and palette PNGs as annotation tools and Pascal VOC
// write them, through libpng's own writer.
#include <segnet/data.h>

#include <gtest/gtest.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <png.h>

#include <filesystem>
#include <vector>

namespace segnet::test {

// cv::imwrite with the folder created first; 3-channel images are BGR as OpenCV expects.
inline void write_image(const std::filesystem::path& file, const cv::Mat& image) {
  std::filesystem::create_directories(file.parent_path());
  ASSERT_TRUE(cv::imwrite(file.string(), image)) << file;
}

inline void write_palette_png(const std::filesystem::path& file, const cv::Mat& indices, const std::vector<Rgb>& palette) {
  std::filesystem::create_directories(file.parent_path());
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(indices.cols);
  image.height = static_cast<png_uint_32>(indices.rows);
  image.format = PNG_FORMAT_RGB_COLORMAP;
  image.colormap_entries = static_cast<png_uint_32>(palette.size());
  std::vector<uint8_t> colormap;
  for (const Rgb& c : palette) colormap.insert(colormap.end(), c.begin(), c.end());
  ASSERT_TRUE(png_image_write_to_file(&image, file.c_str(), 0, indices.data, 0, colormap.data())) << image.message;
}

}  // namespace segnet::test
