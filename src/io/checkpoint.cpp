#include <segnet/checkpoint.h>
#include <segnet/error.h>
#include <segnet/files.h>
#include <segnet/quantize.h>

#include "common/input_range_json.h"

#include <nlohmann/json.hpp>
#include <torch/torch.h>
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <fstream>

namespace segnet {

namespace {

constexpr const char* kFormat = "segnet-checkpoint";
constexpr int kVersion = 2;

// The file is LibTorch's archive followed by this footer: the archive's length and CRC-32, so that a
// truncated or damaged file is caught before any of it is trusted.
constexpr char kFooterMagic[8] = {'s', 'e', 'g', 'n', 'e', 't', 'c', 'k'};
constexpr size_t kFooterSize = 8 + 8 + 4;

uint32_t crc32_of(const std::string& bytes, size_t length) {
  uLong crc = crc32(0L, Z_NULL, 0);
  for (size_t at = 0; at < length;) {
    const size_t n = std::min<size_t>(length - at, 1u << 30);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(bytes.data() + at), static_cast<uInt>(n));
    at += n;
  }
  return static_cast<uint32_t>(crc);
}

template <class T>
void put_le(std::string& out, T value) {
  for (size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

template <class T>
T get_le(const std::string& in, size_t at) {
  T value = 0;
  for (size_t i = 0; i < sizeof(T); ++i) value |= T(static_cast<uint8_t>(in[at + i])) << (8 * i);
  return value;
}

template <class E>
E choice(const nlohmann::json& j, const char* key) {
  const std::string name = j.at(key).get<std::string>();
  const auto value = choice_from_name<E>(name);
  if (!value) throw std::invalid_argument(std::string(key) + " '" + name + "' is unknown to this segnet");
  return *value;
}

void from_json(const nlohmann::json& j, ModelInfo& info, TrainState& state) {
  info.model = choice<Model>(j, "model");
  info.task = choice<Task>(j, "task");
  info.upsampling = choice<Upsampling>(j, "decoder");
  info.dilation = j.at("dilation").get<std::vector<int64_t>>();
  for (const auto& c : j.at("classes")) info.classes.push_back({c.at("name"), c.at("rgb")});
  info.void_labels = j.at("void_labels").get<std::vector<int64_t>>();
  // Checkpoints written before label formats existed hold ids as stored.
  if (j.contains("label_format")) info.label_format = choice<LabelFormat>(j, "label_format");
  info.label_map = j.value("label_map", std::map<int64_t, int64_t>{});
  info.void_colors = j.value("void_colors", std::vector<Rgb>{});
  info.size = {j.at("size").at(0), j.at("size").at(1)};
  try {  // checkpoints written before 16-bit images were read have none
    info.input_range = input_range_from_json(j.value("input_range", nlohmann::json()));
  } catch (const OptionError& e) {
    throw std::invalid_argument(std::string("its ") + e.what());
  }
  info.norm.mean = j.at("mean");
  info.norm.std = j.at("std");
  info.class_weights = j.at("class_weights").get<std::vector<float>>();
  // What inference and fine-tuning would otherwise meet as an allocation failure or a NaN loss.
  if (!is_image_size(info.size))
    throw std::invalid_argument("its training size " + to_string(info.size) + " is impossible");
  for (const double s : info.norm.std)
    if (!(std::isfinite(s) && s > 0)) throw std::invalid_argument("its normalisation has a std that is not positive");
  // Checkpoints written before int8 inference, or not calibrated, have none.
  for (const auto& r : j.value("activation_ranges", nlohmann::json::array()))
    info.activation_ranges.push_back({r.at(0).get<float>(), r.at(1).get<float>()});
  state.epoch = j.at("epoch");
  // NaN (a run without validation) is written as null.
  state.best_miou = j.at("best_miou").is_null() ? std::nan("") : j.at("best_miou").get<double>();
  state.best_epoch = j.at("best_epoch");
  if (!j.at("optimizer").get<std::string>().empty()) state.optimizer = choice<Optimizer>(j, "optimizer");
}

// The archive bytes of `file`, after checking the footer.
std::string verified_archive_bytes(const std::filesystem::path& file) {
  std::ifstream in = open_to_read(file, "checkpoint");
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in && !in.eof()) throw Error(file, "cannot read");
  if (bytes.size() < kFooterSize || std::memcmp(bytes.data() + bytes.size() - kFooterSize, kFooterMagic, 8) != 0)
    throw Error(file, "not a segnet checkpoint (no checksum footer: truncated, or written by something else)");
  const size_t length = bytes.size() - kFooterSize;
  if (get_le<uint64_t>(bytes, length + 8) != length) throw Error(file, "checkpoint is truncated or has extra bytes");
  if (get_le<uint32_t>(bytes, length + 16) != crc32_of(bytes, length))
    throw Error(file, "checkpoint is damaged: its contents do not match their checksum");
  bytes.resize(length);
  return bytes;
}

}  // namespace

nlohmann::json to_json(const ModelInfo& info, const TrainState& state) {
  nlohmann::json classes = nlohmann::json::array();
  for (const auto& c : info.classes) classes.push_back({{"name", c.name}, {"rgb", c.rgb}});
  nlohmann::json ranges = nlohmann::json::array();
  for (const auto& r : info.activation_ranges) ranges.push_back({r.min, r.max});
  return {{"format", kFormat},
          {"version", kVersion},
          {"model", to_string(info.model)},
          {"task", to_string(info.task)},
          {"decoder", to_string(info.upsampling)},
          {"dilation", info.dilation},
          {"classes", classes},
          {"void_labels", info.void_labels},
          {"label_format", to_string(info.label_format)},
          {"label_map", info.label_map},
          {"void_colors", info.void_colors},
          {"size", {info.size.height, info.size.width}},
          {"input_range", input_range_json(info.input_range)},
          {"mean", info.norm.mean},
          {"std", info.norm.std},
          {"class_weights", info.class_weights},
          {"activation_ranges", ranges},
          {"epoch", state.epoch},
          {"best_miou", state.best_miou},
          {"best_epoch", state.best_epoch},
          {"optimizer", state.optimizer ? to_string(*state.optimizer) : ""}};
}

void save_checkpoint(const std::filesystem::path& file, const ModelInfo& info, SegNet& model,
                     const torch::optim::Optimizer* optimizer, const TrainState& state, SegNet* teacher,
                     SegNet* trained) {
  torch::serialize::OutputArchive root;
  const auto write_weights = [&](const char* key, SegNet& m) {
    torch::serialize::OutputArchive weights;
    m->save(weights);
    root.write(key, weights);
  };
  write_weights("model", model);
  if (teacher) write_weights("teacher", *teacher);
  if (trained) write_weights("trained", *trained);
  if (optimizer) {
    torch::serialize::OutputArchive optim;
    optimizer->save(optim);
    root.write("optimizer", optim);
  }
  root.write("meta", c10::IValue(to_json(info, state).dump()));
  std::string bytes;
  root.save_to([&](const void* data, size_t size) {
    bytes.append(static_cast<const char*>(data), size);
    return size;
  });
  const size_t length = bytes.size();
  const uint32_t crc = crc32_of(bytes, length);
  bytes.append(kFooterMagic, 8);
  put_le<uint64_t>(bytes, length);
  put_le<uint32_t>(bytes, crc);
  write_atomically(file, [&](const std::filesystem::path& tmp) {
    std::ofstream out(tmp, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out.flush()) throw Error(file, "cannot write");
  });
}

CheckpointReader::CheckpointReader(std::filesystem::path file) : file_(std::move(file)) {
  const std::string bytes = verified_archive_bytes(file_);
  try {
    archive_.load_from(bytes.data(), bytes.size());
  } catch (const c10::Error&) {
    throw Error(file_, "not a readable checkpoint archive");
  }
  c10::IValue meta;
  try {
    if (!archive_.try_read("meta", meta) || !meta.isString()) throw Error(file_, "not a segnet checkpoint (no metadata)");
    const auto j = nlohmann::json::parse(meta.toStringRef());
    if (j.value("format", "") != kFormat || j.value("version", 0) != kVersion)
      throw Error(file_, "not a segnet checkpoint of version " + std::to_string(kVersion));
    from_json(j, info_, state_);
  } catch (const nlohmann::json::exception& e) {
    throw Error(file_, std::string("checkpoint metadata is malformed: ") + e.what());
  } catch (const std::invalid_argument& e) {
    throw Error(file_, e.what());
  }
  const auto keys = archive_.keys();
  has_teacher_ = std::find(keys.begin(), keys.end(), "teacher") != keys.end();
  has_trained_ = std::find(keys.begin(), keys.end(), "trained") != keys.end();
  try {
    validate(info_.options());
  } catch (const OptionError& e) {
    throw Error(file_, std::string("describes no buildable model: ") + e.what());
  }
  auto& ranges = info_.activation_ranges;
  const int64_t needed = activation_count(info_.options());
  // Calibrated before the image was quantized on its own 8-bit grid: the input's range came first.
  if (static_cast<int64_t>(ranges.size()) == needed + 1) ranges.erase(ranges.begin());
  if (!ranges.empty() && static_cast<int64_t>(ranges.size()) != needed)
    throw Error(file_, "holds " + std::to_string(ranges.size()) + " int8 activation ranges; its model has " +
                           std::to_string(needed));
  for (const auto& r : ranges)
    if (!(std::isfinite(r.min) && std::isfinite(r.max) && r.min <= r.max))
      throw Error(file_, "holds an int8 activation range that is not an interval");
}

namespace {

// Module::load replaces tensors whatever their shape, so the shapes are checked here.
void load_weights(torch::serialize::InputArchive& root, const char* key, SegNet& model,
                  const std::filesystem::path& file, const std::string& what) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> expected;
  for (const auto& p : model->named_parameters()) expected.emplace_back(p.key(), p.value().sizes().vec());
  torch::serialize::InputArchive weights;
  try {
    if (!root.try_read(key, weights)) throw Error(file, "checkpoint holds no " + std::string(key) + " weights");
    model->load(weights);
  } catch (const c10::Error&) {
    throw Error(file, std::string(key) + " weights do not fit " + what);
  }
  const auto params = model->named_parameters();
  for (const auto& [name, sizes] : expected)
    if (params[name].sizes().vec() != sizes) throw Error(file, "weight " + name + " does not fit " + what);
}

}  // namespace

SegNet CheckpointReader::model() {
  SegNet model(info_.options());
  load_weights(archive_, "model", model, file_,
               "a '" + to_string(info_.model) + "' model with " + std::to_string(info_.classes.size()) + " classes");
  model->eval();
  return model;
}

void CheckpointReader::load_teacher(SegNet& teacher) {
  load_weights(archive_, "teacher", teacher, file_, "this model");
}

void CheckpointReader::load_trained(SegNet& trained) {
  load_weights(archive_, "trained", trained, file_, "this model");
}

void CheckpointReader::load_optimizer(torch::optim::Optimizer& optimizer) {
  torch::serialize::InputArchive optim;
  try {
    if (!archive_.try_read("optimizer", optim)) throw Error(file_, "checkpoint holds no optimizer state");
    optimizer.load(optim);
  } catch (const c10::Error&) {
    throw Error(file_, "optimizer state does not fit this model and optimizer");
  }
}

Checkpoint load_checkpoint(const std::filesystem::path& file) {
  CheckpointReader reader(file);
  return {reader.info(), reader.state(), reader.model()};
}

}  // namespace segnet
