#include <segnet/error.h>
#include <segnet/files.h>
#include <segnet/train.h>
#include <segnet/version.h>

#include "common/input_range_json.h"
#include "train/config.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <type_traits>

namespace segnet {

namespace {

template <class T>
void read(const nlohmann::json& options, const std::string& key, T& field) {
  if (!options.contains(key)) return;
  const nlohmann::json& value = options.at(key);
  // get<> would truncate 2.5 to 2 and wrap -5 around for an unsigned field.
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>)
    if (!(std::is_signed_v<T> ? value.is_number_integer() : value.is_number_unsigned()))
      throw OptionError(key, "must be a whole number" + std::string(std::is_signed_v<T> ? "" : " >= 0") +
                                 " in the configuration (" + value.dump() + ")");
  try {
    field = value.get<T>();
  } catch (const nlohmann::json::exception&) {
    throw OptionError(key, "has the wrong type in the configuration (" + value.dump() + ")");
  }
}

template <class E>
E choice_of(const nlohmann::json& options, const std::string& key) {
  std::string name;
  read(options, key, name);
  const auto value = choice_from_name<E>(name);
  if (!value) throw OptionError(key, "'" + name + "' is not one of " + choice_list<E>());
  return *value;
}

template <class T>
nlohmann::json optional_value(const std::optional<T>& value) {
  return value ? nlohmann::json(*value) : nlohmann::json(nullptr);
}

}  // namespace

nlohmann::json options_to_json(const TrainOptions& o) {
  const nlohmann::json class_weights = o.class_weights.kind == ClassWeights::Kind::Given ? nlohmann::json(o.class_weights.given)
                                                                                       : nlohmann::json(to_string(o.class_weights.kind));
  return {{"data", o.data.string()},
          {"train_list", o.train_list},
          {"val_list", optional_value(o.val_list)},
          {"model", to_string(o.model)},
          {"upsampling", to_string(o.upsampling)},
          {"dilation", o.dilation},
          {"encoder_weights", o.encoder_weights.string()},
          {"init", o.init.string()},
          {"task", to_string(o.task)},
          {"loss", o.loss ? nlohmann::json(to_string(*o.loss)) : nlohmann::json(nullptr)},
          {"size", {o.size.height, o.size.width}},
          {"input_range", input_range_json(o.input_range)},
          {"augment.min_scale", o.augment.min_scale},
          {"augment.max_scale", o.augment.max_scale},
          {"augment.flip", o.augment.flip},
          {"augment.brightness", o.augment.brightness},
          {"augment.contrast", o.augment.contrast},
          {"augment.saturation", o.augment.saturation},
          {"augment.hue", o.augment.hue},
          {"epochs", o.epochs},
          {"patience", o.patience},
          {"batch", o.batch},
          {"accumulate", o.accumulate},
          {"optimizer", to_string(o.optimizer)},
          {"lr", optional_value(o.lr)},
          {"lr_schedule", to_string(o.lr_schedule)},
          {"weight_decay", o.weight_decay},
          {"model_ema_decay", o.model_ema_decay},
          {"class_weights", class_weights},
          {"num_classes", optional_value(o.num_classes)},
          {"void_label", optional_value(o.void_label)},
          {"label_format", to_string(o.label_format)},
          {"label_map", o.label_map.string()},
          {"void_colors", o.void_colors},
          {"pseudo.unlabeled", o.pseudo.unlabeled.string()},
          {"pseudo.weight", o.pseudo.weight},
          {"pseudo.threshold", o.pseudo.threshold},
          {"pseudo.class_share", o.pseudo.class_share},
          {"pseudo.min_scale", o.pseudo.min_scale},
          {"pseudo.max_scale", o.pseudo.max_scale},
          {"pseudo.mix", to_string(o.pseudo.mix)},
          {"pseudo.adapt_statistics", o.pseudo.adapt_statistics},
          {"pseudo.rampup_epochs", o.pseudo.rampup_epochs},
          {"pseudo.ema_decay", o.pseudo.ema_decay},
          {"seed", o.seed},
          {"precision", to_string(o.precision)}};
}

TrainOptions options_from_json(const nlohmann::json& options, TrainOptions o) {
  if (!options.is_object()) throw Error("training options must be a JSON object");
  const nlohmann::json known = options_to_json(TrainOptions{});
  for (const auto& [key, value] : options.items())
    if (!known.contains(key)) throw OptionError(key, "is not a training option");
  const auto optional = [&](const std::string& key, auto& field) {
    if (!options.contains(key)) return;
    if (options.at(key).is_null()) field.reset();
    else field.emplace(), read(options, key, *field);
  };
  std::string text;
  if (options.contains("data")) read(options, "data", text), o.data = text;
  read(options, "train_list", o.train_list);
  optional("val_list", o.val_list);
  if (options.contains("model")) o.model = choice_of<Model>(options, "model");
  if (options.contains("upsampling")) o.upsampling = choice_of<Upsampling>(options, "upsampling");
  read(options, "dilation", o.dilation);
  if (options.contains("encoder_weights")) read(options, "encoder_weights", text), o.encoder_weights = text;
  if (options.contains("init")) read(options, "init", text), o.init = text;
  if (options.contains("task")) o.task = choice_of<Task>(options, "task");
  if (options.contains("loss"))
    o.loss = options.at("loss").is_null() ? std::nullopt : std::optional<Loss>(choice_of<Loss>(options, "loss"));
  std::vector<int64_t> size;
  read(options, "size", size);
  if (options.contains("size") && size.size() != 2) throw OptionError("size", "must be [height, width]");
  if (size.size() == 2) o.size = {size[0], size[1]};
  if (options.contains("input_range")) o.input_range = input_range_from_json(options.at("input_range"));
  read(options, "augment.min_scale", o.augment.min_scale);
  read(options, "augment.max_scale", o.augment.max_scale);
  read(options, "augment.flip", o.augment.flip);
  read(options, "augment.brightness", o.augment.brightness);
  read(options, "augment.contrast", o.augment.contrast);
  read(options, "augment.saturation", o.augment.saturation);
  read(options, "augment.hue", o.augment.hue);
  read(options, "epochs", o.epochs);
  read(options, "patience", o.patience);
  read(options, "batch", o.batch);
  read(options, "accumulate", o.accumulate);
  if (options.contains("optimizer")) o.optimizer = choice_of<Optimizer>(options, "optimizer");
  optional("lr", o.lr);
  if (options.contains("lr_schedule")) o.lr_schedule = choice_of<LrSchedule>(options, "lr_schedule");
  read(options, "weight_decay", o.weight_decay);
  read(options, "model_ema_decay", o.model_ema_decay);
  if (options.contains("class_weights")) {
    const auto& w = options.at("class_weights");
    const auto kind = w.is_string() ? choice_from_name<ClassWeights::Kind>(w.get<std::string>()) : std::nullopt;
    if (kind) {
      o.class_weights = {*kind, {}};
    } else if (w.is_array()) {
      std::vector<float> given;
      read(options, "class_weights", given);
      o.class_weights = ClassWeights::of(std::move(given));
    } else {
      throw OptionError("class_weights", "must be " + choice_list<ClassWeights::Kind>() + " (as a string), or a list of weights");
    }
  }
  optional("num_classes", o.num_classes);
  optional("void_label", o.void_label);
  if (options.contains("label_format")) o.label_format = choice_of<LabelFormat>(options, "label_format");
  if (options.contains("label_map")) read(options, "label_map", text), o.label_map = text;
  read(options, "void_colors", o.void_colors);
  if (options.contains("pseudo.unlabeled")) read(options, "pseudo.unlabeled", text), o.pseudo.unlabeled = text;
  read(options, "pseudo.weight", o.pseudo.weight);
  read(options, "pseudo.threshold", o.pseudo.threshold);
  read(options, "pseudo.class_share", o.pseudo.class_share);
  read(options, "pseudo.min_scale", o.pseudo.min_scale);
  read(options, "pseudo.max_scale", o.pseudo.max_scale);
  if (options.contains("pseudo.mix")) o.pseudo.mix = choice_of<PseudoMix>(options, "pseudo.mix");
  read(options, "pseudo.adapt_statistics", o.pseudo.adapt_statistics);
  read(options, "pseudo.rampup_epochs", o.pseudo.rampup_epochs);
  read(options, "pseudo.ema_decay", o.pseudo.ema_decay);
  read(options, "seed", o.seed);
  if (options.contains("precision")) o.precision = choice_of<Precision>(options, "precision");
  return o;
}

nlohmann::json run_config(const TrainOptions& o, const ModelInfo& info, const DatasetStatistics& stats,
                          size_t train_images, size_t val_images) {
  nlohmann::json classes = nlohmann::json::array();
  for (size_t k = 0; k < info.classes.size(); ++k)
    classes.push_back({{"name", info.classes[k].name},
                       {"rgb", info.classes[k].rgb},
                       {"pixels", k < stats.class_pixels.size() ? stats.class_pixels[k] : 0},
                       {"weight", k < info.class_weights.size() ? info.class_weights[k] : 1.f}});
  return {{"segnet", {{"version", version()}, {"commit", git_commit()}}},
          {"command_line", o.command_line},
          {"processes", o.distributed.world_size},
          {"options", options_to_json(o)},
          {"normalization", {{"mean", info.norm.mean}, {"std", info.norm.std}}},
          {"dataset",
           {{"train_images", train_images},
            {"val_images", val_images},
            {"classes", classes},
            {"mean", stats.norm.mean},
            {"std", stats.norm.std}}}};
}

std::optional<nlohmann::json> read_run_options(const std::filesystem::path& config) {
  if (!std::filesystem::exists(config)) return std::nullopt;
  if (!std::filesystem::is_regular_file(config)) throw Error(config, "is not a file");
  std::ifstream in(config);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(config, std::string("is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw Error(config, "holds no training options (expected a JSON object)");
  return j.contains("options") ? j.at("options") : j;
}

void check_same_options(const std::filesystem::path& config, const nlohmann::json& run, const TrainOptions& o) {
  const nlohmann::json now = options_to_json(o);
  for (const auto& [key, value] : run.items())
    if (key != "epochs" && key != "patience" && now.contains(key) && now.at(key) != value)
      throw OptionError(key, "is " + now.at(key).dump() + " here but " + value.dump() + " in the run's " + config.string());
}

void check_same_processes(const std::filesystem::path& config, int64_t world_size) {
  std::ifstream in(config);
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  const int64_t processes = j.is_object() && j.value("processes", nlohmann::json()).is_number_integer() ? j["processes"].get<int64_t>() : 1;
  if (processes != world_size)
    throw OptionError("distributed.world_size", "is " + std::to_string(world_size) + " here but the run in " +
                                                    config.string() + " was trained by " + std::to_string(processes) +
                                                    " processes (the batch of a step would change)");
}

void record_run_length(const std::filesystem::path& config, int64_t epochs, int64_t patience) {
  std::ifstream in(config);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.contains("options")) throw Error(config, "is not a run's config.json");
  j["options"]["epochs"] = epochs;
  j["options"]["patience"] = patience;
  write_text(config, j.dump(2) + "\n");
}

}  // namespace segnet
