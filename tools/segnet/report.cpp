// segnet report: a run folder's charts drawn again from its files (curves.png from metrics.csv, and
// the charts of the eval JSON files in it).
#include "cli.h"

#include <segnet/report.h>

#include <cstdio>
#include <memory>

namespace segnet::cli {

Command add_report(CLI::App& app) {
  auto run = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand(
      "report", "draw a run's charts again: RUN/curves.png from RUN/metrics.csv, and STEM_confusion.png and "
                "STEM_class_iou.png for each eval JSON (STEM.json) in RUN");
  cmd->add_option("RUN_DIR", *run, "training run folder (holds metrics.csv)")->required();
  return {cmd, [run] {
            for (const auto& file : write_run_report(*run)) std::printf("wrote %s\n", file.c_str());
          }};
}

}  // namespace segnet::cli
