// segnet: train, evaluate and apply SegNet from the command line. Parses arguments, calls the library.
#include <segnet/segnet.h>

#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>

namespace fs = std::filesystem;
using namespace segnet;

namespace {

// Options every compute command takes.
struct Common {
  int threads = 0;
  std::string device = "cpu";
  std::string precision = "fp32";
  void add_to(CLI::App* cmd) {
    cmd->add_option("--threads", threads, "CPU threads (default: all cores)");
    cmd->add_option("--device", device, "cpu or cuda[:K]")->capture_default_str();
    cmd->add_option("--precision", precision, "fp32 | bf16")->capture_default_str();
  }
  torch::Device setup() const {
    set_threads(threads);
    return parse_device(device);
  }
  Precision numeric() const { return parse_precision(precision); }
};

void add_inference_options(CLI::App* cmd, SegmenterOptions& o) {
  cmd->add_option("--mc-samples", o.mc_samples, "Bayesian models: average this many dropout samples")
      ->capture_default_str();
  cmd->add_option("--threshold", o.threshold, "binary models: foreground probability threshold")->capture_default_str();
}

void print_binary_metrics(const nlohmann::json& j) {
  for (const char* key : {"iou", "dice", "precision", "recall", "pixel_acc"})
    std::printf("%-16s %s\n", key, j[key].is_null() ? "n/a" : std::to_string(j[key].get<double>()).substr(0, 6).c_str());
}

void print_metrics(const nlohmann::json& j) {
  auto fmt = [](const nlohmann::json& v) { return v.is_null() ? std::string("   n/a") : std::to_string(v.get<double>()).substr(0, 6); };
  std::printf("global accuracy  %s\nclass avg acc    %s\nmIoU             %s\n", fmt(j["global_acc"]).c_str(),
              fmt(j["class_avg_acc"]).c_str(), fmt(j["miou"]).c_str());
  std::printf("%-20s %8s %8s\n", "class", "IoU", "acc");
  for (const auto& c : j["per_class"])
    std::printf("%-20s %8s %8s\n", c["name"].get<std::string>().c_str(), fmt(c["iou"]).c_str(), fmt(c["acc"]).c_str());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"SegNet semantic segmentation: train, evaluate, segment."};
  app.require_subcommand(1);

  // train
  TrainOptions t;
  Common train_common;
  std::string train_size = "360x480";
  auto* train_cmd = app.add_subcommand("train", "train a model on a labelled dataset");
  train_cmd->add_option("--data", t.data, "dataset directory (list files, or images/ and masks/)")->required();
  train_cmd->add_option("--train-list", t.train_list, "training list, relative to --data")->capture_default_str();
  train_cmd->add_option("--val-list", t.val_list, "validation list (skipped if absent)")->capture_default_str();
  train_cmd->add_option("--model", t.model, "segnet | segnet-basic | bayesian-segnet | bayesian-segnet-basic")
      ->capture_default_str();
  train_cmd->add_option("--decoder", t.decoder, "indices | transposed | bilinear")->capture_default_str();
  train_cmd->add_option("--dilation", t.dilation, "dilation of each encoder stage, e.g. 1,1,1,2,4")->delimiter(',');
  train_cmd->add_option("--task", t.task, "multiclass | binary")->capture_default_str();
  train_cmd->add_option("--loss", t.loss, "binary: bce (default) | dice | bce+dice");
  train_cmd->add_option("--size", train_size, "training size HxW")->capture_default_str();
  train_cmd->add_option("--epochs", t.epochs)->capture_default_str();
  train_cmd->add_option("--batch", t.batch)->capture_default_str();
  train_cmd->add_option("--optimizer", t.optimizer, "sgd | adam")->capture_default_str();
  train_cmd->add_option("--lr", t.lr, "learning rate (default 0.01 sgd, 0.001 adam)");
  train_cmd->add_option("--lr-schedule", t.lr_schedule, "poly (decays to 0 over --epochs) or constant")
      ->capture_default_str();
  train_cmd->add_option("--weight-decay", t.weight_decay)->capture_default_str();
  train_cmd->add_option("--class-weights", t.class_weights, "median | none | FILE")->capture_default_str();
  train_cmd->add_option("--num-classes", t.num_classes, "needed when the dataset has no classes.csv");
  train_cmd->add_option("--void-label", t.void_label, "label value to ignore (default: classes and 255)");
  train_cmd->add_option("--unlabeled", t.unlabeled, "folder or list of unlabelled images: pseudo-label training");
  train_cmd->add_option("--pseudo-weight", t.pseudo_weight, "lambda of the pseudo-label loss")->capture_default_str();
  train_cmd->add_option("--pseudo-threshold", t.pseudo_threshold, "tau: confidence a pseudo-label needs")
      ->capture_default_str();
  train_cmd->add_option("--pseudo-rampup", t.pseudo_rampup, "epochs over which lambda ramps up")->capture_default_str();
  train_cmd->add_option("--ema-decay", t.ema_decay, "teacher's exponential moving average")->capture_default_str();
  train_cmd->add_option("--out", t.out, "run directory")->required();
  train_cmd->add_flag("--resume", t.resume, "continue the run in --out from last.pt");
  train_cmd->add_option("--seed", t.seed)->capture_default_str();
  train_common.add_to(train_cmd);

  // eval
  std::string eval_ck, eval_list = "val.txt", eval_json;
  fs::path eval_data;
  Common eval_common;
  SegmenterOptions eval_inference;
  auto* eval_cmd = app.add_subcommand("eval", "score a checkpoint on a labelled list");
  eval_cmd->add_option("--checkpoint", eval_ck)->required();
  eval_cmd->add_option("--data", eval_data)->required();
  eval_cmd->add_option("--list", eval_list)->capture_default_str();
  eval_cmd->add_option("--json", eval_json, "write metrics and confusion matrix here");
  eval_common.add_to(eval_cmd);
  add_inference_options(eval_cmd, eval_inference);

  // predict
  std::string predict_ck;
  fs::path predict_out;
  std::vector<fs::path> predict_inputs;
  Common predict_common;
  SegmenterOptions predict_inference;
  auto* predict_cmd = app.add_subcommand("predict", "segment images: ids, colours and overlays as PNG");
  predict_cmd->add_option("--checkpoint", predict_ck)->required();
  predict_cmd->add_option("--out", predict_out)->required();
  predict_cmd->add_option("inputs", predict_inputs, "image files or folders")->required();
  predict_common.add_to(predict_cmd);
  add_inference_options(predict_cmd, predict_inference);

  // pseudo-label
  std::string pseudo_ck;
  fs::path pseudo_out;
  std::vector<fs::path> pseudo_inputs;
  Common pseudo_common;
  double pseudo_threshold = 0.9;
  auto* pseudo_cmd = app.add_subcommand("pseudo-label", "write label masks of confident predictions, void elsewhere");
  pseudo_cmd->add_option("--checkpoint", pseudo_ck)->required();
  pseudo_cmd->add_option("--out", pseudo_out)->required();
  pseudo_cmd->add_option("--threshold", pseudo_threshold, "top class probability a pixel needs")->capture_default_str();
  pseudo_cmd->add_option("inputs", pseudo_inputs, "image files or folders")->required();
  pseudo_common.add_to(pseudo_cmd);

  // bench
  BenchOptions b;
  Common bench_common;
  std::string bench_size = to_string(b.size), bench_mode = "infer", bench_json;
  auto* bench_cmd = app.add_subcommand("bench", "time training or inference on random input");
  bench_cmd->add_option("--model", b.model, "segnet | segnet-basic | bayesian-segnet | bayesian-segnet-basic")
      ->capture_default_str();
  bench_cmd->add_option("--size", bench_size)->capture_default_str();
  bench_cmd->add_option("--batch", b.batch)->capture_default_str();
  bench_cmd->add_option("--mode", bench_mode, "train | infer")->capture_default_str();
  bench_cmd->add_option("--iters", b.iters, "timed iterations")->capture_default_str();
  bench_cmd->add_option("--warmup", b.warmup)->capture_default_str();
  bench_cmd->add_option("--classes", b.num_classes)->capture_default_str();
  bench_cmd->add_option("--json", bench_json, "write the results here");
  bench_cmd->add_flag("--profile", b.profile, "time each stage and operator");
  bench_common.add_to(bench_cmd);

  // synth
  SynthOptions s;
  std::string synth_size = to_string(s.size);
  auto* synth_cmd = app.add_subcommand("synth", "write a generated labelled dataset");
  synth_cmd->add_option("--out", s.out)->required();
  synth_cmd->add_option("--count", s.count)->capture_default_str();
  synth_cmd->add_option("--size", synth_size)->capture_default_str();
  synth_cmd->add_option("--seed", s.seed)->capture_default_str();
  synth_cmd->add_flag("--binary", s.binary, "0/255 foreground masks instead of class ids");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  try {
    if (*train_cmd) {
      t.device = train_common.setup();
      t.precision = train_common.numeric();
      t.size = parse_size(train_size);
      const auto records = train(t);
      if (!records.empty())
        std::printf("trained %s to epoch %lld; last val mIoU %.4f; run in %s\n", t.model.c_str(),
                    static_cast<long long>(records.back().epoch), records.back().miou, t.out.c_str());
      else
        std::printf("%s already trained to %lld epochs\n", t.out.c_str(), static_cast<long long>(t.epochs));
    } else if (*eval_cmd) {
      eval_inference.precision = eval_common.numeric();
      Segmenter segmenter = Segmenter::from_checkpoint(eval_ck, eval_common.setup(), eval_inference);
      const auto samples = find_samples(eval_data, eval_list);
      const bool terminal = ::isatty(2);
      const auto matrix = evaluate(segmenter, samples, segmenter.info().label_spec(), [&](size_t done, size_t total) {
        if (terminal) std::fprintf(stderr, "\r\033[Kevaluating %zu/%zu", done, total);
      });
      if (terminal) std::fprintf(stderr, "\r\033[K");
      const auto j = segmenter.info().binary() ? binary_metrics_json(matrix) : metrics_json(matrix, segmenter.info().classes);
      segmenter.info().binary() ? print_binary_metrics(j) : print_metrics(j);
      if (!eval_json.empty()) write_text(eval_json, j.dump(2) + "\n");
    } else if (*predict_cmd) {
      predict_inference.precision = predict_common.numeric();
      Segmenter segmenter = Segmenter::from_checkpoint(predict_ck, predict_common.setup(), predict_inference);
      const auto files = list_images(predict_inputs);
      for (size_t i = 0; i < files.size(); ++i) {
        const cv::Mat rgb = read_image(files[i]);
        const auto probs = segmenter.probabilities(rgb);
        const cv::Mat ids = segmenter.labels_from(probs), color = colorize(ids, segmenter.info().classes);
        const std::string stem = files[i].stem().string();
        write_png(predict_out / (stem + ".png"), segmenter.info().binary() ? cv::Mat(ids * 255) : ids);  // masks as 0/255
        if (predict_inference.mc_samples > 1)
          write_png(predict_out / (stem + "_uncertainty.png"),
                    heatmap(predictive_entropy(probs), std::log(double(segmenter.info().classes.size()))));
        if (!segmenter.info().binary()) write_png(predict_out / (stem + "_color.png"), color);
        write_png(predict_out / (stem + "_overlay.png"), overlay(rgb, color));
        std::fprintf(stderr, "segmented %zu/%zu %s\n", i + 1, files.size(), files[i].c_str());
      }
    } else if (*pseudo_cmd) {
      Segmenter segmenter = Segmenter::from_checkpoint(pseudo_ck, pseudo_common.setup(), {pseudo_common.numeric()});
      const auto& info = segmenter.info();
      if (info.binary() || info.void_labels.empty())
        throw Error(pseudo_ck, "pseudo-label needs a multi-class checkpoint with a void label");
      if (!(pseudo_threshold > 0 && pseudo_threshold <= 1)) throw Error("--threshold: must be in (0, 1]");
      const auto files = list_images(pseudo_inputs);
      int64_t confident = 0, total = 0;
      for (size_t i = 0; i < files.size(); ++i) {
        const auto labels = confident_labels(segmenter.probabilities(read_image(files[i])), pseudo_threshold);
        confident += (labels != kIgnoreLabel).sum().item<int64_t>();
        total += labels.numel();
        // Void is written as the training's void value, so the masks train as they are.
        const auto mask = labels.masked_fill(labels == kIgnoreLabel, info.void_labels[0]).to(torch::kUInt8).contiguous();
        write_png(pseudo_out / (files[i].stem().string() + ".png"),
                  cv::Mat(int(mask.size(0)), int(mask.size(1)), CV_8UC1, mask.data_ptr<uint8_t>()));
        std::fprintf(stderr, "pseudo-labelled %zu/%zu %s\n", i + 1, files.size(), files[i].c_str());
      }
      std::printf("%.1f%% of pixels confident at threshold %.2f; masks in %s (void = %lld)\n",
                  100.0 * confident / std::max<int64_t>(1, total), pseudo_threshold, pseudo_out.c_str(),
                  static_cast<long long>(info.void_labels[0]));
    } else if (*bench_cmd) {
      b.device = bench_common.setup();
      b.precision = bench_common.numeric();
      b.size = parse_size(bench_size);
      if (bench_mode != "train" && bench_mode != "infer") throw Error("--mode: '" + bench_mode + "' is not train or infer");
      b.train = bench_mode == "train";
      architecture(b.model);
      const BenchResult r = run_benchmark(b);
      std::printf("%s %s %s batch %lld at %s, %d threads: %.3f images/s, %.1f ms/image, %.1f GFLOP/s, peak RSS %.0f MB\n",
                  b.model.c_str(), bench_mode.c_str(), to_string(b.precision).c_str(), static_cast<long long>(b.batch),
                  bench_size.c_str(), torch::get_num_threads(), r.images_per_s, r.ms_per_image, r.gflops, r.peak_rss_mb);
      auto table = [](const char* title, const std::vector<ProfileRow>& rows, size_t limit) {
        std::printf("\n%-32s %10s %7s\n", title, "ms/iter", "calls");
        for (size_t i = 0; i < rows.size() && i < limit; ++i)
          std::printf("%-32s %10.2f %7lld\n", rows[i].name.c_str(), rows[i].ms, static_cast<long long>(rows[i].calls));
      };
      if (b.profile) {
        table("stage (inclusive)", r.stages, 64);
        table("operator (self)", r.operators, 15);
      }
      if (!bench_json.empty()) write_text(bench_json, to_json(b, r).dump(2) + "\n");
    } else if (*synth_cmd) {
      s.size = parse_size(synth_size);
      synthesize_dataset(s);
      std::printf("wrote %lld images to %s\n", static_cast<long long>(s.count), s.out.c_str());
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "segnet: error: %s\n", e.what());
    return 1;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "segnet: error: %s\n", e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "segnet: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
