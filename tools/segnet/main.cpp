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

// Image files named directly, and those inside named folders, in name order.
std::vector<fs::path> collect_images(const std::vector<std::string>& inputs) {
  std::vector<fs::path> files;
  for (const auto& input : inputs) {
    if (fs::is_directory(input)) {
      std::vector<fs::path> found;
      for (const auto& e : fs::directory_iterator(input)) {
        std::string ext = e.path().extension().string();
        std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
        if (ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp" || ext == ".tif" || ext == ".tiff")
          found.push_back(e.path());
      }
      std::sort(found.begin(), found.end());
      if (found.empty()) throw Error(input, "folder holds no images");
      files.insert(files.end(), found.begin(), found.end());
    } else {
      if (!fs::exists(input)) throw Error(input, "no such file");
      files.emplace_back(input);
    }
  }
  return files;
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
  keep_freed_memory();
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
  train_cmd->add_option("--model", t.model, "segnet | segnet-basic")->capture_default_str();
  train_cmd->add_option("--size", train_size, "training size HxW")->capture_default_str();
  train_cmd->add_option("--epochs", t.epochs)->capture_default_str();
  train_cmd->add_option("--batch", t.batch)->capture_default_str();
  train_cmd->add_option("--optimizer", t.optimizer, "sgd | adam")->capture_default_str();
  train_cmd->add_option("--lr", t.lr, "learning rate (default 0.01 sgd, 0.001 adam)");
  train_cmd->add_option("--weight-decay", t.weight_decay)->capture_default_str();
  train_cmd->add_option("--class-weights", t.class_weights, "median | none | FILE")->capture_default_str();
  train_cmd->add_option("--num-classes", t.num_classes, "needed when the dataset has no classes.csv");
  train_cmd->add_option("--void-label", t.void_label, "label value to ignore (default: classes and 255)");
  train_cmd->add_option("--out", t.out, "run directory")->required();
  train_cmd->add_flag("--resume", t.resume, "continue the run in --out from last.pt");
  train_cmd->add_option("--seed", t.seed)->capture_default_str();
  train_common.add_to(train_cmd);

  // eval
  std::string eval_ck, eval_list = "val.txt", eval_json;
  fs::path eval_data;
  Common eval_common;
  auto* eval_cmd = app.add_subcommand("eval", "score a checkpoint on a labelled list");
  eval_cmd->add_option("--checkpoint", eval_ck)->required();
  eval_cmd->add_option("--data", eval_data)->required();
  eval_cmd->add_option("--list", eval_list)->capture_default_str();
  eval_cmd->add_option("--json", eval_json, "write metrics and confusion matrix here");
  eval_common.add_to(eval_cmd);

  // predict
  std::string predict_ck;
  fs::path predict_out;
  std::vector<std::string> predict_inputs;
  Common predict_common;
  auto* predict_cmd = app.add_subcommand("predict", "segment images: ids, colours and overlays as PNG");
  predict_cmd->add_option("--checkpoint", predict_ck)->required();
  predict_cmd->add_option("--out", predict_out)->required();
  predict_cmd->add_option("inputs", predict_inputs, "image files or folders")->required();
  predict_common.add_to(predict_cmd);

  // bench
  BenchOptions b;
  Common bench_common;
  std::string bench_size = to_string(b.size), bench_mode = "infer", bench_json;
  auto* bench_cmd = app.add_subcommand("bench", "time training or inference on random input");
  bench_cmd->add_option("--model", b.model, "segnet | segnet-basic")->capture_default_str();
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
      Segmenter segmenter = Segmenter::from_checkpoint(eval_ck, eval_common.setup(), eval_common.numeric());
      const auto samples = find_samples(eval_data, eval_list);
      const bool terminal = ::isatty(2);
      const auto matrix = evaluate(segmenter, samples, segmenter.info().label_spec(), [&](size_t done, size_t total) {
        if (terminal) std::fprintf(stderr, "\r\033[Kevaluating %zu/%zu", done, total);
      });
      if (terminal) std::fprintf(stderr, "\r\033[K");
      const auto j = metrics_json(matrix, segmenter.info().classes);
      print_metrics(j);
      if (!eval_json.empty()) write_text(eval_json, j.dump(2) + "\n");
    } else if (*predict_cmd) {
      Segmenter segmenter = Segmenter::from_checkpoint(predict_ck, predict_common.setup(), predict_common.numeric());
      const auto files = collect_images(predict_inputs);
      for (size_t i = 0; i < files.size(); ++i) {
        const cv::Mat rgb = read_image(files[i]);
        const cv::Mat ids = segmenter.segment(rgb), color = colorize(ids, segmenter.info().classes);
        const std::string stem = files[i].stem().string();
        write_png(predict_out / (stem + ".png"), ids);
        write_png(predict_out / (stem + "_color.png"), color);
        write_png(predict_out / (stem + "_overlay.png"), overlay(rgb, color));
        std::fprintf(stderr, "segmented %zu/%zu %s\n", i + 1, files.size(), files[i].c_str());
      }
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
