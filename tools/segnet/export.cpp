// segnet export: a checkpoint as an ONNX model for other runtimes.
#include "cli.h"

#include <segnet/checkpoint.h>
#include <segnet/error.h>
#include <segnet/export.h>
#include <segnet/files.h>

#include <cstdio>
#include <memory>

namespace segnet::cli {

namespace {

struct ExportArgs {
  std::string checkpoint, out;
  OnnxExportOptions options;
};

}  // namespace

Command add_export(CLI::App& app) {
  auto a = std::make_shared<ExportArgs>();
  auto* cmd = app.add_subcommand("export", "write a checkpoint's network as an ONNX model");
  add_checkpoint(cmd, "--checkpoint", a->checkpoint);
  cmd->add_option("--out", a->out, "the .onnx file to write")->required();
  add_choice(cmd, "--output", a->options.output, "what the model outputs");
  auto* label_type = add_choice(cmd, "--label-type", a->options.label_type, "element type of --output labels");
  cmd->add_flag("--dynamic-size", a->options.dynamic_size, "free height and width (default: the training size)");
  return {cmd, [a, label_type] {
            if (label_type->count() > 0 && a->options.output != ExportOutput::Labels)
              throw Error("--label-type: applies to --output labels only");
            refuse_overwriting_input("out", a->out, {a->checkpoint});
            const Checkpoint ck = load_checkpoint(a->checkpoint);
            const auto report = export_onnx(ck.info, ck.model, a->out, a->options);
            std::printf("wrote %s: %s, opset %lld, IR version %lld, %lld nodes, %lld bytes\n", a->out.c_str(),
                        to_string(a->options.output).c_str(), static_cast<long long>(report.opset),
                        static_cast<long long>(report.ir_version), static_cast<long long>(report.nodes),
                        static_cast<long long>(report.bytes));
            if (report.bayesian)
              std::printf("%s is Bayesian: exported its deterministic network (dropout as identity), as "
                          "predict without Monte Carlo sampling\n",
                          to_string(ck.info.model).c_str());
          }};
}

}  // namespace segnet::cli
