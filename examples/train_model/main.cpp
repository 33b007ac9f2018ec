// Trains SegNet-Basic on a dataset folder, printing its progress, and scores the best model on the
// validation list, class by class. Run it again with more epochs and it continues the run exactly
// where it stopped.
//   RUN_DIR/config.json   the options, and the dataset's classes and statistics
//   RUN_DIR/metrics.csv   a row per epoch; curves.png charts it
//   RUN_DIR/last.pt       the last epoch's model (segment_image takes it), with what resuming needs
//   RUN_DIR/best.pt       the epoch with the best validation mIoU
// A dataset folder holds train.txt (and val.txt), lines of `IMAGE LABEL` paths, and classes.csv, as
// `segnet synth` and `segnet convert` write them; see the README's "Train on CamVid or on your own images".
// Usage: train_model DATA_DIR RUN_DIR EPOCHS HEIGHT WIDTH
#include <segnet/segnet.h>
#include <torch/cuda.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <stdexcept>
#include <string>

namespace {

// A whole number >= 1 from a command-line argument, or an error naming the argument.
int64_t positive(const char* name, const std::string& text) {
  size_t used = 0;
  long long value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
  }
  if (used != text.size() || value < 1) throw std::runtime_error(std::string(name) + ": '" + text + "' is not a whole number >= 1");
  return value;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::cerr << "usage: train_model DATA_DIR RUN_DIR EPOCHS HEIGHT WIDTH\n";
    return 2;
  }
  try {
    // Use all cores. Call this first, before anything else runs LibTorch.
    segnet::set_threads(0);

    // Every option has a default (include/segnet/train.h says what each does); set what differs.
    segnet::TrainOptions options;
    options.data = argv[1];
    options.out = argv[2];
    options.epochs = positive("EPOCHS", argv[3]);
    // Images and labels are resized to this; smaller trains faster, larger sees more detail.
    options.size = {positive("HEIGHT", argv[4]), positive("WIDTH", argv[5])};
    options.model = segnet::Model::SegNetBasic;
    options.device = torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
    // bf16 where the device runs it fast (a GPU, or a processor with AVX-512); weights and loss stay fp32.
    if (segnet::has_fast_bf16(options.device)) options.precision = segnet::Precision::BFloat16;
    // A run folder that already holds this run is continued from last.pt: the same options are required
    // (an Error names the first that differs), except the number of epochs.
    options.resume = std::filesystem::exists(options.out / "last.pt");
    options.command_line.assign(argv, argv + argc);  // recorded in config.json

    // The library prints nothing: it reports through these callbacks (each is optional).
    segnet::TrainCallbacks callbacks;
    callbacks.step = [](const segnet::StepReport& s) {
      std::fprintf(stderr, "\repoch %lld/%lld  step %lld/%lld  loss %.4f  %.1f images/s ", static_cast<long long>(s.epoch),
                   static_cast<long long>(s.epochs), static_cast<long long>(s.step), static_cast<long long>(s.steps),
                   s.mean_loss, s.images_per_s);
    };
    callbacks.epoch = [&options](const segnet::EpochRecord& r) {
      std::fprintf(stderr, "\n");
      // Without a validation list the validation figures are NaN.
      std::printf("epoch %lld/%lld  loss %.4f  val mIoU %.4f  %.1f s%s\n", static_cast<long long>(r.epoch),
                  static_cast<long long>(options.epochs), r.train_loss, r.miou, r.seconds,
                  r.best ? "  (best so far: best.pt)" : "");
      std::fflush(stdout);
    };
    const std::vector<segnet::EpochRecord> epochs = segnet::train(options, callbacks);
    if (epochs.empty()) std::printf("%s already ran %lld epochs\n", options.out.c_str(), static_cast<long long>(options.epochs));

    // Score best.pt as `segnet eval` would: each prediction against its label at the label's size.
    if (!std::filesystem::exists(options.data / "val.txt")) return 0;
    segnet::Segmenter segmenter = segnet::Segmenter::from_checkpoint(options.out / "best.pt", options.device);
    const std::vector<segnet::SamplePaths> val = segnet::find_samples(options.data, "val.txt");
    const segnet::Evaluation scores = segnet::evaluate(segmenter, val, segmenter.info().label_spec());
    const segnet::ConfusionMatrix& matrix = scores.confusion;
    const std::vector<double> iou = matrix.class_iou();  // NaN for a class neither in the labels nor predicted
    std::printf("best.pt on %zu validation images: global accuracy %.4f, mIoU %.4f, boundary F1 %.4f\n", val.size(),
                matrix.global_accuracy(), matrix.mean_iou(), scores.boundary.mean());
    const std::vector<segnet::ClassInfo>& classes = segmenter.info().classes;
    for (size_t c = 0; c < classes.size(); ++c)
      if (!std::isnan(iou[c])) std::printf("  %-16s IoU %.4f\n", classes[c].name.c_str(), iou[c]);
  } catch (const std::exception& e) {  // segnet::Error: one line that names the bad file or option
    std::cerr << "train_model: " << e.what() << '\n';
    return 1;
  }
}
