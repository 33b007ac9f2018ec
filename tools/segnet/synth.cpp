// segnet synth: a generated labelled dataset, for trying everything without data of one's own.
#include "cli.h"

#include <cstdio>
#include <memory>

namespace segnet::cli {

namespace {

struct SynthArgs {
  SynthOptions options;
  std::string size = to_string(SynthOptions{}.size);
};

}  // namespace

Command add_synth(CLI::App& app) {
  auto a = std::make_shared<SynthArgs>();
  SynthOptions& s = a->options;
  auto* cmd = app.add_subcommand("synth", "write a generated labelled dataset");
  cmd->add_option("--out", s.out, "new dataset folder: train.txt and val.txt, the images and masks they list, classes.csv")->required();
  cmd->add_option("--count", s.count, "images in all; a fifth go to val.txt")->capture_default_str();
  cmd->add_option("--size", a->size, "image size HxW")->capture_default_str();
  cmd->add_option("--seed", s.seed, "the same seed, the same images")->capture_default_str()->check(kUnsigned);
  cmd->add_flag("--binary", s.binary, "0/255 foreground masks instead of class ids");
  return {cmd, [a] {
            a->options.size = parse_size("--size", a->size);
            synthesize_dataset(a->options);
            std::printf("wrote %lld images to %s\n", static_cast<long long>(a->options.count), a->options.out.c_str());
          }};
}

}  // namespace segnet::cli
