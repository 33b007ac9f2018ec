// segnet calibrate: a copy of a checkpoint with the activation ranges int8 inference needs.
#include "cli.h"

#include <segnet/quantize.h>
#include <segnet/runtime.h>

#include <cstdio>
#include <memory>

namespace segnet::cli {

namespace {

struct CalibrateArgs {
  CheckpointCalibration options;
  int threads = 0;
  bool no_equalize = false;
};

}  // namespace

Command add_calibrate(CLI::App& app) {
  auto a = std::make_shared<CalibrateArgs>();
  CheckpointCalibration& c = a->options;
  auto* cmd = app.add_subcommand("calibrate", "calibrate a checkpoint on training images for --precision int8");
  add_checkpoint(cmd, "--checkpoint", c.checkpoint);
  cmd->add_option("--data", c.data, "dataset directory")->required();
  cmd->add_option("--list", c.list, "list file in --data")->capture_default_str();
  cmd->add_option("--images", c.images, "images to calibrate on, spread over the list")->capture_default_str();
  cmd->add_option("--percentile", c.calibration.percentile,
                  "each activation's range: per-image percentiles, averaged (100: the extremes)")
      ->capture_default_str();
  cmd->add_flag("--no-equalize", a->no_equalize,
                "keep the checkpoint's weights (default: rescale channels so that each activation's channels share one range)");
  cmd->add_option("--out", c.out, "the calibrated copy (default: beside the checkpoint, STEM_int8.pt)");
  cmd->add_option("--threads", a->threads, "CPU threads (default: $OMP_NUM_THREADS if set, else all cores)");
  return {cmd, [a] {
            set_threads(a->threads);
            a->options.equalize = !a->no_equalize;
            const CalibrationReport r = calibrate_checkpoint(a->options);
            std::printf("calibrated %lld activation ranges on %lld image%s; wrote %s\n", static_cast<long long>(r.ranges),
                        static_cast<long long>(r.images), r.images == 1 ? "" : "s", r.out.c_str());
          }};
}

}  // namespace segnet::cli
