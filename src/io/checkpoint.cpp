#include <segnet/checkpoint.h>
#include <segnet/error.h>
#include <segnet/files.h>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

namespace segnet {

namespace {

constexpr const char* kFormat = "segnet-checkpoint";
constexpr int kVersion = 1;

nlohmann::json to_json(const ModelInfo& info, const TrainState& state) {
  nlohmann::json classes = nlohmann::json::array();
  for (const auto& c : info.classes) classes.push_back({{"name", c.name}, {"rgb", c.rgb}});
  return {{"format", kFormat},
          {"version", kVersion},
          {"model", info.model},
          {"task", info.task},
          {"decoder", info.decoder},
          {"dilation", info.dilation},
          {"classes", classes},
          {"void_labels", info.void_labels},
          {"size", {info.size.height, info.size.width}},
          {"mean", info.norm.mean},
          {"std", info.norm.std},
          {"class_weights", info.class_weights},
          {"epoch", state.epoch},
          {"best_miou", state.best_miou},
          {"best_epoch", state.best_epoch},
          {"optimizer", state.optimizer}};
}

void from_json(const nlohmann::json& j, ModelInfo& info, TrainState& state) {
  info.model = j.at("model").get<std::string>();
  info.task = j.at("task").get<std::string>();
  info.decoder = j.at("decoder").get<std::string>();
  info.dilation = j.at("dilation").get<std::vector<int64_t>>();
  for (const auto& c : j.at("classes")) info.classes.push_back({c.at("name"), c.at("rgb")});
  info.void_labels = j.at("void_labels").get<std::vector<int64_t>>();
  info.size = {j.at("size").at(0), j.at("size").at(1)};
  info.norm.mean = j.at("mean");
  info.norm.std = j.at("std");
  info.class_weights = j.at("class_weights").get<std::vector<float>>();
  state.epoch = j.at("epoch");
  state.best_miou = j.at("best_miou");
  state.best_epoch = j.at("best_epoch");
  state.optimizer = j.at("optimizer");
}

torch::serialize::InputArchive open_archive(const std::filesystem::path& file) {
  if (!std::filesystem::is_regular_file(file)) throw Error(file, "no such checkpoint");
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(file.string());
  } catch (const c10::Error&) {
    throw Error(file, "not a readable checkpoint (truncated or corrupt)");
  }
  return archive;
}

}  // namespace

void save_checkpoint(const std::filesystem::path& file, const ModelInfo& info, SegNet& model,
                     const torch::optim::Optimizer* optimizer, const TrainState& state, SegNet* teacher) {
  torch::serialize::OutputArchive root, weights;
  model->save(weights);
  root.write("model", weights);
  if (teacher) {
    torch::serialize::OutputArchive teacher_weights;
    (*teacher)->save(teacher_weights);
    root.write("teacher", teacher_weights);
  }
  if (optimizer) {
    torch::serialize::OutputArchive optim;
    optimizer->save(optim);
    root.write("optimizer", optim);
  }
  root.write("meta", c10::IValue(to_json(info, state).dump()));
  write_atomically(file, [&](const std::filesystem::path& tmp) { root.save_to(tmp.string()); });
}

Checkpoint load_checkpoint(const std::filesystem::path& file) {
  auto root = open_archive(file);
  Checkpoint ck;
  c10::IValue meta;
  try {
    if (!root.try_read("meta", meta) || !meta.isString()) throw Error(file, "not a segnet checkpoint (no metadata)");
    const auto j = nlohmann::json::parse(meta.toStringRef());
    if (j.value("format", "") != kFormat || j.value("version", 0) != kVersion)
      throw Error(file, "not a segnet checkpoint of version " + std::to_string(kVersion));
    from_json(j, ck.info, ck.state);
  } catch (const nlohmann::json::exception& e) {
    throw Error(file, std::string("checkpoint metadata is malformed: ") + e.what());
  }
  try {
    ck.model = SegNet(ck.info.options());
  } catch (const Error& e) {
    throw Error(file, std::string("describes no buildable model: ") + e.what());
  }
  // Module::load replaces tensors whatever their shape, so check the shapes ourselves.
  std::vector<std::pair<std::string, std::vector<int64_t>>> expected;
  for (const auto& p : ck.model->named_parameters()) expected.emplace_back(p.key(), p.value().sizes().vec());
  torch::serialize::InputArchive weights;
  try {
    if (!root.try_read("model", weights)) throw Error(file, "checkpoint holds no weights");
    ck.model->load(weights);
  } catch (const c10::Error&) {
    throw Error(file, "weights do not fit a '" + ck.info.model + "' model with " +
                          std::to_string(ck.info.classes.size()) + " classes");
  }
  const auto params = ck.model->named_parameters();
  for (const auto& [name, sizes] : expected)
    if (params[name].sizes().vec() != sizes)
      throw Error(file, "weight " + name + " does not fit a '" + ck.info.model + "' model");
  ck.model->eval();
  return ck;
}

bool load_teacher(const std::filesystem::path& file, SegNet& teacher) {
  auto root = open_archive(file);
  torch::serialize::InputArchive weights;
  try {
    if (!root.try_read("teacher", weights)) return false;
    teacher->load(weights);
  } catch (const c10::Error&) {
    throw Error(file, "teacher weights do not fit this model");
  }
  return true;
}

void load_optimizer_state(const std::filesystem::path& file, torch::optim::Optimizer& optimizer) {
  auto root = open_archive(file);
  torch::serialize::InputArchive optim;
  try {
    if (!root.try_read("optimizer", optim)) throw Error(file, "checkpoint holds no optimizer state");
    optimizer.load(optim);
  } catch (const c10::Error&) {
    throw Error(file, "optimizer state does not fit this model and optimizer");
  }
}

}  // namespace segnet
